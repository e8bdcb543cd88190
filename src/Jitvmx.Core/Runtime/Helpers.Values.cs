// SPDX-License-Identifier: MIT
using System.Runtime.Intrinsics.X86;
using Jitvmx.Runtime;

namespace Jitvmx;

public static unsafe partial class Helpers
{
    [Helper(HelperId.UDiv128Quotient, Pure = true)]
    internal static ulong UDiv128Quotient(CpuContext* ctx, ulong hi, ulong lo, ulong d) => (ulong)(new UInt128(hi, lo) / d);

    [Helper(HelperId.UDiv128Remainder, Pure = true)]
    internal static ulong UDiv128Remainder(CpuContext* ctx, ulong hi, ulong lo, ulong d) => (ulong)(new UInt128(hi, lo) % d);

    [Helper(HelperId.SDiv128Quotient, Pure = true)]
    internal static ulong SDiv128Quotient(CpuContext* ctx, ulong hi, ulong lo, ulong d) => (ulong)(long)((Int128)new UInt128(hi, lo) / (long)d);

    [Helper(HelperId.SDiv128Remainder, Pure = true)]
    internal static ulong SDiv128Remainder(CpuContext* ctx, ulong hi, ulong lo, ulong d) => (ulong)(long)((Int128)new UInt128(hi, lo) % (long)d);

    /// <summary>1 when IDIV of RDX:RAX by a 64-bit divisor raises #DE (divisor 0 or quotient out of range).</summary>
    [Helper(HelperId.SDiv128Faults, Pure = true)]
    internal static ulong SDiv128Faults(CpuContext* ctx, ulong hi, ulong lo, ulong d)
    {
        if (d == 0) return 1;
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
