// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Runtime;
using static Jitvmx.Ir.IrType;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace Jitvmx.Lifting;

/// <summary>
/// SSE4.2 CRC32 (CRC-32C of 8/16/32/64-bit sources), PCLMULQDQ and the AES-NI round instructions
/// (AESENC AESENCLAST AESDEC AESDECLAST AESIMC AESKEYGENASSIST), on the host's instructions where it has
/// them, else on portable table code.
/// </summary>
[InstructionFamily]
internal static class CryptoCrc
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Crc32, Crc32);
        t.Add(Mnemonic.Pclmulqdq, (Lifter l, in Instruction i) =>
            l.WriteOp(i, 0, l.CallPure(s_pclmul, V128, l.ReadOp(i, 0, V128), SseMove.Src(l, i, 1, V128), l.B.I32(i.Immediate8))));
        t.Add(Mnemonic.Aesenc, (Lifter l, in Instruction i) => Round(l, i, s_aesenc));
        t.Add(Mnemonic.Aesenclast, (Lifter l, in Instruction i) => Round(l, i, s_aesenclast));
        t.Add(Mnemonic.Aesdec, (Lifter l, in Instruction i) => Round(l, i, s_aesdec));
        t.Add(Mnemonic.Aesdeclast, (Lifter l, in Instruction i) => Round(l, i, s_aesdeclast));
        t.Add(Mnemonic.Aesimc, (Lifter l, in Instruction i) =>
            l.WriteOp(i, 0, l.CallPure(s_aesimc, V128, SseMove.Src(l, i, 1, V128))));
        t.Add(Mnemonic.Aeskeygenassist, (Lifter l, in Instruction i) =>
            l.WriteOp(i, 0, l.CallPure(s_keygen, V128, SseMove.Src(l, i, 1, V128), l.B.I32(i.Immediate8))));
    }

    private static int Op(string name) => Helpers.Register(typeof(CryptoOps), name, pure: true);
    private static readonly int s_crc8 = Op(nameof(CryptoOps.Crc8));
    private static readonly int s_crc16 = Op(nameof(CryptoOps.Crc16));
    private static readonly int s_crc32 = Op(nameof(CryptoOps.Crc32));
    private static readonly int s_crc64 = Op(nameof(CryptoOps.Crc64));
    private static readonly int s_pclmul = Op(nameof(CryptoOps.Pclmul));
    private static readonly int s_aesenc = Op(nameof(CryptoOps.AesEnc));
    private static readonly int s_aesenclast = Op(nameof(CryptoOps.AesEncLast));
    private static readonly int s_aesdec = Op(nameof(CryptoOps.AesDec));
    private static readonly int s_aesdeclast = Op(nameof(CryptoOps.AesDecLast));
    private static readonly int s_aesimc = Op(nameof(CryptoOps.AesImc));
    private static readonly int s_keygen = Op(nameof(CryptoOps.KeygenAssist));

    private static void Round(Lifter l, in Instruction i, int op) =>
        l.WriteOp(i, 0, l.CallPure(op, V128, l.ReadOp(i, 0, V128), SseMove.Src(l, i, 1, V128)));

    /// <summary>CRC32: the accumulator is the low 32 bits of the destination; the result zero-extends (also in the r64 forms).</summary>
    private static void Crc32(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var acc = l.ReadOp(i, 0);
        IrValue r = src.Type switch
        {
            I8 => l.CallPure(s_crc8, I32, b.Trunc(acc, I32), b.ZExt(src, I32)),
            I16 => l.CallPure(s_crc16, I32, b.Trunc(acc, I32), b.ZExt(src, I32)),
            I32 => l.CallPure(s_crc32, I32, b.Trunc(acc, I32), src),
            _ => l.CallPure(s_crc64, I64, b.ZExt(b.Trunc(acc, I32), I64), src),
        };
        l.WriteOp(i, 0, r.Type == I64 ? r : acc.Type == I64 ? b.ZExt(r, I64) : r);
    }
}

/// <summary>Pure helpers of <see cref="CryptoCrc"/>.</summary>
internal static class CryptoOps
{
    private static readonly uint[] s_crcTable = BuildCrcTable();

