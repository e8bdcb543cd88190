// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>Stack and flag-register instructions: PUSH, POP, PUSHF, POPF, LAHF, SAHF, the flag set/clear forms, ENTER, LEAVE.</summary>
[InstructionFamily]
internal static class Stack
{
    private static readonly int CsSelector = SegmentSelector(nameof(GuestState.Cs));

    // POPF may always change these (64-bit mode): CF PF AF ZF SF TF DF OF NT AC ID. IF needs CPL ≤ IOPL, IOPL needs CPL 0.
    private const ulong PopfAlways = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4000 | 0x40000 | 0x200000;
    private const ulong IfBit = 1UL << 9, IoplBits = 3UL << 12, RfBit = 1UL << 16, VmBit = 1UL << 17;

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Push, Push);
        t.Add(Mnemonic.Pop, Pop);
        t.Add(Pushf, Mnemonic.Pushf, Mnemonic.Pushfq);
        t.Add(Popf, Mnemonic.Popf, Mnemonic.Popfq);
        t.Add(Mnemonic.Lahf, Lahf);
        t.Add(Mnemonic.Sahf, Sahf);
        t.Add(Mnemonic.Clc, (Lifter l, in Instruction i) => SetFlag(l, Flag.CF, l.B.Bool(false)));
        t.Add(Mnemonic.Stc, (Lifter l, in Instruction i) => SetFlag(l, Flag.CF, l.B.Bool(true)));
        t.Add(Mnemonic.Cmc, (Lifter l, in Instruction i) => SetFlag(l, Flag.CF, l.B.NotBool(l.B.GetFlag(Flag.CF))));
        t.Add(Mnemonic.Cld, (Lifter l, in Instruction i) => SetFlag(l, Flag.DF, l.B.Bool(false)));
        t.Add(Mnemonic.Std, (Lifter l, in Instruction i) => SetFlag(l, Flag.DF, l.B.Bool(true)));
        t.Add(Mnemonic.Enter, Enter);
        t.Add(Mnemonic.Leave, Leave);
    }

    private static int SegmentSelector(string seg) =>
        (int)Marshal.OffsetOf<GuestState>(seg) + (int)Marshal.OffsetOf<SegmentRegister>(nameof(SegmentRegister.Selector));

    private static int SegmentIndex(Register r) => r - Register.ES;

    /// <summary>Operand size of a one-slot stack instruction (2 or 8 bytes in 64-bit mode).</summary>
    private static IrType StackType(in Instruction i) => IrTypes.FromBytes(Math.Abs(i.StackPointerIncrement));

    /// <summary>Operand size of ENTER/LEAVE (their RSP change is not one slot).</summary>
    private static IrType FrameType(in Instruction i) => i.Code is Code.Enterw_imm16_imm8 or Code.Leavew ? I16 : I64;

    private static void SetFlag(Lifter l, Flag f, IrValue v)
    {
        l.B.SetFlag(f, v);
        // CLC/STC/CMC keep ZF, so the remembered SUB producer would otherwise still answer conditions on CF.
        l.ForgetFlagProducer();
    }

    private static void Push(Lifter l, in Instruction i)
    {
        var t = StackType(i);
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsSegmentRegister())
        {
            // The selector, zero-extended (the host CPU writes the whole slot; some Intel parts write only 16 bits).
            l.Push(l.B.ZExt(l.B.GetState(I16, SegmentSelector(SegName(i.Op0Register))), t));
            return;
        }
        // The operand is read with the old RSP (PUSH RSP pushes the old value, PUSH [RSP+x] addresses the old stack).
        l.Push(l.ReadOp(i, 0, t));
    }

    private static string SegName(Register r) => r switch
    {
        Register.ES => nameof(GuestState.Es), Register.CS => nameof(GuestState.Cs), Register.SS => nameof(GuestState.Ss),
        Register.DS => nameof(GuestState.Ds), Register.FS => nameof(GuestState.Fs), _ => nameof(GuestState.Gs),
    };

    private static void Pop(Lifter l, in Instruction i)
    {
        var t = StackType(i);
        var oldRsp = l.Gpr(GuestRegister.Rsp);
        var v = l.PopValue(t, out var newRsp);
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsSegmentRegister())
        {
            l.SetGpr(GuestRegister.Rsp, newRsp);
            l.ExitThrough(HelperId.LoadSegment, l.B.I64((ulong)SegmentIndex(i.Op0Register)), l.B.ZExt(l.B.Trunc(v, I16), I64));
            return;
        }
        if (Lifter.IsMem(i, 0))
        {
            // POP [RSP+x] addresses with the incremented RSP, but RSP is committed only after the store.
            bool usesRsp = i.MemoryBase.GetFullRegister() == Register.RSP;
            if (usesRsp) l.SetGpr(GuestRegister.Rsp, newRsp);
            var addr = l.Address(i);
            if (usesRsp) l.SetGpr(GuestRegister.Rsp, oldRsp);
            l.Store(addr, v);
            l.SetGpr(GuestRegister.Rsp, newRsp);
            return;
        }
        // POP RSP: the loaded value replaces the incremented RSP.
        l.SetGpr(GuestRegister.Rsp, newRsp);
        l.WriteReg(i.Op0Register, v);
    }

    private static void Pushf(Lifter l, in Instruction i)
    {
        // The image never shows RF or VM.
        var image = l.B.And(l.ReadRflags(), l.B.I64(~(RfBit | VmBit)));
        l.Push(l.B.Trunc(image, StackType(i)));
    }

    private static void Popf(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = StackType(i);
        var v = b.ZExt(l.PopValue(t, out var newRsp), I64);
        var old = b.GetState(I64, StateOffsets.Rflags);
        var cpl = b.And(b.GetState(I16, CsSelector), b.Const(I16, 3));
        var iopl = b.Trunc(b.And(b.LShr(old, b.I64(12)), b.I64(3)), I16);
        var mutable = b.I64(PopfAlways);
        mutable = b.Or(mutable, b.Select(b.Binary(IrOp.Ule, cpl, iopl), b.I64(IfBit), b.I64(0)));
        mutable = b.Or(mutable, b.Select(b.IsZero(cpl), b.I64(IoplBits), b.I64(0)));
        if (t == I16) mutable = b.And(mutable, b.I64(0xFFFF));
        var merged = b.Or(b.And(old, b.Not(mutable)), b.And(v, mutable));
        // RF is cleared; bit 1 always reads as one. The status flags and DF live in the flag locals too.
        merged = b.Or(b.And(merged, b.I64(~RfBit)), b.I64(2));
        b.SetState(StateOffsets.Rflags, merged);
        l.WriteStatusFlags(v, includeDf: true);
        l.SetGpr(GuestRegister.Rsp, newRsp);
    }

    private static IrValue FlagAt(Lifter l, Flag f, int bit) => l.B.Shl(l.B.ZExt(l.B.GetFlag(f), I8), l.B.I8((ulong)bit));

    private static void Lahf(Lifter l, in Instruction i)
    {
        var b = l.B;
        // AH ← SF:ZF:0:AF:0:PF:1:CF
        var ah = b.Or(b.I8(2), FlagAt(l, Flag.CF, 0));
        ah = b.Or(ah, FlagAt(l, Flag.PF, 2));
        ah = b.Or(ah, FlagAt(l, Flag.AF, 4));
        ah = b.Or(ah, FlagAt(l, Flag.ZF, 6));
        ah = b.Or(ah, FlagAt(l, Flag.SF, 7));
        l.WriteReg(Register.AH, ah);
    }

    private static void Sahf(Lifter l, in Instruction i) => l.WriteStatusFlags(l.ReadReg(Register.AH), includeDf: false);

    private static void Enter(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = FrameType(i);
        var step = b.I64((ulong)(t.Bits() / 8));
        ulong alloc = i.Immediate16;
        int level = i.Immediate8_2nd & 31;
        var rbp = l.Gpr(GuestRegister.Rbp);
        // Every store (and the display loads) happens before RBP and RSP change.
        var sp = b.Sub(l.Gpr(GuestRegister.Rsp), step);
        l.Store(sp, b.Trunc(rbp, t));
        var frame = sp;
        if (level > 0)
        {
            var bp = rbp;
            for (int k = 1; k < level; k++)
            {
                bp = b.Sub(bp, step);
                var link = l.Load(t, bp);
                sp = b.Sub(sp, step);
                l.Store(sp, link);
            }
            sp = b.Sub(sp, step);
            l.Store(sp, b.Trunc(frame, t));
        }
        if (t == I64) l.SetGpr(GuestRegister.Rbp, frame);
        else l.WriteReg(Register.BP, b.Trunc(frame, I16));
        l.SetGpr(GuestRegister.Rsp, b.Sub(sp, b.I64(alloc)));
    }

    private static void Leave(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = FrameType(i);
        var rbp = l.Gpr(GuestRegister.Rbp);
        var v = l.Load(t, rbp);
        l.SetGpr(GuestRegister.Rsp, b.Add(rbp, b.I64((ulong)(t.Bits() / 8))));
        if (t == I64) l.SetGpr(GuestRegister.Rbp, v);
        else l.WriteReg(Register.BP, v);
    }
}
