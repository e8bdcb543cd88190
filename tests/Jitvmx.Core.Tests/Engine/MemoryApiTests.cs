// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

public unsafe class MemoryApiTests
{
    [Fact]
    public void HostMemorySuppliedByTheVmmIsSharedWithTheGuest()
    {
        var host = (byte*)NativeMemory.AlignedAlloc(0x2000, 4096);
        try
        {
            new Span<byte>(host, 0x2000).Clear();
            host[0x10] = 5;
            using var g = new GuestBuilder(a =>
            {
                a.mov(rbx, 0x400000UL);
                a.mov(al, __byte_ptr[rbx + 0x10]);
                a.add(al, 1);
                a.mov(__byte_ptr[rbx + 0x1FFF], al);
                a.hlt();
            });
            g.Vm.MapHostMemory(0x400000, 0x2000, (nint)host, MemoryPermissions.ReadWrite);
            Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
            Assert.Equal(6, host[0x1FFF]);
        }
        finally
        {
            NativeMemory.AlignedFree(host);
        }
    }

    [Fact]
    public void ProtectAndUnmapTakeEffectOnTheNextAccess()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rbx, 0x400000UL);
            var l = a.CreateLabel();
            a.Label(ref l);
            a.mov(__qword_ptr[rbx], rcx);
            a.inc(rcx);
            a.jmp(l);
        });
        var region = g.Vm.MapMemory(0x400000, 0x1000, MemoryPermissions.ReadWrite);
        Assert.Equal(ExitReason.InstructionBudget, g.Cpu.Run(3000).Reason);
        // The TLB holds a writable entry now; Protect must revoke it.
        g.Vm.Protect(region, MemoryPermissions.Read);
        var exit = g.Cpu.Run(3000);
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptWrite);
        Assert.NotEqual(0UL, exit.Qualification & ExitQualification.EptReadable);
        g.Vm.Protect(region, MemoryPermissions.ReadWrite);
        Assert.Equal(ExitReason.InstructionBudget, g.Cpu.Run(3000).Reason);
        g.Vm.Unmap(region);
        exit = g.Cpu.Run(3000);
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.Equal(0UL, exit.Qualification & (ExitQualification.EptReadable | ExitQualification.EptWritable));
    }

    [Fact]
    public void OverlappingOrUnalignedMappingsAreRejected()
    {
        using var vm = new VirtualMachine();
        vm.MapMemory(0x10000, 0x2000, MemoryPermissions.All);
        Assert.Throws<ArgumentException>(() => vm.MapMemory(0x11000, 0x1000, MemoryPermissions.All));
        Assert.Throws<ArgumentException>(() => vm.MapMemory(0x20001, 0x1000, MemoryPermissions.All));
        Assert.Throws<ArgumentException>(() => vm.MapMemory(0x30000, 0x1234, MemoryPermissions.All));
        Assert.Throws<ArgumentException>(() => vm.ReadPhysical(0x50000, new byte[4]));
    }

    [Fact]
    public void AccessCrossingIntoAnUnmappedPageFaultsWithoutPartialWrites()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rbx, 0x400FFCUL);
            a.mov(rax, 0x1122334455667788UL);
            a.mov(__qword_ptr[rbx], rax);
            a.hlt();
        });
        g.Vm.MapMemory(0x400000, 0x1000, MemoryPermissions.ReadWrite);
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.Equal(0x401000UL, exit.GuestPhysicalAddress);
        var tail = new byte[4];
        g.Vm.ReadPhysical(0x400FFC, tail);
        Assert.Equal(new byte[4], tail);
    }

    [Fact]
    public void InjectedInterruptIsDeliveredThroughTheIdtBeforeTheNextInstruction()
    {
        const ulong Idt = GuestBuilder.RamBase;
        using var g = new GuestBuilder(a =>
        {
            a.mov(eax, 1);   // 5 bytes at CodeBase
            a.hlt();         // CodeBase + 5
            a.mov(eax, 2);   // handler at CodeBase + 6
            a.hlt();
        });
        ulong target = GuestBuilder.CodeBase + 6;
        var gate = new byte[16];
        BitConverter.TryWriteBytes(gate.AsSpan(0), (ushort)target);
        BitConverter.TryWriteBytes(gate.AsSpan(2), (ushort)0x08);
        gate[5] = 0x8E;
        g.Vm.WritePhysical(Idt + 0x20 * 16, gate);
        g.Cpu.State.Idtr = new DescriptorTableRegister { Base = Idt, Limit = 0xFFF };
        g.Cpu.State.Rflags |= (ulong)RFlags.IF;
        g.Cpu.InjectEvent(0x20, InterruptionType.ExternalInterrupt);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(2UL, g.Cpu.State.Rax);
        Assert.Equal(0UL, g.Cpu.State.Rflags & (ulong)RFlags.IF);
        // The interrupted RIP and flags are on the stack.
        var frame = new byte[24];
        g.Vm.ReadPhysical(g.Cpu.State.Rsp, frame);
        Assert.Equal(GuestBuilder.CodeBase, BitConverter.ToUInt64(frame, 0));
    }
}
