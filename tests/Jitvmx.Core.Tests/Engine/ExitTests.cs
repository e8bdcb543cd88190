// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

public class ExitTests
{
    private const ulong Mmio = 0xFEE00000;

    [Fact]
    public void ReadFromUnmappedMemoryIsAnEptViolationWithQualification()
    {
        using var g = new GuestBuilder(a => { a.mov(rbx, Mmio + 0x10); a.mov(rax, __qword_ptr[rbx]); a.hlt(); });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.Equal(Mmio + 0x10, exit.GuestPhysicalAddress);
        Assert.Equal(Mmio + 0x10, exit.GuestLinearAddress);
        Assert.Equal(8, exit.AccessSize);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptRead);
        Assert.Equal(0UL, exit.Qualification & (ExitQualification.EptWrite | ExitQualification.EptFetch));
        Assert.Equal(0UL, exit.Qualification & (ExitQualification.EptReadable | ExitQualification.EptWritable | ExitQualification.EptExecutable));
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptLinearValid);
        // RIP is at the faulting MOV, which has not retired.
        Assert.Equal(GuestBuilder.CodeBase + 10, g.Cpu.State.Rip);
        Assert.Equal(1UL, g.Cpu.InstructionsRetired);
    }

    [Fact]
    public void MmioReadIsCompletedByTheVmmAndTheInstructionFinishes()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rbx, Mmio);
            a.mov(eax, __dword_ptr[rbx + 4]);
            a.mov(rcx, rax);
            a.hlt();
        });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.Equal(4, exit.AccessSize);
        g.Cpu.CompleteMmioRead(0xCAFEF00D);
        exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(0xCAFEF00DUL, g.Cpu.State.Rcx);
    }

    [Fact]
    public void MmioWriteReportsTheValue()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rbx, Mmio);
            a.mov(eax, 0x12345678);
            a.mov(__dword_ptr[rbx + 0x30], eax);
            a.mov(rcx, 7);
            a.hlt();
        });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptWrite);
        Assert.Equal(0x12345678UL, exit.WriteValue);
        Assert.Equal(Mmio + 0x30, exit.GuestPhysicalAddress);
        g.Cpu.CompleteMmioWrite();
        exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(7UL, g.Cpu.State.Rcx);
    }

    [Fact]
    public void RepStringIntoMmioCompletesOneIterationPerExit()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rsi, GuestBuilder.RamBase);
            a.mov(rdi, Mmio + 0x100);
            a.mov(ecx, 3);
            a.rep.movsb();
            a.hlt();
        });
        g.Vm.WritePhysical(GuestBuilder.RamBase, [0x11, 0x22, 0x33]);
        var written = new List<(ulong, ulong)>();
        VmExit exit;
        while ((exit = g.Cpu.Run()).Reason == ExitReason.EptViolation)
        {
            written.Add((exit.GuestPhysicalAddress, exit.WriteValue));
            g.Cpu.CompleteMmioWrite();
            Assert.True(written.Count <= 3, "the REP MOVSB did not make progress");
        }
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal([(Mmio + 0x100, 0x11UL), (Mmio + 0x101, 0x22UL), (Mmio + 0x102, 0x33UL)], written);
        Assert.Equal(0UL, g.Cpu.State.Rcx);
        Assert.Equal(Mmio + 0x103, g.Cpu.State.Rdi);
    }

    [Fact]
    public void WriteToReadOnlyMappingReportsWhatTheMappingAllowed()
    {
        using var g = new GuestBuilder(a => { a.mov(rbx, 0x200000); a.mov(__byte_ptr[rbx], 1); a.hlt(); });
        g.Vm.MapMemory(0x200000, 0x1000, MemoryPermissions.Read);
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptWrite);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptReadable);
        Assert.Equal(0UL, exit.Qualification & ExitQualification.EptWritable);
    }

    [Fact]
    public void FetchFromNonExecutableMemoryIsAnEptViolationOnFetch()
    {
        using var g = new GuestBuilder(a => { a.mov(rax, 0x200000UL); a.jmp(rax); });
        g.Vm.MapMemory(0x200000, 0x1000, MemoryPermissions.ReadWrite);
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptFetch);
        Assert.Equal(0x200000UL, g.Cpu.State.Rip);
        Assert.Equal(0x200000UL, exit.GuestPhysicalAddress);
    }

    [Fact]
    public void IoExitsCarryTheSdmQualification()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(dx, 0x3F8);
            a.mov(al, (byte)'A');
            a.@out(dx, al);
            a.@in(eax, 0x60);
            a.hlt();
        });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.IoInstruction, exit.Reason);
        Assert.Equal(0x3F8, ExitQualification.IoPort(exit.Qualification));
        Assert.False(ExitQualification.IoIsIn(exit.Qualification));
        Assert.Equal(1, ExitQualification.IoSize(exit.Qualification));
        Assert.False(ExitQualification.IoIsImmediate(exit.Qualification));
        Assert.Equal((byte)'A', (byte)g.Cpu.State.Rax);
        g.Cpu.CompleteIoOut();
        exit = g.Cpu.Run();
        Assert.Equal(ExitReason.IoInstruction, exit.Reason);
        Assert.True(ExitQualification.IoIsIn(exit.Qualification));
        Assert.True(ExitQualification.IoIsImmediate(exit.Qualification));
        Assert.Equal(4, ExitQualification.IoSize(exit.Qualification));
        Assert.Equal(0x60, ExitQualification.IoPort(exit.Qualification));
        g.Cpu.CompleteIoIn(0xAABBCCDD);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0xAABBCCDDUL, g.Cpu.State.Rax);
    }

    [Fact]
    public void IoBitmapsDecideWhichPortsExit()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rax, 0x1234UL);
            a.@in(al, 0x70);   // not in the bitmap: absent device, reads 0xFF
            a.@out(0x80, al);  // in the bitmap: exits
            a.hlt();
        });
        g.Cpu.Controls.UseIoBitmaps = true;
        g.Cpu.Controls.SetIoExiting(0x80, true);
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.IoInstruction, exit.Reason);
        Assert.Equal(0x80, ExitQualification.IoPort(exit.Qualification));
        Assert.Equal(0x12FFUL, g.Cpu.State.Rax);
    }

    [Fact]
    public void RdtscWithoutExitingReturnsHostTscPlusOffset()
    {
        using var g = new GuestBuilder(a => { a.rdtsc(); a.hlt(); });
        g.Cpu.Controls.TscOffset = 1L << 60;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        ulong tsc = (g.Cpu.State.Rdx << 32) | g.Cpu.State.Rax;
        Assert.True(tsc >= 1UL << 60, $"tsc {tsc:x}");
    }

    [Fact]
    public void RdtscExitingExits()
    {
        using var g = new GuestBuilder(a => { a.rdtsc(); a.hlt(); });
        g.Cpu.Controls.RdtscExiting = true;
        Assert.Equal(ExitReason.Rdtsc, g.Cpu.Run().Reason);
        g.Cpu.CompleteRdtsc(0x1122334455667788);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0x55667788UL, g.Cpu.State.Rax);
        Assert.Equal(0x11223344UL, g.Cpu.State.Rdx);
    }

    [Fact]
    public void MsrBitmapsDecideWhichMsrsExitAndOthersAreArchitectural()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(ecx, 0xC0000100);   // FS_BASE
            a.mov(eax, 0x1000);
            a.mov(edx, 0);
            a.wrmsr();
            a.mov(ecx, 0x1B);          // APIC_BASE: intercepted
            a.rdmsr();
            a.hlt();
        });
        g.Cpu.Controls.UseMsrBitmaps = true;
        g.Cpu.Controls.SetMsrExiting(0x1B, read: true, write: true);
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Rdmsr, exit.Reason);
        Assert.Equal(0x1000UL, g.Cpu.State.Fs.Base);
        g.Cpu.CompleteRdmsr(0xFEE00900);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0xFEE00900UL, g.Cpu.State.Rax);
    }

    [Fact]
    public void ControlRegisterAccessExitsWithQualification()
    {
        using var g = new GuestBuilder(a => { a.mov(rbx, 0x5000UL); a.mov(cr3, rbx); a.mov(r9, cr3); a.hlt(); });
        g.Cpu.Controls.Cr3LoadExiting = true;
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.ControlRegisterAccess, exit.Reason);
        Assert.Equal(3, ExitQualification.CrNumber(exit.Qualification));
        Assert.Equal(ExitQualification.CrAccessType.MovToCr, ExitQualification.CrAccess(exit.Qualification));
        Assert.Equal(GuestRegister.Rbx, ExitQualification.CrGpr(exit.Qualification));
        g.Cpu.State.Cr3 = 0x5000;
        g.Cpu.SkipInstruction();
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0x5000UL, g.Cpu.State.R9);
    }

    [Fact]
    public void VmcallXsetbvAndPauseExit()
    {
        using var g = new GuestBuilder(a => { a.pause(); a.vmcall(); a.xor(ecx, ecx); a.xsetbv(); a.hlt(); });
        g.Cpu.State.Cr4 |= CpuidModel.Cr4OsXsave; // without it XSETBV is #UD, which takes priority over the exit
        g.Cpu.Controls.PauseExiting = true;
        Assert.Equal(ExitReason.Pause, g.Cpu.Run().Reason);
        g.Cpu.SkipInstruction();
        Assert.Equal(ExitReason.Vmcall, g.Cpu.Run().Reason);
        g.Cpu.SkipInstruction();
        Assert.Equal(ExitReason.Xsetbv, g.Cpu.Run().Reason);
    }

    [Fact]
    public void UndefinedOpcodeIsAnExceptionExitWithVector6()
    {
        using var g = new GuestBuilder(a => { a.nop(); a.ud2(); });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.ExceptionOrNmi, exit.Reason);
        Assert.Equal(ExceptionVector.UD, exit.Vector);
        Assert.Equal(InterruptionType.HardwareException, exit.InterruptionType);
        Assert.Equal(GuestBuilder.CodeBase + 1, g.Cpu.State.Rip);
    }

    [Fact]
    public void SyscallExitingIsAJitvmxExtension()
    {
        using var g = new GuestBuilder(a => { a.mov(eax, 60); a.syscall(); a.hlt(); });
        g.Cpu.Controls.SyscallExiting = true;
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Syscall, exit.Reason);
        Assert.True((uint)exit.Reason >= 0x1000);
        Assert.Equal(2, exit.InstructionLength);
        Assert.Equal(60UL, g.Cpu.State.Rax);
    }

    [Fact]
    public void ExceptionsNotInTheBitmapAreDeliveredThroughTheIdt()
    {
        const ulong Idt = GuestBuilder.RamBase;
        using var g = new GuestBuilder(a =>
        {
            var handler = a.CreateLabel();
            a.ud2();
            a.Label(ref handler);
            a.mov(rax, __qword_ptr[rsp]); // return RIP = the ud2
            a.hlt();
        });
        // Gate for #UD → CodeBase + 2 (the handler label).
        ulong target = GuestBuilder.CodeBase + 2;
        g.WriteInterruptGate(Idt, ExceptionVector.UD, target);
        g.Cpu.State.Idtr = new DescriptorTableRegister { Base = Idt, Limit = 256 * 16 - 1 };
        g.Cpu.Controls.ExceptionBitmap = 0;
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(GuestBuilder.CodeBase, g.Cpu.State.Rax);
    }

    [Fact]
    public void AnExceptionWithNoIdtIsATripleFault()
    {
        using var g = new GuestBuilder(a => a.ud2());
        g.Cpu.Controls.ExceptionBitmap = 0;
        Assert.Equal(ExitReason.TripleFault, g.Cpu.Run().Reason);
    }
}
