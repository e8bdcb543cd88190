// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using Jitvmx.Runtime;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Lifting;

/// <summary>
/// SSE floating point. Exactness strategy: every instruction whose result or MXCSR flags depend on
/// MXCSR runs as the real host instruction in a small native stub, under the guest's rounding
/// mode, DAZ and FTZ, with all exceptions masked and the flags cleared; the flags the stub reports
/// are exactly what the instruction raised, including NaN propagation, denormal handling and
/// RCP/RSQRT approximations. The helper then either commits (MXCSR |= raised) or, when a raised
/// exception is unmasked, reports #XM without touching the destination. Doing this in C# instead
/// would mean re-deriving IEEE flags (inexact, tininess after rounding, SNaN vs QNaN rules per
/// instruction) for every operation and rounding mode: slower to get right and never
/// bit-exact by construction. The stub costs a call and two LDMXCSR/STMXCSR pairs (measured ~2× the fast path), so the
/// common case takes a C# fast path instead: round-to-nearest, no DAZ/FTZ, all masked, PE already
/// set (it is sticky, so this holds after the first inexact operation) and operands/results that
/// are normal or zero, where the only flag the operation could raise is PE and the host's
/// vector instruction under .NET's default MXCSR gives the same bits.
/// </summary>
internal static unsafe partial class SimdOps
{
    /// <summary>MXCSR exception flag bits.</summary>
    public const uint IE = 1, DE = 2, ZE = 4, OE = 8, UE = 16, PE = 32, FlagMask = 0x3F;
    /// <summary>Set in the guest's MXCSR by a helper that detected an unmasked exception; the lifter clears it and raises #XM. Bits 16–31 are reserved (LDMXCSR cannot set them).</summary>
    public const uint XmPending = 0x8000_0000;

    // ---------------- native stubs ----------------

    /// <summary>What a stub returns through its first buffer.</summary>
    internal enum StubOutput { Xmm, Gpr, Flags }

    // Stub ABI (System V): rdi = &mxcsr (in: value to run under; out: value after), rsi = &a (xmm0 in,
    // result out), rdx = &b (xmm1 in; its low 8 bytes also in rax for integer sources).
    private static readonly Dictionary<(Code, int, Register, Register), nint> s_stubs = [];
    private static readonly Lock s_stubLock = new();
    private static byte* s_arena;
    private static int s_arenaUsed, s_arenaSize;

    /// <summary>
    /// The helpers' <c>op</c> argument: the instruction a stub runs (<see cref="Stub"/>), packed into 64 bits.
    /// Not the stub's address: that differs from process to process, and IR holding it as a constant would
    /// never be the same twice (no LLVM code-cache hits) nor could its object code run in another process.
    /// </summary>
    internal static ulong StubKey(Code code, Register dst, Register src, int imm, StubOutput output) =>
        (ulong)(ushort)code | (ulong)(uint)(imm + 1 & 0x1FF) << 16 | (ulong)(byte)dst << 25 | (ulong)(byte)src << 33 | (ulong)output << 41;

    private sealed record StubEntry(ulong Key, nint Stub);

    // Stubs by key, direct-mapped: entries are immutable and replaced whole, so readers need no lock.
    private static readonly StubEntry?[] s_stubCache = new StubEntry?[512];

    /// <summary>The stub of a <see cref="StubKey"/>, made on first use.</summary>
    internal static nint StubFor(ulong key)
    {
        int slot = (int)((key * 0x9E37_79B9_7F4A_7C15UL) >> 55);
        var e = Volatile.Read(ref s_stubCache[slot]);
        if (e is not null && e.Key == key) return e.Stub;
        nint stub = Stub((Code)(key & 0xFFFF), (Register)(byte)(key >> 25), (Register)(byte)(key >> 33), (int)(key >> 16 & 0x1FF) - 1, (StubOutput)(key >> 41 & 3));
        Volatile.Write(ref s_stubCache[slot], new StubEntry(key, stub));
        return stub;
    }

