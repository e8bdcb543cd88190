// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Jitvmx.Runtime;

namespace Jitvmx.Lifting;

/// <summary>
/// x87 operations on the guest's FPU state (<c>ctx->State.X87</c>), called from translated code.
/// All are registered non-pure: the x87 state lives only in guest state. Memory operands arrive
/// already loaded; values to store are returned and committed by a second call, so a faulting
/// store leaves the FPU untouched.
/// </summary>
internal static unsafe class X87Ops
{
    /// <summary>Memory operand formats.</summary>
    public const ulong F32 = 0, F64 = 1, I16 = 2, I32 = 3, I64 = 4, F80Lo = 5, F80Hi = 6, BcdLo = 7, BcdHi = 8;
    /// <summary>Two-operand arithmetic: x = ST(dst), y = the other operand.</summary>
    public const ulong Add = 0, Mul = 1, Sub = 2, Subr = 3, Div = 4, Divr = 5;

    private const ushort SF = 0x40, ES = 0x80, C0 = 0x100, C1 = 0x200, C2 = 0x400, C3 = 0x4000, B = 0x8000;

    // ---- stack plumbing ----

    private static int Top(ref X87State x) => (x.Status >> 11) & 7;
    private static void SetTop(ref X87State x, int top) => x.Status = (ushort)((x.Status & ~0x3800) | ((top & 7) << 11));
    private static int Phys(ref X87State x, int i) => (Top(ref x) + i) & 7;
    private static int TagAt(ref X87State x, int phys) => (x.Tag >> (phys * 2)) & 3;
    private static bool Empty(ref X87State x, int i) => TagAt(ref x, Phys(ref x, i)) == 3;

    private static Float80 Read(ref X87State x, int i)
    {
        ref var r = ref x.R[Phys(ref x, i)];
        return new Float80(r.Mantissa, r.SignExponent);
    }

    /// <summary>The tag a value gets: 0 valid, 1 zero, 2 special.</summary>
    private static int TagOf(Float80 v) => F80.Classify(v) switch
    {
        F80Class.Zero => 1,
        F80Class.Finite when v.Exp != 0 => 0,
        _ => 2,
    };

    private static void WritePhys(ref X87State x, int p, Float80 v)
    {
        x.R[p].Mantissa = v.M;
        x.R[p].SignExponent = v.SE;
        x.Tag = (ushort)((x.Tag & ~(3 << (p * 2))) | (TagOf(v) << (p * 2)));
    }

    private static void Write(ref X87State x, int i, Float80 v) => WritePhys(ref x, Phys(ref x, i), v);

    private static void Pop(ref X87State x)
    {
        int p = Top(ref x);
        x.Tag |= (ushort)(3 << (p * 2));
        SetTop(ref x, p + 1);
    }

    /// <summary>Sets the exception flags of <paramref name="flags"/> (sticky), C1 from its round-up bit, and ES/B when one is unmasked.</summary>
    private static void Raise(ref X87State x, uint flags)
    {
        // An unmasked invalid, denormal or zero-divide exception stops the operation before the result is rounded.
        if (Suppressed(ref x, flags)) flags &= F80.IE | F80.DE | F80.ZE | SF | ((flags & SF) != 0 ? C1 : 0u);
        int sw = (x.Status & ~C1) | (int)(flags & 0x7F) | (int)(flags & C1);
        if ((sw & ~x.Control & 0x3F) != 0) sw |= ES | B;
        x.Status = (ushort)sw;
    }

    /// <summary>Whether an unmasked invalid, denormal or zero-divide exception suppresses the result.</summary>
    private static bool Suppressed(ref X87State x, uint flags) => (flags & (F80.IE | F80.DE | F80.ZE) & ~(uint)x.Control) != 0;

    /// <summary>Stack underflow: IE+SF with C1 clear; true when the masked response (indefinite) applies.</summary>
    private static bool Underflow(ref X87State x)
    {
        Raise(ref x, F80.IE | SF);
        return (x.Control & 1) != 0;
    }

