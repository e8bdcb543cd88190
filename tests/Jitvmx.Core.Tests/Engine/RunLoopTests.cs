// SPDX-License-Identifier: MIT
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

public class RunLoopTests
{
    [Fact]
    public void HltExitsWithRipAtTheInstruction()
    {
        using var g = new GuestBuilder(a => { a.nop(); a.nop(); a.hlt(); });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(GuestBuilder.CodeBase + 2, g.Cpu.State.Rip);
        Assert.Equal(1, exit.InstructionLength);
        Assert.Equal(2UL, g.Cpu.InstructionsRetired);
    }

    [Fact]
    public void CpuidExitIsCompletedByTheVmm()
    {
        using var g = new GuestBuilder(a => { a.mov(eax, 0); a.cpuid(); a.hlt(); });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Cpuid, exit.Reason);
        Assert.Equal(2, exit.InstructionLength);
        g.Cpu.CompleteCpuid(1, 0x756e6547, 0x6c65746e, 0x49656e69);
        exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(0x756e6547UL, g.Cpu.State.Rbx);
    }

    [Fact]
    public void CallAndRetUseTheStack()
    {
        using var g = new GuestBuilder(a =>
        {
            var f = a.CreateLabel();
            a.call(f);
            a.hlt();
            a.Label(ref f);
            a.mov(rax, 42);
            a.ret();
        });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(42UL, g.Cpu.State.Rax);
        Assert.Equal(GuestBuilder.RamBase + GuestBuilder.RamSize - 0x100, g.Cpu.State.Rsp);
    }

    [Fact]
    public void LongStraightLineCodeAcrossFetchWindowsAndPages()
    {
        // 600 ten-byte instructions: blocks longer than the fetch window, code over two pages.
        using var g = new GuestBuilder(a =>
        {
            for (int i = 0; i < 600; i++) a.mov(i % 2 == 0 ? rax : rbx, 0x1000000000UL + (ulong)i);
            a.hlt();
        });
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(0x1000000000UL + 598, g.Cpu.State.Rax);
        Assert.Equal(0x1000000000UL + 599, g.Cpu.State.Rbx);
        Assert.Equal(600UL, g.Cpu.InstructionsRetired);
    }
}
