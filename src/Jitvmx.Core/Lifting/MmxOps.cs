// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using Jitvmx.Runtime;

namespace Jitvmx.Lifting;

/// <summary>
/// 64-bit operations of the MMX family that the lane-wise <see cref="SimdIntOps"/> (used on the
/// zero-extended low lane) do not cover.
/// </summary>
internal static unsafe class MmxOps
{
    /// <summary>
    /// The x87 side effect of every MMX instruction but EMMS: TOP = 0 and every register in use.
    /// The stored full tag word is what FNSTENV shows, where hardware classifies each register's
    /// contents; registers already in use keep their (classified) tags, empty ones get theirs.
    /// </summary>
    public static void Enter(CpuContext* ctx)
    {
        ref var x = ref ctx->State.X87;
        x.Status &= 0xC7FF;
        int tag = x.Tag;
        if (((tag & (tag >> 1)) & 0x5555) == 0) return; // no empty register
        for (int p = 0; p < 8; p++)
        {
            if (((tag >> (p * 2)) & 3) != 3) continue;
            var v = new Float80(x.R[p].Mantissa, x.R[p].SignExponent);
            int t = F80.Classify(v) switch
            {
                F80Class.Zero => 1,
                F80Class.Finite when v.Exp != 0 => 0,
                _ => 2,
            };
            tag = (tag & ~(3 << (p * 2))) | (t << (p * 2));
        }
        x.Tag = (ushort)tag;
    }

    /// <summary>MASKMOVQ: <paramref name="mem"/> with the bytes of <paramref name="src"/> whose mask byte has its sign bit set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong MaskMerge(ulong mem, ulong src, ulong mask)
    {
        // Sign bit of each byte spread over the byte: (b >> 7) * 0xFF per lane.
        ulong m = ((mask >> 7) & 0x0101010101010101UL) * 0xFF;
        return (mem & ~m) | (src & m);
    }

    /// <summary>PALIGNR mm: bytes <paramref name="n"/>.. of the 16-byte concatenation dst:src, low 8 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Palignr(ulong dst, ulong src, byte n) => n switch
    {
        0 => src,
        < 8 => (src >> (n * 8)) | (dst << (64 - n * 8)),
        8 => dst,
        < 16 => dst >> ((n - 8) * 8),
        _ => 0,
    };
}
