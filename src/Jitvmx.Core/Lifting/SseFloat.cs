// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// SSE/SSE2/SSE3/SSE4.1 floating point. Operations that depend on MXCSR run through
/// <see cref="SimdOps.Exec"/> (the host instruction under the guest's MXCSR; see SimdOps.Float.cs
/// for why) with C# fast paths for the common cases; exception-free shuffles and blends are C#.
/// The helpers that read and write MXCSR are registered pure: MXCSR is never promoted to a local,
/// so they need no spill, and their results always feed a register write or the #XM check.
/// </summary>
[InstructionFamily]
internal static class SseFloat
{
    private static int Reg(string name) => Helpers.Register(typeof(SimdOps), name, pure: true);

    private static readonly int s_exec = Reg(nameof(SimdOps.Exec));
    private static readonly int s_comis = Reg(nameof(SimdOps.Comis));
    private static readonly int s_cmp = Reg(nameof(SimdOps.Cmp));
    private static readonly int s_cvtsi2sd32 = Reg(nameof(SimdOps.Cvtsi2sd32));
    private static readonly int s_cvtt2si = Reg(nameof(SimdOps.Cvtt2si));
    private static readonly int s_blendImm = Reg(nameof(SimdOps.BlendImm));
    private static readonly int s_blendVar = Reg(nameof(SimdOps.BlendVar));
    private static readonly int s_dupSingles = Reg(nameof(SimdOps.DupSingles));
    private static readonly int s_dupLow = Reg(nameof(SimdOps.DupLow));
    private static readonly int s_insertps = Reg(nameof(SimdOps.Insertps));
    private static readonly int s_extractps = Reg(nameof(SimdOps.Extractps));

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Addps, Addps); t.Add(Mnemonic.Addss, Addss); t.Add(Mnemonic.Addpd, Addpd); t.Add(Mnemonic.Addsd, Addsd);
        t.Add(Mnemonic.Subps, Subps); t.Add(Mnemonic.Subss, Subss); t.Add(Mnemonic.Subpd, Subpd); t.Add(Mnemonic.Subsd, Subsd);
        t.Add(Mnemonic.Mulps, Mulps); t.Add(Mnemonic.Mulss, Mulss); t.Add(Mnemonic.Mulpd, Mulpd); t.Add(Mnemonic.Mulsd, Mulsd);
        t.Add(Mnemonic.Divps, Divps); t.Add(Mnemonic.Divss, Divss); t.Add(Mnemonic.Divpd, Divpd); t.Add(Mnemonic.Divsd, Divsd);
        t.Add(Mnemonic.Minps, Minps); t.Add(Mnemonic.Minss, Minss); t.Add(Mnemonic.Minpd, Minpd); t.Add(Mnemonic.Minsd, Minsd);
        t.Add(Mnemonic.Maxps, Maxps); t.Add(Mnemonic.Maxss, Maxss); t.Add(Mnemonic.Maxpd, Maxpd); t.Add(Mnemonic.Maxsd, Maxsd);
        t.Add(Mnemonic.Sqrtps, Sqrtps); t.Add(Mnemonic.Sqrtss, Sqrtss); t.Add(Mnemonic.Sqrtpd, Sqrtpd); t.Add(Mnemonic.Sqrtsd, Sqrtsd);
        t.Add(Mnemonic.Rcpps, Rcpps); t.Add(Mnemonic.Rcpss, Rcpss); t.Add(Mnemonic.Rsqrtps, Rsqrtps); t.Add(Mnemonic.Rsqrtss, Rsqrtss);
        t.Add(Mnemonic.Cmpps, Cmpps); t.Add(Mnemonic.Cmppd, Cmppd); t.Add(Mnemonic.Cmpss, Cmpss);
        // Mnemonic.Cmpsd is also the string instruction's.
        t.Add(Code.Cmpsd_xmm_xmmm64_imm8, Cmpsd);
        t.Add(Mnemonic.Comiss, Comiss); t.Add(Mnemonic.Comisd, Comisd); t.Add(Mnemonic.Ucomiss, Ucomiss); t.Add(Mnemonic.Ucomisd, Ucomisd);
        t.Add(Mnemonic.Cvtsi2ss, Cvtsi2ss); t.Add(Mnemonic.Cvtsi2sd, Cvtsi2sd);
        t.Add(Mnemonic.Cvtss2si, Cvtss2si); t.Add(Mnemonic.Cvtsd2si, Cvtsd2si); t.Add(Mnemonic.Cvttss2si, Cvttss2si); t.Add(Mnemonic.Cvttsd2si, Cvttsd2si);
        t.Add(Mnemonic.Cvtss2sd, Cvtss2sd); t.Add(Mnemonic.Cvtsd2ss, Cvtsd2ss); t.Add(Mnemonic.Cvtps2pd, Cvtps2pd); t.Add(Mnemonic.Cvtpd2ps, Cvtpd2ps);
        t.Add(Mnemonic.Cvtdq2ps, Cvtdq2ps); t.Add(Mnemonic.Cvtps2dq, Cvtps2dq); t.Add(Mnemonic.Cvttps2dq, Cvttps2dq);
        t.Add(Mnemonic.Cvtdq2pd, Cvtdq2pd); t.Add(Mnemonic.Cvtpd2dq, Cvtpd2dq); t.Add(Mnemonic.Cvttpd2dq, Cvttpd2dq);
        t.Add(Mnemonic.Addsubps, Addsubps); t.Add(Mnemonic.Addsubpd, Addsubpd);
        t.Add(Mnemonic.Haddps, Haddps); t.Add(Mnemonic.Haddpd, Haddpd); t.Add(Mnemonic.Hsubps, Hsubps); t.Add(Mnemonic.Hsubpd, Hsubpd);
        t.Add(Mnemonic.Movsldup, Movsldup); t.Add(Mnemonic.Movshdup, Movshdup); t.Add(Mnemonic.Movddup, Movddup);
        t.Add(Mnemonic.Roundss, Roundss); t.Add(Mnemonic.Roundsd, Roundsd); t.Add(Mnemonic.Roundps, Roundps); t.Add(Mnemonic.Roundpd, Roundpd);
        t.Add(Mnemonic.Dpps, Dpps); t.Add(Mnemonic.Dppd, Dppd);
        t.Add(Mnemonic.Blendps, Blendps); t.Add(Mnemonic.Blendpd, Blendpd); t.Add(Mnemonic.Blendvps, Blendvps); t.Add(Mnemonic.Blendvpd, Blendvpd);
        t.Add(Mnemonic.Insertps, Insertps); t.Add(Mnemonic.Extractps, Extractps);
    }

    private static void Addps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Addps));
    private static void Addss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Addss));
    private static void Addpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Addpd));
    private static void Addsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Addsd));
    private static void Subps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Subps));
    private static void Subss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Subss));
    private static void Subpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Subpd));
    private static void Subsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Subsd));
    private static void Mulps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Mulps));
    private static void Mulss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Mulss));
    private static void Mulpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Mulpd));
    private static void Mulsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Mulsd));
    private static void Divps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Divps));
    private static void Divss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Divss));
    private static void Divpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Divpd));
    private static void Divsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Divsd));
    private static void Minps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Minps));
    private static void Minss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Minss));
    private static void Minpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Minpd));
    private static void Minsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Minsd));
    private static void Maxps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Maxps));
    private static void Maxss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Maxss));
    private static void Maxpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Maxpd));
    private static void Maxsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Maxsd));
    private static void Sqrtps(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Sqrtps));
    private static void Sqrtss(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Sqrtss));
    private static void Sqrtpd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Sqrtpd));
    private static void Sqrtsd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Sqrtsd));
    // RCP/RSQRT signal nothing; the approximation is the host's (the SDM bounds the relative error, not the bits).
    private static void Rcpps(Lifter l, in Instruction i) => Host(l, i);
    private static void Rcpss(Lifter l, in Instruction i) => Host(l, i);
    private static void Rsqrtps(Lifter l, in Instruction i) => Host(l, i);
    private static void Rsqrtss(Lifter l, in Instruction i) => Host(l, i);

    private static void Cmpps(Lifter l, in Instruction i) => Compare(l, i, 0);
    private static void Cmppd(Lifter l, in Instruction i) => Compare(l, i, 1);
    private static void Cmpss(Lifter l, in Instruction i) => Compare(l, i, 2);
    private static void Cmpsd(Lifter l, in Instruction i) => Compare(l, i, 3);

    private static void Comiss(Lifter l, in Instruction i) => OrderedCompare(l, i, false);
    private static void Comisd(Lifter l, in Instruction i) => OrderedCompare(l, i, true);
    private static void Ucomiss(Lifter l, in Instruction i) => OrderedCompare(l, i, false);
    private static void Ucomisd(Lifter l, in Instruction i) => OrderedCompare(l, i, true);

    private static void Cvtsi2ss(Lifter l, in Instruction i) => FromInteger(l, i, s_exec);
    private static void Cvtsi2sd(Lifter l, in Instruction i) => FromInteger(l, i, Lifter.OpSize(i, 1) == 4 ? s_cvtsi2sd32 : s_exec);
    private static void Cvtss2si(Lifter l, in Instruction i) => ToInteger(l, i, truncating: false);
    private static void Cvtsd2si(Lifter l, in Instruction i) => ToInteger(l, i, truncating: false);
    private static void Cvttss2si(Lifter l, in Instruction i) => ToInteger(l, i, truncating: true);
    private static void Cvttsd2si(Lifter l, in Instruction i) => ToInteger(l, i, truncating: true);
    private static void Cvtss2sd(Lifter l, in Instruction i) => Fast(l, i, nameof(SimdOps.Cvtss2sd));
    private static void Cvtsd2ss(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvtps2pd(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvtpd2ps(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvtdq2ps(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvtps2dq(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvttps2dq(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvtdq2pd(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvtpd2dq(Lifter l, in Instruction i) => Host(l, i);
    private static void Cvttpd2dq(Lifter l, in Instruction i) => Host(l, i);

    private static void Addsubps(Lifter l, in Instruction i) => Host(l, i);
    private static void Addsubpd(Lifter l, in Instruction i) => Host(l, i);
    private static void Haddps(Lifter l, in Instruction i) => Host(l, i);
    private static void Haddpd(Lifter l, in Instruction i) => Host(l, i);
    private static void Hsubps(Lifter l, in Instruction i) => Host(l, i);
    private static void Hsubpd(Lifter l, in Instruction i) => Host(l, i);
    private static void Roundss(Lifter l, in Instruction i) => Host(l, i);
    private static void Roundsd(Lifter l, in Instruction i) => Host(l, i);
    private static void Roundps(Lifter l, in Instruction i) => Host(l, i);
    private static void Roundpd(Lifter l, in Instruction i) => Host(l, i);
    private static void Dpps(Lifter l, in Instruction i) => Host(l, i);
    private static void Dppd(Lifter l, in Instruction i) => Host(l, i);

    private static void Movsldup(Lifter l, in Instruction i) => l.WriteXmm(i.Op0Register, l.CallPure(s_dupSingles, V128, Source(l, i, 1), l.B.I64(0)));
    private static void Movshdup(Lifter l, in Instruction i) => l.WriteXmm(i.Op0Register, l.CallPure(s_dupSingles, V128, Source(l, i, 1), l.B.I64(1)));
    private static void Movddup(Lifter l, in Instruction i) => l.WriteXmm(i.Op0Register, l.CallPure(s_dupLow, V128, Source(l, i, 1)));
    private static void Blendps(Lifter l, in Instruction i) => BlendImm(l, i, 32);
    private static void Blendpd(Lifter l, in Instruction i) => BlendImm(l, i, 64);
    private static void Blendvps(Lifter l, in Instruction i) => BlendVar(l, i, 32);
    private static void Blendvpd(Lifter l, in Instruction i) => BlendVar(l, i, 64);

    private static void Insertps(Lifter l, in Instruction i)
    {
        ulong imm = i.Immediate8;
        // The register form picks source element imm[7:6]; the memory form reads one single.
        var s = Source(l, i, 1);
        ulong element = Lifter.IsMem(i, 1) ? 0 : imm >> 6;
        var d = l.ReadXmm(i.Op0Register);
        l.WriteXmm(i.Op0Register, l.CallPure(s_insertps, V128, d, s, l.B.I64(element), l.B.I64(imm)));
    }

    private static void Extractps(Lifter l, in Instruction i)
    {
        var v = l.CallPure(s_extractps, I32, l.ReadXmm(i.Op1Register), l.B.I64(i.Immediate8));
        // A 64-bit destination register receives the single zero-extended.
        if (i.Op0Kind == OpKind.Register && i.Op0Register.GetSize() == 8) v = l.B.ZExt(v, I64);
        l.WriteOp(i, 0, v);
    }

    // ---------------- shared ----------------

    /// <summary>
    /// Operand <paramref name="n"/> as a V128: an XMM register, a 128-bit memory operand (legacy
    /// SSE requires 16-byte alignment: #GP(0) otherwise), or a narrower memory/GPR operand
    /// zero-extended into the low lane.
    /// </summary>
    private static IrValue Source(Lifter l, in Instruction i, int n)
    {
        if (!Lifter.IsMem(i, n))
        {
            var r = i.GetOpRegister(n);
            return r.IsXMM() ? l.ReadXmm(r) : l.B.ZExt(l.ReadReg(r), V128);
        }
        var addr = l.Address(i);
        if (Lifter.OpSize(i, n) == 16)
        {
            l.RaiseExceptionIf(l.B.Ne(l.B.And(addr, l.B.I64(15)), l.B.I64(0)), ExceptionVector.GP);
            return l.Load(V128, addr);
        }
        return l.B.ZExt(l.Load(Lifter.OpType(i, n), addr), V128);
    }

    /// <summary>The immediate operand, or -1.</summary>
    private static int Imm(in Instruction i) => i.OpCount > 2 && i.GetOpKind(i.OpCount - 1) == OpKind.Immediate8 ? i.Immediate8 : -1;

    /// <summary>Key of the host stub running this instruction's encoding on xmm0/xmm1 (or eax/rax): <see cref="SimdOps.StubKey"/>.</summary>
    private static IrValue Op(Lifter l, in Instruction i, Register dst, Register src, SimdOps.StubOutput output) =>
        l.B.I64(SimdOps.StubKey(i.Code, dst, src, Imm(i), output));

    /// <summary>Raises #XM when the helper just flagged an unmasked exception (clearing the marker; the flags it set stay).</summary>
    private static void CheckXm(Lifter l, IrValue? pending = null)
    {
        var fault = l.NewBlock();
        var cont = l.NewBlock();
        l.B.Branch(pending ?? l.B.SignOf(l.B.GetState(I32, StateOffsets.Mxcsr)), fault, cont);
        l.SetBlock(fault);
        var m = l.B.GetState(I32, StateOffsets.Mxcsr);
        l.B.SetState(StateOffsets.Mxcsr, l.B.And(m, l.B.I32(~SimdOps.XmPending)));
        l.RaiseException(ExceptionVector.XM);
        l.SetBlock(cont);
        l.EndsBlock = false;
    }

    /// <summary>xmm ← op(xmm, xmm/m) through a helper with a fast path.</summary>
    private static void Fast(Lifter l, in Instruction i, string helper) =>
        Vector(l, i, Reg(helper), Op(l, i, Register.XMM0, Register.XMM1, SimdOps.StubOutput.Xmm));

    /// <summary>xmm ← op(xmm, xmm/m) always through the host stub.</summary>
    private static void Host(Lifter l, in Instruction i) =>
        Vector(l, i, s_exec, Op(l, i, Register.XMM0, Register.XMM1, SimdOps.StubOutput.Xmm));

    private static void Vector(Lifter l, in Instruction i, int helper, IrValue op, params IrValue[] extra)
    {
        var b = Source(l, i, 1);
        var a = l.ReadXmm(i.Op0Register);
        var r = l.CallPure(helper, V128, [op, a, b, .. extra]);
        CheckXm(l);
        l.WriteXmm(i.Op0Register, r);
    }

    /// <summary>CMPccPS/PD/SS/SD; <paramref name="shape"/> bit 0 double, bit 1 scalar.</summary>
    private static void Compare(Lifter l, in Instruction i, int shape) =>
        Vector(l, i, s_cmp, Op(l, i, Register.XMM0, Register.XMM1, SimdOps.StubOutput.Xmm), l.B.I64((ulong)(shape | (Imm(i) & 7) << 8)));

    /// <summary>(U)COMISS/SD: ZF PF CF from the comparison, OF SF AF cleared.</summary>
    private static void OrderedCompare(Lifter l, in Instruction i, bool isDouble)
    {
        var b = Source(l, i, 1);
        var a = l.ReadXmm(i.Op0Register);
        var op = Op(l, i, Register.XMM0, Register.XMM1, SimdOps.StubOutput.Flags);
        var flags = l.B.Trunc(l.CallPure(s_comis, V128, op, a, b, l.B.I64(isDouble ? 1UL : 0)), I64);
        CheckXm(l, l.B.BitOf(flags, 63));
        l.B.SetFlag(Flag.ZF, l.B.BitOf(flags, 6));
        l.B.SetFlag(Flag.PF, l.B.BitOf(flags, 2));
        l.B.SetFlag(Flag.CF, l.B.BitOf(flags, 0));
        l.B.SetFlag(Flag.OF, l.B.Bool(false));
        l.B.SetFlag(Flag.SF, l.B.Bool(false));
        l.B.SetFlag(Flag.AF, l.B.Bool(false));
        l.ForgetFlagProducer();
    }

    /// <summary>CVTSI2SS/SD: the integer travels in the low lane of the second operand (the stub loads it into eax/rax).</summary>
    private static void FromInteger(Lifter l, in Instruction i, int helper)
    {
        var src = Lifter.OpSize(i, 1) == 8 ? Register.RAX : Register.EAX;
        Vector(l, i, helper, Op(l, i, Register.XMM0, src, SimdOps.StubOutput.Xmm));
    }

    /// <summary>CVT(T)SS2SI/CVT(T)SD2SI: the stub returns eax/rax (integer indefinite on NaN or overflow).</summary>
    private static void ToInteger(Lifter l, in Instruction i, bool truncating)
    {
        var dst = i.Op0Register.GetSize() == 8 ? Register.RAX : Register.EAX;
        var b = Source(l, i, 1);
        var op = Op(l, i, dst, Register.XMM1, SimdOps.StubOutput.Gpr);
        ulong shape = (i.Mnemonic is Mnemonic.Cvttsd2si ? 1UL : 0) | (dst == Register.RAX ? 2UL : 0);
        var call = truncating ? l.CallPure(s_cvtt2si, V128, op, b, b, l.B.I64(shape)) : l.CallPure(s_exec, V128, op, b, b);
        var r = l.B.Trunc(call, dst == Register.RAX ? I64 : I32);
        CheckXm(l);
        l.WriteReg(i.Op0Register, r);
    }

    private static void BlendImm(Lifter l, in Instruction i, int laneBits)
    {
        var b = Source(l, i, 1);
        var a = l.ReadXmm(i.Op0Register);
        l.WriteXmm(i.Op0Register, l.CallPure(s_blendImm, V128, a, b, l.B.I64(i.Immediate8), l.B.I64((ulong)laneBits)));
    }

    private static void BlendVar(Lifter l, in Instruction i, int laneBits)
    {
        var b = Source(l, i, 1);
        var a = l.ReadXmm(i.Op0Register);
        var mask = l.ReadXmm(Register.XMM0);
        l.WriteXmm(i.Op0Register, l.CallPure(s_blendVar, V128, a, b, mask, l.B.I64((ulong)laneBits)));
    }
}
