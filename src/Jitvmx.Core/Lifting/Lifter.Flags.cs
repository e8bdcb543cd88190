// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>What last wrote the status flags, so a condition can be one compare of the operands.</summary>
internal struct FlagProducer
{
    public FlagKind Kind;
    public IrValue? A, B, Result, ZfNode;
    public IrBlock? Block;
}

/// <summary>Kinds of flag-producing operations.</summary>
internal enum FlagKind
{
    None,
    /// <summary>a − b (SUB, CMP, NEG as 0 − b).</summary>
    Sub,
    /// <summary>a + b.</summary>
    Add,
    /// <summary>Logic: CF = OF = 0.</summary>
    Logic,
}

internal sealed partial class Lifter
{
    /// <summary>ZF, SF and PF from a result.</summary>
    public void SetZSP(IrValue res)
    {
        B.SetFlag(Flag.ZF, B.IsZero(res));
        B.SetFlag(Flag.SF, B.SignOf(res));
        B.SetFlag(Flag.PF, B.Unary(IrOp.Parity, B.Trunc(res, I8)));
    }

    /// <summary>Flags of ADD/ADC (<paramref name="carryIn"/> null for ADD).</summary>
    public void FlagsAdd(IrValue a, IrValue b, IrValue res, IrValue? carryIn = null)
    {
        IrValue cf = B.Ult(res, a);
        if (carryIn is not null) cf = B.Or(cf, B.And(carryIn, B.Eq(res, a)));
        B.SetFlag(Flag.CF, cf);
        B.SetFlag(Flag.OF, B.SignOf(B.And(B.Xor(a, res), B.Xor(b, res))));
        B.SetFlag(Flag.AF, B.BitOf(B.Xor(B.Xor(a, b), res), 4));
        SetZSP(res);
        Remember(carryIn is null ? FlagKind.Add : FlagKind.None, a, b, res);
    }

    /// <summary>Flags of SUB/SBB/CMP/NEG (<paramref name="borrowIn"/> null unless SBB).</summary>
    public void FlagsSub(IrValue a, IrValue b, IrValue res, IrValue? borrowIn = null)
    {
        IrValue cf = B.Ult(a, b);
        if (borrowIn is not null) cf = B.Or(cf, B.And(borrowIn, B.Eq(a, b)));
        B.SetFlag(Flag.CF, cf);
        B.SetFlag(Flag.OF, B.SignOf(B.And(B.Xor(a, b), B.Xor(a, res))));
        B.SetFlag(Flag.AF, B.BitOf(B.Xor(B.Xor(a, b), res), 4));
        SetZSP(res);
        Remember(borrowIn is null ? FlagKind.Sub : FlagKind.None, a, b, res);
    }

    /// <summary>Flags of AND/OR/XOR/TEST: CF = OF = 0, AF = 0 (the SDM leaves AF undefined).</summary>
    public void FlagsLogic(IrValue res)
    {
        B.SetFlag(Flag.CF, B.Bool(false));
        B.SetFlag(Flag.OF, B.Bool(false));
        B.SetFlag(Flag.AF, B.Bool(false));
        SetZSP(res);
        Remember(FlagKind.Logic, null, null, res);
    }

    /// <summary>Forgets the remembered producer (call after writing flags any other way; SetFlag through the builder is detected anyway).</summary>
    public void ForgetFlagProducer() => _producer = default;

    private void Remember(FlagKind kind, IrValue? a, IrValue? b, IrValue res) =>
        _producer = new FlagProducer { Kind = kind, A = a, B = b, Result = res, ZfNode = B.KnownFlag(Flag.ZF), Block = B.Block };

    private bool ProducerCurrent(FlagKind kind) =>
        _producer.Kind == kind && _producer.Block == B.Block && _producer.ZfNode is not null && B.KnownFlag(Flag.ZF) == _producer.ZfNode;

