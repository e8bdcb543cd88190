// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// A VM whose guest memory lies at one host offset (<see cref="VirtualMachine.FlatAddend"/>): LLVM
/// code adds that offset instead of loading each TLB entry's, and pages elsewhere still read right.
/// </summary>
public class FlatAddendTests
{
    // Sums RAM (at the flat offset) and the code page (mapped elsewhere), and stores into RAM.
    private static void Program(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rsi, TestGuest.RamBase);
        a.mov(rdi, TestGuest.CodeBase);
        a.mov(ecx, 64);
        a.xor(eax, eax);
        a.Label(ref loop);
        a.add(rax, __qword_ptr[rsi + rcx * 8]);
        a.add(rax, __qword_ptr[rdi + rcx * 8]);
        a.mov(__qword_ptr[rsi + rcx * 8 + 0x1000], rax);
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
    }

    private static void FlatRam(TestGuest g)
    {
        var ram = g.Vm.MemoryRegions.Single(r => r.GuestPhysicalAddress == TestGuest.RamBase);
        g.Vm.FlatAddend = ram.HostAddress - (long)TestGuest.RamBase;
    }

    [Theory]
    [InlineData(LlvmOptLevel.O0)]
    [InlineData(LlvmOptLevel.O1)]
    public void LlvmCodeUsesTheFlatAddendAndPagesElsewhereStillReadTheirOwnBytes(LlvmOptLevel level)
    {
        var (il, ll) = Tiers.Compare(Program, g => g.Cpu.Run(), FlatRam, level);
        Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        Assert.NotEqual(0UL, ll.State.Rax);
    }

    [Fact]
    public void IlCodeUsesTheFlatAddendAndPagesElsewhereStillReadTheirOwnBytes()
    {
        var plain = Tiers.Run(Program, g => g.Cpu.Run());
        var flat = Tiers.Run(Program, g => g.Cpu.Run(), FlatRam);
        Assert.Equal(ExitReason.Hlt, flat.Exit.Reason);
        Tiers.Same(plain, flat);
    }

    [Fact]
    public void FlatAddendCannotChangeOnceCodeIsTranslated()
    {
        using var g = new TestGuest(Program);
        FlatRam(g);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Throws<InvalidOperationException>(() => g.Vm.FlatAddend = null);
    }

    [Fact]
    public void FlatAddendCannotChangeOnceFlatCodeIsInstalledFromAnObject()
    {
        using var from = new TestGuest(Program);
        FlatRam(from);
        var obj = RegionObject.Compile(from.Cpu, TestGuest.CodeBase, LlvmOptLevel.O1);

        using var plain = new TestGuest(Program);
        Assert.Throws<RegionObjectException>(() => obj.Install(plain.Cpu));

        using var to = new TestGuest(Program);
        FlatRam(to);
        obj.Install(to.Cpu);
        Assert.Throws<InvalidOperationException>(() => to.Vm.FlatAddend = null);
        Assert.Equal(ExitReason.Hlt, to.Cpu.Run().Reason);
    }
}
