// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Runtime;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// The x87 FPU. Each instruction loads its memory operand (if any), then calls one
/// <see cref="X87Ops"/> helper on the FPU state in guest state; stores get their bits from a
/// helper, store them, and only then commit flags and pops.
/// </summary>
[InstructionFamily]
internal static class X87
{
    private static int H(string name) => Helpers.Register(typeof(X87Ops), name, pure: false);

    private static readonly int s_load = H(nameof(X87Ops.Load)), s_load80 = H(nameof(X87Ops.Load80)), s_loadBcd = H(nameof(X87Ops.LoadBcd)),
        s_loadSt = H(nameof(X87Ops.LoadSt)), s_loadConst = H(nameof(X87Ops.LoadConst)), s_storeValue = H(nameof(X87Ops.StoreValue)),
        s_storeCommit = H(nameof(X87Ops.StoreCommit)), s_storeSt = H(nameof(X87Ops.StoreSt)), s_arithSt = H(nameof(X87Ops.ArithSt)),
        s_arithMem = H(nameof(X87Ops.ArithMem)), s_unary = H(nameof(X87Ops.Unary)), s_binary01 = H(nameof(X87Ops.Binary01)),
        s_fxtract = H(nameof(X87Ops.Fxtract)), s_compareSt = H(nameof(X87Ops.CompareSt)), s_compareMem = H(nameof(X87Ops.CompareMem)),
        s_comi = H(nameof(X87Ops.Comi)), s_fxam = H(nameof(X87Ops.Fxam)), s_fxch = H(nameof(X87Ops.Fxch)), s_fcmov = H(nameof(X87Ops.Fcmov)),
        s_control = H(nameof(X87Ops.Control)), s_loadControl = H(nameof(X87Ops.LoadControl)), s_envField = H(nameof(X87Ops.EnvField)),
        s_regField = H(nameof(X87Ops.RegField)), s_afterSave = H(nameof(X87Ops.AfterSave)), s_loadEnv = H(nameof(X87Ops.LoadEnv)),
        s_restoreReg = H(nameof(X87Ops.RestoreReg)), s_transcendental = H(nameof(X87Ops.Transcendental)),
        s_fxHeader = H(nameof(X87Ops.FxHeader)), s_fxRestoreHeader = H(nameof(X87Ops.FxRestoreHeader)), s_fxRestoreTags = H(nameof(X87Ops.FxRestoreTags)),
        s_storeSuppressed = H(nameof(X87Ops.StoreSuppressed));

