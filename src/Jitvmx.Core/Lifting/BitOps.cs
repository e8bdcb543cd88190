// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// Bit operations: BT/BTS/BTR/BTC, BSF/BSR, TZCNT/LZCNT, POPCNT, BSWAP. Flags the SDM leaves
/// undefined get the values Intel hosts produce (BT keeps them, BSF/BSR clear them with PF from
/// the result, TZCNT/LZCNT clear SF/PF/AF and keep OF).
/// </summary>
[InstructionFamily]
internal static class BitOps
{
    private enum BitOp { Test, Set, Reset, Complement }

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Bt, Bt);
        t.Add(Mnemonic.Bts, Bts);
        t.Add(Mnemonic.Btr, Btr);
        t.Add(Mnemonic.Btc, Btc);
        t.Add(Mnemonic.Bsf, Bsf);
        t.Add(Mnemonic.Bsr, Bsr);
        t.Add(Mnemonic.Tzcnt, Tzcnt);
        t.Add(Mnemonic.Lzcnt, Lzcnt);
        t.Add(Mnemonic.Popcnt, Popcnt);
        t.Add(Mnemonic.Bswap, Bswap);
    }

    private static void Bt(Lifter l, in Instruction i) => BitTest(l, i, BitOp.Test);
    private static void Bts(Lifter l, in Instruction i) => BitTest(l, i, BitOp.Set);
    private static void Btr(Lifter l, in Instruction i) => BitTest(l, i, BitOp.Reset);
    private static void Btc(Lifter l, in Instruction i) => BitTest(l, i, BitOp.Complement);
    private static void Bsf(Lifter l, in Instruction i) => BitScan(l, i, forward: true);
    private static void Bsr(Lifter l, in Instruction i) => BitScan(l, i, forward: false);
    private static void Tzcnt(Lifter l, in Instruction i) => ZeroCount(l, i, IrOp.Ctz);
    private static void Lzcnt(Lifter l, in Instruction i) => ZeroCount(l, i, IrOp.Clz);

    private static void BitTest(Lifter l, in Instruction i, BitOp op)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        int w = t.Bits();
        IrValue bit;
        IrValue? address = Lifter.IsMem(i, 0) ? l.Address(i) : null;
        if (i.Op1Kind == OpKind.Register)
        {
            var offset = l.ReadReg(i.Op1Register);
            bit = b.And(offset, b.Const(t, (ulong)w - 1));
            // A register offset is signed and reaches beyond the operand: the operand-sized unit
            // holding the bit is at EA + floor(offset / w) * (w / 8).
            if (address is not null)
                address = b.Add(address, b.And(b.AShr(b.SExt(offset, I64), b.I64(3)), b.I64(~((ulong)w / 8 - 1))));
        }
        else
        {
            bit = b.Const(t, i.Immediate8 & ((ulong)w - 1));
        }
        var x = address is null ? l.ReadReg(i.Op0Register) : l.Load(t, address);
        var cf = b.Trunc(b.LShr(x, bit), I1);
        if (op != BitOp.Test)
        {
            var mask = b.Shl(b.Const(t, 1), bit);
            var res = op switch
            {
                BitOp.Set => b.Or(x, mask),
                BitOp.Reset => b.And(x, b.Not(mask)),
                _ => b.Xor(x, mask),
            };
            if (address is null) l.WriteReg(i.Op0Register, res);
            else l.Store(address, res);
        }
        b.SetFlag(Flag.CF, cf);
        l.ForgetFlagProducer();
    }

    /// <summary>BSF/BSR: a zero source sets ZF and leaves the whole destination register alone (no 32-bit zero-extension).</summary>
    private static void BitScan(Lifter l, in Instruction i, bool forward)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var t = src.Type;
        var zero = b.IsZero(src);
        var index = forward ? b.Unary(IrOp.Ctz, src) : b.Xor(b.Unary(IrOp.Clz, src), b.Const(t, (ulong)t.Bits() - 1));
        var reg = i.Op0Register;
        if (t == I32)
        {
            int idx = Lifter.GprIndex(reg);
            b.SetReg(idx, b.Select(zero, b.GetReg(idx), b.ZExt(index, I64)));
        }
        else
        {
            l.WriteReg(reg, b.Select(zero, l.ReadReg(reg), index));
        }
        b.SetFlag(Flag.ZF, zero);
        b.SetFlag(Flag.CF, b.Bool(false));
        b.SetFlag(Flag.OF, b.Bool(false));
        b.SetFlag(Flag.SF, b.Bool(false));
        b.SetFlag(Flag.AF, b.Bool(false));
        b.SetFlag(Flag.PF, b.Unary(IrOp.Parity, b.Trunc(b.Select(zero, b.Const(t, 0), index), I8)));
        l.ForgetFlagProducer();
    }

    /// <summary>TZCNT/LZCNT: CF when the source is 0, ZF when the count is 0.</summary>
    private static void ZeroCount(Lifter l, in Instruction i, IrOp op)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        var res = b.Unary(op, src);
        l.WriteReg(i.Op0Register, res);
        b.SetFlag(Flag.CF, b.IsZero(src));
        b.SetFlag(Flag.ZF, b.IsZero(res));
        b.SetFlag(Flag.SF, b.Bool(false));
        b.SetFlag(Flag.PF, b.Bool(false));
        b.SetFlag(Flag.AF, b.Bool(false));
        l.ForgetFlagProducer();
    }

    private static void Popcnt(Lifter l, in Instruction i)
    {
        var b = l.B;
        var src = l.ReadOp(i, 1);
        l.WriteReg(i.Op0Register, b.Unary(IrOp.Popcnt, src));
        b.SetFlag(Flag.ZF, b.IsZero(src));
        foreach (var f in (ReadOnlySpan<Flag>)[Flag.CF, Flag.OF, Flag.SF, Flag.AF, Flag.PF]) b.SetFlag(f, b.Bool(false));
        l.ForgetFlagProducer();
    }

    /// <summary>BSWAP; the 16-bit form is undefined: it clears the low word, as Intel hosts do.</summary>
    private static void Bswap(Lifter l, in Instruction i)
    {
        var reg = i.Op0Register;
        var t = Lifter.RegType(reg);
        l.WriteReg(reg, t == I16 ? l.B.Const(I16, 0) : l.B.Unary(IrOp.Bswap, l.ReadReg(reg)));
    }
}
