// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;

namespace Jitvmx.Lifting;

/// <summary>
/// Integer arithmetic and logic: ADD ADC SUB SBB CMP INC DEC NEG AND OR XOR NOT TEST, in every
/// encoding (register, memory, immediate, accumulator and sign-extended imm8 forms). A LOCK prefix
/// needs nothing more: on one vCPU the read-modify-write below is already atomic to the guest.
/// </summary>
[InstructionFamily]
internal static class Alu
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Add, Add);
        t.Add(Mnemonic.Adc, Adc);
        t.Add(Mnemonic.Sub, Sub);
        t.Add(Mnemonic.Sbb, Sbb);
        t.Add(Mnemonic.Cmp, Cmp);
        t.Add(Mnemonic.And, And);
        t.Add(Mnemonic.Or, Or);
        t.Add(Mnemonic.Xor, Xor);
        t.Add(Mnemonic.Test, Test);
        t.Add(Mnemonic.Inc, Inc);
        t.Add(Mnemonic.Dec, Dec);
        t.Add(Mnemonic.Neg, Neg);
        t.Add(Mnemonic.Not, Not);
    }

    private enum Op { Add, Adc, Sub, Sbb, Cmp, And, Or, Xor, Test }

    private static void Add(Lifter l, in Instruction i) => Binary(l, i, Op.Add);
    private static void Adc(Lifter l, in Instruction i) => Binary(l, i, Op.Adc);
    private static void Sub(Lifter l, in Instruction i) => Binary(l, i, Op.Sub);
    private static void Sbb(Lifter l, in Instruction i) => Binary(l, i, Op.Sbb);
    private static void Cmp(Lifter l, in Instruction i) => Binary(l, i, Op.Cmp);
    private static void And(Lifter l, in Instruction i) => Binary(l, i, Op.And);
    private static void Or(Lifter l, in Instruction i) => Binary(l, i, Op.Or);
    private static void Xor(Lifter l, in Instruction i) => Binary(l, i, Op.Xor);
    private static void Test(Lifter l, in Instruction i) => Binary(l, i, Op.Test);

    private static void Inc(Lifter l, in Instruction i) => IncDec(l, i, inc: true);
    private static void Dec(Lifter l, in Instruction i) => IncDec(l, i, inc: false);

    /// <summary>Destination operand 0: its value, and where it lives (the address is computed once for read-modify-write).</summary>
    private static IrValue ReadDest(Lifter l, in Instruction i, IrType t, out IrValue? address)
    {
        address = Lifter.IsMem(i, 0) ? l.Address(i) : null;
        return address is null ? l.ReadOp(i, 0, t) : l.Load(t, address);
    }

    /// <summary>Writes the destination; memory stores happen here, before the caller touches any flag.</summary>
    private static void WriteDest(Lifter l, in Instruction i, IrValue? address, IrValue v)
    {
        if (address is null) l.WriteOp(i, 0, v);
        else l.Store(address, v);
    }

    private static bool SameRegister(in Instruction i) =>
        i.Op0Kind == OpKind.Register && i.Op1Kind == OpKind.Register && i.Op0Register == i.Op1Register;

    private static void Binary(Lifter l, in Instruction i, Op op)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var a = ReadDest(l, i, t, out var address);
        var s = l.ReadOp(i, 1, t);

        // XOR r,r / SUB r,r zero idioms: result and flags are constants (CMP r,r sets the same flags).
        if (op is Op.Xor or Op.Sub or Op.Cmp && SameRegister(i))
        {
            var zero = b.Const(t, 0);
            if (op != Op.Cmp) WriteDest(l, i, address, zero);
            l.FlagsLogic(zero);
            return;
        }

        IrValue? carry = op is Op.Adc or Op.Sbb ? b.GetFlag(Flag.CF) : null;
        IrValue res = op switch
        {
            Op.Add => b.Add(a, s),
            Op.Adc => b.Add(b.Add(a, s), b.ZExt(carry!, t)),
            Op.Sub or Op.Cmp => b.Sub(a, s),
            Op.Sbb => b.Sub(b.Sub(a, s), b.ZExt(carry!, t)),
            Op.And or Op.Test => b.And(a, s),
            Op.Or => b.Or(a, s),
            _ => b.Xor(a, s),
        };
        if (op is not (Op.Cmp or Op.Test)) WriteDest(l, i, address, res);
        switch (op)
        {
            case Op.Add or Op.Adc: l.FlagsAdd(a, s, res, carry); break;
            case Op.Sub or Op.Sbb or Op.Cmp: l.FlagsSub(a, s, res, carry); break;
            default: l.FlagsLogic(res); break;
        }
    }

    private static void IncDec(Lifter l, in Instruction i, bool inc)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var a = ReadDest(l, i, t, out var address);
        var one = b.Const(t, 1);
        var res = inc ? b.Add(a, one) : b.Sub(a, one);
        WriteDest(l, i, address, res);
        // INC/DEC keep CF: read it before the flag helper overwrites it, and restore it.
        var cf = b.GetFlag(Flag.CF);
        if (inc) l.FlagsAdd(a, one, res);
        else l.FlagsSub(a, one, res);
        b.SetFlag(Flag.CF, cf);
        l.ForgetFlagProducer();
    }

    private static void Neg(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var a = ReadDest(l, i, t, out var address);
        var zero = b.Const(t, 0);
        var res = b.Sub(zero, a);
        WriteDest(l, i, address, res);
        // NEG sets the flags of 0 − a, CF = (a ≠ 0) included.
        l.FlagsSub(zero, a, res);
    }

    private static void Not(Lifter l, in Instruction i)
    {
        var t = Lifter.OpType(i, 0);
        var a = ReadDest(l, i, t, out var address);
        WriteDest(l, i, address, l.B.Not(a));
    }
}
