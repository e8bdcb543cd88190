// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>Data movement: MOV and its extending forms, LEA, XLAT, exchanges, compare-exchanges, MOVBE, SETcc, CMOVcc.</summary>
[InstructionFamily]
internal static class DataMovement
{
    public static void RegisterFamily(EmitterTable t)
    {
        // MOV is registered by SystemInstructions (control/segment/debug forms) and delegates here.
        t.Add(Mnemonic.Movzx, Movzx);
        t.Add(Mnemonic.Movsx, Movsx);
        t.Add(Mnemonic.Movsxd, Movsx);
        t.Add(Mnemonic.Lea, Lea);
        t.Add(Mnemonic.Xchg, Xchg);
        t.Add(Mnemonic.Xadd, Xadd);
        t.Add(Mnemonic.Cmpxchg, Cmpxchg);
        t.Add(Mnemonic.Cmpxchg8b, Cmpxchg8b);
        t.Add(Mnemonic.Cmpxchg16b, Cmpxchg16b);
        t.Add(Mnemonic.Movbe, Movbe);
        t.Add(Mnemonic.Movnti, Mov); // the non-temporal hint changes nothing here
        t.Add(Mnemonic.Xlatb, Xlatb);
        t.Add(Setcc, Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe,
            Mnemonic.Seta, Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge,
            Mnemonic.Setle, Mnemonic.Setg);
        t.Add(Cmovcc, Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne,
            Mnemonic.Cmovbe, Mnemonic.Cmova, Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl,
            Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg);
    }

    /// <summary>MOV between GPRs, memory and immediates.</summary>
    public static void Mov(Lifter l, in Instruction i)
    {
        var v = l.ReadOp(i, 1, Lifter.OpType(i, 0));
        l.WriteOp(i, 0, v);
    }

    private static void Movzx(Lifter l, in Instruction i) => l.WriteOp(i, 0, l.B.ZExt(l.ReadOp(i, 1), Lifter.OpType(i, 0)));

    // MOVSXD r32, r/m32 is a plain 32-bit move (the write zero-extends); SExt of equal types is the value itself.
    private static void Movsx(Lifter l, in Instruction i) => l.WriteOp(i, 0, l.B.SExt(l.ReadOp(i, 1), Lifter.OpType(i, 0)));

    private static void Lea(Lifter l, in Instruction i)
    {
        // LEA computes the offset only: a segment prefix contributes no base. A 32-bit address size is
        // already wrapped by Address; a 16/32-bit destination keeps the low bits.
        var noSegment = i;
        noSegment.SegmentPrefix = Register.None;
        var ea = l.Address(noSegment);
        l.WriteOp(i, 0, l.B.Trunc(ea, Lifter.OpType(i, 0)));
    }

    // Iced describes XLAT's operand as [seg:RBX+AL] (EBX under 67h), so the generic memory operand covers it.
    private static void Xlatb(Lifter l, in Instruction i) => l.WriteReg(Register.AL, l.ReadOp(i, 0, I8));

    private static void Xchg(Lifter l, in Instruction i)
    {
        var a = l.ReadOp(i, 0);
        var b = l.ReadOp(i, 1);
        // The memory operand (if any) is written first so a fault leaves the register untouched.
        if (Lifter.IsMem(i, 1))
        {
            l.WriteOp(i, 1, a);
            l.WriteOp(i, 0, b);
        }
        else
        {
            l.WriteOp(i, 0, b);
            l.WriteOp(i, 1, a);
        }
    }

    private static void Xadd(Lifter l, in Instruction i)
    {
        var dst = l.ReadOp(i, 0);
        var src = l.ReadOp(i, 1);
        var sum = l.B.Add(dst, src);
        if (Lifter.IsMem(i, 0))
        {
            l.WriteOp(i, 0, sum);
            l.WriteOp(i, 1, dst);
        }
        else
        {
            // SRC ← DEST, then DEST ← TEMP: with one register for both, the sum wins.
            l.WriteOp(i, 1, dst);
            l.WriteOp(i, 0, sum);
        }
        l.FlagsAdd(dst, src, sum);
    }

    private static Register Accumulator(IrType t) => t switch { I8 => Register.AL, I16 => Register.AX, I32 => Register.EAX, _ => Register.RAX };

