// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// Multiplication and division: MUL, IMUL (one, two and three operands), DIV, IDIV. Division
/// raises #DE (divisor 0, quotient out of range) before any register is written; the IL backend
/// divides with raw .NET division, so no faulting operand pair ever reaches an IR divide.
/// </summary>
[InstructionFamily]
internal static class MulDiv
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Mul, Mul);
        t.Add(Mnemonic.Imul, Imul);
        t.Add(Mnemonic.Div, Div);
        t.Add(Mnemonic.Idiv, Idiv);
    }

    private static void Mul(Lifter l, in Instruction i) => WideMul(l, i, signed: false);

    private static void Imul(Lifter l, in Instruction i)
    {
        if (i.OpCount == 1)
        {
            WideMul(l, i, signed: true);
            return;
        }
        // IMUL r, r/m (dest × src) or IMUL r, r/m, imm (src × imm): the low half, CF = OF = truncated.
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var x = l.ReadOp(i, i.OpCount == 2 ? 0 : 1, t);
        var y = l.ReadOp(i, i.OpCount == 2 ? 1 : 2, t);
        var lo = b.Binary(IrOp.Mul, x, y);
        var hi = b.Binary(IrOp.SMulHi, x, y);
        l.WriteOp(i, 0, lo);
        MulFlags(l, lo, b.Ne(hi, b.AShr(lo, b.Const(t, (ulong)t.Bits() - 1))));
    }

    /// <summary>One-operand MUL/IMUL: AX = AL × src, or rDX:rAX = rAX × src.</summary>
    private static void WideMul(Lifter l, in Instruction i, bool signed)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var src = l.ReadOp(i, 0, t);
        if (t == I8)
        {
            // The product fits 16 bits: compute it there and split AH:AL.
            var al = l.ReadReg(Register.AL);
            var p = signed ? b.Binary(IrOp.Mul, b.SExt(al, I16), b.SExt(src, I16)) : b.Binary(IrOp.Mul, b.ZExt(al, I16), b.ZExt(src, I16));
            l.WriteReg(Register.AX, p);
            var lo8 = b.Trunc(p, I8);
            var wide = signed ? b.Ne(p, b.SExt(lo8, I16)) : b.Ne(p, b.ZExt(lo8, I16));
            MulFlags(l, lo8, wide);
            return;
        }
        var (rax, rdx) = Pair(t);
        var a = l.ReadReg(rax);
        var lo = b.Binary(IrOp.Mul, a, src);
        var hi = b.Binary(signed ? IrOp.SMulHi : IrOp.UMulHi, a, src);
        l.WriteReg(rax, lo);
        l.WriteReg(rdx, hi);
        var overflow = signed ? b.Ne(hi, b.AShr(lo, b.Const(t, (ulong)t.Bits() - 1))) : b.Ne(hi, b.Const(t, 0));
        MulFlags(l, lo, overflow);
    }

    /// <summary>CF = OF = the product does not fit the destination; SF ZF PF (undefined) follow the low half, AF (undefined) is cleared.</summary>
    private static void MulFlags(Lifter l, IrValue lo, IrValue overflow)
    {
        var b = l.B;
        b.SetFlag(Flag.CF, overflow);
        b.SetFlag(Flag.OF, overflow);
        b.SetFlag(Flag.AF, b.Bool(false));
        l.SetZSP(lo);
        l.ForgetFlagProducer();
    }

    private static (Register Lo, Register Hi) Pair(IrType t) => t switch
    {
        I16 => (Register.AX, Register.DX),
        I32 => (Register.EAX, Register.EDX),
        _ => (Register.RAX, Register.RDX),
    };

    /// <summary>DIV: AX / src8 → AL, AH; rDX:rAX / src → rAX, rDX. Flags (undefined) are left as they were.</summary>
    private static void Div(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var d = l.ReadOp(i, 0, t);
        if (t == I8)
        {
            var ax = l.ReadReg(Register.AX);
            // The quotient fits 8 bits exactly when AH < divisor (which also excludes 0).
            l.RaiseExceptionIf(b.Binary(IrOp.Ule, d, l.ReadReg(Register.AH)), ExceptionVector.DE);
            var d16 = b.ZExt(d, I16);
            var q = b.Trunc(b.Binary(IrOp.UDiv, ax, d16), I8);
            var r = b.Trunc(b.Binary(IrOp.URem, ax, d16), I8);
            l.WriteReg(Register.AX, b.Or(b.ZExt(q, I16), b.Shl(b.ZExt(r, I16), b.Const(I16, 8))));
            return;
        }
        var (rax, rdx) = Pair(t);
        var lo = l.ReadReg(rax);
        var hi = l.ReadReg(rdx);
        // rDX:rAX / d fits the width exactly when rDX < d (which also excludes 0).
        l.RaiseExceptionIf(b.Binary(IrOp.Ule, d, hi), ExceptionVector.DE);
        IrValue quot, rem;
        if (t == I64)
        {
            quot = b.Call(HelperId.UDiv128Quotient, I64, hi, lo, d);
            rem = b.Call(HelperId.UDiv128Remainder, I64, hi, lo, d);
        }
        else
        {
            var n = b.Or(b.Shl(b.ZExt(hi, I64), b.I64((ulong)t.Bits())), b.ZExt(lo, I64));
            var d64 = b.ZExt(d, I64);
            quot = b.Trunc(b.Binary(IrOp.UDiv, n, d64), t);
            rem = b.Trunc(b.Binary(IrOp.URem, n, d64), t);
        }
        l.WriteReg(rax, quot);
        l.WriteReg(rdx, rem);
    }

    /// <summary>IDIV: signed DIV; the quotient truncates toward zero and the remainder takes the dividend's sign.</summary>
    private static void Idiv(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var d = l.ReadOp(i, 0, t);
        if (t == I64)
        {
            var lo64 = l.Gpr(GuestRegister.Rax);
            var hi64 = l.Gpr(GuestRegister.Rdx);
            l.RaiseExceptionIf(b.Ne(b.Call(HelperId.SDiv128Faults, I64, hi64, lo64, d), b.I64(0)), ExceptionVector.DE);
            var q64 = b.Call(HelperId.SDiv128Quotient, I64, hi64, lo64, d);
            var r64 = b.Call(HelperId.SDiv128Remainder, I64, hi64, lo64, d);
            l.SetGpr(GuestRegister.Rax, q64);
            l.SetGpr(GuestRegister.Rdx, r64);
            return;
        }

        // Widths up to 32: the dividend (16, 32 or 64 bits wide) as a signed 64-bit value.
        IrValue n;
        if (t == I8) n = b.SExt(l.ReadReg(Register.AX), I64);
        else
        {
            var (rax, rdx) = Pair(t);
            var joined = b.Or(b.Shl(b.ZExt(l.ReadReg(rdx), I64), b.I64((ulong)t.Bits())), b.ZExt(l.ReadReg(rax), I64));
            n = t == I32 ? joined : b.SExt(b.Trunc(joined, I32), I64);
        }
        var dv = b.SExt(d, I64);
        // Divisor 0 faults, and so does INT64_MIN / −1 (only EDX:EAX can hold it); .NET would throw on
        // both, so the divide below sees a harmless divisor when either holds and the fault is raised anyway.
        var bad = b.IsZero(dv);
        if (t == I32) bad = b.Or(bad, b.And(b.Eq(n, b.I64(1UL << 63)), b.Eq(dv, b.I64(ulong.MaxValue))));
        var safe = b.Select(bad, b.I64(1), dv);
        var q = b.Binary(IrOp.SDiv, n, safe);
        var r = b.Binary(IrOp.SRem, n, safe);
        var qt = b.Trunc(q, t);
        l.RaiseExceptionIf(b.Or(bad, b.Ne(b.SExt(qt, I64), q)), ExceptionVector.DE);
        var rt = b.Trunc(r, t);
        if (t == I8)
        {
            l.WriteReg(Register.AX, b.Or(b.ZExt(qt, I16), b.Shl(b.ZExt(rt, I16), b.Const(I16, 8))));
            return;
        }
        var (qa, rd) = Pair(t);
        l.WriteReg(qa, qt);
        l.WriteReg(rd, rt);
    }
}
