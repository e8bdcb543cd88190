// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// Sensitive and system instructions. Each is table data routed through one exit helper: state is
/// spilled precisely, the helper applies the execution controls (VM exit or architectural
/// behaviour) and the dispatcher continues or returns the exit.
/// </summary>
[InstructionFamily]
internal static class SystemInstructions
{
    public static void RegisterFamily(EmitterTable t)
    {
        Simple(t, Mnemonic.Cpuid, HelperId.Cpuid);
        Simple(t, Mnemonic.Hlt, HelperId.Hlt);
        Simple(t, Mnemonic.Rdmsr, HelperId.Rdmsr);
        Simple(t, Mnemonic.Wrmsr, HelperId.Wrmsr);
        Simple(t, Mnemonic.Rdtsc, HelperId.Rdtsc);
        Simple(t, Mnemonic.Rdtscp, HelperId.Rdtscp);
        Simple(t, Mnemonic.Rdpmc, HelperId.Rdpmc);
        Simple(t, Mnemonic.Vmcall, HelperId.Vmcall);
        Simple(t, Mnemonic.Pause, HelperId.Pause);
        Simple(t, Mnemonic.Xsetbv, HelperId.Xsetbv);
        Simple(t, Mnemonic.Xgetbv, HelperId.Xgetbv);
        Simple(t, Mnemonic.Syscall, HelperId.Syscall);
        Simple(t, Mnemonic.Sysretq, HelperId.Sysret);
        Simple(t, Mnemonic.Wbinvd, HelperId.Wbinvd);
        Simple(t, Mnemonic.Wbnoinvd, HelperId.Wbinvd);
        Simple(t, Mnemonic.Invd, HelperId.Invd);
        Simple(t, Mnemonic.Monitor, HelperId.Monitor);
        Simple(t, Mnemonic.Mwait, HelperId.Mwait);
        Simple(t, Mnemonic.Swapgs, HelperId.Swapgs);
        Simple(t, Mnemonic.Iretq, HelperId.Iret);
        t.Add(Mnemonic.Ud2, (Lifter l, in Instruction i) => l.RaiseException(ExceptionVector.UD));
        t.Add(Mnemonic.Ud0, (Lifter l, in Instruction i) => l.RaiseException(ExceptionVector.UD));
        t.Add(Mnemonic.Ud1, (Lifter l, in Instruction i) => l.RaiseException(ExceptionVector.UD));
        t.Add(Mnemonic.Int3, (Lifter l, in Instruction i) => Soft(l, 3, InterruptionType.SoftwareException));
        t.Add(Mnemonic.Int1, (Lifter l, in Instruction i) => Soft(l, 1, InterruptionType.PrivilegedSoftwareException));
        t.Add(Mnemonic.Int, (Lifter l, in Instruction i) => Soft(l, i.Immediate8, InterruptionType.SoftwareInterrupt));
        t.Add(Mnemonic.Into, (Lifter l, in Instruction i) => l.RaiseException(ExceptionVector.UD)); // invalid in 64-bit mode
        t.Add(Mnemonic.In, In);
        t.Add(Mnemonic.Out, Out);
        t.Add(StringIo, Mnemonic.Insb, Mnemonic.Insw, Mnemonic.Insd, Mnemonic.Outsb, Mnemonic.Outsw, Mnemonic.Outsd);
        t.Add(Mnemonic.Mov, Mov);
        t.Add(Mnemonic.Clts, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.CrAccess,
            l.B.I64(ExitQualification.MakeCrAccess(0, ExitQualification.CrAccessType.Clts, 0))));
        t.Add(Mnemonic.Invlpg, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.Invlpg, l.Address(i)));
        t.Add(Mnemonic.Rdrand, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.Rdrand,
            l.B.I64((ulong)Lifter.GprIndex(i.Op0Register)), l.B.I64((ulong)i.Op0Register.GetSize())));
        t.Add(Mnemonic.Rdseed, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.Rdseed,
            l.B.I64((ulong)Lifter.GprIndex(i.Op0Register)), l.B.I64((ulong)i.Op0Register.GetSize())));
        t.Add(Mnemonic.Cli, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.InterruptFlag, l.B.I64(0)));
        t.Add(Mnemonic.Sti, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.InterruptFlag, l.B.I64(1)));
        t.Add(Mnemonic.Sgdt, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.DescriptorTable, l.B.I64(0), l.Address(i)));
        t.Add(Mnemonic.Sidt, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.DescriptorTable, l.B.I64(1), l.Address(i)));
        t.Add(Mnemonic.Lgdt, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.DescriptorTable, l.B.I64(2), l.Address(i)));
        t.Add(Mnemonic.Lidt, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.DescriptorTable, l.B.I64(3), l.Address(i)));
        Vmx(t, Mnemonic.Vmclear, ExitReason.Vmclear);
        Vmx(t, Mnemonic.Vmlaunch, ExitReason.Vmlaunch);
        Vmx(t, Mnemonic.Vmptrld, ExitReason.Vmptrld);
        Vmx(t, Mnemonic.Vmptrst, ExitReason.Vmptrst);
        Vmx(t, Mnemonic.Vmread, ExitReason.Vmread);
        Vmx(t, Mnemonic.Vmresume, ExitReason.Vmresume);
        Vmx(t, Mnemonic.Vmwrite, ExitReason.Vmwrite);
        Vmx(t, Mnemonic.Vmxoff, ExitReason.Vmxoff);
        Vmx(t, Mnemonic.Vmxon, ExitReason.Vmxon);
        Vmx(t, Mnemonic.Invept, ExitReason.Invept);
        Vmx(t, Mnemonic.Invvpid, ExitReason.Invvpid);
        Vmx(t, Mnemonic.Getsec, ExitReason.Getsec);
        Vmx(t, Mnemonic.Invpcid, ExitReason.Invpcid);
    }

    private static void Simple(EmitterTable t, Mnemonic m, HelperId h) =>
        t.Add(m, (Lifter l, in Instruction i) => l.ExitThrough(h));

    private static void Vmx(EmitterTable t, Mnemonic m, ExitReason r) =>
        t.Add(m, (Lifter l, in Instruction i) => l.ExitThrough(HelperId.VmxInstruction, l.B.I64((ulong)r)));

    private static void Soft(Lifter l, int vector, InterruptionType type) =>
        l.ExitThrough(HelperId.SoftwareInterrupt, l.B.I64((ulong)vector), l.B.I64((ulong)type));

    private static void In(Lifter l, in Instruction i)
    {
        int size = i.Op0Register.GetSize();
        bool imm = i.Op1Kind == OpKind.Immediate8;
        if (imm)
        {
            l.ExitThrough(HelperId.Io, l.B.I64(ExitQualification.MakeIo(size, true, false, false, true, i.Immediate8)), l.B.I64(0));
            return;
        }
        var port = l.B.ZExt(l.ReadReg(Register.DX), I64);
        var q = l.B.Or(l.B.I64(ExitQualification.MakeIo(size, true, false, false, false, 0)), l.B.Shl(port, l.B.I64(16)));
        l.ExitThrough(HelperId.Io, q, l.B.I64(0));
    }

    private static void Out(Lifter l, in Instruction i)
    {
        int size = i.Op1Register.GetSize();
        bool imm = i.Op0Kind == OpKind.Immediate8;
        var value = l.B.ZExt(l.ReadReg(i.Op1Register), I64);
        if (imm)
        {
            l.ExitThrough(HelperId.Io, l.B.I64(ExitQualification.MakeIo(size, false, false, false, true, i.Immediate8)), value);
            return;
        }
        var port = l.B.ZExt(l.ReadReg(Register.DX), I64);
        var q = l.B.Or(l.B.I64(ExitQualification.MakeIo(size, false, false, false, false, 0)), l.B.Shl(port, l.B.I64(16)));
        l.ExitThrough(HelperId.Io, q, value);
    }

    private static void StringIo(Lifter l, in Instruction i)
    {
        bool isIn = i.Mnemonic is Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd;
        int size = i.Mnemonic switch { Mnemonic.Insb or Mnemonic.Outsb => 1, Mnemonic.Insw or Mnemonic.Outsw => 2, _ => 4 };
        bool rep = i.HasRepPrefix || i.HasRepePrefix || i.HasRepnePrefix;
        var port = l.B.ZExt(l.ReadReg(Register.DX), I64);
        var q = l.B.Or(l.B.I64(ExitQualification.MakeIo(size, isIn, true, rep, false, 0)), l.B.Shl(port, l.B.I64(16)));
        l.ExitThrough(HelperId.Io, q, l.B.I64(0));
    }

    /// <summary>MOV to/from control registers; other MOVs belong to the data-movement family.</summary>
    private static void Mov(Lifter l, in Instruction i)
    {
        bool toCr = i.Op0Kind == OpKind.Register && i.Op0Register.IsCR();
        bool fromCr = i.Op1Kind == OpKind.Register && i.Op1Register.IsCR();
        if (!toCr && !fromCr)
        {
            if ((i.Op0Kind == OpKind.Register && i.Op0Register.IsSegmentRegister()) || (i.Op1Kind == OpKind.Register && i.Op1Register.IsSegmentRegister()))
            {
                MovSegment(l, i);
                return;
            }
            if ((i.Op0Kind == OpKind.Register && i.Op0Register.IsDR()) || (i.Op1Kind == OpKind.Register && i.Op1Register.IsDR()))
                throw new LiftException("MOV DR is not supported");
            DataMovement.Mov(l, i);
            return;
        }
        var cr = toCr ? i.Op0Register : i.Op1Register;
        var gpr = toCr ? i.Op1Register : i.Op0Register;
        int n = cr - Register.CR0;
        var type = toCr ? ExitQualification.CrAccessType.MovToCr : ExitQualification.CrAccessType.MovFromCr;
        l.ExitThrough(HelperId.CrAccess, l.B.I64(ExitQualification.MakeCrAccess(n, type, (GuestRegister)Lifter.GprIndex(gpr))));
    }

    private static void MovSegment(Lifter l, in Instruction i)
    {
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsSegmentRegister())
        {
            int seg = i.Op0Register - Register.ES;
            var sel = l.B.ZExt(l.ReadOp(i, 1, I16), I64);
            l.ExitThrough(HelperId.LoadSegment, l.B.I64((ulong)seg), sel);
            return;
        }
        // MOV r/m, Sreg: the selector, zero-extended for a 32/64-bit register destination.
        int idx = i.Op1Register - Register.ES;
        int off = idx switch
        {
            0 => SegOffset(nameof(GuestState.Es)), 1 => SegOffset(nameof(GuestState.Cs)), 2 => SegOffset(nameof(GuestState.Ss)),
            3 => SegOffset(nameof(GuestState.Ds)), 4 => SegOffset(nameof(GuestState.Fs)), _ => SegOffset(nameof(GuestState.Gs)),
        };
        var selector = l.B.GetState(I16, off);
        var dstType = Lifter.OpType(i, 0);
        l.WriteOp(i, 0, l.B.ZExt(selector, dstType));
    }

    private static int SegOffset(string seg) =>
        (int)System.Runtime.InteropServices.Marshal.OffsetOf<GuestState>(seg) + (int)System.Runtime.InteropServices.Marshal.OffsetOf<SegmentRegister>(nameof(SegmentRegister.Selector));
}