    /// <summary>Writes <paramref name="r"/> only when <paramref name="cond"/> holds (a 32-bit write must not clear the upper half otherwise).</summary>
    private static void WriteRegIf(Lifter l, Register r, IrValue v, IrValue cond)
    {
        var reg = (GuestRegister)Lifter.GprIndex(r);
        var before = l.Gpr(reg);
        l.WriteReg(r, v);
        l.SetGpr(reg, l.B.Select(cond, l.Gpr(reg), before));
    }

    private static void Cmpxchg(Lifter l, in Instruction i)
    {
        var b = l.B;
        var t = Lifter.OpType(i, 0);
        var acc = Accumulator(t);
        var old = l.ReadOp(i, 0);
        var src = l.ReadOp(i, 1);
        var a = l.ReadReg(acc);
        var eq = b.Eq(a, old);
        // Equal: DEST ← SRC; else accumulator ← DEST. Memory is written back either way (the SDM's locked
        // read-modify-write), but a register destination is left alone on failure: a 32-bit one keeps its
        // upper half, as the host CPU does (the SDM pseudocode would zero-extend it).
        if (Lifter.IsMem(i, 0)) l.WriteOp(i, 0, b.Select(eq, src, old));
        else WriteRegIf(l, i.Op0Register, src, eq);
        WriteRegIf(l, acc, old, b.NotBool(eq));
        l.FlagsSub(a, old, b.Sub(a, old));
    }

    private static void Cmpxchg8b(Lifter l, in Instruction i)
    {
        var b = l.B;
        var addr = l.Address(i);
        var old = l.Load(I64, addr);
        var expected = b.Or(b.Shl(b.ZExt(l.ReadReg(Register.EDX), I64), b.I64(32)), b.ZExt(l.ReadReg(Register.EAX), I64));
        var desired = b.Or(b.Shl(b.ZExt(l.ReadReg(Register.ECX), I64), b.I64(32)), b.ZExt(l.ReadReg(Register.EBX), I64));
        var eq = b.Eq(old, expected);
        l.Store(addr, b.Select(eq, desired, old));
        var ne = b.NotBool(eq);
        WriteRegIf(l, Register.EAX, b.Trunc(old, I32), ne);
        WriteRegIf(l, Register.EDX, b.Trunc(b.LShr(old, b.I64(32)), I32), ne);
        b.SetFlag(Flag.ZF, eq);
        l.ForgetFlagProducer();
    }

    private static void Cmpxchg16b(Lifter l, in Instruction i)
    {
        var b = l.B;
        var addr = l.Address(i);
        l.RaiseExceptionIf(b.Ne(b.And(addr, b.I64(15)), b.I64(0)), ExceptionVector.GP, 0);
        // No 128-bit IR type: two halves, both loads before both stores (one aligned 16-byte block is on one page).
        var hiAddr = b.Add(addr, b.I64(8));
        var lo = l.Load(I64, addr);
        var hi = l.Load(I64, hiAddr);
        var rax = l.Gpr(GuestRegister.Rax);
        var rdx = l.Gpr(GuestRegister.Rdx);
        var eq = b.And(b.Eq(lo, rax), b.Eq(hi, rdx));
        l.Store(addr, b.Select(eq, l.Gpr(GuestRegister.Rbx), lo));
        l.Store(hiAddr, b.Select(eq, l.Gpr(GuestRegister.Rcx), hi));
        l.SetGpr(GuestRegister.Rax, b.Select(eq, rax, lo));
        l.SetGpr(GuestRegister.Rdx, b.Select(eq, rdx, hi));
        b.SetFlag(Flag.ZF, eq);
        l.ForgetFlagProducer();
    }

    private static void Movbe(Lifter l, in Instruction i) => l.WriteOp(i, 0, l.B.Unary(IrOp.Bswap, l.ReadOp(i, 1)));

    private static void Setcc(Lifter l, in Instruction i) => l.WriteOp(i, 0, l.B.ZExt(l.Condition(i.ConditionCode), I8));

    private static void Cmovcc(Lifter l, in Instruction i)
    {
        // The source is read (and may fault) whatever the condition; a 32-bit destination is zero-extended even when false.
        var src = l.ReadOp(i, 1);
        var cond = l.Condition(i.ConditionCode);
        l.WriteOp(i, 0, l.B.Select(cond, src, l.ReadOp(i, 0)));
    }
}