    /// <summary>
    /// The stub running <paramref name="code"/> on (<paramref name="dst"/>, <paramref name="src"/>)
    /// with optional immediate; xmm0/xmm1 are the vector operands, rax the integer one.
    /// </summary>
    internal static nint Stub(Code code, Register dst, Register src, int imm, StubOutput output)
    {
        lock (s_stubLock)
        {
            if (s_stubs.TryGetValue((code, imm, dst, src), out nint p)) return p;
            var op = imm >= 0 ? Instruction.Create(code, dst, src, imm) : Instruction.Create(code, dst, src);
            var a = new Assembler(64);
            a.sub(rsp, 8);
            a.stmxcsr(__dword_ptr[rsp]);
            a.ldmxcsr(__dword_ptr[rdi]);
            a.movdqu(xmm0, __xmmword_ptr[rsi]);
            a.movdqu(xmm1, __xmmword_ptr[rdx]);
            a.mov(rax, __qword_ptr[rdx]);
            a.AddInstruction(op);
            if (output == StubOutput.Flags)
            {
                a.pushfq();
                a.pop(rax);
            }
            if (output == StubOutput.Xmm) a.movdqu(__xmmword_ptr[rsi], xmm0);
            else a.mov(__qword_ptr[rsi], rax);
            a.stmxcsr(__dword_ptr[rdi]);
            a.ldmxcsr(__dword_ptr[rsp]);
            a.add(rsp, 8);
            a.ret();
            p = Install(a);
            s_stubs[(code, imm, dst, src)] = p;
            return p;
        }
    }

    /// <summary>Assembles <paramref name="a"/> into the executable stub arena; returns its address. Callers hold <see cref="s_stubLock"/>.</summary>
    private static nint Install(Assembler a)
    {
        var w = new BytesWriter();
        a.Assemble(w, 0);
        var bytes = w.Bytes.ToArray();
        if (s_arena is null || s_arenaUsed + bytes.Length > s_arenaSize)
        {
            s_arenaSize = 1 << 16;
            s_arena = (byte*)mmap(0, (nuint)s_arenaSize, 7 /* RWX */, 0x22 /* private, anonymous */, -1, 0);
            if (s_arena == (byte*)-1) throw new OutOfMemoryException("cannot map SSE stubs");
            s_arenaUsed = 0;
        }
        var p = (nint)(s_arena + s_arenaUsed);
        bytes.CopyTo(new Span<byte>((void*)p, bytes.Length));
        s_arenaUsed = (s_arenaUsed + bytes.Length + 15) & ~15;
        return p;
    }

    /// <summary>
    /// The stub running PCMPESTRM (64-bit lengths; <paramref name="explicitLengths"/>) or PCMPISTRM with
    /// <paramref name="imm"/> (bit 6 cleared, so XMM0 receives IntRes2 as a bit mask) on the host:
    /// <c>ulong stub(a.lo, a.hi, b.lo, b.hi, la, lb)</c> returns IntRes2 in bits 15:0 and RFLAGS from bit 16.
    /// Arguments and result stay in registers, so a call costs little more than the instruction.
    /// </summary>
    internal static nint StringCompareStub(bool explicitLengths, byte imm)
    {
        lock (s_stubLock)
        {
            var a = new Assembler(64);
            a.movq(xmm0, rdi);
            a.pinsrq(xmm0, rsi, 1);
            a.movq(xmm1, rdx);
            a.pinsrq(xmm1, rcx, 1);
            if (explicitLengths)
            {
                a.mov(rax, r8);
                a.mov(rdx, r9);
                a.AddInstruction(Instruction.Create(Code.Pcmpestrm64_xmm_xmmm128_imm8, Register.XMM0, Register.XMM1, imm & ~0x40));
            }
            else
            {
                a.AddInstruction(Instruction.Create(Code.Pcmpistrm_xmm_xmmm128_imm8, Register.XMM0, Register.XMM1, imm & ~0x40));
            }
            a.pushfq();
            a.pop(rcx);
            a.shl(rcx, 16);
            a.movd(eax, xmm0);
            a.or(rax, rcx);
            a.ret();
            return Install(a);
        }
    }