    /// <summary>Evaluates an x86 condition code as I1.</summary>
    public IrValue Condition(ConditionCode cc)
    {
        if (ProducerCurrent(FlagKind.Sub))
        {
            IrValue a = _producer.A!, b = _producer.B!;
            switch (cc)
            {
                case ConditionCode.e: return B.Eq(a, b);
                case ConditionCode.ne: return B.Ne(a, b);
                case ConditionCode.b: return B.Ult(a, b);
                case ConditionCode.ae: return B.NotBool(B.Ult(a, b));
                case ConditionCode.be: return B.Binary(IrOp.Ule, a, b);
                case ConditionCode.a: return B.Ult(b, a);
                case ConditionCode.l: return B.Slt(a, b);
                case ConditionCode.ge: return B.NotBool(B.Slt(a, b));
                case ConditionCode.le: return B.Binary(IrOp.Sle, a, b);
                case ConditionCode.g: return B.Slt(b, a);
            }
        }
        switch (cc)
        {
            case ConditionCode.o: return B.GetFlag(Flag.OF);
            case ConditionCode.no: return B.NotBool(B.GetFlag(Flag.OF));
            case ConditionCode.b: return B.GetFlag(Flag.CF);
            case ConditionCode.ae: return B.NotBool(B.GetFlag(Flag.CF));
            case ConditionCode.e: return B.GetFlag(Flag.ZF);
            case ConditionCode.ne: return B.NotBool(B.GetFlag(Flag.ZF));
            case ConditionCode.be: return B.Or(B.GetFlag(Flag.CF), B.GetFlag(Flag.ZF));
            case ConditionCode.a: return B.NotBool(B.Or(B.GetFlag(Flag.CF), B.GetFlag(Flag.ZF)));
            case ConditionCode.s: return B.GetFlag(Flag.SF);
            case ConditionCode.ns: return B.NotBool(B.GetFlag(Flag.SF));
            case ConditionCode.p: return B.GetFlag(Flag.PF);
            case ConditionCode.np: return B.NotBool(B.GetFlag(Flag.PF));
            case ConditionCode.l: return B.Xor(B.GetFlag(Flag.SF), B.GetFlag(Flag.OF));
            case ConditionCode.ge: return B.NotBool(B.Xor(B.GetFlag(Flag.SF), B.GetFlag(Flag.OF)));
            case ConditionCode.le: return B.Or(B.GetFlag(Flag.ZF), B.Xor(B.GetFlag(Flag.SF), B.GetFlag(Flag.OF)));
            case ConditionCode.g: return B.NotBool(B.Or(B.GetFlag(Flag.ZF), B.Xor(B.GetFlag(Flag.SF), B.GetFlag(Flag.OF))));
            default: throw new LiftException($"condition {cc} is not supported");
        }
    }

    /// <summary>Reads RFLAGS as the guest sees it (PUSHF, LAHF).</summary>
    public IrValue ReadRflags()
    {
        var v = B.And(B.GetState(I64, StateOffsets.Rflags), B.I64(~(ulong)(RFlags.Status | RFlags.DF)));
        v = B.Or(v, FlagBit(Flag.CF, 0));
        v = B.Or(v, FlagBit(Flag.PF, 2));
        v = B.Or(v, FlagBit(Flag.AF, 4));
        v = B.Or(v, FlagBit(Flag.ZF, 6));
        v = B.Or(v, FlagBit(Flag.SF, 7));
        v = B.Or(v, FlagBit(Flag.DF, 10));
        v = B.Or(v, FlagBit(Flag.OF, 11));
        return v;
    }

    private IrValue FlagBit(Flag f, int bit) => B.Shl(B.ZExt(B.GetFlag(f), I64), B.I64((ulong)bit));

    /// <summary>Writes the status flags and DF from an RFLAGS image (the other bits are left to the caller).</summary>
    public void WriteStatusFlags(IrValue rflags, bool includeDf)
    {
        B.SetFlag(Flag.CF, B.BitOf(rflags, 0));
        B.SetFlag(Flag.PF, B.BitOf(rflags, 2));
        B.SetFlag(Flag.AF, B.BitOf(rflags, 4));
        B.SetFlag(Flag.ZF, B.BitOf(rflags, 6));
        B.SetFlag(Flag.SF, B.BitOf(rflags, 7));
        if (rflags.Type.Bits() > 8)
        {
            if (includeDf) B.SetFlag(Flag.DF, B.BitOf(rflags, 10));
            B.SetFlag(Flag.OF, B.BitOf(rflags, 11));
        }
        ForgetFlagProducer();
    }
}
