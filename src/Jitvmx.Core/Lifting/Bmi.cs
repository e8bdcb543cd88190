// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// BMI1/BMI2/ADX: ANDN BEXTR BLSI BLSR BLSMSK BZHI PDEP PEXT SARX SHLX SHRX RORX MULX ADCX ADOX.
/// All are 32- or 64-bit; sources (one of which may be memory) are read before any write.
/// Undefined flags: AF and SF cleared, PF from the result (BEXTR: AF set), as on Intel hosts.
/// </summary>
[InstructionFamily]
internal static class Bmi
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Andn, Andn);
        t.Add(Mnemonic.Bextr, Bextr);
        t.Add(Mnemonic.Blsi, Blsi);
        t.Add(Mnemonic.Blsr, Blsr);
        t.Add(Mnemonic.Blsmsk, Blsmsk);
        t.Add(Mnemonic.Bzhi, Bzhi);
        t.Add(Mnemonic.Pdep, Pdep);
        t.Add(Mnemonic.Pext, Pext);
        t.Add(Mnemonic.Sarx, Sarx);
        t.Add(Mnemonic.Shlx, Shlx);
        t.Add(Mnemonic.Shrx, Shrx);
        t.Add(Mnemonic.Rorx, Rorx);
        t.Add(Mnemonic.Mulx, Mulx);
        t.Add(Mnemonic.Adcx, Adcx);
        t.Add(Mnemonic.Adox, Adox);
    }

    private static void Andn(Lifter l, in Instruction i)
    {
        var b = l.B;
        var res = b.And(b.Not(l.ReadOp(i, 1)), l.ReadOp(i, 2));
        l.WriteReg(i.Op0Register, res);
        Flags(l, res, cf: b.Bool(false), zf: b.IsZero(res), sf: b.SignOf(res));
    }

    /// <summary>BEXTR: LEN bits from START, with the source zero-extended indefinitely (START or LEN past the width is allowed).</summary>
    private static void Bextr(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var ctl = l.ReadOp(i, 2);
        var t = src.Type;
        int w = t.Bits();
        var start = b.And(ctl, b.Const(t, 0xFF));
        var len = b.And(b.LShr(ctl, b.Const(t, 8)), b.Const(t, 0xFF));
        var width = b.Const(t, (ulong)w);
        var shifted = b.Select(b.Ult(start, width), b.LShr(src, b.And(start, b.Const(t, (ulong)w - 1))), b.Const(t, 0));
        var res = b.And(shifted, LowMask(l, len));
        l.WriteReg(i.Op0Register, res);
        Flags(l, res, cf: b.Bool(false), zf: b.IsZero(res), sf: b.Bool(false), af: b.Bool(true));
    }

    /// <summary>(1 &lt;&lt; n) − 1 of n's type; all ones when n ≥ width.</summary>
    private static IrValue LowMask(Lifter l, IrValue n)
    {
        var b = l.B;
        var t = n.Type;
        int w = t.Bits();
        var m = b.Sub(b.Shl(b.Const(t, 1), b.And(n, b.Const(t, (ulong)w - 1))), b.Const(t, 1));
        return b.Select(b.Ult(n, b.Const(t, (ulong)w)), m, b.Const(t, t.Mask()));
    }

    private static void Blsi(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var res = b.And(b.Unary(IrOp.Neg, src), src);
        l.WriteReg(i.Op0Register, res);
        Flags(l, res, cf: b.NotBool(b.IsZero(src)), zf: b.IsZero(res), sf: b.SignOf(res));
    }

    private static void Blsr(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var res = b.And(b.Sub(src, b.Const(src.Type, 1)), src);
        l.WriteReg(i.Op0Register, res);
        Flags(l, res, cf: b.IsZero(src), zf: b.IsZero(res), sf: b.SignOf(res));
    }

    private static void Blsmsk(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var res = b.Xor(b.Sub(src, b.Const(src.Type, 1)), src);
        l.WriteReg(i.Op0Register, res);
        Flags(l, res, cf: b.IsZero(src), zf: b.Bool(false), sf: b.SignOf(res));
    }

    /// <summary>BZHI: clears the bits from INDEX[7:0] up; CF when the index is past the top bit.</summary>
    private static void Bzhi(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var t = src.Type;
        var n = b.And(l.ReadOp(i, 2), b.Const(t, 0xFF));
        var res = b.And(src, LowMask(l, n));
        l.WriteReg(i.Op0Register, res);
        Flags(l, res, cf: b.NotBool(b.Ult(n, b.Const(t, (ulong)t.Bits()))), zf: b.IsZero(res), sf: b.SignOf(res));
    }

    /// <summary>Flags of the BMI1 logic group: OF = 0, AF and SF as given or cleared, PF from the result.</summary>
    private static void Flags(Lifter l, IrValue res, IrValue cf, IrValue zf, IrValue sf, IrValue? af = null)
    {
        var b = l.B;
        b.SetFlag(Flag.CF, cf);
        b.SetFlag(Flag.ZF, zf);
        b.SetFlag(Flag.SF, sf);
        b.SetFlag(Flag.OF, b.Bool(false));
        b.SetFlag(Flag.AF, af ?? b.Bool(false));
        b.SetFlag(Flag.PF, b.Unary(IrOp.Parity, b.Trunc(res, I8)));
        l.ForgetFlagProducer();
    }

    private static void Pdep(Lifter l, in Instruction i) => Deposit(l, i, HelperId.Pdep);
    private static void Pext(Lifter l, in Instruction i) => Deposit(l, i, HelperId.Pext);

    /// <summary>PDEP/PEXT through the 64-bit helper: zero-extended 32-bit operands give the 32-bit result.</summary>
    private static void Deposit(Lifter l, in Instruction i, HelperId helper)
    {
        var b = l.B;
        var value = l.ReadOp(i, 1);
        var mask = l.ReadOp(i, 2);
        var r = b.Call(helper, I64, b.ZExt(value, I64), b.ZExt(mask, I64));
        l.WriteReg(i.Op0Register, b.Trunc(r, value.Type));
    }

    private static void Sarx(Lifter l, in Instruction i) => ShiftX(l, i, IrOp.AShr);
    private static void Shlx(Lifter l, in Instruction i) => ShiftX(l, i, IrOp.Shl);
    private static void Shrx(Lifter l, in Instruction i) => ShiftX(l, i, IrOp.LShr);

    /// <summary>SARX/SHLX/SHRX: count masked to the width, no flags.</summary>
    private static void ShiftX(Lifter l, in Instruction i, IrOp op)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var t = src.Type;
        var n = b.And(l.ReadOp(i, 2), b.Const(t, (ulong)t.Bits() - 1));
        l.WriteReg(i.Op0Register, b.Binary(op, src, n));
    }

    private static void Rorx(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var t = src.Type;
        l.WriteReg(i.Op0Register, b.Binary(IrOp.Rotr, src, b.Const(t, i.Immediate8 & ((ulong)t.Bits() - 1))));
    }

    /// <summary>MULX hi, lo, src: EDX/RDX × src, no flags; the high half wins when hi and lo are the same register.</summary>
    private static void Mulx(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 2);
        var t = src.Type;
        var d = l.ReadReg(t == I64 ? Register.RDX : Register.EDX);
        var hi = b.Binary(IrOp.UMulHi, d, src);
        var lo = b.Binary(IrOp.Mul, d, src);
        l.WriteReg(i.Op1Register, lo);
        l.WriteReg(i.Op0Register, hi);
    }

    private static void Adcx(Lifter l, in Instruction i) => AddCarry(l, i, Flag.CF);
    private static void Adox(Lifter l, in Instruction i) => AddCarry(l, i, Flag.OF);

    /// <summary>ADCX/ADOX: unsigned add with carry in and out through CF or OF only.</summary>
    private static void AddCarry(Lifter l, in Instruction i, Flag carry)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var dst = l.ReadReg(i.Op0Register);
        var cin = b.GetFlag(carry);
        var res = b.Add(b.Add(dst, src), b.ZExt(cin, dst.Type));
        var cout = b.Or(b.Ult(res, dst), b.And(cin, b.Eq(res, dst)));
        l.WriteReg(i.Op0Register, res);
        b.SetFlag(carry, cout);
        l.ForgetFlagProducer();
    }
}
