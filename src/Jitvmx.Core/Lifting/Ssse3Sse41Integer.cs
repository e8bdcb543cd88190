// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;
using static Jitvmx.Lifting.EmitterTable;

namespace Jitvmx.Lifting;

/// <summary>
/// SSSE3 (PSHUFB PALIGNR horizontal add/sub, PMADDUBSW PMULHRSW PSIGN PABS), the SSE4.1 integer
/// instructions (min/max, PMULLD PMULDQ PCMPEQQ blends PTEST PMOVZX/PMOVSX PACKUSDW PINSR/PEXTR
/// PHMINPOSUW MPSADBW) and SSE4.2 PCMPGTQ and the string compares PCMPESTRI/M PCMPISTRI/M. MMX forms of the SSSE3 instructions stay #UD.
/// </summary>
[InstructionFamily]
internal static class Ssse3Sse41Integer
{
    public static void RegisterFamily(EmitterTable t)
    {
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Pshufb), Named(Mnemonic.Phaddw), Named(Mnemonic.Phaddd), Named(Mnemonic.Phaddsw), Named(Mnemonic.Phsubw), Named(Mnemonic.Phsubd),
            Named(Mnemonic.Phsubsw), Named(Mnemonic.Pmaddubsw), Named(Mnemonic.Pmulhrsw),
            Named(Mnemonic.Psignb), Named(Mnemonic.Psignw), Named(Mnemonic.Psignd), Named(Mnemonic.Pminsb), Named(Mnemonic.Pminsd), Named(Mnemonic.Pminuw),
            Named(Mnemonic.Pminud), Named(Mnemonic.Pmaxsb), Named(Mnemonic.Pmaxsd), Named(Mnemonic.Pmaxuw), Named(Mnemonic.Pmaxud),
            Named(Mnemonic.Pmulld), Named(Mnemonic.Pmuldq), Named(Mnemonic.Pcmpeqq), Named(Mnemonic.Pcmpgtq), Named(Mnemonic.Packusdw)])
            SseInteger.Binary(t, m, name);
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Pabsb), Named(Mnemonic.Pabsw), Named(Mnemonic.Pabsd), Named(Mnemonic.Phminposuw)])
            SseInteger.Unary(t, m, name);
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Palignr), Named(Mnemonic.Pblendw), Named(Mnemonic.Mpsadbw)])
            SseInteger.BinaryImm(t, m, name);
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Pmovzxbw), Named(Mnemonic.Pmovzxbd), Named(Mnemonic.Pmovzxbq), Named(Mnemonic.Pmovzxwd), Named(Mnemonic.Pmovzxwq), Named(Mnemonic.Pmovzxdq),
            Named(Mnemonic.Pmovsxbw), Named(Mnemonic.Pmovsxbd), Named(Mnemonic.Pmovsxbq), Named(Mnemonic.Pmovsxwd), Named(Mnemonic.Pmovsxwq), Named(Mnemonic.Pmovsxdq)])
        {
            int op = SseMove.Op(name);
            t.Add(m, (Lifter l, in Instruction i) => Widen(l, i, op));
        }
        t.Add(Mnemonic.Pblendvb, Pblendvb);
        t.Add(Mnemonic.Ptest, Ptest);
        t.Add(Mnemonic.Pinsrb, (Lifter l, in Instruction i) => SseInteger.InsertLane(l, i, 1));
        t.Add(Mnemonic.Pinsrd, (Lifter l, in Instruction i) => SseInteger.InsertLane(l, i, 4));
        t.Add(Mnemonic.Pinsrq, (Lifter l, in Instruction i) => SseInteger.InsertLane(l, i, 8));
        t.Add(Mnemonic.Pextrb, (Lifter l, in Instruction i) => SseInteger.ExtractLane(l, i, 1));
        t.Add(Mnemonic.Pextrd, (Lifter l, in Instruction i) => SseInteger.ExtractLane(l, i, 4));
        t.Add(Mnemonic.Pextrq, (Lifter l, in Instruction i) => SseInteger.ExtractLane(l, i, 8));
        t.Add(Code.Pcmpestri_xmm_xmmm128_imm8, (Lifter l, in Instruction i) => StringCompare(l, i, Register.EAX, Register.EDX, false));
        t.Add(Code.Pcmpestri64_xmm_xmmm128_imm8, (Lifter l, in Instruction i) => StringCompare(l, i, Register.RAX, Register.RDX, false));
        t.Add(Code.Pcmpestrm_xmm_xmmm128_imm8, (Lifter l, in Instruction i) => StringCompare(l, i, Register.EAX, Register.EDX, true));
        t.Add(Code.Pcmpestrm64_xmm_xmmm128_imm8, (Lifter l, in Instruction i) => StringCompare(l, i, Register.RAX, Register.RDX, true));
        t.Add(Code.Pcmpistri_xmm_xmmm128_imm8, (Lifter l, in Instruction i) => StringCompare(l, i, Register.None, Register.None, false));
        t.Add(Code.Pcmpistrm_xmm_xmmm128_imm8, (Lifter l, in Instruction i) => StringCompare(l, i, Register.None, Register.None, true));
    }

    private static readonly int s_pblendvb = SseMove.Op(nameof(SimdIntOps.Pblendvb));
    private static readonly int s_ptest = SseMove.Op(nameof(SimdIntOps.Ptest));
    private static readonly int s_pcmpStr = SseMove.Op(nameof(SimdIntOps.PcmpStr));
    private static readonly int s_pcmpMask = SseMove.Op(nameof(SimdIntOps.PcmpMask));

    /// <summary>PMOVZX/PMOVSX: the source is an XMM register or only as many bytes of memory as are widened (no alignment).</summary>
    private static void Widen(Lifter l, in Instruction i, int op)
    {
        var src = Lifter.IsMem(i, 1) ? l.B.ZExt(Widened(l, i), V128) : l.ReadOp(i, 1, V128);
        l.WriteOp(i, 0, l.CallPure(op, V128, src));
    }

    private static IrValue Widened(Lifter l, in Instruction i)
    {
        var v = l.ReadOp(i, 1); // m64, m32 or m16
        return v.Type == I16 ? l.B.ZExt(v, I32) : v;
    }

    /// <summary>PBLENDVB: the mask is XMM0 implicitly.</summary>
    private static void Pblendvb(Lifter l, in Instruction i)
    {
        var src = SseMove.Src(l, i, 1, V128);
        l.WriteOp(i, 0, l.CallPure(s_pblendvb, V128, l.ReadOp(i, 0, V128), src, l.B.GetXmm(0)));
    }

    /// <summary>PTEST: ZF and CF from the AND and ANDN of the operands; AF OF PF SF cleared.</summary>
    private static void Ptest(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = SseMove.Src(l, i, 1, V128);
        var r = l.CallPure(s_ptest, I32, l.ReadOp(i, 0, V128), src);
        b.SetFlag(Flag.ZF, b.Ne(b.And(r, b.I32(1)), b.I32(0)));
        b.SetFlag(Flag.CF, b.Ne(b.And(r, b.I32(2)), b.I32(0)));
        foreach (var f in (Flag[])[Flag.AF, Flag.OF, Flag.PF, Flag.SF]) b.SetFlag(f, b.Bool(false));
        l.ForgetFlagProducer();
    }

    /// <summary>
    /// PCMPESTRI/M and PCMPISTRI/M (no alignment requirement). Explicit lengths come from
    /// <paramref name="la"/>/<paramref name="lb"/>; the index goes to ECX, the mask to XMM0.
    /// CF ZF SF OF as the SDM defines them, AF and PF cleared.
    /// </summary>
    private static void StringCompare(Lifter l, in Instruction i, Register la, Register lb, bool mask)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1, V128);
        var dst = l.ReadOp(i, 0, V128);
        bool isImplicit = la == Register.None;
        IrValue Len(Register r) => isImplicit ? b.I64(0) : r.GetSize() == 8 ? l.ReadReg(r) : b.SExt(l.ReadReg(r), I64);
        var imm = b.I8(i.Immediate8);
        var r = l.CallPure(s_pcmpStr, I64, dst, src, Len(la), Len(lb), imm, b.I8(isImplicit ? 1UL : 0));
        if (mask) b.SetXmm(0, l.CallPure(s_pcmpMask, V128, r, imm));
        else l.WriteReg(Register.ECX, b.Trunc(b.LShr(r, b.I64(32)), I32));
        IrValue Bit(int n) => b.Ne(b.And(r, b.I64(1UL << n)), b.I64(0));
        b.SetFlag(Flag.CF, Bit(16));
        b.SetFlag(Flag.ZF, Bit(17));
        b.SetFlag(Flag.SF, Bit(18));
        b.SetFlag(Flag.OF, Bit(19));
        b.SetFlag(Flag.AF, b.Bool(false));
        b.SetFlag(Flag.PF, b.Bool(false));
        l.ForgetFlagProducer();
    }
}
