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
/// (AESENC AESENCLAST AESDEC AESDECLAST AESIMC AESKEYGENASSIST). CRC32 and PCLMULQDQ have portable
/// fallbacks; AES-NI is #UD on a host without it.
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
        {
            NeedAes();
            l.WriteOp(i, 0, l.CallPure(s_aesimc, V128, SseMove.Src(l, i, 1, V128)));
        });
        t.Add(Mnemonic.Aeskeygenassist, (Lifter l, in Instruction i) =>
        {
            NeedAes();
            l.WriteOp(i, 0, l.CallPure(s_keygen, V128, SseMove.Src(l, i, 1, V128), l.B.I32(i.Immediate8)));
        });
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

    private static void NeedAes()
    {
        if (!X86Aes.IsSupported) throw new LiftException("AES-NI is not available on this host");
    }

    private static void Round(Lifter l, in Instruction i, int op)
    {
        NeedAes();
        l.WriteOp(i, 0, l.CallPure(op, V128, l.ReadOp(i, 0, V128), SseMove.Src(l, i, 1, V128)));
    }

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
    public static Vector128<byte> AesEnc(Vector128<byte> s, Vector128<byte> k) => X86Aes.Encrypt(s, k);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesEncLast(Vector128<byte> s, Vector128<byte> k) => X86Aes.EncryptLast(s, k);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesDec(Vector128<byte> s, Vector128<byte> k) => X86Aes.Decrypt(s, k);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesDecLast(Vector128<byte> s, Vector128<byte> k) => X86Aes.DecryptLast(s, k);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> AesImc(Vector128<byte> s) => X86Aes.InverseMixColumns(s);

    /// <summary>AESKEYGENASSIST with RCON 0 (a constant immediate for the intrinsic), then RCON xored into dwords 1 and 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> KeygenAssist(Vector128<byte> s, uint rcon) =>
        (X86Aes.KeygenAssist(s, 0).AsUInt32() ^ Vector128.Create(0, rcon & 0xFF, 0, rcon & 0xFF)).AsByte();
}