    private static readonly int s_status = StateOffsets.X87 + (int)Marshal.OffsetOf<X87State>(nameof(X87State.Status));
    private static readonly int s_controlWord = StateOffsets.X87 + (int)Marshal.OffsetOf<X87State>(nameof(X87State.Control));

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Fld, Tracked(Fld));
        t.Add(Mnemonic.Fild, Tracked(Fild));
        t.Add(Mnemonic.Fbld, Tracked(Fbld));
        t.Add(Mnemonic.Fst, Tracked(Fst));
        t.Add(Mnemonic.Fstp, Tracked(Fstp));
        t.Add(Mnemonic.Fstpnce, Tracked(Fstp));
        t.Add(Mnemonic.Fist, Tracked(Fist));
        t.Add(Mnemonic.Fistp, Tracked(Fistp));
        t.Add(Mnemonic.Fisttp, Tracked(Fisttp));
        t.Add(Mnemonic.Fbstp, Tracked(Fbstp));
        t.Add(Tracked(Fconst), Mnemonic.Fldz, Mnemonic.Fld1, Mnemonic.Fldpi, Mnemonic.Fldl2e, Mnemonic.Fldl2t, Mnemonic.Fldlg2, Mnemonic.Fldln2);
        t.Add(Tracked(Arith), Mnemonic.Fadd, Mnemonic.Faddp, Mnemonic.Fiadd, Mnemonic.Fmul, Mnemonic.Fmulp, Mnemonic.Fimul,
            Mnemonic.Fsub, Mnemonic.Fsubp, Mnemonic.Fisub, Mnemonic.Fsubr, Mnemonic.Fsubrp, Mnemonic.Fisubr,
            Mnemonic.Fdiv, Mnemonic.Fdivp, Mnemonic.Fidiv, Mnemonic.Fdivr, Mnemonic.Fdivrp, Mnemonic.Fidivr);
        t.Add(Tracked(Unary), Mnemonic.Fchs, Mnemonic.Fabs, Mnemonic.Fsqrt, Mnemonic.Frndint);
        t.Add(Tracked(Binary01), Mnemonic.Fscale, Mnemonic.Fprem, Mnemonic.Fprem1);
        t.Add(Mnemonic.Fxtract, Tracked(Fxtract));
        t.Add(Tracked(Compare), Mnemonic.Fcom, Mnemonic.Fcomp, Mnemonic.Fcompp, Mnemonic.Fucom, Mnemonic.Fucomp, Mnemonic.Fucompp,
            Mnemonic.Ficom, Mnemonic.Ficomp, Mnemonic.Ftst);
        t.Add(Tracked(Comi), Mnemonic.Fcomi, Mnemonic.Fcomip, Mnemonic.Fucomi, Mnemonic.Fucomip);
        t.Add(Mnemonic.Fxam, Tracked(Fxam));
        t.Add(Mnemonic.Fxch, Tracked(Fxch));
        t.Add(Tracked(Fcmov), Mnemonic.Fcmovb, Mnemonic.Fcmove, Mnemonic.Fcmovbe, Mnemonic.Fcmovu,
            Mnemonic.Fcmovnb, Mnemonic.Fcmovne, Mnemonic.Fcmovnbe, Mnemonic.Fcmovnu);
        t.Add(Tracked(Control), Mnemonic.Fincstp, Mnemonic.Fdecstp, Mnemonic.Fninit, Mnemonic.Finit, Mnemonic.Fnclex, Mnemonic.Fclex,
            Mnemonic.Ffree, Mnemonic.Ffreep);
        t.Add(Fstsw, Mnemonic.Fnstsw, Mnemonic.Fstsw);
        t.Add(Fstcw, Mnemonic.Fnstcw, Mnemonic.Fstcw);
        t.Add(Mnemonic.Fldcw, Fldcw);
        t.Add(Fstenv, Mnemonic.Fnstenv, Mnemonic.Fstenv, Mnemonic.Fnsave, Mnemonic.Fsave);
        t.Add(Fldenv, Mnemonic.Fldenv, Mnemonic.Frstor);
        t.Add(Tracked(Transcendental), Mnemonic.F2xm1, Mnemonic.Fyl2x, Mnemonic.Fptan, Mnemonic.Fpatan, Mnemonic.Fyl2xp1,
            Mnemonic.Fsincos, Mnemonic.Fsin, Mnemonic.Fcos);
        t.Add(Tracked(Wait), Mnemonic.Wait, Mnemonic.Fnop);
        t.Add(Fxsave, Mnemonic.Fxsave, Mnemonic.Fxsave64);
        t.Add(Fxrstor, Mnemonic.Fxrstor, Mnemonic.Fxrstor64);
    }

    // ---- last instruction pointers (FIP, FDP, FOP) ----

    private static readonly int s_fip = StateOffsets.X87 + (int)Marshal.OffsetOf<X87State>(nameof(X87State.InstructionPointer));
    private static readonly int s_fdp = StateOffsets.X87 + (int)Marshal.OffsetOf<X87State>(nameof(X87State.DataPointer));
    private static readonly int s_fop = StateOffsets.X87 + (int)Marshal.OffsetOf<X87State>(nameof(X87State.Opcode));

    /// <summary>
    /// <paramref name="e"/>, followed for non-control instructions by the update of FIP (the
    /// instruction's address, prefixes included), FOP and, with a memory operand, FDP (its offset).
    /// Constant stores on the path where the instruction completed: a fault (#MF, #NM, a memory fault)
    /// leaves them at the previous instruction, an unmasked x87 exception (which completes the
    /// instruction and is reported at the next one) points them here, as the handler expects. FDP is
    /// left unchanged without a memory operand, where the SDM leaves it undefined.
    /// </summary>
    private static Emitter Tracked(Emitter e) => (Lifter l, in Instruction i) =>
    {
        e(l, i);
        if (IsControl(i.Mnemonic) || l.B.Terminated) return;
        var b = l.B;
        b.SetState(s_fip, b.I64(l.Rip));
        b.SetState(s_fop, b.Const(I16, Fop(l)));
        if (i.Op0Kind == OpKind.Memory)
        {
            var offset = l.Address(i);
            if (i.MemorySegment is Register.FS or Register.GS)
                offset = b.Sub(offset, b.GetState(I64, i.MemorySegment == Register.FS ? StateOffsets.FsBase : StateOffsets.GsBase));
            b.SetState(s_fdp, offset);
        }
    };

    /// <summary>The SDM's x87 control instructions, which leave FIP, FDP and FOP alone.</summary>
    private static bool IsControl(Mnemonic m) => m is Mnemonic.Fninit or Mnemonic.Finit or Mnemonic.Fnclex or Mnemonic.Fclex
        or Mnemonic.Fldcw or Mnemonic.Fnstcw or Mnemonic.Fstcw or Mnemonic.Fnstsw or Mnemonic.Fstsw or Mnemonic.Fnstenv
        or Mnemonic.Fstenv or Mnemonic.Fldenv or Mnemonic.Fnsave or Mnemonic.Fsave or Mnemonic.Frstor or Mnemonic.Wait
        or Mnemonic.Fxsave or Mnemonic.Fxsave64 or Mnemonic.Fxrstor or Mnemonic.Fxrstor64;

    /// <summary>FOP: the low three bits of the ESC opcode byte (after the prefixes) and the ModR/M byte.</summary>
    private static ulong Fop(Lifter l)
    {
        Span<byte> bytes = stackalloc byte[15];
        int n = l.InstructionBytes(bytes);
        int k = 0;
        while (k < n && bytes[k] is 0x26 or 0x2E or 0x36 or 0x3E or 0x64 or 0x65 or 0x66 or 0x67 or 0xF0 or 0xF2 or 0xF3 or (>= 0x40 and <= 0x4F)) k++;
        if (k + 1 >= n || bytes[k] is < 0xD8 or > 0xDF) throw new LiftException("x87 opcode bytes not found");
        return (ulong)(((bytes[k] & 7) << 8) | bytes[k + 1]);
    }

    /// <summary>FXSAVE/XSAVE bytes 8–23: 64-bit FIP and FDP with REX.W, else their low 32 bits with zero FCS/FDS (deprecated selectors).</summary>
    internal static void StorePointers(Lifter l, in Instruction i, IrValue area)
    {
        var b = l.B;
        var ip = b.GetState(I64, s_fip);
        var dp = b.GetState(I64, s_fdp);
        bool wide = IsRexW(i.Mnemonic);
        l.Store(b.Add(area, b.I64(8)), wide ? ip : b.And(ip, b.I64(0xFFFF_FFFF)));
        l.Store(b.Add(area, b.I64(16)), wide ? dp : b.And(dp, b.I64(0xFFFF_FFFF)));
    }

    /// <summary>FXRSTOR/XRSTOR: FIP and FDP from bytes 8–23, in the format <paramref name="i"/>'s REX.W selects.</summary>
    internal static (IrValue Ip, IrValue Dp) LoadPointers(Lifter l, in Instruction i, IrValue area)
    {
        var b = l.B;
        var ip = l.Load(I64, b.Add(area, b.I64(8)));
        var dp = l.Load(I64, b.Add(area, b.I64(16)));
        if (IsRexW(i.Mnemonic)) return (ip, dp);
        return (b.And(ip, b.I64(0xFFFF_FFFF)), b.And(dp, b.I64(0xFFFF_FFFF)));
    }

    private static bool IsRexW(Mnemonic m) => m is Mnemonic.Fxsave64 or Mnemonic.Fxrstor64 or Mnemonic.Xsave64 or Mnemonic.Xsaveopt64
        or Mnemonic.Xsavec64 or Mnemonic.Xrstor64;

    // ---- plumbing ----

    private static IrValue K(Lifter l, ulong v) => l.B.I64(v);

    private static IrValue Call(Lifter l, int helper, params IrValue[] args) => l.B.Call(helper, IrType.Void, args);

    private static IrValue Call64(Lifter l, int helper, params IrValue[] args) => l.B.Call(helper, I64, args);

    /// <summary>A waiting instruction first raises #MF for a pending unmasked exception.</summary>
    private static void CheckPending(Lifter l)
    {
        var sw = l.B.GetState(I16, s_status);
        l.RaiseExceptionIf(l.B.BitOf(sw, 7), ExceptionVector.MF);
    }

    private static ulong St(Register r) => (ulong)(r - Register.ST0);

    /// <summary>The x87 format of a memory operand.</summary>
    private static ulong Kind(in Instruction i) => i.MemorySize switch
    {
        MemorySize.Float32 => X87Ops.F32,
        MemorySize.Float64 => X87Ops.F64,
        MemorySize.Int16 => X87Ops.I16,
        MemorySize.Int32 => X87Ops.I32,
        MemorySize.Int64 => X87Ops.I64,
        _ => throw new LiftException($"unexpected x87 operand {i.MemorySize}"),
    };

    private static IrType KindType(ulong kind) => kind switch
    {
        X87Ops.F32 or X87Ops.I32 => I32,
        X87Ops.I16 => I16,
        _ => I64,
    };

    /// <summary>Loads a 32/64-bit float or 16/32/64-bit integer operand, zero-extended to 64 bits.</summary>
    private static IrValue LoadMem(Lifter l, in Instruction i, ulong kind)
    {
        var v = l.Load(KindType(kind), l.Address(i));
        return v.Type == I64 ? v : l.B.ZExt(v, I64);
    }

    // ---- loads and stores ----

    private static void Fld(Lifter l, in Instruction i)
    {
        CheckPending(l);
        if (i.Op0Kind == OpKind.Register) { Call(l, s_loadSt, K(l, St(i.Op0Register))); return; }
        if (i.MemorySize == MemorySize.Float80)
        {
            var a = l.Address(i);
            var lo = l.Load(I64, a);
            var hi = l.Load(I16, l.B.Add(a, K(l, 8)));
            Call(l, s_load80, lo, l.B.ZExt(hi, I64));
            return;
        }
        ulong kind = Kind(i);
        Call(l, s_load, K(l, kind), LoadMem(l, i, kind));
    }

    private static void Fild(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong kind = Kind(i);
        Call(l, s_load, K(l, kind), LoadMem(l, i, kind));
    }

    private static void Fbld(Lifter l, in Instruction i)
    {
        CheckPending(l);
        var a = l.Address(i);
        var lo = l.Load(I64, a);
        var hi = l.Load(I16, l.B.Add(a, K(l, 8)));
        Call(l, s_loadBcd, lo, l.B.ZExt(hi, I64));
    }

    private static void Fst(Lifter l, in Instruction i) => Store(l, i, pop: false);
    private static void Fstp(Lifter l, in Instruction i) => Store(l, i, pop: true);

    private static void Store(Lifter l, in Instruction i, bool pop)
    {
        CheckPending(l);
        if (i.Op0Kind == OpKind.Register) { Call(l, s_storeSt, K(l, St(i.Op0Register)), K(l, pop ? 1UL : 0)); return; }
        if (i.MemorySize == MemorySize.Float80) { Store80(l, i, X87Ops.F80Lo, X87Ops.F80Hi, false, pop); return; }
        StoreMem(l, i, Kind(i), false, pop);
    }

    private static void StoreMem(Lifter l, in Instruction i, ulong kind, bool truncate, bool pop)
    {
        var a = l.Address(i);
        var v = Call64(l, s_storeValue, K(l, kind), K(l, truncate ? 1UL : 0));
        var t = KindType(kind);
        GuardedStore(l, kind, truncate, () => l.Store(a, t == I64 ? v : l.B.Trunc(v, t)));
        Call(l, s_storeCommit, K(l, kind), K(l, truncate ? 1UL : 0), K(l, pop ? 1UL : 0));
    }

    private static void Store80(Lifter l, in Instruction i, ulong loKind, ulong hiKind, bool truncate, bool pop)
    {
        var a = l.Address(i);
        var lo = Call64(l, s_storeValue, K(l, loKind), K(l, 0));
        var hi = Call64(l, s_storeValue, K(l, hiKind), K(l, 0));
        GuardedStore(l, loKind, truncate, () =>
        {
            l.Store(a, lo);
            l.Store(l.B.Add(a, K(l, 8)), l.B.Trunc(hi, I16));
        });
        Call(l, s_storeCommit, K(l, loKind), K(l, truncate ? 1UL : 0), K(l, pop ? 1UL : 0));
    }

    /// <summary>Emits <paramref name="store"/> unless an unmasked exception suppresses it.</summary>
    private static void GuardedStore(Lifter l, ulong kind, bool truncate, Action store)
    {
        var b = l.B;
        var blocked = Call64(l, s_storeSuppressed, K(l, kind), K(l, truncate ? 1UL : 0));
        var doStore = l.NewBlock();
        var join = l.NewBlock();
        b.Branch(b.IsZero(blocked), doStore, join);
        l.SetBlock(doStore);
        store();
        b.Jump(join);
        l.SetBlock(join);
    }

    private static void Fist(Lifter l, in Instruction i) { CheckPending(l); StoreMem(l, i, Kind(i), false, false); }
    private static void Fistp(Lifter l, in Instruction i) { CheckPending(l); StoreMem(l, i, Kind(i), false, true); }
    private static void Fisttp(Lifter l, in Instruction i) { CheckPending(l); StoreMem(l, i, Kind(i), true, true); }
    private static void Fbstp(Lifter l, in Instruction i) { CheckPending(l); Store80(l, i, X87Ops.BcdLo, X87Ops.BcdHi, false, true); }

    private static void Fconst(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong k = i.Mnemonic switch
        {
            Mnemonic.Fldz => 0,
            Mnemonic.Fld1 => 1,
            Mnemonic.Fldpi => 2,
            Mnemonic.Fldl2e => 3,
            Mnemonic.Fldl2t => 4,
            Mnemonic.Fldlg2 => 5,
            _ => 6,
        };
        Call(l, s_loadConst, K(l, k));
    }

    // ---- arithmetic ----

    private static void Arith(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong op = i.Mnemonic switch
        {
            Mnemonic.Fadd or Mnemonic.Faddp or Mnemonic.Fiadd => X87Ops.Add,
            Mnemonic.Fmul or Mnemonic.Fmulp or Mnemonic.Fimul => X87Ops.Mul,
            Mnemonic.Fsub or Mnemonic.Fsubp or Mnemonic.Fisub => X87Ops.Sub,
            Mnemonic.Fsubr or Mnemonic.Fsubrp or Mnemonic.Fisubr => X87Ops.Subr,
            Mnemonic.Fdiv or Mnemonic.Fdivp or Mnemonic.Fidiv => X87Ops.Div,
            _ => X87Ops.Divr,
        };
        if (i.Op0Kind == OpKind.Memory)
        {
            ulong kind = Kind(i);
            Call(l, s_arithMem, K(l, op), K(l, kind), LoadMem(l, i, kind));
            return;
        }
        bool pop = i.Mnemonic is Mnemonic.Faddp or Mnemonic.Fmulp or Mnemonic.Fsubp or Mnemonic.Fsubrp or Mnemonic.Fdivp or Mnemonic.Fdivrp;
        ulong dst = i.OpCount > 0 ? St(i.Op0Register) : 1, src = i.OpCount > 1 ? St(i.Op1Register) : 0;
        Call(l, s_arithSt, K(l, op), K(l, dst), K(l, src), K(l, pop ? 1UL : 0));
    }

    private static void Unary(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong op = i.Mnemonic switch { Mnemonic.Fchs => 0, Mnemonic.Fabs => 1, Mnemonic.Fsqrt => 2, _ => 3 };
        Call(l, s_unary, K(l, op));
    }

    private static void Binary01(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong op = i.Mnemonic switch { Mnemonic.Fscale => 0, Mnemonic.Fprem => 1, _ => 2 };
        Call(l, s_binary01, K(l, op));
    }

    private static void Fxtract(Lifter l, in Instruction i) { CheckPending(l); Call(l, s_fxtract); }

    private static void Transcendental(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong op = i.Mnemonic switch
        {
            Mnemonic.F2xm1 => 0,
            Mnemonic.Fyl2x => 1,
            Mnemonic.Fptan => 2,
            Mnemonic.Fpatan => 3,
            Mnemonic.Fyl2xp1 => 4,
            Mnemonic.Fsincos => 5,
            Mnemonic.Fsin => 6,
            _ => 7,
        };
        Call(l, s_transcendental, K(l, op));
    }

    // ---- comparisons ----

    private static void Compare(Lifter l, in Instruction i)
    {
        CheckPending(l);
        var m = i.Mnemonic;
        bool quiet = m is Mnemonic.Fucom or Mnemonic.Fucomp or Mnemonic.Fucompp;
        ulong pops = m is Mnemonic.Fcompp or Mnemonic.Fucompp ? 2UL : m is Mnemonic.Fcomp or Mnemonic.Fucomp or Mnemonic.Ficomp ? 1UL : 0;
        if (i.OpCount > 0 && i.GetOpKind(i.OpCount - 1) == OpKind.Memory)
        {
            ulong kind = Kind(i);
            Call(l, s_compareMem, K(l, kind), LoadMem(l, i, kind), K(l, pops));
            return;
        }
        ulong st = m == Mnemonic.Ftst ? 8 : i.OpCount > 0 ? St(i.GetOpRegister(i.OpCount - 1)) : 1;
        Call(l, s_compareSt, K(l, st), K(l, quiet ? 1UL : 0), K(l, pops));
    }

    private static void Comi(Lifter l, in Instruction i)
    {
        CheckPending(l);
        var m = i.Mnemonic;
        bool quiet = m is Mnemonic.Fucomi or Mnemonic.Fucomip;
        bool pop = m is Mnemonic.Fcomip or Mnemonic.Fucomip;
        var b = l.B;
        var bits = Call64(l, s_comi, K(l, St(i.Op1Register)), K(l, quiet ? 1UL : 0), K(l, pop ? 1UL : 0));
        b.SetFlag(Flag.ZF, b.BitOf(bits, 0));
        b.SetFlag(Flag.PF, b.BitOf(bits, 1));
        b.SetFlag(Flag.CF, b.BitOf(bits, 2));
        b.SetFlag(Flag.OF, b.Bool(false));
        b.SetFlag(Flag.SF, b.Bool(false));
        b.SetFlag(Flag.AF, b.Bool(false));
        l.ForgetFlagProducer();
    }

    private static void Fxam(Lifter l, in Instruction i) { CheckPending(l); Call(l, s_fxam); }

    // ---- registers and control ----

    private static void Fxch(Lifter l, in Instruction i)
    {
        CheckPending(l);
        ulong st = i.OpCount > 1 ? St(i.Op1Register) : 1;
        Call(l, s_fxch, K(l, st));
    }

    private static void Fcmov(Lifter l, in Instruction i)
    {
        CheckPending(l);
        var cc = i.Mnemonic switch
        {
            Mnemonic.Fcmovb => ConditionCode.b,
            Mnemonic.Fcmove => ConditionCode.e,
            Mnemonic.Fcmovbe => ConditionCode.be,
            Mnemonic.Fcmovu => ConditionCode.p,
            Mnemonic.Fcmovnb => ConditionCode.ae,
            Mnemonic.Fcmovne => ConditionCode.ne,
            Mnemonic.Fcmovnbe => ConditionCode.a,
            _ => ConditionCode.np,
        };
        var cond = l.B.ZExt(l.Condition(cc), I64);
        Call(l, s_fcmov, K(l, St(i.Op1Register)), cond);
    }

    private static void Control(Lifter l, in Instruction i)
    {
        var m = i.Mnemonic;
        if (m is not (Mnemonic.Fninit or Mnemonic.Fnclex)) CheckPending(l);
        ulong op = m switch
        {
            Mnemonic.Fincstp => 0,
            Mnemonic.Fdecstp => 1,
            Mnemonic.Fninit or Mnemonic.Finit => 2,
            Mnemonic.Fnclex or Mnemonic.Fclex => 3,
            Mnemonic.Ffree => 8 + St(i.Op0Register),
            _ => 16 + St(i.Op0Register),
        };
        Call(l, s_control, K(l, op));
    }

    private static void Fstsw(Lifter l, in Instruction i)
    {
        if (i.Mnemonic == Mnemonic.Fstsw) CheckPending(l);
        l.WriteOp(i, 0, l.B.GetState(I16, s_status));
    }

    private static void Fstcw(Lifter l, in Instruction i)
    {
        if (i.Mnemonic == Mnemonic.Fstcw) CheckPending(l);
        l.WriteOp(i, 0, l.B.GetState(I16, s_controlWord));
    }

    private static void Fldcw(Lifter l, in Instruction i)
    {
        CheckPending(l);
        var cw = l.ReadOp(i, 0, I16);
        Call(l, s_loadControl, l.B.ZExt(cw, I64));
    }

    private static void Fstenv(Lifter l, in Instruction i)
    {
        var m = i.Mnemonic;
        if (m is Mnemonic.Fstenv or Mnemonic.Fsave) CheckPending(l);
        if (i.MemorySize is not (MemorySize.FpuEnv28 or MemorySize.FpuState108))
            throw new LiftException("16-bit x87 environment formats are not supported");
        var b = l.B;
        var a = l.Address(i);
        for (ulong k = 0; k < 7; k++)
            l.Store(b.Add(a, K(l, 4 * k)), b.Trunc(Call64(l, s_envField, K(l, k)), I32));
        bool save = m is Mnemonic.Fnsave or Mnemonic.Fsave;
        if (save)
        {
            for (ulong r = 0; r < 8; r++)
            {
                l.Store(b.Add(a, K(l, 28 + 10 * r)), Call64(l, s_regField, K(l, r), K(l, 0)));
                l.Store(b.Add(a, K(l, 36 + 10 * r)), b.Trunc(Call64(l, s_regField, K(l, r), K(l, 1)), I16));
            }
        }
        Call(l, s_afterSave, K(l, save ? 1UL : 0));
    }

    private static void Fldenv(Lifter l, in Instruction i)
    {
        CheckPending(l);
        if (i.MemorySize is not (MemorySize.FpuEnv28 or MemorySize.FpuState108))
            throw new LiftException("16-bit x87 environment formats are not supported");
        var b = l.B;
        var a = l.Address(i);
        var env = new IrValue[7];
        for (int k = 0; k < 7; k++) env[k] = b.ZExt(l.Load(I32, b.Add(a, K(l, 4 * (ulong)k))), I64);
        bool restore = i.Mnemonic == Mnemonic.Frstor;
        var regs = new IrValue[16];
        if (restore)
        {
            for (int r = 0; r < 8; r++)
            {
                regs[2 * r] = l.Load(I64, b.Add(a, K(l, 28 + 10 * (ulong)r)));
                regs[2 * r + 1] = b.ZExt(l.Load(I16, b.Add(a, K(l, 36 + 10 * (ulong)r))), I64);
            }
        }
        // FRSTOR writes the registers first so that the tags are recomputed from the new contents.
        if (restore)
        {
            Call(l, s_loadEnv, env[0], env[1], K(l, 0), env[3], env[4], env[5]);
            for (int r = 0; r < 8; r++) Call(l, s_restoreReg, K(l, (ulong)r), regs[2 * r], regs[2 * r + 1]);
        }
        Call(l, s_loadEnv, env[0], env[1], env[2], env[3], env[4], env[5]);
    }

    private static void Wait(Lifter l, in Instruction i) => CheckPending(l);

    // ---- FXSAVE / FXRSTOR (512-byte area: x87, MXCSR, XMM0–15) ----

    /// <summary>MXCSR bits FXRSTOR/LDMXCSR accept (reported as MXCSR_MASK).</summary>
    public const uint MxcsrMask = 0xFFFF;

    private static IrValue FxAddress(Lifter l, in Instruction i)
    {
        var a = l.Address(i);
        l.RaiseExceptionIf(l.B.Ne(l.B.And(a, K(l, 15)), K(l, 0)), ExceptionVector.GP);
        return a;
    }

    private static void Fxsave(Lifter l, in Instruction i)
    {
        var b = l.B;
        var a = FxAddress(l, i);
        IrValue At(ulong off) => b.Add(a, K(l, off));
        l.Store(a, Call64(l, s_fxHeader));
        StorePointers(l, i, a);
        l.Store(At(24), b.GetState(I32, StateOffsets.Mxcsr));
        l.Store(At(28), b.I32(MxcsrMask));
        for (ulong r = 0; r < 8; r++)
        {
            l.Store(At(32 + 16 * r), Call64(l, s_regField, K(l, r), K(l, 0)));
            l.Store(At(40 + 16 * r), b.Trunc(Call64(l, s_regField, K(l, r), K(l, 1)), I16));
            l.Store(At(42 + 16 * r), b.Const(I16, 0));
            l.Store(At(44 + 16 * r), b.I32(0));
        }
        for (int x = 0; x < 16; x++) l.Store(At(160 + 16 * (ulong)x), b.GetXmm(x));
    }

    private static void Fxrstor(Lifter l, in Instruction i)
    {
        var b = l.B;
        var a = FxAddress(l, i);
        IrValue At(ulong off) => b.Add(a, K(l, off));
        var header = l.Load(I64, a);
        var (ip, dp) = LoadPointers(l, i, a);
        var mxcsr = l.Load(I32, At(24));
        var regs = new IrValue[16];
        for (int r = 0; r < 8; r++)
        {
            regs[2 * r] = l.Load(I64, At(32 + 16 * (ulong)r));
            regs[2 * r + 1] = b.ZExt(l.Load(I16, At(40 + 16 * (ulong)r)), I64);
        }
        var xmm = new IrValue[16];
        for (int x = 0; x < 16; x++) xmm[x] = l.Load(V128, At(160 + 16 * (ulong)x));
        l.RaiseExceptionIf(b.Ne(b.And(mxcsr, b.I32(~MxcsrMask)), b.I32(0)), ExceptionVector.GP);
        Call(l, s_fxRestoreHeader, header, ip, dp);
        for (int r = 0; r < 8; r++) Call(l, s_restoreReg, K(l, (ulong)r), regs[2 * r], regs[2 * r + 1]);
        Call(l, s_fxRestoreTags, header);
        b.SetState(StateOffsets.Mxcsr, mxcsr);
        for (int x = 0; x < 16; x++) b.SetXmm(x, xmm[x]);
    }
}