    private static void Push(ref X87State x, Float80 v, uint flags)
    {
        int p = (Top(ref x) - 1) & 7;
        if (TagAt(ref x, p) != 3)
        {
            Raise(ref x, F80.IE | SF | (uint)C1); // overflow
            if ((x.Control & 1) == 0) return;
            v = Float80.Indefinite;
        }
        else
        {
            Raise(ref x, flags & ~(uint)C1);
            // An unmasked denormal operand still loads; an unmasked invalid one does not.
            if ((flags & F80.IE & ~(uint)x.Control) != 0) return;
        }
        SetTop(ref x, p);
        WritePhys(ref x, p, v);
    }

    private static ref X87State S(CpuContext* ctx) => ref ctx->State.X87;

    // ---- loads ----

    /// <summary>Converts a loaded memory operand; signalling NaNs stay signalling when <paramref name="arith"/> (the operation decides).</summary>
    private static Float80 Convert(ulong kind, ulong v, ref F80.Env env, bool arith) => kind switch
    {
        F32 => Ieee(v, 23, 8, ref env, arith),
        F64 => Ieee(v, 52, 11, ref env, arith),
        I16 => F80.FromInt((short)v),
        I32 => F80.FromInt((int)v),
        _ => F80.FromInt((long)v),
    };

    private static Float80 Ieee(ulong v, int frac, int exp, ref F80.Env env, bool arith)
    {
        var r = F80.FromIeee(v, frac, exp, ref env);
        ulong top = v >> frac;
        bool snan = (top & ((1UL << exp) - 1)) == (1UL << exp) - 1 && (v & ((1UL << frac) - 1)) != 0 && ((v >> (frac - 1)) & 1) == 0;
        if (arith && snan)
        {
            env.Flags &= ~F80.IE;
            r = new Float80(r.M & ~0x4000000000000000UL, r.SE);
        }
        return r;
    }

    /// <summary>
    /// Converts an arithmetic memory operand. Its denormal flag is returned apart: it counts only when
    /// the operation goes numeric (a NaN or an invalid operation takes precedence).
    /// </summary>
    private static Float80 ConvertOperand(ulong kind, ulong value, Float80 st0, ref F80.Env env, out uint de)
    {
        var conv = new F80.Env(env.Cw);
        var m = Convert(kind, value, ref conv, true);
        var c0 = F80.Classify(st0);
        var cm = F80.Classify(m);
        bool numeric = !F80.IsNaN(c0) && !F80.IsNaN(cm) && c0 != F80Class.Unsupported;
        de = numeric ? conv.Flags & F80.DE : 0;
        return m;
    }

    /// <summary>FLD m32/m64, FILD m16/m32/m64.</summary>
    public static void Load(CpuContext* ctx, ulong kind, ulong value)
    {
        ref var x = ref S(ctx);
        var env = new F80.Env(x.Control);
        var v = Convert(kind, value, ref env, false);
        Push(ref x, v, env.Flags);
    }

    /// <summary>FLD m80.</summary>
    public static void Load80(CpuContext* ctx, ulong m, ulong se) => Push(ref S(ctx), new Float80(m, (ushort)se), 0);

    /// <summary>FBLD.</summary>
    public static void LoadBcd(CpuContext* ctx, ulong lo, ulong hi) => Push(ref S(ctx), F80.FromBcd(lo, (ushort)hi), 0);

