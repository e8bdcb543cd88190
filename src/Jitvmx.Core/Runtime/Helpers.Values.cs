// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Jitvmx.Runtime;

namespace Jitvmx;

public static unsafe partial class Helpers
{
    // Compilers divide 64-bit values with RDX only extending RAX (a zeroed RDX before DIV, CQO before
    // IDIV): those take the host's 64-bit divide instead of UInt128's and Int128's long division.
    // The callers raise #DE first, so these run with a nonzero divisor and a quotient in range.
    // The 128-bit paths are methods of their own: code using Int128 is not compiled ahead of time,
    // and the helpers, called by the first regions of most programs, were JIT-compiled on every start.

    [Helper(HelperId.UDiv128Quotient, Pure = true)]
    internal static ulong UDiv128Quotient(CpuContext* ctx, ulong hi, ulong lo, ulong d) =>
        hi == 0 && d != 0 ? lo / d : WideUnsigned(hi, lo, d, remainder: false);

    [Helper(HelperId.UDiv128Remainder, Pure = true)]
    internal static ulong UDiv128Remainder(CpuContext* ctx, ulong hi, ulong lo, ulong d) =>
        hi == 0 && d != 0 ? lo % d : WideUnsigned(hi, lo, d, remainder: true);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong WideUnsigned(ulong hi, ulong lo, ulong d, bool remainder) =>
        remainder ? (ulong)(new UInt128(hi, lo) % d) : (ulong)(new UInt128(hi, lo) / d);

    /// <summary>Whether RDX:RAX is RAX sign-extended, and the 64-bit divide of it by <paramref name="d"/> is defined in C# (no zero, no INT64_MIN / −1).</summary>
    private static bool NarrowSigned(ulong hi, ulong lo, ulong d) =>
        hi == (ulong)((long)lo >> 63) && d != 0 && (d != ulong.MaxValue || lo != 1UL << 63);

    [Helper(HelperId.SDiv128Quotient, Pure = true)]
    internal static ulong SDiv128Quotient(CpuContext* ctx, ulong hi, ulong lo, ulong d) =>
        NarrowSigned(hi, lo, d) ? (ulong)((long)lo / (long)d) : WideSigned(hi, lo, d, remainder: false);

    [Helper(HelperId.SDiv128Remainder, Pure = true)]
    internal static ulong SDiv128Remainder(CpuContext* ctx, ulong hi, ulong lo, ulong d) =>
        NarrowSigned(hi, lo, d) ? (ulong)((long)lo % (long)d) : WideSigned(hi, lo, d, remainder: true);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong WideSigned(ulong hi, ulong lo, ulong d, bool remainder) =>
        remainder ? (ulong)(long)((Int128)new UInt128(hi, lo) % (long)d) : (ulong)(long)((Int128)new UInt128(hi, lo) / (long)d);

    /// <summary>1 when IDIV of RDX:RAX by a 64-bit divisor raises #DE (divisor 0 or quotient out of range).</summary>
    [Helper(HelperId.SDiv128Faults, Pure = true)]
    internal static ulong SDiv128Faults(CpuContext* ctx, ulong hi, ulong lo, ulong d)
    {
        if (d == 0) return 1;
        // A sign-extended dividend overflows only as INT64_MIN / -1.
        if (hi == (ulong)((long)lo >> 63)) return d == ulong.MaxValue && lo == 1UL << 63 ? 1UL : 0;
        return WideSignedFaults(hi, lo, d);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong WideSignedFaults(ulong hi, ulong lo, ulong d)
    {
        var n = (Int128)new UInt128(hi, lo);
        long dv = (long)d;
        if (dv == -1) return n == Int128.MinValue || -n > long.MaxValue || -n < long.MinValue ? 1UL : 0;
        var q = n / dv;
        return q > long.MaxValue || q < long.MinValue ? 1UL : 0;
    }

    [Helper(HelperId.Pdep, Pure = true)]
    internal static ulong Pdep(CpuContext* ctx, ulong value, ulong mask)
    {
        if (Bmi2.X64.IsSupported) return Bmi2.X64.ParallelBitDeposit(value, mask);
        ulong r = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong low = mask & (0 - mask);
            if ((value & bit) != 0) r |= low;
            mask &= mask - 1;
        }
        return r;
    }

    [Helper(HelperId.Pext, Pure = true)]
    internal static ulong Pext(CpuContext* ctx, ulong value, ulong mask)
    {
        if (Bmi2.X64.IsSupported) return Bmi2.X64.ParallelBitExtract(value, mask);
        ulong r = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong low = mask & (0 - mask);
            if ((value & low) != 0) r |= bit;
            mask &= mask - 1;
        }
        return r;
    }

    [Helper(HelperId.ReadTsc, Pure = true)]
    internal static ulong ReadTsc(CpuContext* ctx) => HostTsc.Read() + (ulong)VirtualCpu.FromContext(ctx).Controls.TscOffset;
}

/// <summary>The host's time-stamp counter, read with RDTSC from a small executable stub.</summary>
internal static unsafe class HostTsc
{
    private static readonly delegate* unmanaged<ulong> s_read = Create();

    private static delegate* unmanaged<ulong> Create()
    {
        // rdtsc; shl rdx, 32; or rax, rdx; ret
        ReadOnlySpan<byte> code = [0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3];
        return (delegate* unmanaged<ulong>)Memory.HostMemory.AllocateExecutable(code);
    }

    public static ulong Read() => s_read();
}