    private static uint[] BuildCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1;
            t[n] = c;
        }
        return t;
    }

    private static uint Soft(uint crc, ulong data, int bytes)
    {
        for (int k = 0; k < bytes; k++, data >>= 8) crc = s_crcTable[(byte)(crc ^ data)] ^ (crc >> 8);
        return crc;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Crc8(uint crc, uint data) => Sse42.IsSupported ? Sse42.Crc32(crc, (byte)data) : Soft(crc, data, 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Crc16(uint crc, uint data) => Sse42.IsSupported ? Sse42.Crc32(crc, (ushort)data) : Soft(crc, data, 2);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Crc32(uint crc, uint data) => Sse42.IsSupported ? Sse42.Crc32(crc, data) : Soft(crc, data, 4);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Crc64(ulong crc, ulong data) => Sse42.X64.IsSupported ? Sse42.X64.Crc32(crc, data) : Soft((uint)crc, data, 8);

    /// <summary>PCLMULQDQ: imm8 bit 0 picks the destination's quadword, bit 4 the source's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> Pclmul(Vector128<byte> a, Vector128<byte> b, uint imm)
    {
        ulong x = a.AsUInt64().GetElement((int)(imm & 1)), y = b.AsUInt64().GetElement((int)((imm >> 4) & 1));
        if (Pclmulqdq.IsSupported)
            return Pclmulqdq.CarrylessMultiply(Vector128.CreateScalar(x), Vector128.CreateScalar(y), 0).AsByte();
        ulong lo = 0, hi = 0;
        for (int k = 0; k < 64; k++)
            if ((y >> k & 1) != 0)
            {
                lo ^= x << k;
                if (k != 0) hi ^= x >> (64 - k);
            }
        return Vector128.Create(lo, hi).AsByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesEnc(Vector128<byte> s, Vector128<byte> k) => X86Aes.IsSupported ? X86Aes.Encrypt(s, k) : AesSoft.Round(s, k, true, true);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesEncLast(Vector128<byte> s, Vector128<byte> k) => X86Aes.IsSupported ? X86Aes.EncryptLast(s, k) : AesSoft.Round(s, k, true, false);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesDec(Vector128<byte> s, Vector128<byte> k) => X86Aes.IsSupported ? X86Aes.Decrypt(s, k) : AesSoft.Round(s, k, false, true);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesDecLast(Vector128<byte> s, Vector128<byte> k) => X86Aes.IsSupported ? X86Aes.DecryptLast(s, k) : AesSoft.Round(s, k, false, false);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesImc(Vector128<byte> s) => X86Aes.IsSupported ? X86Aes.InverseMixColumns(s) : AesSoft.InvMixColumns(s);

    /// <summary>AESKEYGENASSIST with RCON 0 (a constant immediate for the intrinsic), then RCON xored into dwords 1 and 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> KeygenAssist(Vector128<byte> s, uint rcon) =>
        ((X86Aes.IsSupported ? X86Aes.KeygenAssist(s, 0) : AesSoft.KeygenAssist(s)).AsUInt32() ^ Vector128.Create(0, rcon & 0xFF, 0, rcon & 0xFF)).AsByte();
}

/// <summary>Portable AES round primitives (FIPS-197) with AES-NI's operand conventions: byte 4c+r is row r of column c.</summary>
internal static class AesSoft
{
    private static readonly byte[] s_sbox = new byte[256], s_inv = new byte[256];

    static AesSoft()
    {
        // S-box from the multiplicative inverse (p walks GF(2^8) by ×3, q by ×3⁻¹) and the affine map.
        byte p = 1, q = 1;
        do
        {
            p = (byte)(p ^ (p << 1) ^ ((p & 0x80) != 0 ? 0x1B : 0));
            q ^= (byte)(q << 1);
            q ^= (byte)(q << 2);
            q ^= (byte)(q << 4);
            if ((q & 0x80) != 0) q ^= 0x09;
            int x = q ^ Rotl(q, 1) ^ Rotl(q, 2) ^ Rotl(q, 3) ^ Rotl(q, 4);
            s_sbox[p] = (byte)(x ^ 0x63);
        } while (p != 1);
        s_sbox[0] = 0x63;
        for (int k = 0; k < 256; k++) s_inv[s_sbox[k]] = (byte)k;
    }

    private static byte Rotl(byte v, int n) => (byte)((v << n) | (v >> (8 - n)));

    private static byte Mul(byte a, int b)
    {
        int r = 0, x = a;
        for (; b != 0; b >>= 1, x = (x << 1) ^ ((x & 0x80) != 0 ? 0x11B : 0))
            if ((b & 1) != 0) r ^= x;
        return (byte)r;
    }

    private static void Mix(Span<byte> s, int c0, int c1, int c2, int c3)
    {
        Span<byte> a = stackalloc byte[4];
        for (int c = 0; c < 4; c++)
        {
            s.Slice(4 * c, 4).CopyTo(a);
            for (int r = 0; r < 4; r++)
                s[4 * c + r] = (byte)(Mul(a[r], c0) ^ Mul(a[(r + 1) & 3], c1) ^ Mul(a[(r + 2) & 3], c2) ^ Mul(a[(r + 3) & 3], c3));
        }
    }

    /// <summary>AESENC/AESENCLAST (<paramref name="encrypt"/>) or AESDEC/AESDECLAST; <paramref name="mix"/> false for the last round.</summary>
    public static Vector128<byte> Round(Vector128<byte> state, Vector128<byte> key, bool encrypt, bool mix)
    {
        Span<byte> s = stackalloc byte[16], t = stackalloc byte[16];
        state.CopyTo(s);
        var box = encrypt ? s_sbox : s_inv;
        for (int c = 0; c < 4; c++)
            for (int r = 0; r < 4; r++)
                t[4 * c + r] = box[s[r + 4 * ((encrypt ? c + r : c - r + 4) & 3)]];
        if (mix)
        {
            if (encrypt) Mix(t, 2, 3, 1, 1);
            else Mix(t, 14, 11, 13, 9);
        }
        return Vector128.Create((ReadOnlySpan<byte>)t) ^ key;
    }

    /// <summary>AESIMC.</summary>
    public static Vector128<byte> InvMixColumns(Vector128<byte> v)
    {
        Span<byte> s = stackalloc byte[16];
        v.CopyTo(s);
        Mix(s, 14, 11, 13, 9);
        return Vector128.Create((ReadOnlySpan<byte>)s);
    }

    private static uint SubWord(uint w) =>
        s_sbox[w & 0xFF] | (uint)s_sbox[(w >> 8) & 0xFF] << 8 | (uint)s_sbox[(w >> 16) & 0xFF] << 16 | (uint)s_sbox[w >> 24] << 24;

    /// <summary>AESKEYGENASSIST with RCON 0.</summary>
    public static Vector128<byte> KeygenAssist(Vector128<byte> v)
    {
        uint x1 = SubWord(v.AsUInt32().GetElement(1)), x3 = SubWord(v.AsUInt32().GetElement(3));
        return Vector128.Create(x1, uint.RotateRight(x1, 8), x3, uint.RotateRight(x3, 8)).AsByte();
    }
}