    private sealed class BytesWriter : CodeWriter
    {
        public readonly List<byte> Bytes = [];
        public override void WriteByte(byte value) => Bytes.Add(value);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    /// <summary>
    /// Runs the host instruction (stub key <paramref name="op"/>, see <see cref="StubKey"/>) under the guest's MXCSR with
    /// every exception masked; commits the raised flags, or (an unmasked one was raised) sets the
    /// flags the SDM says are set before #XM plus <see cref="XmPending"/> and returns
    /// <paramref name="a"/> unchanged.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector128<byte> Exec(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b)
    {
        var stub = (delegate* unmanaged[SuppressGCTransition]<uint*, Vector128<byte>*, Vector128<byte>*, void>)StubFor(op);
        uint guest = ctx->State.Mxcsr;
        uint unmasked = ~(guest >> 7) & FlagMask;
        uint run = (guest & ~FlagMask) | 0x1F80;
        // An unmasked UE traps on tiny results even when exact (intermediate ones too, as in DPPS),
        // which a masked run does not flag; with FTZ every tiny result is flushed and so flagged.
        if ((unmasked & UE) != 0) run |= 0x8000;
        var r = a;
        stub(&run, &r, &b);
        uint raised = run & FlagMask;
        if ((raised & unmasked) == 0)
        {
            ctx->State.Mxcsr = guest | raised;
            return r;
        }
        if ((unmasked & UE) != 0 && (raised & UE) != 0)
        {
            // The flush made the result inexact; the other flags come from a run without it.
            run = (guest & ~FlagMask & ~0x8000u) | 0x1F80;
            var r2 = a;
            stub(&run, &r2, &b);
            raised = (run & FlagMask) | UE;
        }
        // Pre-computation exceptions (IE, DE, ZE) that are unmasked stop the operation before any
        // post-computation flag (OE, UE, PE) is detected.
        uint pre = raised & (IE | DE | ZE);
        ctx->State.Mxcsr = guest | ((pre & unmasked) != 0 ? pre : raised) | XmPending;
        return a;
    }

    // ---------------- fast paths ----------------

    /// <summary>Round to nearest, no DAZ/FTZ, everything masked, PE already set: the default environment once an inexact result has happened.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool DefaultWithPe(CpuContext* ctx) => (ctx->State.Mxcsr & 0xFFE0) == 0x1FA0;