    /// <summary>FLD ST(i).</summary>
    public static void LoadSt(CpuContext* ctx, ulong i)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, (int)i))
        {
            Raise(ref x, F80.IE | SF);
            if ((x.Control & 1) == 0) return;
            Push(ref x, Float80.Indefinite, F80.IE);
            return;
        }
        Push(ref x, Read(ref x, (int)i), 0);
    }

    private static readonly UInt128[] s_constants =
    [
        new(0xC90FDAA22168C234, 0xC4C6628B80DC1CD1), // pi
        new(0xB8AA3B295C17F0BB, 0xBE87FED0691D3E89), // log2(e)
        new(0xD49A784BCD1B8AFE, 0x492BF6FF4DAFDB4C), // log2(10)
        new(0x9A209A84FBCFF798, 0x8F8959AC0B7C9178), // log10(2)
        new(0xB17217F7D1CF79AB, 0xC9E3B39803F2F6AF), // ln(2)
    ];
    private static readonly int[] s_constExp = [1, 0, 1, -2, -1];

    /// <summary>FLDZ (0), FLD1 (1), FLDPI..FLDLN2 (2..6): rounded with the rounding control, not the precision control.</summary>
    public static void LoadConst(CpuContext* ctx, ulong k)
    {
        ref var x = ref S(ctx);
        Float80 v;
        if (k == 0) v = Float80.Zero(false);
        else if (k == 1) v = Float80.One;
        else
        {
            var env = new F80.Env((ushort)(x.Control | 0x300));
            v = F80.Pack(false, s_constExp[k - 2], s_constants[k - 2], 64, ref env);
        }
        Push(ref x, v, 0);
    }

    // ---- stores ----

    /// <summary>The bits FST/FIST/FISTTP/FBSTP store (no state change); <paramref name="truncate"/> for FISTTP.</summary>
    public static ulong StoreValue(CpuContext* ctx, ulong kind, ulong truncate)
    {
        ref var x = ref S(ctx);
        var env = new F80.Env(x.Control);
        return StoreCompute(ref x, kind, truncate != 0, ref env);
    }

    private static ulong StoreCompute(ref X87State x, ulong kind, bool truncate, ref F80.Env env)
    {
        bool empty = Empty(ref x, 0);
        var v = empty ? Float80.Indefinite : Read(ref x, 0);
        if (empty) env.Flags |= F80.IE | SF;
        switch (kind)
        {
            case F32: return F80.ToIeee(v, 23, 8, ref env);
            case F64: return F80.ToIeee(v, 52, 11, ref env);
            case I16: return (ushort)F80.ToInt(v, 16, truncate, ref env);
            case I32: return (uint)F80.ToInt(v, 32, truncate, ref env);
            case I64: return (ulong)F80.ToInt(v, 64, truncate, ref env);
            case F80Lo: return v.M;
            case F80Hi: return v.SE;
            case BcdLo: return F80.ToBcd(v, ref env).Lo;
            default: return F80.ToBcd(v, ref env).Hi;
        }
    }

    /// <summary>Commits a store: flags, then the pop of the popping forms.</summary>
    public static void StoreCommit(CpuContext* ctx, ulong kind, ulong truncate, ulong pop)
    {
        ref var x = ref S(ctx);
        var env = new F80.Env(x.Control);
        StoreCompute(ref x, kind, truncate != 0, ref env);
        bool blocked = StoreBlocked(ref x, env.Flags);
        // A blocked store produced no rounded result: no precision flag, no round-up.
        Raise(ref x, blocked ? env.Flags & ~(F80.PE | F80.C1) : env.Flags);
        if (pop != 0 && !blocked) Pop(ref x);
    }

    /// <summary>An unmasked invalid, overflow or underflow exception leaves memory and the stack as they were.</summary>
    private static bool StoreBlocked(ref X87State x, uint flags) => (flags & (F80.IE | F80.OE | F80.UE) & ~(uint)x.Control) != 0;

    /// <summary>1 when the store must not be written (see <see cref="StoreBlocked"/>).</summary>
    public static ulong StoreSuppressed(CpuContext* ctx, ulong kind, ulong truncate)
    {
        ref var x = ref S(ctx);
        var env = new F80.Env(x.Control);
        StoreCompute(ref x, kind, truncate != 0, ref env);
        return StoreBlocked(ref x, env.Flags) ? 1UL : 0;
    }

    /// <summary>FST/FSTP ST(i).</summary>
    public static void StoreSt(CpuContext* ctx, ulong i, ulong pop)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0))
        {
            if (!Underflow(ref x)) return;
            Write(ref x, (int)i, Float80.Indefinite);
        }
        else
        {
            Raise(ref x, 0);
            Write(ref x, (int)i, Read(ref x, 0));
        }
        if (pop != 0) Pop(ref x);
    }

    // ---- arithmetic ----

    private static Float80 Compute(ulong op, Float80 a, Float80 b, ref F80.Env env) => op switch
    {
        Add => F80.Add(a, b, false, ref env),
        Sub => F80.Add(a, b, true, ref env),
        Subr => F80.Add(b, a, true, ref env),
        Mul => F80.Mul(a, b, ref env),
        Div => F80.Div(a, b, ref env),
        _ => F80.Div(b, a, ref env),
    };

    /// <summary>ST(dst) = ST(dst) op ST(src), then pop when asked (FADDP etc.).</summary>
    public static void ArithSt(CpuContext* ctx, ulong op, ulong dst, ulong src, ulong pop)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, (int)dst) || Empty(ref x, (int)src))
        {
            if (!Underflow(ref x)) return;
            Write(ref x, (int)dst, Float80.Indefinite);
        }
        else
        {
            var env = new F80.Env(x.Control);
            var r = Compute(op, Read(ref x, (int)dst), Read(ref x, (int)src), ref env);
            Raise(ref x, env.Flags);
            if (Suppressed(ref x, env.Flags)) return;
            Write(ref x, (int)dst, r);
        }
        if (pop != 0) Pop(ref x);
    }

    /// <summary>ST(0) = ST(0) op m32/m64/m16int/m32int.</summary>
    public static void ArithMem(CpuContext* ctx, ulong op, ulong kind, ulong value)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0))
        {
            if (Underflow(ref x)) Write(ref x, 0, Float80.Indefinite);
            return;
        }
        var env = new F80.Env(x.Control);
        var m = ConvertOperand(kind, value, Read(ref x, 0), ref env, out uint de);
        var r = Compute(op, Read(ref x, 0), m, ref env);
        if ((env.Flags & (F80.IE | F80.ZE)) == 0) env.Flags |= de;
        Raise(ref x, env.Flags);
        if (!Suppressed(ref x, env.Flags)) Write(ref x, 0, r);
    }

    /// <summary>One-operand operations on ST(0).</summary>
    public static void Unary(CpuContext* ctx, ulong op)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0))
        {
            if (Underflow(ref x)) Write(ref x, 0, Float80.Indefinite);
            return;
        }
        var a = Read(ref x, 0);
        var env = new F80.Env(x.Control);
        Float80 r = op switch
        {
            0 => a.Negate(),
            1 => a.Abs(),
            2 => F80.Sqrt(a, ref env),
            _ => F80.RoundInt(a, ref env),
        };
        Raise(ref x, env.Flags);
        if (!Suppressed(ref x, env.Flags)) Write(ref x, 0, r);
    }

    /// <summary>FSCALE (0), FPREM (1), FPREM1 (2): ST(0) with ST(1).</summary>
    public static void Binary01(CpuContext* ctx, ulong op)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0) || Empty(ref x, 1))
        {
            if (Underflow(ref x)) Write(ref x, 0, Float80.Indefinite);
            if (op != 0) x.Status &= unchecked((ushort)~(C0 | C2 | C3));
            return;
        }
        var env = new F80.Env(x.Control);
        Float80 r;
        if (op == 0) r = F80.Scale(Read(ref x, 0), Read(ref x, 1), ref env);
        else
        {
            r = F80.Remainder(Read(ref x, 0), Read(ref x, 1), op == 2, ref env, out ushort cc);
            env.Flags = (env.Flags & ~(uint)C1) | (uint)(cc & C1);
            x.Status = (ushort)((x.Status & ~(C0 | C2 | C3)) | (cc & (C0 | C2 | C3)));
        }
        Raise(ref x, env.Flags);
        if (!Suppressed(ref x, env.Flags)) Write(ref x, 0, r);
    }

    /// <summary>FXTRACT.</summary>
    public static void Fxtract(CpuContext* ctx)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0))
        {
            if (!Underflow(ref x)) return;
            Write(ref x, 0, Float80.Indefinite);
            Push(ref x, Float80.Indefinite, F80.IE);
            return;
        }
        var env = new F80.Env(x.Control);
        var (e, s) = F80.Extract(Read(ref x, 0), ref env);
        int p = (Top(ref x) - 1) & 7;
        if (TagAt(ref x, p) != 3)
        {
            Raise(ref x, F80.IE | SF | (uint)C1);
            if ((x.Control & 1) == 0) return;
            Write(ref x, 0, Float80.Indefinite);
            Push(ref x, Float80.Indefinite, 0);
            return;
        }
        Raise(ref x, env.Flags);
        if (Suppressed(ref x, env.Flags)) return;
        Write(ref x, 0, e);
        Push(ref x, s, env.Flags);
    }

    // ---- comparisons ----

    private static ushort CompareBits(int r) => r switch { 0 => C0, 1 => C3, 2 => 0, _ => C0 | C2 | C3 };

    /// <summary>FCOM/FUCOM family on registers: ST(0) with ST(i); pops 0, 1 or 2 times. FTST compares with +0 (i = 8).</summary>
    public static void CompareSt(CpuContext* ctx, ulong i, ulong quiet, ulong pops)
    {
        ref var x = ref S(ctx);
        bool withZero = i == 8;
        if (Empty(ref x, 0) || (!withZero && Empty(ref x, (int)i))) Underflow(ref x);
        else
        {
            var env = new F80.Env(x.Control);
            int r = F80.Compare(Read(ref x, 0), withZero ? Float80.Zero(false) : Read(ref x, (int)i), quiet != 0, ref env);
            SetCompare(ref x, r, env.Flags);
            for (ulong k = 0; k < pops; k++) Pop(ref x);
            return;
        }
        if ((x.Control & 1) != 0) SetCompare(ref x, 3, F80.IE | SF);
        else return;
        for (ulong k = 0; k < pops; k++) Pop(ref x);
    }

    private static void SetCompare(ref X87State x, int r, uint flags)
    {
        // The condition codes are written even when the exception is unmasked.
        Raise(ref x, flags & ~(uint)C1);
        x.Status = (ushort)((x.Status & ~(C0 | C2 | C3)) | CompareBits(r));
    }

    /// <summary>FCOM/FICOM m32/m64/m16int/m32int; pops once for the P forms.</summary>
    public static void CompareMem(CpuContext* ctx, ulong kind, ulong value, ulong pop)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0))
        {
            if (!Underflow(ref x)) return;
            SetCompare(ref x, 3, F80.IE | SF);
        }
        else
        {
            var env = new F80.Env(x.Control);
            var m = ConvertOperand(kind, value, Read(ref x, 0), ref env, out uint de);
            int r = F80.Compare(Read(ref x, 0), m, false, ref env);
            if ((env.Flags & F80.IE) == 0) env.Flags |= de;
            SetCompare(ref x, r, env.Flags);
            if (Suppressed(ref x, env.Flags)) return;
        }
        if (pop != 0) Pop(ref x);
    }

    /// <summary>FCOMI/FUCOMI(P): returns ZF (bit 0), PF (bit 1), CF (bit 2) for EFLAGS.</summary>
    public static ulong Comi(CpuContext* ctx, ulong i, ulong quiet, ulong pop)
    {
        ref var x = ref S(ctx);
        int r;
        if (Empty(ref x, 0) || Empty(ref x, (int)i))
        {
            Raise(ref x, F80.IE | SF);
            r = 3;
            if ((x.Control & 1) == 0) return 7;
        }
        else
        {
            var env = new F80.Env(x.Control);
            r = F80.Compare(Read(ref x, 0), Read(ref x, (int)i), quiet != 0, ref env);
            Raise(ref x, env.Flags & ~(uint)C1);
        }
        if (pop != 0) Pop(ref x);
        return r switch { 0 => 4, 1 => 1, 2 => 0, _ => 7 };
    }

    /// <summary>FXAM.</summary>
    public static void Fxam(CpuContext* ctx)
    {
        ref var x = ref S(ctx);
        var a = Read(ref x, 0);
        int c;
        if (Empty(ref x, 0)) c = C3 | C0;
        else c = F80.Classify(a) switch
        {
            F80Class.Unsupported => 0,
            F80Class.QNaN or F80Class.SNaN => C0,
            F80Class.Inf => C2 | C0,
            F80Class.Zero => C3,
            _ => a.Exp == 0 ? C3 | C2 : C2,
        };
        if (a.Sign) c |= C1;
        x.Status = (ushort)((x.Status & ~(C0 | C1 | C2 | C3)) | c);
    }

    // ---- register management ----

    /// <summary>FXCH ST(i).</summary>
    public static void Fxch(CpuContext* ctx, ulong i)
    {
        ref var x = ref S(ctx);
        bool e0 = Empty(ref x, 0), ei = Empty(ref x, (int)i);
        if (e0 || ei)
        {
            if (!Underflow(ref x)) return;
        }
        else Raise(ref x, 0);
        var a = e0 ? Float80.Indefinite : Read(ref x, 0);
        var b = ei ? Float80.Indefinite : Read(ref x, (int)i);
        Write(ref x, 0, b);
        Write(ref x, (int)i, a);
    }

    /// <summary>FCMOVcc: ST(0) = ST(i) when <paramref name="cond"/>.</summary>
    public static void Fcmov(CpuContext* ctx, ulong i, ulong cond)
    {
        ref var x = ref S(ctx);
        if (Empty(ref x, 0) || Empty(ref x, (int)i))
        {
            if (Underflow(ref x)) Write(ref x, 0, Float80.Indefinite); // whatever the condition
            return;
        }
        Raise(ref x, 0);
        if (cond != 0) Write(ref x, 0, Read(ref x, (int)i));
    }

    /// <summary>FINCSTP (0), FDECSTP (1), FNINIT (2), FNCLEX (3), FFREE ST(i) (8 + i), FFREEP (16 + i).</summary>
    public static void Control(CpuContext* ctx, ulong op)
    {
        ref var x = ref S(ctx);
        switch (op)
        {
            case 0: SetTop(ref x, Top(ref x) + 1); x.Status &= unchecked((ushort)~C1); break;
            case 1: SetTop(ref x, Top(ref x) - 1); x.Status &= unchecked((ushort)~C1); break;
            case 2: Init(ref x); break;
            case 3: x.Status &= 0x7F00; break;
            default:
                x.Tag |= (ushort)(3 << (Phys(ref x, (int)(op & 7)) * 2));
                if (op >= 16) Pop(ref x);
                break;
        }
    }

    /// <summary>FNINIT's state: control word 0x37F, status and pointers cleared, every register tagged empty (register contents are kept).</summary>
    internal static void Init(ref X87State x)
    {
        x.Control = 0x037F;
        x.Status = 0;
        x.Tag = 0xFFFF;
        x.Opcode = 0;
        x.InstructionPointer = 0;
        x.DataPointer = 0;
    }

    /// <summary>FLDCW.</summary>
    public static void LoadControl(CpuContext* ctx, ulong cw)
    {
        ref var x = ref S(ctx);
        x.Control = (ushort)(cw | 0x40);
        Summary(ref x);
    }

    /// <summary>ES and B follow the unmasked pending exceptions.</summary>
    private static void Summary(ref X87State x)
    {
        if ((x.Status & ~x.Control & 0x3F) != 0) x.Status |= ES | B;
        else x.Status &= unchecked((ushort)~(ES | B));
    }

    // ---- environment ----

    /// <summary>Field <paramref name="k"/> of the 28-byte protected-mode environment (FCW, FSW, FTW, FIP, FOP:FCS, FDP, FDS).</summary>
    public static ulong EnvField(CpuContext* ctx, ulong k)
    {
        ref var x = ref S(ctx);
        return k switch
        {
            0 => 0xFFFF0000u | x.Control,
            1 => 0xFFFF0000u | x.Status,
            2 => 0xFFFF0000u | x.Tag,
            3 => (uint)x.InstructionPointer,
            4 => (uint)(x.Opcode & 0x7FF) << 16,
            5 => (uint)x.DataPointer,
            _ => 0xFFFF0000u,
        };
    }

    /// <summary>Significand (<paramref name="part"/> 0) or sign/exponent (1) of ST(i), for FNSAVE.</summary>
    public static ulong RegField(CpuContext* ctx, ulong i, ulong part)
    {
        var v = Read(ref S(ctx), (int)i);
        return part == 0 ? v.M : v.SE;
    }

    /// <summary>After FNSTENV (mask all exceptions) or FNSAVE (initialise).</summary>
    public static void AfterSave(CpuContext* ctx, ulong init)
    {
        ref var x = ref S(ctx);
        if (init != 0) Init(ref x);
        else x.Control |= 0x3F;
    }

    /// <summary>FLDENV/FRSTOR: control, status and tags (empty or not; the others follow the register contents).</summary>
    public static void LoadEnv(CpuContext* ctx, ulong cw, ulong sw, ulong tw, ulong ip, ulong fop, ulong dp)
    {
        ref var x = ref S(ctx);
        x.Control = (ushort)(cw | 0x40);
        x.Status = (ushort)sw;
        x.InstructionPointer = (uint)ip;
        x.Opcode = (ushort)((fop >> 16) & 0x7FF);
        x.DataPointer = (uint)dp;
        ushort tag = 0;
        for (int p = 0; p < 8; p++)
        {
            int t = ((int)tw >> (p * 2)) & 3;
            if (t != 3) t = TagOf(new Float80(x.R[p].Mantissa, x.R[p].SignExponent));
            tag |= (ushort)(t << (p * 2));
        }
        x.Tag = tag;
    }

    /// <summary>FRSTOR: ST(i)'s contents, after <see cref="LoadEnv"/> (tags recomputed unless empty).</summary>
    public static void RestoreReg(CpuContext* ctx, ulong i, ulong m, ulong se)
    {
        ref var x = ref S(ctx);
        int p = Phys(ref x, (int)i);
        bool empty = TagAt(ref x, p) == 3;
        WritePhys(ref x, p, new Float80(m, (ushort)se));
        if (empty) x.Tag |= (ushort)(3 << (p * 2));
    }

    /// <summary>FXSAVE bytes 0–7: FCW, FSW, abridged tag byte (bit set = register not empty), FOP.</summary>
    public static ulong FxHeader(CpuContext* ctx)
    {
        ref var x = ref S(ctx);
        ulong abridged = 0;
        for (int p = 0; p < 8; p++)
            if (TagAt(ref x, p) != 3) abridged |= 1UL << p;
        return x.Control | ((ulong)x.Status << 16) | (abridged << 32) | ((ulong)(x.Opcode & 0x7FF) << 48);
    }

    /// <summary>FXRSTOR: control, status and FOP from bytes 0–7 and the pointers; every register counts as in use until <see cref="FxRestoreTags"/>.</summary>
    public static void FxRestoreHeader(CpuContext* ctx, ulong header, ulong ip, ulong dp)
    {
        ref var x = ref S(ctx);
        x.Control = (ushort)(header | 0x40);
        x.Status = (ushort)(header >> 16);
        x.Opcode = (ushort)((header >> 48) & 0x7FF);
        x.InstructionPointer = ip;
        x.DataPointer = dp;
        x.Tag = 0;
    }

    /// <summary>FXRSTOR: tags from the abridged tag byte (empty, or recomputed from the restored contents).</summary>
    public static void FxRestoreTags(CpuContext* ctx, ulong header)
    {
        ref var x = ref S(ctx);
        ushort tag = 0;
        for (int p = 0; p < 8; p++)
        {
            int t = ((header >> (32 + p)) & 1) == 0 ? 3 : TagOf(new Float80(x.R[p].Mantissa, x.R[p].SignExponent));
            tag |= (ushort)(t << (p * 2));
        }
        x.Tag = tag;
    }

    // ---- transcendental functions (on the host's x87) ----

    /// <summary>F2XM1 (0) FYL2X (1) FPTAN (2) FPATAN (3) FYL2XP1 (4) FSINCOS (5) FSIN (6) FCOS (7).</summary>
    public static void Transcendental(CpuContext* ctx, ulong op)
    {
        ref var x = ref S(ctx);
        bool two = op is 1 or 3 or 4;
        bool pushes = op is 2 or 5;
        if (Empty(ref x, 0) || (two && Empty(ref x, 1)))
        {
            if (!Underflow(ref x)) return;
            if (two) { Write(ref x, 1, Float80.Indefinite); Pop(ref x); }
            else
            {
                Write(ref x, 0, Float80.Indefinite);
                if (pushes) Push(ref x, Float80.Indefinite, F80.IE);
            }
            return;
        }
        if (pushes && !Empty(ref x, 7))
        {
            Raise(ref x, F80.IE | SF | (uint)C1);
            if ((x.Control & 1) == 0) return;
            Write(ref x, 0, Float80.Indefinite);
            Push(ref x, Float80.Indefinite, 0);
            return;
        }
        var a = Read(ref x, 0);
        var b = two ? Read(ref x, 1) : Float80.Zero(false);
        var (r0, r1, sw) = HostX87.Run(s_transOps[op], a, b, x.Control);
        uint flags = (uint)(sw & (0x3F | C1));
        x.Status = (ushort)((x.Status & ~(C0 | C2 | C3)) | (sw & C2));
        Raise(ref x, flags);
        if (Suppressed(ref x, flags)) return;
        if ((sw & C2) != 0 && !two && op != 0) return; // operand out of range: unchanged
        if (two) { Write(ref x, 1, r0); Pop(ref x); }
        else if (pushes)
        {
            Write(ref x, 0, r1);
            Push(ref x, r0, 0);
            x.Status = (ushort)((x.Status & ~C1) | (sw & C1));
        }
        else Write(ref x, 0, r0);
    }

    private static readonly ushort[] s_transOps = [0xF0D9, 0xF1D9, 0xF2D9, 0xF3D9, 0xF9D9, 0xFBD9, 0xFED9, 0xFFD9];
}

