// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace Jitvmx.Lifting;

/// <summary>
/// SSE2/SSSE3/SSE4.1 packed-integer operations, register moves and lane access as pure helpers over
/// <c>Vector128&lt;byte&gt;</c>. The JIT inlines them into the region, so on an x86 host each is the
/// native instruction; the portable <see cref="Vector128"/> paths serve other hosts. Immediates
/// arrive as arguments (constants after inlining) and are decoded here, never trusted to be in range.
/// </summary>
internal static class SimdIntOps
{
    private const MethodImplOptions Inline = MethodImplOptions.AggressiveInlining;

    private static readonly V s_iota = Vector128.Create((byte)0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    // ---------------- moves and lanes ----------------

    [MethodImpl(Inline)] public static V MergeLow32(V dst, V src) => dst.AsUInt32().WithElement(0, src.AsUInt32().ToScalar()).AsByte();
    [MethodImpl(Inline)] public static V InsertLow64(V dst, ulong v) => dst.AsUInt64().WithElement(0, v).AsByte();
    [MethodImpl(Inline)] public static V InsertHigh64(V dst, ulong v) => dst.AsUInt64().WithElement(1, v).AsByte();
    [MethodImpl(Inline)] public static ulong High64(V a) => a.AsUInt64().GetElement(1);

    /// <summary>Lane <paramref name="index"/> (masked to the lane count) of <paramref name="size"/> bytes, zero-extended.</summary>
    [MethodImpl(Inline)]
    public static ulong Extract(V a, byte size, byte index) => size switch
    {
        1 => a.GetElement(index & 15),
        2 => a.AsUInt16().GetElement(index & 7),
        4 => a.AsUInt32().GetElement(index & 3),
        _ => a.AsUInt64().GetElement(index & 1),
    };

    /// <summary>Replaces lane <paramref name="index"/> (masked) of <paramref name="size"/> bytes.</summary>
    [MethodImpl(Inline)]
    public static V Insert(V a, ulong v, byte size, byte index) => size switch
    {
        1 => a.WithElement(index & 15, (byte)v),
        2 => a.AsUInt16().WithElement(index & 7, (ushort)v).AsByte(),
        4 => a.AsUInt32().WithElement(index & 3, (uint)v).AsByte(),
        _ => a.AsUInt64().WithElement(index & 1, v).AsByte(),
    };

    /// <summary>MASKMOVDQU: bytes of <paramref name="src"/> whose mask byte has its top bit set, the rest from <paramref name="mem"/>.</summary>
    [MethodImpl(Inline)]
    public static V MaskMerge(V mem, V src, V mask) => Vector128.ConditionalSelect(Vector128.ShiftRightArithmetic(mask.AsSByte(), 7).AsByte(), src, mem);

    [MethodImpl(Inline)] public static uint Pmovmskb(V a) => a.ExtractMostSignificantBits();
    [MethodImpl(Inline)] public static uint Movmskps(V a) => a.AsUInt32().ExtractMostSignificantBits();
    [MethodImpl(Inline)] public static uint Movmskpd(V a) => a.AsUInt64().ExtractMostSignificantBits();

    // ---------------- logic ----------------

    [MethodImpl(Inline)] public static V And(V a, V b) => a & b;
    [MethodImpl(Inline)] public static V AndNot(V a, V b) => Vector128.AndNot(b, a); // ~a & b
    [MethodImpl(Inline)] public static V Or(V a, V b) => a | b;
    [MethodImpl(Inline)] public static V Xor(V a, V b) => a ^ b;

    // ---------------- arithmetic ----------------

    [MethodImpl(Inline)] public static V Paddb(V a, V b) => a + b;
    [MethodImpl(Inline)] public static V Paddw(V a, V b) => (a.AsUInt16() + b.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Paddd(V a, V b) => (a.AsUInt32() + b.AsUInt32()).AsByte();
    [MethodImpl(Inline)] public static V Paddq(V a, V b) => (a.AsUInt64() + b.AsUInt64()).AsByte();
    [MethodImpl(Inline)] public static V Psubb(V a, V b) => a - b;
    [MethodImpl(Inline)] public static V Psubw(V a, V b) => (a.AsUInt16() - b.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Psubd(V a, V b) => (a.AsUInt32() - b.AsUInt32()).AsByte();
    [MethodImpl(Inline)] public static V Psubq(V a, V b) => (a.AsUInt64() - b.AsUInt64()).AsByte();

    [MethodImpl(Inline)]
    public static V Paddsb(V a, V b) => Sse2.IsSupported ? Sse2.AddSaturate(a.AsSByte(), b.AsSByte()).AsByte() : Portable.Paddsb(a, b);
    [MethodImpl(Inline)]
    public static V Paddsw(V a, V b) => Sse2.IsSupported ? Sse2.AddSaturate(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Paddsw(a, b);
    [MethodImpl(Inline)]
    public static V Paddusb(V a, V b) => Sse2.IsSupported ? Sse2.AddSaturate(a, b) : Portable.Paddusb(a, b);
    [MethodImpl(Inline)]
    public static V Paddusw(V a, V b) => Sse2.IsSupported ? Sse2.AddSaturate(a.AsUInt16(), b.AsUInt16()).AsByte() : Portable.Paddusw(a, b);
    [MethodImpl(Inline)]
    public static V Psubsb(V a, V b) => Sse2.IsSupported ? Sse2.SubtractSaturate(a.AsSByte(), b.AsSByte()).AsByte() : Portable.Psubsb(a, b);
    [MethodImpl(Inline)]
    public static V Psubsw(V a, V b) => Sse2.IsSupported ? Sse2.SubtractSaturate(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Psubsw(a, b);
    [MethodImpl(Inline)]
    public static V Psubusb(V a, V b) => Sse2.IsSupported ? Sse2.SubtractSaturate(a, b) : Portable.Psubusb(a, b);
    [MethodImpl(Inline)]
    public static V Psubusw(V a, V b) => Sse2.IsSupported ? Sse2.SubtractSaturate(a.AsUInt16(), b.AsUInt16()).AsByte() : Portable.Psubusw(a, b);

    [MethodImpl(Inline)] public static V Pmullw(V a, V b) => (a.AsUInt16() * b.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pmulld(V a, V b) => (a.AsUInt32() * b.AsUInt32()).AsByte();
    [MethodImpl(Inline)]
    public static V Pmulhw(V a, V b) => Sse2.IsSupported ? Sse2.MultiplyHigh(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Pmulhw(a, b);
    [MethodImpl(Inline)]
    public static V Pmulhuw(V a, V b) => Sse2.IsSupported ? Sse2.MultiplyHigh(a.AsUInt16(), b.AsUInt16()).AsByte() : Portable.Pmulhuw(a, b);
    [MethodImpl(Inline)]
    public static V Pmuludq(V a, V b)
    {
        var m = Vector128.Create(0xFFFF_FFFFUL);
        return ((a.AsUInt64() & m) * (b.AsUInt64() & m)).AsByte();
    }
    [MethodImpl(Inline)]
    public static V Pmuldq(V a, V b) => Sse41.IsSupported ? Sse41.Multiply(a.AsInt32(), b.AsInt32()).AsByte() : Portable.Pmuldq(a, b);
    [MethodImpl(Inline)]
    public static V Pmaddwd(V a, V b) => Sse2.IsSupported ? Sse2.MultiplyAddAdjacent(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Pmaddwd(a, b);
    [MethodImpl(Inline)]
    public static V Psadbw(V a, V b) => Sse2.IsSupported ? Sse2.SumAbsoluteDifferences(a, b).AsByte() : Portable.Psadbw(a, b);
    [MethodImpl(Inline)]
    public static V Pavgb(V a, V b) => Sse2.IsSupported ? Sse2.Average(a, b) : Portable.Pavgb(a, b);
    [MethodImpl(Inline)]
    public static V Pavgw(V a, V b) => Sse2.IsSupported ? Sse2.Average(a.AsUInt16(), b.AsUInt16()).AsByte() : Portable.Pavgw(a, b);

    [MethodImpl(Inline)] public static V Pminub(V a, V b) => Vector128.Min(a, b);
    [MethodImpl(Inline)] public static V Pmaxub(V a, V b) => Vector128.Max(a, b);
    [MethodImpl(Inline)] public static V Pminsw(V a, V b) => Vector128.Min(a.AsInt16(), b.AsInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pmaxsw(V a, V b) => Vector128.Max(a.AsInt16(), b.AsInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pminsb(V a, V b) => Vector128.Min(a.AsSByte(), b.AsSByte()).AsByte();
    [MethodImpl(Inline)] public static V Pmaxsb(V a, V b) => Vector128.Max(a.AsSByte(), b.AsSByte()).AsByte();
    [MethodImpl(Inline)] public static V Pminsd(V a, V b) => Vector128.Min(a.AsInt32(), b.AsInt32()).AsByte();
    [MethodImpl(Inline)] public static V Pmaxsd(V a, V b) => Vector128.Max(a.AsInt32(), b.AsInt32()).AsByte();
    [MethodImpl(Inline)] public static V Pminuw(V a, V b) => Vector128.Min(a.AsUInt16(), b.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pmaxuw(V a, V b) => Vector128.Max(a.AsUInt16(), b.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pminud(V a, V b) => Vector128.Min(a.AsUInt32(), b.AsUInt32()).AsByte();
    [MethodImpl(Inline)] public static V Pmaxud(V a, V b) => Vector128.Max(a.AsUInt32(), b.AsUInt32()).AsByte();

    // ---------------- compares ----------------

    [MethodImpl(Inline)] public static V Pcmpeqb(V a, V b) => Vector128.Equals(a, b);
    [MethodImpl(Inline)] public static V Pcmpeqw(V a, V b) => Vector128.Equals(a.AsUInt16(), b.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pcmpeqd(V a, V b) => Vector128.Equals(a.AsUInt32(), b.AsUInt32()).AsByte();
    [MethodImpl(Inline)] public static V Pcmpeqq(V a, V b) => Vector128.Equals(a.AsUInt64(), b.AsUInt64()).AsByte();
    [MethodImpl(Inline)] public static V Pcmpgtb(V a, V b) => Vector128.GreaterThan(a.AsSByte(), b.AsSByte()).AsByte();
    [MethodImpl(Inline)] public static V Pcmpgtw(V a, V b) => Vector128.GreaterThan(a.AsInt16(), b.AsInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pcmpgtd(V a, V b) => Vector128.GreaterThan(a.AsInt32(), b.AsInt32()).AsByte();
    [MethodImpl(Inline)] public static V Pcmpgtq(V a, V b) => Vector128.GreaterThan(a.AsInt64(), b.AsInt64()).AsByte();

    // ---------------- shifts (counts of the element width or more give 0 or sign fill) ----------------

    [MethodImpl(Inline)] public static V Psllw(V a, ulong n) => n > 15 ? V.Zero : Vector128.ShiftLeft(a.AsUInt16(), (int)n).AsByte();
    [MethodImpl(Inline)] public static V Pslld(V a, ulong n) => n > 31 ? V.Zero : Vector128.ShiftLeft(a.AsUInt32(), (int)n).AsByte();
    [MethodImpl(Inline)] public static V Psllq(V a, ulong n) => n > 63 ? V.Zero : Vector128.ShiftLeft(a.AsUInt64(), (int)n).AsByte();
    [MethodImpl(Inline)] public static V Psrlw(V a, ulong n) => n > 15 ? V.Zero : Vector128.ShiftRightLogical(a.AsUInt16(), (int)n).AsByte();
    [MethodImpl(Inline)] public static V Psrld(V a, ulong n) => n > 31 ? V.Zero : Vector128.ShiftRightLogical(a.AsUInt32(), (int)n).AsByte();
    [MethodImpl(Inline)] public static V Psrlq(V a, ulong n) => n > 63 ? V.Zero : Vector128.ShiftRightLogical(a.AsUInt64(), (int)n).AsByte();
    [MethodImpl(Inline)] public static V Psraw(V a, ulong n) => Vector128.ShiftRightArithmetic(a.AsInt16(), (int)Math.Min(n, 15)).AsByte();
    [MethodImpl(Inline)] public static V Psrad(V a, ulong n) => Vector128.ShiftRightArithmetic(a.AsInt32(), (int)Math.Min(n, 31)).AsByte();

    /// <summary>Byte shift left; out-of-range shuffle indices give zero bytes.</summary>
    [MethodImpl(Inline)] public static V Pslldq(V a, byte n) => Vector128.Shuffle(a, s_iota - Vector128.Create(Math.Min(n, (byte)16)));
    [MethodImpl(Inline)] public static V Psrldq(V a, byte n) => Vector128.Shuffle(a, s_iota + Vector128.Create(Math.Min(n, (byte)16)));

    /// <summary>PALIGNR: bytes <paramref name="n"/>… of the 32-byte concatenation dst:src.</summary>
    [MethodImpl(Inline)]
    public static V Palignr(V dst, V src, byte n)
    {
        if (n >= 32) return V.Zero;
        var idx = s_iota + Vector128.Create(n);
        return Vector128.Shuffle(src, idx) | Vector128.Shuffle(dst, idx - Vector128.Create((byte)16));
    }

    // ---------------- shuffles, unpacks, packs ----------------

    [MethodImpl(Inline)]
    public static V Pshufd(V a, byte imm) =>
        Vector128.Shuffle(a.AsUInt32(), Vector128.Create((uint)imm & 3, ((uint)imm >> 2) & 3, ((uint)imm >> 4) & 3, (uint)imm >> 6)).AsByte();
    [MethodImpl(Inline)]
    public static V Pshuflw(V a, byte imm) => Vector128.Shuffle(a.AsUInt16(), Vector128.Create(
        (ushort)(imm & 3), (ushort)((imm >> 2) & 3), (ushort)((imm >> 4) & 3), (ushort)(imm >> 6), 4, 5, 6, 7)).AsByte();
    [MethodImpl(Inline)]
    public static V Pshufhw(V a, byte imm) => Vector128.Shuffle(a.AsUInt16(), Vector128.Create(
        0, 1, 2, 3, (ushort)(4 + (imm & 3)), (ushort)(4 + ((imm >> 2) & 3)), (ushort)(4 + ((imm >> 4) & 3)), (ushort)(4 + (imm >> 6)))).AsByte();
    [MethodImpl(Inline)]
    public static V Shufps(V a, V b, byte imm)
    {
        var x = a.AsUInt32();
        var y = b.AsUInt32();
        return Vector128.Create(x[imm & 3], x[(imm >> 2) & 3], y[(imm >> 4) & 3], y[imm >> 6]).AsByte();
    }
    [MethodImpl(Inline)]
    public static V Shufpd(V a, V b, byte imm) => Vector128.Create(a.AsUInt64()[imm & 1], b.AsUInt64()[(imm >> 1) & 1]).AsByte();

    /// <summary>Interleaves the low (or high) halves of a and b in elements of <paramref name="size"/> bytes.</summary>
    [MethodImpl(Inline)]
    private static V Unpack(V a, V b, int size, bool high)
    {
        if (Sse2.IsSupported)
        {
            return (size, high) switch
            {
                (1, false) => Sse2.UnpackLow(a, b),
                (1, true) => Sse2.UnpackHigh(a, b),
                (2, false) => Sse2.UnpackLow(a.AsUInt16(), b.AsUInt16()).AsByte(),
                (2, true) => Sse2.UnpackHigh(a.AsUInt16(), b.AsUInt16()).AsByte(),
                (4, false) => Sse2.UnpackLow(a.AsUInt32(), b.AsUInt32()).AsByte(),
                (4, true) => Sse2.UnpackHigh(a.AsUInt32(), b.AsUInt32()).AsByte(),
                (_, false) => Sse2.UnpackLow(a.AsUInt64(), b.AsUInt64()).AsByte(),
                (_, true) => Sse2.UnpackHigh(a.AsUInt64(), b.AsUInt64()).AsByte(),
            };
        }
        return Portable.Unpack(a, b, size, high);
    }

    [MethodImpl(Inline)] public static V Punpcklbw(V a, V b) => Unpack(a, b, 1, false);
    [MethodImpl(Inline)] public static V Punpckhbw(V a, V b) => Unpack(a, b, 1, true);
    [MethodImpl(Inline)] public static V Punpcklwd(V a, V b) => Unpack(a, b, 2, false);
    [MethodImpl(Inline)] public static V Punpckhwd(V a, V b) => Unpack(a, b, 2, true);
    [MethodImpl(Inline)] public static V Punpckldq(V a, V b) => Unpack(a, b, 4, false);
    [MethodImpl(Inline)] public static V Punpckhdq(V a, V b) => Unpack(a, b, 4, true);
    [MethodImpl(Inline)] public static V Punpcklqdq(V a, V b) => Unpack(a, b, 8, false);
    [MethodImpl(Inline)] public static V Punpckhqdq(V a, V b) => Unpack(a, b, 8, true);

    [MethodImpl(Inline)]
    public static V Packsswb(V a, V b) => Sse2.IsSupported ? Sse2.PackSignedSaturate(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Packsswb(a, b);
    [MethodImpl(Inline)]
    public static V Packssdw(V a, V b) => Sse2.IsSupported ? Sse2.PackSignedSaturate(a.AsInt32(), b.AsInt32()).AsByte() : Portable.Packssdw(a, b);
    [MethodImpl(Inline)]
    public static V Packuswb(V a, V b) => Sse2.IsSupported ? Sse2.PackUnsignedSaturate(a.AsInt16(), b.AsInt16()) : Portable.Packuswb(a, b);
    [MethodImpl(Inline)]
    public static V Packusdw(V a, V b) => Sse41.IsSupported ? Sse41.PackUnsignedSaturate(a.AsInt32(), b.AsInt32()).AsByte() : Portable.Packusdw(a, b);

    // ---------------- SSSE3 ----------------

    /// <summary>PSHUFB: a set top bit gives zero, otherwise the low four bits index (out-of-range indices shuffle to zero).</summary>
    [MethodImpl(Inline)]
    public static V Pshufb(V a, V b) => Ssse3.IsSupported ? Ssse3.Shuffle(a, b) : Portable.Pshufb(a, b);

    [MethodImpl(Inline)]
    public static V Phaddw(V a, V b) => Ssse3.IsSupported ? Ssse3.HorizontalAdd(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Phaddw(a, b);
    [MethodImpl(Inline)]
    public static V Phaddd(V a, V b) => Ssse3.IsSupported ? Ssse3.HorizontalAdd(a.AsInt32(), b.AsInt32()).AsByte() : Portable.Phaddd(a, b);
    [MethodImpl(Inline)]
    public static V Phaddsw(V a, V b) => Ssse3.IsSupported ? Ssse3.HorizontalAddSaturate(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Phaddsw(a, b);
    [MethodImpl(Inline)]
    public static V Phsubw(V a, V b) => Ssse3.IsSupported ? Ssse3.HorizontalSubtract(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Phsubw(a, b);
    [MethodImpl(Inline)]
    public static V Phsubd(V a, V b) => Ssse3.IsSupported ? Ssse3.HorizontalSubtract(a.AsInt32(), b.AsInt32()).AsByte() : Portable.Phsubd(a, b);
    [MethodImpl(Inline)]
    public static V Phsubsw(V a, V b) => Ssse3.IsSupported ? Ssse3.HorizontalSubtractSaturate(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Phsubsw(a, b);

    /// <summary>PMADDUBSW: unsigned bytes of a times signed bytes of b, adjacent pairs added with signed saturation.</summary>
    [MethodImpl(Inline)]
    public static V Pmaddubsw(V a, V b) => Ssse3.IsSupported ? Ssse3.MultiplyAddAdjacent(a, b.AsSByte()).AsByte() : Portable.Pmaddubsw(a, b);
    [MethodImpl(Inline)]
    public static V Pmulhrsw(V a, V b) => Ssse3.IsSupported ? Ssse3.MultiplyHighRoundScale(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Pmulhrsw(a, b);

    /// <summary>PSIGN: negate where b is negative, zero where b is zero.</summary>
    [MethodImpl(Inline)]
    public static V Psignb(V a, V b) => Ssse3.IsSupported ? Ssse3.Sign(a.AsSByte(), b.AsSByte()).AsByte() : Portable.Psignb(a, b);
    [MethodImpl(Inline)]
    public static V Psignw(V a, V b) => Ssse3.IsSupported ? Ssse3.Sign(a.AsInt16(), b.AsInt16()).AsByte() : Portable.Psignw(a, b);
    [MethodImpl(Inline)]
    public static V Psignd(V a, V b) => Ssse3.IsSupported ? Ssse3.Sign(a.AsInt32(), b.AsInt32()).AsByte() : Portable.Psignd(a, b);
    [MethodImpl(Inline)] public static V Pabsb(V a) => Vector128.Abs(a.AsSByte()).AsByte();
    [MethodImpl(Inline)] public static V Pabsw(V a) => Vector128.Abs(a.AsInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pabsd(V a) => Vector128.Abs(a.AsInt32()).AsByte();

    // ---------------- SSE4.1 ----------------

    [MethodImpl(Inline)]
    public static V Pblendw(V a, V b, byte imm)
    {
        var bits = Vector128.Create((ushort)1, 2, 4, 8, 16, 32, 64, 128);
        var mask = Vector128.Equals(bits & Vector128.Create((ushort)imm), bits);
        return Vector128.ConditionalSelect(mask, b.AsUInt16(), a.AsUInt16()).AsByte();
    }

    [MethodImpl(Inline)] public static V Pblendvb(V a, V b, V mask) => MaskMerge(a, b, mask);

    /// <summary>PTEST: bit 0 = ZF ((a AND b) = 0), bit 1 = CF ((NOT a AND b) = 0).</summary>
    [MethodImpl(Inline)]
    public static uint Ptest(V a, V b) => ((a & b) == V.Zero ? 1u : 0u) | (Vector128.AndNot(b, a) == V.Zero ? 2u : 0u);

    [MethodImpl(Inline)] public static V Pmovzxbw(V a) => Vector128.WidenLower(a).AsByte();
    [MethodImpl(Inline)] public static V Pmovzxbd(V a) => Vector128.WidenLower(Vector128.WidenLower(a)).AsByte();
    [MethodImpl(Inline)] public static V Pmovzxbq(V a) => Vector128.WidenLower(Vector128.WidenLower(Vector128.WidenLower(a))).AsByte();
    [MethodImpl(Inline)] public static V Pmovzxwd(V a) => Vector128.WidenLower(a.AsUInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pmovzxwq(V a) => Vector128.WidenLower(Vector128.WidenLower(a.AsUInt16())).AsByte();
    [MethodImpl(Inline)] public static V Pmovzxdq(V a) => Vector128.WidenLower(a.AsUInt32()).AsByte();
    [MethodImpl(Inline)] public static V Pmovsxbw(V a) => Vector128.WidenLower(a.AsSByte()).AsByte();
    [MethodImpl(Inline)] public static V Pmovsxbd(V a) => Vector128.WidenLower(Vector128.WidenLower(a.AsSByte())).AsByte();
    [MethodImpl(Inline)] public static V Pmovsxbq(V a) => Vector128.WidenLower(Vector128.WidenLower(Vector128.WidenLower(a.AsSByte()))).AsByte();
    [MethodImpl(Inline)] public static V Pmovsxwd(V a) => Vector128.WidenLower(a.AsInt16()).AsByte();
    [MethodImpl(Inline)] public static V Pmovsxwq(V a) => Vector128.WidenLower(Vector128.WidenLower(a.AsInt16())).AsByte();
    [MethodImpl(Inline)] public static V Pmovsxdq(V a) => Vector128.WidenLower(a.AsInt32()).AsByte();

    /// <summary>PHMINPOSUW: the smallest word in lane 0, the index of its first occurrence in bits 18:16, the rest zero.</summary>
    [MethodImpl(Inline)]
    public static V Phminposuw(V a) => Sse41.IsSupported ? Sse41.MinHorizontal(a.AsUInt16()).AsByte() : Portable.Phminposuw(a);

    /// <summary>MPSADBW: eight sums of absolute differences of 4-byte groups sliding over dst against one group of src.</summary>
    public static V Mpsadbw(V dst, V src, byte imm)
    {
        int ao = ((imm >> 2) & 1) * 4, bo = (imm & 3) * 4;
        var r = Vector128<ushort>.Zero;
        for (int i = 0; i < 8; i++)
        {
            int s = 0;
            for (int k = 0; k < 4; k++) s += Math.Abs(dst[ao + i + k] - src[bo + k]);
            r = r.WithElement(i, (ushort)s);
        }
        return r.AsByte();
    }

    // ---------------- SSE4.2 string compares ----------------

    /// <summary>
    /// PCMPxSTRx core. <paramref name="la"/>/<paramref name="lb"/> are the explicit lengths (RAX/RDX or
    /// EAX/EDX sign-extended; absolute value, saturated), unless <paramref name="implicitLengths"/> is
    /// set: then each length is the index of the first zero element. Returns IntRes2 in bits 15:0, CF ZF SF OF in bits 16–19 and the
    /// index (PCMPxSTRI's ECX) in bits 36:32.
    /// </summary>
    /// <remarks>
    /// .NET has no intrinsic for these instructions, and glibc's SSE4.2 string functions run them in
    /// their inner loops, so an SSE4.2 host runs its own PCMPxSTRM through a per-(form, imm8) stub
    /// (<see cref="SimdOps.StringCompareStub"/>); the index and the expanded mask are derived from
    /// IntRes2 here. Other hosts take <see cref="PcmpStrPortable"/>.
    /// </remarks>
    [MethodImpl(Inline)]
    public static unsafe ulong PcmpStr(V a, V b, long la, long lb, byte imm, byte implicitLengths)
    {
        if (!Sse42.X64.IsSupported) return PcmpStrPortable(a, b, la, lb, imm, implicitLengths);
        int key = (implicitLengths != 0 ? 256 : 0) | (imm & ~0x40);
        nint stub = s_stringCompareStubs[key];
        if (stub == 0) stub = NewStringCompareStub(key);
        var f = (delegate* unmanaged[SuppressGCTransition]<ulong, ulong, ulong, ulong, long, long, ulong>)stub;
        ulong r = f(a.AsUInt64().ToScalar(), a.AsUInt64().GetElement(1), b.AsUInt64().ToScalar(), b.AsUInt64().GetElement(1), la, lb);
        uint res2 = (uint)r & 0xFFFF;
        ulong rflags = r >> 16;
        // RFLAGS CF (0), ZF (6), SF (7), OF (11) to bits 0-3 of the packed flags.
        ulong flags = (rflags & 1) | ((rflags >> 5) & 2) | ((rflags >> 5) & 4) | ((rflags >> 8) & 8);
        return res2 | (flags << 16) | (StringIndex(res2, imm) << 32);
    }

    private static readonly nint[] s_stringCompareStubs = new nint[512];

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint NewStringCompareStub(int key) =>
        s_stringCompareStubs[key] = SimdOps.StringCompareStub(explicitLengths: key < 256, (byte)key);

    /// <summary>PCMPxSTRI's index: the least (or, with imm8 bit 6, most) significant set bit of IntRes2, else the element count.</summary>
    [MethodImpl(Inline)]
    private static ulong StringIndex(uint res2, byte imm)
    {
        if (res2 == 0) return (imm & 1) != 0 ? 8UL : 16UL;
        return (imm & 0x40) != 0 ? (ulong)(31 - System.Numerics.BitOperations.LeadingZeroCount(res2))
            : (ulong)System.Numerics.BitOperations.TrailingZeroCount(res2);
    }

    /// <summary>The scalar <see cref="PcmpStr"/> for hosts without SSE4.2, and the tests' reference for the stubs.</summary>
    internal static ulong PcmpStrPortable(V a, V b, long la, long lb, byte imm, byte implicitLengths)
    {
        bool words = (imm & 1) != 0, signed = (imm & 2) != 0;
        int n = words ? 8 : 16;
        int Elem(V v, int k) => (words, signed) switch
        {
            (false, false) => v[k],
            (false, true) => (sbyte)v[k],
            (true, false) => v.AsUInt16()[k],
            _ => v.AsInt16()[k],
        };
        int Length(V v, long explicitLength)
        {
            if (implicitLengths == 0) return (int)Math.Min(Math.Abs(Math.Max(explicitLength, long.MinValue + 1)), n);
            int k = 0;
            while (k < n && Elem(v, k) != 0) k++;
            return k;
        }
        int lenA = Length(a, la), lenB = Length(b, lb);
        int agg = (imm >> 2) & 3;
        uint res1 = 0;
        for (int j = 0; j < n; j++)
        {
            bool bit;
            switch (agg)
            {
                case 0: // equal any
                    bit = false;
                    for (int k = 0; k < lenA && j < lenB; k++) bit |= Elem(a, k) == Elem(b, j);
                    break;
                case 1: // ranges
                    bit = false;
                    for (int k = 0; k + 1 < lenA && j < lenB; k += 2) bit |= Elem(a, k) <= Elem(b, j) && Elem(b, j) <= Elem(a, k + 1);
                    break;
                case 2: // equal each
                    bit = j >= lenA && j >= lenB || j < lenA && j < lenB && Elem(a, j) == Elem(b, j);
                    break;
                default: // equal ordered: a (the needle) matches b at j
                    bit = true;
                    for (int k = 0; k < n - j && k < lenA; k++) bit &= j + k < lenB && Elem(a, k) == Elem(b, j + k);
                    break;
            }
            if (bit) res1 |= 1u << j;
        }
        uint all = (1u << n) - 1, valid = (1u << lenB) - 1;
        uint res2 = ((imm >> 4) & 3) switch
        {
            1 => ~res1 & all,
            3 => (res1 ^ valid) & all,
            _ => res1,
        };
        ulong flags = (res2 != 0 ? 1u : 0) | (lenB < n ? 2u : 0) | (lenA < n ? 4u : 0) | ((res2 & 1) << 3);
        return res2 | (flags << 16) | (StringIndex(res2, imm) << 32);
    }

    /// <summary>PCMPxSTRM's XMM0: IntRes2 as a bit mask, or expanded to byte/word masks when imm8 bit 6 is set.</summary>
    [MethodImpl(Inline)]
    public static V PcmpMask(ulong res, byte imm)
    {
        uint r = (uint)res & 0xFFFF;
        if ((imm & 0x40) == 0) return Vector128.CreateScalar(r).AsByte();
        if ((imm & 1) == 0)
        {
            // Byte k tests bit k: broadcast the low mask byte to bytes 0-7 and the high one to 8-15.
            var spread = Vector128.Shuffle(Vector128.CreateScalar((ushort)r).AsByte(), Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
            var bit = Vector128.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
            return Vector128.Equals(spread & bit, bit);
        }
        var wbit = Vector128.Create((ushort)1, 2, 4, 8, 16, 32, 64, 128);
        return Vector128.Equals(Vector128.Create((ushort)r) & wbit, wbit).AsByte();
    }

    /// <summary>
    /// The portable paths of the operations that use x86 intrinsics when the host has them; public so
    /// the tests can check them against the intrinsics on an x86 host.
    /// </summary>
    internal static class Portable
    {
        /// <summary>Element-wise scalar fallback.</summary>
        private static V Map<T>(V a, V b, Func<T, T, T> f) where T : struct
        {
            var x = a.As<byte, T>();
            var y = b.As<byte, T>();
            var r = x;
            for (int i = 0; i < Vector128<T>.Count; i++) r = r.WithElement(i, f(x.GetElement(i), y.GetElement(i)));
            return r.AsByte();
        }

        /// <summary>Horizontal pairs of 16-bit lanes: a's pairs to the low half, b's to the high half.</summary>
        private static V Horizontal16(V a, V b, Func<short, short, short> f)
        {
            var x = a.AsInt16();
            var y = b.AsInt16();
            var r = Vector128<short>.Zero;
            for (int i = 0; i < 4; i++)
            {
                r = r.WithElement(i, f(x[2 * i], x[2 * i + 1]));
                r = r.WithElement(i + 4, f(y[2 * i], y[2 * i + 1]));
            }
            return r.AsByte();
        }

        private static V Horizontal32(V a, V b, Func<int, int, int> f)
        {
            var x = a.AsInt32();
            var y = b.AsInt32();
            return Vector128.Create(f(x[0], x[1]), f(x[2], x[3]), f(y[0], y[1]), f(y[2], y[3])).AsByte();
        }

        public static V Paddsb(V a, V b) => Map<sbyte>(a, b, static (x, y) => (sbyte)Math.Clamp(x + y, sbyte.MinValue, sbyte.MaxValue));
        public static V Paddsw(V a, V b) => Map<short>(a, b, static (x, y) => (short)Math.Clamp(x + y, short.MinValue, short.MaxValue));
        public static V Paddusb(V a, V b) => Map<byte>(a, b, static (x, y) => (byte)Math.Min(x + y, byte.MaxValue));
        public static V Paddusw(V a, V b) => Map<ushort>(a, b, static (x, y) => (ushort)Math.Min(x + y, ushort.MaxValue));
        public static V Psubsb(V a, V b) => Map<sbyte>(a, b, static (x, y) => (sbyte)Math.Clamp(x - y, sbyte.MinValue, sbyte.MaxValue));
        public static V Psubsw(V a, V b) => Map<short>(a, b, static (x, y) => (short)Math.Clamp(x - y, short.MinValue, short.MaxValue));
        public static V Psubusb(V a, V b) => Map<byte>(a, b, static (x, y) => (byte)Math.Max(x - y, 0));
        public static V Psubusw(V a, V b) => Map<ushort>(a, b, static (x, y) => (ushort)Math.Max(x - y, 0));
        public static V Pmulhw(V a, V b) => Map<short>(a, b, static (x, y) => (short)((x * y) >> 16));
        public static V Pmulhuw(V a, V b) => Map<ushort>(a, b, static (x, y) => (ushort)((uint)(x * y) >> 16));
        public static V Pavgw(V a, V b) => Map<ushort>(a, b, static (x, y) => (ushort)((x + y + 1) >> 1));
        public static V Packsswb(V a, V b) => Vector128.Narrow(Vector128.Clamp(a.AsInt16(), Vector128.Create((short)-128), Vector128.Create((short)127)), Vector128.Clamp(b.AsInt16(), Vector128.Create((short)-128), Vector128.Create((short)127))).AsByte();
        public static V Packssdw(V a, V b) => Vector128.Narrow(Vector128.Clamp(a.AsInt32(), Vector128.Create(-32768), Vector128.Create(32767)), Vector128.Clamp(b.AsInt32(), Vector128.Create(-32768), Vector128.Create(32767))).AsByte();
        public static V Packuswb(V a, V b) => Vector128.Narrow(Vector128.Clamp(a.AsInt16(), Vector128<short>.Zero, Vector128.Create((short)255)), Vector128.Clamp(b.AsInt16(), Vector128<short>.Zero, Vector128.Create((short)255))).AsByte();
        public static V Packusdw(V a, V b) => Vector128.Narrow(Vector128.Clamp(a.AsInt32(), Vector128<int>.Zero, Vector128.Create(65535)), Vector128.Clamp(b.AsInt32(), Vector128<int>.Zero, Vector128.Create(65535))).AsByte();
        public static V Phaddw(V a, V b) => Horizontal16(a, b, static (x, y) => (short)(x + y));
        public static V Phaddd(V a, V b) => Horizontal32(a, b, static (x, y) => x + y);
        public static V Phaddsw(V a, V b) => Horizontal16(a, b, static (x, y) => (short)Math.Clamp(x + y, short.MinValue, short.MaxValue));
        public static V Phsubw(V a, V b) => Horizontal16(a, b, static (x, y) => (short)(x - y));
        public static V Phsubd(V a, V b) => Horizontal32(a, b, static (x, y) => x - y);
        public static V Phsubsw(V a, V b) => Horizontal16(a, b, static (x, y) => (short)Math.Clamp(x - y, short.MinValue, short.MaxValue));
        public static V Pmulhrsw(V a, V b) => Map<short>(a, b, static (x, y) => (short)((((x * y) >> 14) + 1) >> 1));
        public static V Psignb(V a, V b) => Map<sbyte>(a, b, static (x, y) => (sbyte)(y < 0 ? -x : y == 0 ? 0 : x));
        public static V Psignw(V a, V b) => Map<short>(a, b, static (x, y) => (short)(y < 0 ? -x : y == 0 ? 0 : x));
        public static V Psignd(V a, V b) => Map<int>(a, b, static (x, y) => y < 0 ? -x : y == 0 ? 0 : x);
        public static V Pmuldq(V a, V b)
        {
            var x = Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(a.AsInt64(), 32), 32);
            var y = Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(b.AsInt64(), 32), 32);
            return (x * y).AsByte();
        }
        public static V Pmaddwd(V a, V b)
        {
            var x = a.AsInt16();
            var y = b.AsInt16();
            var r = Vector128<int>.Zero;
            for (int i = 0; i < 4; i++)
                r = r.WithElement(i, (int)(x[2 * i] * y[2 * i] + (uint)(x[2 * i + 1] * y[2 * i + 1])));
            return r.AsByte();
        }
        public static V Psadbw(V a, V b)
        {
            ulong lo = 0, hi = 0;
            for (int i = 0; i < 8; i++) lo += (ulong)Math.Abs(a[i] - b[i]);
            for (int i = 8; i < 16; i++) hi += (ulong)Math.Abs(a[i] - b[i]);
            return Vector128.Create(lo, hi).AsByte();
        }
        public static V Pavgb(V a, V b) => Map<byte>(a, b, static (x, y) => (byte)((x + y + 1) >> 1));
        public static V Unpack(V a, V b, int size, bool high)
        {
            var r = V.Zero;
            for (int j = 0; j < 16; j++)
            {
                int elem = j / size, k = elem / 2 + (high ? 8 / size : 0);
                r = r.WithElement(j, (elem % 2 == 0 ? a : b)[k * size + j % size]);
            }
            return r;
        }
        public static V Pshufb(V a, V b) => Vector128.Shuffle(a, b & Vector128.Create((byte)0x8F));
        public static V Pmaddubsw(V a, V b)
        {
            var y = b.AsSByte();
            var r = Vector128<short>.Zero;
            for (int i = 0; i < 8; i++)
                r = r.WithElement(i, (short)Math.Clamp(a[2 * i] * y[2 * i] + a[2 * i + 1] * y[2 * i + 1], short.MinValue, short.MaxValue));
            return r.AsByte();
        }
        public static V Phminposuw(V a)
        {
            var w = a.AsUInt16();
            int idx = 0;
            for (int i = 1; i < 8; i++) if (w[i] < w[idx]) idx = i;
            return Vector128.CreateScalar((uint)w[idx] | ((uint)idx << 16)).AsByte();
        }
    }
}