    /// <summary>Lanes whose single is zero or normal finite (raises nothing as an input).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> TameS(Vector128<byte> x)
    {
        var abs = x.AsInt32() & Vector128.Create(0x7FFF_FFFF);
        return (Vector128.GreaterThan(abs, Vector128.Create(0x007F_FFFF)) & Vector128.LessThan(abs, Vector128.Create(0x7F80_0000)))
            | Vector128.Equals(abs, Vector128<int>.Zero);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<long> TameD(Vector128<byte> x)
    {
        var abs = x.AsInt64() & Vector128.Create(0x7FFF_FFFF_FFFF_FFFFL);
        return (Vector128.GreaterThan(abs, Vector128.Create(0x000F_FFFF_FFFF_FFFFL)) & Vector128.LessThan(abs, Vector128.Create(0x7FF0_0000_0000_0000L)))
            | Vector128.Equals(abs, Vector128<long>.Zero);
    }

    /// <summary>
    /// Result lanes that raise nothing but PE given tame inputs: finite and above the smallest
    /// normal (so neither overflow nor tininess after rounding), or an exact zero from a zero
    /// input; for ADD/SUB and SQRT (<paramref name="addLike"/>) any finite result (tiny sums are
    /// exact, square roots of normals are normal).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> QuietS(Vector128<byte> r, Vector128<byte> a, Vector128<byte> b, bool addLike)
    {
        var mag = Vector128.Create(0x7FFF_FFFF);
        var abs = r.AsInt32() & mag;
        var finite = Vector128.LessThan(abs, Vector128.Create(0x7F80_0000));
        if (addLike) return finite;
        var zeroIn = Vector128.Equals(a.AsInt32() & mag, Vector128<int>.Zero) | Vector128.Equals(b.AsInt32() & mag, Vector128<int>.Zero);
        return (finite & Vector128.GreaterThan(abs, Vector128.Create(0x0080_0000))) | (Vector128.Equals(abs, Vector128<int>.Zero) & zeroIn);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<long> QuietD(Vector128<byte> r, Vector128<byte> a, Vector128<byte> b, bool addLike)
    {
        var mag = Vector128.Create(0x7FFF_FFFF_FFFF_FFFFL);
        var abs = r.AsInt64() & mag;
        var finite = Vector128.LessThan(abs, Vector128.Create(0x7FF0_0000_0000_0000L));
        if (addLike) return finite;
        var zeroIn = Vector128.Equals(a.AsInt64() & mag, Vector128<long>.Zero) | Vector128.Equals(b.AsInt64() & mag, Vector128<long>.Zero);
        return (finite & Vector128.GreaterThan(abs, Vector128.Create(0x0010_0000_0000_0000L))) | (Vector128.Equals(abs, Vector128<long>.Zero) & zeroIn);
    }

    /// <summary>All lanes selected by <paramref name="lanes"/> (bit per lane) are set in <paramref name="ok"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool All(Vector128<int> ok, int lanes) => (~(int)ok.ExtractMostSignificantBits() & lanes) == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool All(Vector128<long> ok, int lanes) => (~(int)ok.ExtractMostSignificantBits() & lanes) == 0;

    /// <summary>Arithmetic operation kinds with a fast path.</summary>
    internal enum Arith { Add, Sub, Mul, Div, Min, Max, Sqrt }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> ComputeS(Arith k, Vector128<float> a, Vector128<float> b, bool scalar) => k switch
    {
        Arith.Add => scalar ? Sse.AddScalar(a, b) : Sse.Add(a, b),
        Arith.Sub => scalar ? Sse.SubtractScalar(a, b) : Sse.Subtract(a, b),
        Arith.Mul => scalar ? Sse.MultiplyScalar(a, b) : Sse.Multiply(a, b),
        Arith.Div => scalar ? Sse.DivideScalar(a, b) : Sse.Divide(a, b),
        Arith.Min => scalar ? Sse.MinScalar(a, b) : Sse.Min(a, b),
        Arith.Max => scalar ? Sse.MaxScalar(a, b) : Sse.Max(a, b),
        _ => scalar ? Sse.SqrtScalar(a, b) : Sse.Sqrt(b),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<double> ComputeD(Arith k, Vector128<double> a, Vector128<double> b, bool scalar) => k switch
    {
        Arith.Add => scalar ? Sse2.AddScalar(a, b) : Sse2.Add(a, b),
        Arith.Sub => scalar ? Sse2.SubtractScalar(a, b) : Sse2.Subtract(a, b),
        Arith.Mul => scalar ? Sse2.MultiplyScalar(a, b) : Sse2.Multiply(a, b),
        Arith.Div => scalar ? Sse2.DivideScalar(a, b) : Sse2.Divide(a, b),
        Arith.Min => scalar ? Sse2.MinScalar(a, b) : Sse2.Min(a, b),
        Arith.Max => scalar ? Sse2.MaxScalar(a, b) : Sse2.Max(a, b),
        _ => scalar ? Sse2.SqrtScalar(a, b) : Sse2.Sqrt(b),
    };

    /// <summary>
    /// ADD/SUB/MUL/DIV/MIN/MAX/SQRT on singles (<paramref name="kind"/> and <paramref name="scalar"/>
    /// are constants after inlining). MIN/MAX on tame inputs raise nothing in any environment.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> ArithS(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b, Arith kind, bool scalar)
    {
        if (Sse.IsSupported)
        {
            int lanes = scalar ? 1 : 0xF;
            bool minMax = kind is Arith.Min or Arith.Max;
            if (minMax || DefaultWithPe(ctx))
            {
                var tame = kind == Arith.Sqrt ? TameS(b) : TameS(a) & TameS(b);
                if (All(tame, lanes))
                {
                    var r = ComputeS(kind, a.AsSingle(), b.AsSingle(), scalar).AsByte();
                    if (minMax || All(QuietS(r, a, b, kind is Arith.Add or Arith.Sub or Arith.Sqrt), lanes)) return r;
                }
            }
        }
        return Exec(ctx, op, a, b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> ArithD(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b, Arith kind, bool scalar)
    {
        if (Sse2.IsSupported)
        {
            int lanes = scalar ? 1 : 3;
            bool minMax = kind is Arith.Min or Arith.Max;
            if (minMax || DefaultWithPe(ctx))
            {
                var tame = kind == Arith.Sqrt ? TameD(b) : TameD(a) & TameD(b);
                if (All(tame, lanes))
                {
                    var r = ComputeD(kind, a.AsDouble(), b.AsDouble(), scalar).AsByte();
                    if (minMax || All(QuietD(r, a, b, kind is Arith.Add or Arith.Sub or Arith.Sqrt), lanes)) return r;
                }
            }
        }
        return Exec(ctx, op, a, b);
    }

#pragma warning disable CS1591 // one-liners named after the instructions
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Addps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Add, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Addss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Add, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Subps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Sub, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Subss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Sub, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Mulps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Mul, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Mulss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Mul, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Divps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Div, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Divss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Div, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Minps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Min, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Minss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Min, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Maxps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Max, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Maxss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Max, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Sqrtps(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Sqrt, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Sqrtss(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithS(c, op, a, b, Arith.Sqrt, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Addpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Add, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Addsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Add, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Subpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Sub, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Subsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Sub, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Mulpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Mul, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Mulsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Mul, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Divpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Div, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Divsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Div, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Minpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Min, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Minsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Min, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Maxpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Max, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Maxsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Max, true);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Sqrtpd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Sqrt, false);
    [MethodImpl(MethodImplOptions.NoInlining)] public static Vector128<byte> Sqrtsd(CpuContext* c, ulong op, Vector128<byte> a, Vector128<byte> b) => ArithD(c, op, a, b, Arith.Sqrt, true);
#pragma warning restore CS1591

    /// <summary>
    /// COMISS/UCOMISS/COMISD/UCOMISD: the result's low bits are RFLAGS from the host comparison, bit 63 the #XM marker.
    /// Ordered tame operands raise nothing in any environment and compare the same in C#.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector128<byte> Comis(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b, ulong isDouble)
    {
        bool fast = isDouble != 0 ? All(TameD(a) & TameD(b), 1) : All(TameS(a) & TameS(b), 1);
        if (!fast)
        {
            // Bit 63 repeats the #XM marker so the check depends on this call, which then stays
            // even when the flags it produces are dead.
            var r = Exec(ctx, op, a, b).AsUInt64();
            return r.WithElement(0, (r.ToScalar() & 0xFFFF) | ((ctx->State.Mxcsr & XmPending) != 0 ? 1UL << 63 : 0)).AsByte();
        }
        int c = isDouble != 0 ? a.AsDouble().ToScalar().CompareTo(b.AsDouble().ToScalar()) : a.AsSingle().ToScalar().CompareTo(b.AsSingle().ToScalar());
        // ±0 compare equal in hardware; CompareTo orders -0 below +0.
        if (isDouble != 0 ? a.AsDouble().ToScalar() == b.AsDouble().ToScalar() : a.AsSingle().ToScalar() == b.AsSingle().ToScalar()) c = 0;
        ulong flags = c == 0 ? 0x40UL : c < 0 ? 1UL : 0;
        return Vector128.CreateScalar(flags).AsByte();
    }

    /// <summary>CMPPS/CMPPD/CMPSS/CMPSD: tame operands (no NaN, no denormal) raise nothing in any environment.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector128<byte> Cmp(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b, ulong shape)
    {
        // shape: bit 0 double, bit 1 scalar; the predicate is in the stub (and in bits 8–10 here).
        bool dbl = (shape & 1) != 0, scalar = (shape & 2) != 0;
        int pred = (int)(shape >> 8) & 7;
        if (dbl ? All(TameD(a) & TameD(b), scalar ? 1 : 3) : All(TameS(a) & TameS(b), scalar ? 1 : 0xF))
        {
            Vector128<byte> m;
            if (dbl)
            {
                var x = a.AsDouble();
                var y = b.AsDouble();
                m = (pred switch
                {
                    0 => Vector128.Equals(x, y),
                    1 => Vector128.LessThan(x, y),
                    2 => Vector128.LessThanOrEqual(x, y),
                    3 => Vector128<double>.Zero,
                    4 => ~Vector128.Equals(x, y),
                    5 => ~Vector128.LessThan(x, y),
                    6 => ~Vector128.LessThanOrEqual(x, y),
                    _ => Vector128<double>.AllBitsSet,
                }).AsByte();
                if (scalar) m = Vector128.ConditionalSelect(Vector128.Create(-1L, 0).AsByte(), m, a);
            }
            else
            {
                var x = a.AsSingle();
                var y = b.AsSingle();
                m = (pred switch
                {
                    0 => Vector128.Equals(x, y),
                    1 => Vector128.LessThan(x, y),
                    2 => Vector128.LessThanOrEqual(x, y),
                    3 => Vector128<float>.Zero,
                    4 => ~Vector128.Equals(x, y),
                    5 => ~Vector128.LessThan(x, y),
                    6 => ~Vector128.LessThanOrEqual(x, y),
                    _ => Vector128<float>.AllBitsSet,
                }).AsByte();
                if (scalar) m = Vector128.ConditionalSelect(Vector128.Create(-1, 0, 0, 0).AsByte(), m, a);
            }
            return m;
        }
        return Exec(ctx, op, a, b);
    }

    /// <summary>CVTSI2SD from 32 bits: always exact, so it raises nothing and ignores MXCSR.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector128<byte> Cvtsi2sd32(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b) =>
        Sse2.IsSupported ? Sse2.ConvertScalarToVector128Double(a.AsDouble(), b.AsInt32().ToScalar()).AsByte() : Exec(ctx, op, a, b);

    /// <summary>CVTSS2SD: exact for a tame single (only SNaN and denormal inputs raise anything).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector128<byte> Cvtss2sd(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b) =>
        Sse2.IsSupported && All(TameS(b), 1) ? Sse2.ConvertScalarToVector128Double(a.AsDouble(), b.AsSingle()).AsByte() : Exec(ctx, op, a, b);

    /// <summary>
    /// CVTTSS2SI/CVTTSD2SI (<paramref name="shape"/>: bit 0 double source, bit 1 64-bit result):
    /// a tame source well inside the range can raise only PE; with PE already set and masked that
    /// changes nothing, and truncation ignores the rounding mode.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector128<byte> Cvtt2si(CpuContext* ctx, ulong op, Vector128<byte> a, Vector128<byte> b, ulong shape)
    {
        if (Sse2.X64.IsSupported && (ctx->State.Mxcsr & 0x1020) == 0x1020)
        {
            bool wide = (shape & 2) != 0;
            double limit = wide ? 9223372036854775808.0 : 2147483648.0;
            if ((shape & 1) != 0)
            {
                if (All(TameD(b), 1) && Math.Abs(b.AsDouble().ToScalar()) < limit)
                    return Vector128.CreateScalar(wide ? (ulong)Sse2.X64.ConvertToInt64WithTruncation(b.AsDouble()) : (uint)Sse2.ConvertToInt32WithTruncation(b.AsDouble())).AsByte();
            }
            else if (All(TameS(b), 1) && Math.Abs(b.AsSingle().ToScalar()) < limit)
            {
                return Vector128.CreateScalar(wide ? (ulong)Sse.X64.ConvertToInt64WithTruncation(b.AsSingle()) : (uint)Sse.ConvertToInt32WithTruncation(b.AsSingle())).AsByte();
            }
        }
        return Exec(ctx, op, a, b);
    }

    // ---------------- operations without floating-point exceptions ----------------

    /// <summary>BLENDPS/BLENDPD by immediate (<paramref name="laneBits"/> 32 or 64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> BlendImm(Vector128<byte> a, Vector128<byte> b, ulong imm, ulong laneBits)
    {
        var mask = laneBits == 64
            ? Vector128.Create((imm & 1) != 0 ? -1L : 0, (imm & 2) != 0 ? -1L : 0).AsByte()
            : Vector128.Create((imm & 1) != 0 ? -1 : 0, (imm & 2) != 0 ? -1 : 0, (imm & 4) != 0 ? -1 : 0, (imm & 8) != 0 ? -1 : 0).AsByte();
        return Vector128.ConditionalSelect(mask, b, a);
    }

    /// <summary>BLENDVPS/BLENDVPD: each lane from <paramref name="b"/> where the mask lane's sign is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> BlendVar(Vector128<byte> a, Vector128<byte> b, Vector128<byte> mask, ulong laneBits)
    {
        var m = laneBits == 64 ? Vector128.ShiftRightArithmetic(mask.AsInt64(), 63).AsByte() : Vector128.ShiftRightArithmetic(mask.AsInt32(), 31).AsByte();
        return Vector128.ConditionalSelect(m, b, a);
    }

    /// <summary>MOVSLDUP (odd = 0) / MOVSHDUP (odd = 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> DupSingles(Vector128<byte> s, ulong odd) => odd != 0
        ? Vector128.Shuffle(s.AsInt32(), Vector128.Create(1, 1, 3, 3)).AsByte()
        : Vector128.Shuffle(s.AsInt32(), Vector128.Create(0, 0, 2, 2)).AsByte();

    /// <summary>MOVDDUP.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> DupLow(Vector128<byte> s) => Vector128.Create(s.AsUInt64().ToScalar()).AsByte();

    /// <summary>INSERTPS: element <paramref name="element"/> of <paramref name="s"/> into lane imm[5:4] of <paramref name="d"/>, then zero the lanes in imm[3:0].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Insertps(Vector128<byte> d, Vector128<byte> s, ulong element, ulong imm)
    {
        var r = d.AsUInt32().WithElement((int)(imm >> 4) & 3, s.AsUInt32().GetElement((int)element & 3));
        var zero = Vector128.Create((imm & 1) != 0 ? 0u : ~0u, (imm & 2) != 0 ? 0u : ~0u, (imm & 4) != 0 ? 0u : ~0u, (imm & 8) != 0 ? 0u : ~0u);
        return (r & zero).AsByte();
    }

    /// <summary>EXTRACTPS: single element imm[1:0].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Extractps(Vector128<byte> s, ulong imm) => s.AsUInt32().GetElement((int)imm & 3);
}