/// <summary>Runs one x87 instruction on the host FPU (stubs built on demand), for the transcendental functions and for tests.</summary>
internal static unsafe class HostX87
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Buffer
    {
        public ulong M0; public ulong SE0;
        public ulong M1; public ulong SE1;
        public ulong Cw; public ulong Pad;
        public ulong OutM0; public ulong OutSE0;
        public ulong OutM1; public ulong OutSE1;
        public ulong Sw;
        public ulong Scratch0; public ulong Scratch1;
    }

    private static readonly Dictionary<string, nint> s_stubs = [];
    private static readonly Lock s_lock = new();

    /// <summary>
    /// Loads ST(1) = b, ST(0) = a, runs the two-byte instruction <paramref name="op"/> (little-endian)
    /// with control word <paramref name="cw"/> (exceptions masked), and returns ST(0), ST(1) and the status word.
    /// </summary>
    public static (Float80 St0, Float80 St1, ushort Sw) Run(ushort op, Float80 a, Float80 b, ushort cw)
    {
        UInt128 scratch = 0;
        return Run([(byte)op, (byte)(op >> 8)], a, b, cw, ref scratch);
    }

    /// <summary>As <see cref="Run(ushort, Float80, Float80, ushort)"/> for any instruction bytes; <c>[rdi+88]</c> addresses 16 bytes of <paramref name="scratch"/> (in and out).</summary>
    public static (Float80 St0, Float80 St1, ushort Sw) Run(byte[] op, Float80 a, Float80 b, ushort cw, ref UInt128 scratch)
    {
        nint stub;
        string key = Convert.ToHexString(op);
        lock (s_lock)
        {
            if (!s_stubs.TryGetValue(key, out stub))
            {
                byte[] code =
                [
                    0xDB, 0xE3,             // fninit
                    0xD9, 0x6F, 0x20,       // fldcw [rdi+32]
                    0xDB, 0x6F, 0x10,       // fld tbyte [rdi+16]
                    0xDB, 0x2F,             // fld tbyte [rdi]
                    .. op,
                    0xDD, 0x7F, 0x50,       // fnstsw [rdi+80]
                    0xDB, 0x7F, 0x30,       // fstp tbyte [rdi+48]
                    0xDB, 0x7F, 0x40,       // fstp tbyte [rdi+64]
                    0xDB, 0xE3,             // fninit
                    0xC3,                   // ret
                ];
                stub = Memory.HostMemory.AllocateExecutable(code);
                s_stubs[key] = stub;
            }
        }
        var buf = new Buffer { M0 = a.M, SE0 = a.SE, M1 = b.M, SE1 = b.SE, Cw = (ushort)(cw | 0x3F), Scratch0 = (ulong)scratch, Scratch1 = (ulong)(scratch >> 64) };
        ((delegate* unmanaged<Buffer*, void>)stub)(&buf);
        scratch = new UInt128(buf.Scratch1, buf.Scratch0);
        return (new Float80(buf.OutM0, (ushort)buf.OutSE0), new Float80(buf.OutM1, (ushort)buf.OutSE1), (ushort)buf.Sw);
    }
}
