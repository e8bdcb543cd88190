// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;
using static Jitvmx.Lifting.EmitterTable;

namespace Jitvmx.Lifting;

/// <summary>
/// SSE2 packed integer arithmetic, compares, logic, shifts, shuffles, unpacks and packs, the
/// mask extractions, PINSRW/PEXTRW, and the float-domain logic and shuffle operations (bitwise the
/// same, no MXCSR involvement). Each is one pure vector helper from <see cref="SimdIntOps"/>; the
/// memory operand of a packed form must be 16-byte aligned. MMX forms stay #UD.
/// </summary>
[InstructionFamily]
internal static class SseInteger
{
    public static void RegisterFamily(EmitterTable t)
    {
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Paddb), Named(Mnemonic.Paddw), Named(Mnemonic.Paddd), Named(Mnemonic.Paddq), Named(Mnemonic.Psubb), Named(Mnemonic.Psubw),
            Named(Mnemonic.Psubd), Named(Mnemonic.Psubq),
            Named(Mnemonic.Paddsb), Named(Mnemonic.Paddsw), Named(Mnemonic.Paddusb), Named(Mnemonic.Paddusw), Named(Mnemonic.Psubsb), Named(Mnemonic.Psubsw),
            Named(Mnemonic.Psubusb), Named(Mnemonic.Psubusw),
            Named(Mnemonic.Pmullw), Named(Mnemonic.Pmulhw), Named(Mnemonic.Pmulhuw), Named(Mnemonic.Pmuludq), Named(Mnemonic.Pmaddwd), Named(Mnemonic.Psadbw),
            Named(Mnemonic.Pavgb), Named(Mnemonic.Pavgw),
            Named(Mnemonic.Pminub), Named(Mnemonic.Pmaxub), Named(Mnemonic.Pminsw), Named(Mnemonic.Pmaxsw), Named(Mnemonic.Pcmpeqb), Named(Mnemonic.Pcmpeqw),
            Named(Mnemonic.Pcmpeqd), Named(Mnemonic.Pcmpgtb), Named(Mnemonic.Pcmpgtw), Named(Mnemonic.Pcmpgtd),
            Named(Mnemonic.Punpcklbw), Named(Mnemonic.Punpckhbw), Named(Mnemonic.Punpcklwd), Named(Mnemonic.Punpckhwd), Named(Mnemonic.Punpckldq), Named(Mnemonic.Punpckhdq),
            Named(Mnemonic.Punpcklqdq), Named(Mnemonic.Punpckhqdq),
            Named(Mnemonic.Packsswb), Named(Mnemonic.Packssdw), Named(Mnemonic.Packuswb)])
            Binary(t, m, name);
        foreach (var m in (Mnemonic[])[Mnemonic.Pand, Mnemonic.Andps, Mnemonic.Andpd]) Binary(t, m, nameof(SimdIntOps.And));
        foreach (var m in (Mnemonic[])[Mnemonic.Pandn, Mnemonic.Andnps, Mnemonic.Andnpd]) Binary(t, m, nameof(SimdIntOps.AndNot));
        foreach (var m in (Mnemonic[])[Mnemonic.Por, Mnemonic.Orps, Mnemonic.Orpd]) Binary(t, m, nameof(SimdIntOps.Or));
        foreach (var m in (Mnemonic[])[Mnemonic.Pxor, Mnemonic.Xorps, Mnemonic.Xorpd]) Binary(t, m, nameof(SimdIntOps.Xor));
        Binary(t, Mnemonic.Unpcklps, nameof(SimdIntOps.Punpckldq));
        Binary(t, Mnemonic.Unpckhps, nameof(SimdIntOps.Punpckhdq));
        Binary(t, Mnemonic.Unpcklpd, nameof(SimdIntOps.Punpcklqdq));
        Binary(t, Mnemonic.Unpckhpd, nameof(SimdIntOps.Punpckhqdq));
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Psllw), Named(Mnemonic.Pslld), Named(Mnemonic.Psllq), Named(Mnemonic.Psrlw), Named(Mnemonic.Psrld), Named(Mnemonic.Psrlq),
            Named(Mnemonic.Psraw), Named(Mnemonic.Psrad)])
        {
            int op = SseMove.Op(name);
            t.Add(m, (Lifter l, in Instruction i) => Shift(l, i, op));
        }
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Pslldq), Named(Mnemonic.Psrldq), Named(Mnemonic.Pshufd), Named(Mnemonic.Pshufhw), Named(Mnemonic.Pshuflw)])
            UnaryImm(t, m, name);
        BinaryImm(t, Mnemonic.Shufps, nameof(SimdIntOps.Shufps));
        BinaryImm(t, Mnemonic.Shufpd, nameof(SimdIntOps.Shufpd));
        t.Add(Mnemonic.Pmovmskb, (Lifter l, in Instruction i) => Mask(l, i, s_pmovmskb));
        t.Add(Mnemonic.Movmskps, (Lifter l, in Instruction i) => Mask(l, i, s_movmskps));
        t.Add(Mnemonic.Movmskpd, (Lifter l, in Instruction i) => Mask(l, i, s_movmskpd));
        t.Add(Mnemonic.Pinsrw, (Lifter l, in Instruction i) => InsertLane(l, i, 2));
        t.Add(Mnemonic.Pextrw, (Lifter l, in Instruction i) => ExtractLane(l, i, 2));
    }

    private static readonly int s_pmovmskb = SseMove.Op(nameof(SimdIntOps.Pmovmskb));
    private static readonly int s_movmskps = SseMove.Op(nameof(SimdIntOps.Movmskps));
    private static readonly int s_movmskpd = SseMove.Op(nameof(SimdIntOps.Movmskpd));
    private static readonly int s_insert = SseMove.Op(nameof(SimdIntOps.Insert));
    private static readonly int s_extract = SseMove.Op(nameof(SimdIntOps.Extract));

    // ================= shapes shared with the SSSE3/SSE4.1 family =================

    /// <summary>dst = op(dst, src).</summary>
    internal static void Binary(EmitterTable t, Mnemonic m, string name)
    {
        int op = SseMove.Op(name);
        t.Add(m, (Lifter l, in Instruction i) =>
        {
            SseMove.NoMmx(i);
            var src = SseMove.Src(l, i, 1, V128);
            l.WriteOp(i, 0, l.CallPure(op, V128, l.ReadOp(i, 0, V128), src));
        });
    }

    /// <summary>dst = op(dst, src, imm8).</summary>
    internal static void BinaryImm(EmitterTable t, Mnemonic m, string name)
    {
        int op = SseMove.Op(name);
        t.Add(m, (Lifter l, in Instruction i) =>
        {
            SseMove.NoMmx(i);
            var src = SseMove.Src(l, i, 1, V128);
            l.WriteOp(i, 0, l.CallPure(op, V128, l.ReadOp(i, 0, V128), src, l.B.I8(i.Immediate8)));
        });
    }

    /// <summary>dst = op(src, imm8): the byte shifts (two operands) work on dst in place, the shuffles read xmm/m128.</summary>
    internal static void UnaryImm(EmitterTable t, Mnemonic m, string name)
    {
        int op = SseMove.Op(name);
        t.Add(m, (Lifter l, in Instruction i) =>
        {
            SseMove.NoMmx(i);
            var src = SseMove.Src(l, i, i.OpCount == 2 ? 0 : 1, V128);
            l.WriteOp(i, 0, l.CallPure(op, V128, src, l.B.I8(i.Immediate8)));
        });
    }

    /// <summary>dst = op(src).</summary>
    internal static void Unary(EmitterTable t, Mnemonic m, string name)
    {
        int op = SseMove.Op(name);
        t.Add(m, (Lifter l, in Instruction i) =>
        {
            SseMove.NoMmx(i);
            l.WriteOp(i, 0, l.CallPure(op, V128, SseMove.Src(l, i, 1, V128)));
        });
    }

    /// <summary>Element shifts by imm8 or by the low quadword of an XMM register or m128.</summary>
    private static void Shift(Lifter l, in Instruction i, int op)
    {
        SseMove.NoMmx(i);
        var count = i.Op1Kind == OpKind.Immediate8 ? l.B.I64(i.Immediate8) : l.B.Trunc(SseMove.Src(l, i, 1, V128), I64);
        l.WriteOp(i, 0, l.CallPure(op, V128, l.ReadOp(i, 0, V128), count));
    }

    /// <summary>Sign-bit masks into a 32/64-bit GPR (zero-extended).</summary>
    private static void Mask(Lifter l, in Instruction i, int op)
    {
        SseMove.NoMmx(i);
        var m = l.CallPure(op, I32, l.ReadOp(i, 1, V128));
        l.WriteOp(i, 0, Lifter.OpType(i, 0) == I64 ? l.B.ZExt(m, I64) : m);
    }

    /// <summary>PINSRB/W/D/Q: lane imm8 (masked to the lane count) of dst from a GPR or memory.</summary>
    internal static void InsertLane(Lifter l, in Instruction i, int size)
    {
        SseMove.NoMmx(i);
        var v = l.ReadOp(i, 1);
        if (v.Type != I64) v = l.B.ZExt(v, I64);
        l.WriteOp(i, 0, l.CallPure(s_insert, V128, l.ReadOp(i, 0, V128), v, l.B.I8((ulong)size), l.B.I8(i.Immediate8)));
    }

    /// <summary>PEXTRB/W/D/Q: lane imm8 (masked) into a zero-extended GPR or to memory at the lane size.</summary>
    internal static void ExtractLane(Lifter l, in Instruction i, int size)
    {
        SseMove.NoMmx(i);
        var v = l.CallPure(s_extract, I64, l.ReadOp(i, 1, V128), l.B.I8((ulong)size), l.B.I8(i.Immediate8));
        var t = Lifter.IsMem(i, 0) ? IrTypes.FromBytes(size) : Lifter.OpType(i, 0);
        l.WriteOp(i, 0, t == I64 ? v : l.B.Trunc(v, t));
    }
}
