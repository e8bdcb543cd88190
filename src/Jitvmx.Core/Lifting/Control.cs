// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>Control flow: JMP, Jcc, CALL, RET, LOOP*, JrCXZ, and the no-op forms.</summary>
[InstructionFamily]
internal static class Control
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Jmp, Jmp);
        t.Add(Jcc, Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe, Mnemonic.Ja,
            Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge, Mnemonic.Jle, Mnemonic.Jg);
        t.Add(Mnemonic.Call, Call);
        t.Add(Mnemonic.Ret, Ret);
        t.Add(Loop, Mnemonic.Loop, Mnemonic.Loope, Mnemonic.Loopne);
        t.Add(Jrcxz, Mnemonic.Jrcxz, Mnemonic.Jecxz);
        t.Add(Nop, Mnemonic.Nop, Mnemonic.Endbr64, Mnemonic.Endbr32, Mnemonic.Prefetch, Mnemonic.Prefetchw, Mnemonic.Prefetchnta,
            Mnemonic.Prefetcht0, Mnemonic.Prefetcht1, Mnemonic.Prefetcht2, Mnemonic.Lfence, Mnemonic.Mfence, Mnemonic.Sfence,
            Mnemonic.Clflush, Mnemonic.Clflushopt, Mnemonic.Clwb, Mnemonic.Prefetchwt1, Mnemonic.Rdsspq, Mnemonic.Rdsspd,
            Mnemonic.Incsspq, Mnemonic.Incsspd, Mnemonic.Saveprevssp, Mnemonic.Setssbsy);
    }

    private static void Nop(Lifter l, in Instruction i)
    {
        // Reserved-NOP and hint encodings with memory operands do not access memory.
    }

    private static void Jmp(Lifter l, in Instruction i)
    {
        if (i.Op0Kind is OpKind.NearBranch64 or OpKind.NearBranch32 or OpKind.NearBranch16)
        {
            l.JumpTo(i.NearBranchTarget);
            return;
        }
        if (i.Op0Kind is OpKind.FarBranch16 or OpKind.FarBranch32 || i.MemorySize is MemorySize.SegPtr16 or MemorySize.SegPtr32 or MemorySize.SegPtr64)
            throw new LiftException("far jumps are not supported");
        var target = l.ReadOp(i, 0, I64);
        l.JumpIndirect(target);
    }

    private static void Jcc(Lifter l, in Instruction i)
    {
        var cond = l.Condition(i.ConditionCode);
        l.BranchTo(cond, i.NearBranchTarget, i.NextIP);
    }

    private static void Call(Lifter l, in Instruction i)
    {
        if (i.Op0Kind is OpKind.FarBranch16 or OpKind.FarBranch32 || i.MemorySize is MemorySize.SegPtr16 or MemorySize.SegPtr32 or MemorySize.SegPtr64)
            throw new LiftException("far calls are not supported");
        bool direct = i.Op0Kind is OpKind.NearBranch64;
        // The target is read before RSP changes (CALL [RSP+8] reads the old stack).
        var target = direct ? null : l.ReadOp(i, 0, I64);
        l.Push(l.B.I64(i.NextIP));
        if (direct) l.CallTo(i.NearBranchTarget, i.NextIP);
        else l.JumpIndirect(target!, i.NextIP);
    }

    private static void Ret(Lifter l, in Instruction i)
    {
        var target = l.PopValue(I64, out var rsp);
        if (i.Op0Kind == OpKind.Immediate16) rsp = l.B.Add(rsp, l.B.I64(i.Immediate16));
        l.SetGpr(GuestRegister.Rsp, rsp);
        l.ReturnTo(target);
    }

    private static void Loop(Lifter l, in Instruction i)
    {
        var b = l.B;
        bool ecx = i.Op1Kind == OpKind.Register && i.Op1Register == Register.ECX;
        IrValue count;
        if (ecx)
        {
            count = b.Sub(l.ReadReg(Register.ECX), b.I32(1));
            l.WriteReg(Register.ECX, count);
        }
        else
        {
            count = b.Sub(l.Gpr(GuestRegister.Rcx), b.I64(1));
            l.SetGpr(GuestRegister.Rcx, count);
        }
        var cond = b.Ne(count, b.Const(count.Type, 0));
        if (i.Mnemonic == Mnemonic.Loope) cond = b.And(cond, b.GetFlag(Flag.ZF));
        else if (i.Mnemonic == Mnemonic.Loopne) cond = b.And(cond, b.NotBool(b.GetFlag(Flag.ZF)));
        l.BranchTo(cond, i.NearBranchTarget, i.NextIP);
    }

    private static void Jrcxz(Lifter l, in Instruction i)
    {
        var b = l.B;
        var v = i.Mnemonic == Mnemonic.Jecxz ? l.ReadReg(Register.ECX) : l.Gpr(GuestRegister.Rcx);
        l.BranchTo(b.IsZero(v), i.NearBranchTarget, i.NextIP);
    }
}
