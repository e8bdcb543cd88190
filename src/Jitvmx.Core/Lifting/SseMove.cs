// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// SSE/SSE2/SSE3/SSE4.1 data movement between XMM registers, GPRs and memory: full-register moves
/// (aligned forms #GP(0) on a misaligned address), MOVD/MOVQ, the scalar and half-register moves,
/// non-temporal moves (the hint changes nothing here), LDDQU and MASKMOVDQU. Also the operand
/// helpers the other SSE integer families share. MMX forms stay #UD.
/// </summary>
[InstructionFamily]
internal static class SseMove
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Full, Mnemonic.Movaps, Mnemonic.Movups, Mnemonic.Movapd, Mnemonic.Movupd, Mnemonic.Movdqa, Mnemonic.Movdqu,
            Mnemonic.Movntps, Mnemonic.Movntpd, Mnemonic.Movntdq, Mnemonic.Movntdqa, Mnemonic.Lddqu);
        t.Add(MovdMovq, Mnemonic.Movd, Mnemonic.Movq);
        t.Add(Code.Movss_xmm_xmmm32, Movss);
        t.Add(Code.Movss_xmmm32_xmm, Movss);
        // Mnemonic.Movsd is shared with the string move, which Strings registers by its code.
        t.Add(Code.Movsd_xmm_xmmm64, Movsd);
        t.Add(Code.Movsd_xmmm64_xmm, Movsd);
        t.Add(High, Mnemonic.Movhps, Mnemonic.Movhpd);
        t.Add(Low, Mnemonic.Movlps, Mnemonic.Movlpd);
        t.Add(Mnemonic.Movhlps, Movhlps);
        t.Add(Mnemonic.Movlhps, Movlhps);
        t.Add(Mnemonic.Maskmovdqu, Maskmovdqu);
    }

    private static readonly int s_mergeLow32 = Op(nameof(SimdIntOps.MergeLow32));
    private static readonly int s_insertLow64 = Op(nameof(SimdIntOps.InsertLow64));
    private static readonly int s_insertHigh64 = Op(nameof(SimdIntOps.InsertHigh64));
    private static readonly int s_high64 = Op(nameof(SimdIntOps.High64));
    private static readonly int s_maskMerge = Op(nameof(SimdIntOps.MaskMerge));

    // ================= shared by the SSE integer families =================

    /// <summary>Registers the pure helper <c>SimdIntOps.<paramref name="name"/></c>.</summary>
    internal static int Op(string name) => Helpers.Register(typeof(SimdIntOps), name, pure: true);

    /// <summary>MMX encodings (mm registers alias the x87 stack) are not lifted yet: they stay #UD.</summary>
    internal static void NoMmx(in Instruction i)
    {
        for (int n = 0; n < i.OpCount; n++)
            if (i.GetOpKind(n) == OpKind.Register && i.GetOpRegister(n).IsMM())
                throw new LiftException($"MMX form of {i.Mnemonic} is not supported");
    }

    /// <summary>Whether a 16-byte memory operand of this legacy-SSE instruction must be 16-byte aligned.</summary>
    private static bool Aligned(in Instruction i) =>
        i.MemorySize.GetSize() == 16 && i.Mnemonic is not (Mnemonic.Movups or Mnemonic.Movupd or Mnemonic.Movdqu or Mnemonic.Lddqu
            or Mnemonic.Pcmpestri or Mnemonic.Pcmpestrm or Mnemonic.Pcmpistri or Mnemonic.Pcmpistrm);

    /// <summary>The memory operand's address, after the #GP(0) alignment check where the form requires it.</summary>
    internal static IrValue CheckedAddress(Lifter l, in Instruction i)
    {
        var addr = l.Address(i);
        if (Aligned(i))
            l.RaiseExceptionIf(l.B.Ne(l.B.And(addr, l.B.I64(15)), l.B.I64(0)), ExceptionVector.GP);
        return addr;
    }

    /// <summary>Reads operand <paramref name="n"/> as <paramref name="t"/> (an XMM register, a GPR or memory, alignment checked).</summary>
    internal static IrValue Src(Lifter l, in Instruction i, int n, IrType t) =>
        Lifter.IsMem(i, n) ? l.Load(t, CheckedAddress(l, i)) : l.ReadOp(i, n, t);

    /// <summary>Writes operand <paramref name="n"/> (XMM register: a scalar zero-extends; memory: alignment checked).</summary>
    internal static void Dst(Lifter l, in Instruction i, int n, IrValue v)
    {
        if (Lifter.IsMem(i, n)) l.Store(CheckedAddress(l, i), v);
        else l.WriteOp(i, n, v);
    }

    // ================= moves =================

    private static void Full(Lifter l, in Instruction i) => Dst(l, i, 0, Src(l, i, 1, V128));

    private static void MovdMovq(Lifter l, in Instruction i)
    {
        NoMmx(i);
        bool toXmm = i.Op0Kind == OpKind.Register && i.Op0Register.IsXMM();
        // movq xmm, xmm copies the low quadword and zeroes the rest; GPR and memory forms take their own size.
        var t = toXmm ? (i.Op1Kind == OpKind.Register && i.Op1Register.IsXMM() ? I64 : Lifter.OpType(i, 1)) : Lifter.OpType(i, 0);
        l.WriteOp(i, 0, l.ReadOp(i, 1, t));
    }

    private static void Movss(Lifter l, in Instruction i) => Scalar(l, i, I32);
    private static void Movsd(Lifter l, in Instruction i) => Scalar(l, i, I64);

    /// <summary>Register to register merges the low element; a load zeroes the rest; a store writes the element.</summary>
    private static void Scalar(Lifter l, in Instruction i, IrType t)
    {
        if (Lifter.IsMem(i, 0) || Lifter.IsMem(i, 1))
        {
            l.WriteOp(i, 0, l.ReadOp(i, 1, t));
            return;
        }
        var dst = l.ReadOp(i, 0, V128);
        var src = l.ReadOp(i, 1, V128);
        l.WriteOp(i, 0, t == I32 ? l.CallPure(s_mergeLow32, V128, dst, src) : l.CallPure(s_insertLow64, V128, dst, l.B.Trunc(src, I64)));
    }

    /// <summary>MOVHPS/MOVHPD: the high quadword from or to memory.</summary>
    private static void High(Lifter l, in Instruction i)
    {
        if (Lifter.IsMem(i, 0))
        {
            l.WriteOp(i, 0, l.CallPure(s_high64, I64, l.ReadOp(i, 1, V128)));
            return;
        }
        var q = l.ReadOp(i, 1, I64);
        l.WriteOp(i, 0, l.CallPure(s_insertHigh64, V128, l.ReadOp(i, 0, V128), q));
    }

    /// <summary>MOVLPS/MOVLPD: the low quadword from or to memory.</summary>
    private static void Low(Lifter l, in Instruction i)
    {
        if (Lifter.IsMem(i, 0))
        {
            l.WriteOp(i, 0, l.ReadOp(i, 1, I64));
            return;
        }
        var q = l.ReadOp(i, 1, I64);
        l.WriteOp(i, 0, l.CallPure(s_insertLow64, V128, l.ReadOp(i, 0, V128), q));
    }

    private static void Movhlps(Lifter l, in Instruction i) =>
        l.WriteOp(i, 0, l.CallPure(s_insertLow64, V128, l.ReadOp(i, 0, V128), l.CallPure(s_high64, I64, l.ReadOp(i, 1, V128))));

    private static void Movlhps(Lifter l, in Instruction i) =>
        l.WriteOp(i, 0, l.CallPure(s_insertHigh64, V128, l.ReadOp(i, 0, V128), l.ReadOp(i, 1, I64)));

    /// <summary>
    /// MASKMOVDQU: byte-masked store to DS:rDI. Done as a 16-byte read-merge-write, so the whole
    /// 16 bytes must be accessible even where the mask is clear (hardware may skip those bytes).
    /// </summary>
    private static void Maskmovdqu(Lifter l, in Instruction i)
    {
        var b = l.B;
        var rdi = l.Gpr(GuestRegister.Rdi);
        if (i.Op0Kind == OpKind.MemorySegEDI) rdi = b.ZExt(b.Trunc(rdi, I32), I64);
        var addr = l.AddSegmentBase(i.MemorySegment, rdi);
        var old = l.Load(V128, addr);
        l.Store(addr, l.CallPure(s_maskMerge, V128, old, l.ReadOp(i, 1, V128), l.ReadOp(i, 2, V128)));
    }
}
