// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// Shifts and rotates: SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR (by 1, imm8 or CL) and SHLD/SHRD.
/// The count is masked to 5 bits (6 for 64-bit operands); a masked count of 0 leaves the flags
/// alone but still writes the destination (a 32-bit register is zero-extended, a read-only page
/// faults), as the hardware does. Undefined flags follow what Intel hosts produce: AF = 1 after
/// a shift, OF from the same formula as for a count of 1.
/// </summary>
[InstructionFamily]
internal static class Shifts
{
    private enum Kind { Shl, Shr, Sar, Rol, Ror, Rcl, Rcr }

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Shl, Mnemonic.Shl, Mnemonic.Sal);
        t.Add(Mnemonic.Shr, Shr);
        t.Add(Mnemonic.Sar, Sar);
        t.Add(Mnemonic.Rol, Rol);
        t.Add(Mnemonic.Ror, Ror);
        t.Add(Mnemonic.Rcl, Rcl);
        t.Add(Mnemonic.Rcr, Rcr);
        t.Add(Mnemonic.Shld, Shld);
        t.Add(Mnemonic.Shrd, Shrd);
    }

    private static void Shl(Lifter l, in Instruction i) => Shift(l, i, Kind.Shl);
    private static void Shr(Lifter l, in Instruction i) => Shift(l, i, Kind.Shr);
    private static void Sar(Lifter l, in Instruction i) => Shift(l, i, Kind.Sar);
    private static void Rol(Lifter l, in Instruction i) => Shift(l, i, Kind.Rol);
    private static void Ror(Lifter l, in Instruction i) => Shift(l, i, Kind.Ror);
    private static void Rcl(Lifter l, in Instruction i) => Shift(l, i, Kind.Rcl);
    private static void Rcr(Lifter l, in Instruction i) => Shift(l, i, Kind.Rcr);
    private static void Shld(Lifter l, in Instruction i) => DoubleShift(l, i, left: true);
    private static void Shrd(Lifter l, in Instruction i) => DoubleShift(l, i, left: false);

    /// <summary>The count operand masked to 5 or 6 bits, as I64.</summary>
    private static IrValue Count(Lifter l, in Instruction i, int n, int width) =>
        l.B.ZExt(l.B.And(l.ReadOp(i, n, I8), l.B.I8(width == 64 ? 63UL : 31UL)), I64);

    /// <summary>Reads the destination once (its address too, for the write-back).</summary>
    private static IrValue ReadDest(Lifter l, in Instruction i, out IrValue? address)
    {
        address = Lifter.IsMem(i, 0) ? l.Address(i) : null;
        return address is null ? l.ReadReg(i.Op0Register) : l.Load(Lifter.OpType(i, 0), address);
    }

    private static void WriteDest(Lifter l, in Instruction i, IrValue? address, IrValue v)
    {
        if (address is null) l.WriteReg(i.Op0Register, v);
        else l.Store(address, v);
    }

    private static void Shift(Lifter l, in Instruction i, Kind k)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        int w = t.Bits();
        // The count is read first: SHL CL, CL shifts by the old CL.
        var c = Count(l, i, 1, w);
        var x = ReadDest(l, i, out var address);
        IrValue res, cf, of;
        IrValue one = b.I64(1), m63 = b.I64(63);
        switch (k)
        {
            case Kind.Shl:
                if (w < 64)
                {
                    // In 64 bits the last bit shifted out lands at bit w (0 when the count exceeds w).
                    var r = b.Shl(b.ZExt(x, I64), c);
                    res = b.Trunc(r, t);
                    cf = b.BitOf(r, w);
                }
                else
                {
                    res = b.Shl(x, c);
                    cf = b.Trunc(b.LShr(x, b.And(b.Sub(b.I64(64), c), m63)), I1);
                }
                of = b.Xor(b.SignOf(res), cf);
                break;
            case Kind.Shr or Kind.Sar:
            {
                var wide = k == Kind.Shr ? b.ZExt(x, I64) : b.SExt(x, I64);
                res = b.Trunc(k == Kind.Shr ? b.LShr(wide, c) : b.AShr(wide, c), t);
                cf = b.Trunc(b.LShr(wide, b.And(b.Sub(c, one), m63)), I1);
                // MSB(res) ^ MSB-1(res): the original sign for a count of 1 (SDM), 0 beyond (Intel).
                of = k == Kind.Shr ? b.Xor(b.SignOf(res), b.BitOf(res, w - 2)) : b.Bool(false);
                break;
            }
            case Kind.Rol or Kind.Ror:
            {
                var n = b.Trunc(b.And(c, b.I64((ulong)w - 1)), t);
                res = b.Binary(k == Kind.Rol ? IrOp.Rotl : IrOp.Rotr, x, n);
                cf = k == Kind.Rol ? b.BitOf(res, 0) : b.SignOf(res);
                of = k == Kind.Rol ? b.Xor(b.SignOf(res), cf) : b.Xor(b.SignOf(res), b.BitOf(res, w - 2));
                break;
            }
            default:
                (res, cf) = RotateThroughCarry(l, x, c, k == Kind.Rcl);
                of = k == Kind.Rcl ? b.Xor(b.SignOf(res), cf) : b.Xor(b.SignOf(res), b.BitOf(res, w - 2));
                break;
        }
        var zero = b.IsZero(c);
        WriteDest(l, i, address, b.Select(zero, x, res));
        SetFlag(l, zero, Flag.CF, cf);
        SetFlag(l, zero, Flag.OF, of);
        if (k is Kind.Shl or Kind.Shr or Kind.Sar) SetShiftFlags(l, zero, res);
        l.ForgetFlagProducer();
    }

    /// <summary>RCL/RCR: a (w+1)-bit rotate of CF:x by the count modulo w+1. Returns the result and the new CF.</summary>
    private static (IrValue Result, IrValue Cf) RotateThroughCarry(Lifter l, IrValue x, IrValue c, bool left)
    {
        var b = l.B;
        var t = x.Type;
        int w = t.Bits();
        var cf64 = b.ZExt(b.GetFlag(Flag.CF), I64);
        if (w < 64)
        {
            // CF:x fits in 33 bits; rotating within w+1 bits never needs a shift of 64 or more.
            var n = w < 32 ? b.Binary(IrOp.URem, c, b.I64((ulong)w + 1)) : c;
            var v = b.Or(b.Shl(cf64, b.I64((ulong)w)), b.ZExt(x, I64));
            var back = b.Sub(b.I64((ulong)w + 1), n);
            var r = left ? b.Or(b.Shl(v, n), b.LShr(v, back)) : b.Or(b.LShr(v, n), b.Shl(v, back));
            return (b.Trunc(r, t), b.BitOf(r, w));
        }
        // 65-bit rotate by 1..63 (0 is selected away by the caller); 65 − n is split as (64 − n) + 1.
        IrValue m63 = b.I64(63), one = b.I64(1);
        var inv = b.And(b.Sub(b.I64(64), c), m63);
        var less = b.And(b.Sub(c, one), m63);
        if (left)
        {
            var res = b.Or(b.Or(b.Shl(x, c), b.Shl(cf64, less)), b.LShr(b.LShr(x, inv), one));
            return (res, b.Trunc(b.LShr(x, inv), I1));
        }
        var rr = b.Or(b.Or(b.LShr(x, c), b.Shl(cf64, inv)), b.Shl(b.Shl(x, inv), one));
        return (rr, b.Trunc(b.LShr(x, less), I1));
    }

    /// <summary>
    /// SHLD/SHRD. A 16-bit shift by more than 16 is undefined; Intel shifts through a second copy of
    /// the source (dest:src:src for SHLD, src:src:dest for SHRD), which is what this produces.
    /// </summary>
    private static void DoubleShift(Lifter l, in Instruction i, bool left)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        int w = t.Bits();
        var c = Count(l, i, 2, w);
        var src = l.ReadReg(i.Op1Register);
        var x = ReadDest(l, i, out var address);
        IrValue res, cf;
        IrValue m63 = b.I64(63), one = b.I64(1);
        var inv = b.And(b.Sub(b.I64((ulong)w), c), m63);
        if (w == 64)
        {
            res = left ? b.Or(b.Shl(x, c), b.LShr(src, inv)) : b.Or(b.LShr(x, c), b.Shl(src, inv));
            cf = left ? b.Trunc(b.LShr(x, inv), I1) : b.Trunc(b.LShr(x, b.And(b.Sub(c, one), m63)), I1);
        }
        else
        {
            // A 48-bit (16-bit operands) or 64-bit window: shift right by (window − w − c) for SHLD, c for SHRD.
            IrValue xs = b.ZExt(x, I64), ss = b.ZExt(src, I64), v;
            int window;
            if (w == 16)
            {
                window = 48;
                v = left ? b.Or(b.Or(b.Shl(xs, b.I64(32)), b.Shl(ss, b.I64(16))), ss)
                         : b.Or(b.Or(b.Shl(ss, b.I64(32)), b.Shl(ss, b.I64(16))), xs);
            }
            else
            {
                window = 64;
                v = left ? b.Or(b.Shl(xs, b.I64(32)), ss) : b.Or(b.Shl(ss, b.I64(32)), xs);
            }
            var amount = left ? b.Sub(b.I64((ulong)(window - w)), c) : c;
            res = b.Trunc(b.LShr(v, amount), t);
            // The last bit shifted out sits just past the result: above it for SHLD, below it for SHRD.
            var outBit = left ? b.And(b.Add(amount, b.I64((ulong)w)), m63) : b.And(b.Sub(c, one), m63);
            cf = b.Trunc(b.LShr(v, outBit), I1);
        }
        var of = left ? b.Xor(b.SignOf(res), cf) : b.Xor(b.SignOf(res), b.BitOf(res, w - 2));
        var zero = b.IsZero(c);
        WriteDest(l, i, address, b.Select(zero, x, res));
        SetFlag(l, zero, Flag.CF, cf);
        SetFlag(l, zero, Flag.OF, of);
        SetShiftFlags(l, zero, res);
        l.ForgetFlagProducer();
    }

    /// <summary>SF, ZF, PF from the result and AF = 1 (undefined; Intel sets it), unless the count is 0.</summary>
    private static void SetShiftFlags(Lifter l, IrValue zero, IrValue res)
    {
        var b = l.B;
        SetFlag(l, zero, Flag.ZF, b.IsZero(res));
        SetFlag(l, zero, Flag.SF, b.SignOf(res));
        SetFlag(l, zero, Flag.PF, b.Unary(IrOp.Parity, b.Trunc(res, I8)));
        SetFlag(l, zero, Flag.AF, b.Bool(true));
    }

    /// <summary>Writes a flag unless <paramref name="keep"/> holds.</summary>
    private static void SetFlag(Lifter l, IrValue keep, Flag f, IrValue v)
    {
        if (IrBuilder.IsConst(keep, out ulong k))
        {
            if (k == 0) l.B.SetFlag(f, v);
            return;
        }
        l.B.SetFlag(f, l.B.Select(keep, l.B.GetFlag(f), v));
    }
}
