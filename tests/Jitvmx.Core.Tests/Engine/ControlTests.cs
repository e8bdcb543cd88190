// SPDX-License-Identifier: MIT
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

public class ControlTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RequestExitStopsATightInfiniteLoop(bool interpreted)
    {
        using var g = new GuestBuilder(a => { var l = a.CreateLabel(); a.Label(ref l); a.jmp(l); },
            options: interpreted ? new VirtualMachineOptions { InterpreterTierUp = long.MaxValue } : null);
        var cpu = g.Cpu;
        // Long enough for the loop to be compiled and entered, so the request arrives inside it.
        var t = new Thread(() => { Thread.Sleep(300); cpu.RequestExit(); });
        t.Start();
        var exit = cpu.Run();
        t.Join();
        Assert.Equal(ExitReason.ExitRequested, exit.Reason);
        Assert.Equal(GuestBuilder.CodeBase, cpu.State.Rip);
    }

    [Fact]
    public void RequestExitBeforeRunExitsBeforeTheFirstInstruction()
    {
        using var g = new GuestBuilder(a => a.hlt());
        g.Cpu.RequestExit();
        Assert.Equal(ExitReason.ExitRequested, g.Cpu.Run().Reason);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
    }

    [Theory]
    [InlineData(1UL, false)]
    [InlineData(7UL, false)]
    [InlineData(1000UL, false)]
    [InlineData(99_999UL, false)]
    [InlineData(1UL, true)]
    [InlineData(1000UL, true)]
    [InlineData(99_999UL, true)]
    public void PreemptionTimerCountsGuestInstructionsExactly(ulong count, bool interpreted)
    {
        // A 3-instruction loop: nop; nop; jmp. Also with the interpreter tier alone.
        using var g = new GuestBuilder(a =>
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            a.nop();
            a.nop();
            a.jmp(l);
        }, options: interpreted ? new VirtualMachineOptions { InterpreterTierUp = long.MaxValue } : null);
        g.Cpu.Controls.PreemptionTimer = count;
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.PreemptionTimer, exit.Reason);
        Assert.Equal(count, g.Cpu.InstructionsRetired);
        ulong[] ripAfter = [GuestBuilder.CodeBase, GuestBuilder.CodeBase + 1, GuestBuilder.CodeBase + 2];
        Assert.Equal(ripAfter[count % 3], g.Cpu.State.Rip);
        Assert.Equal(0UL, g.Cpu.Controls.PreemptionTimer);
    }

    [Fact]
    public void InstructionBudgetIsExactAndResumable()
    {
        using var g = new GuestBuilder(a =>
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            a.nop();
            a.jmp(l);
        });
        for (int i = 1; i <= 5; i++)
        {
            var exit = g.Cpu.Run(1001);
            Assert.Equal(ExitReason.InstructionBudget, exit.Reason);
            Assert.Equal(1001UL * (ulong)i, g.Cpu.InstructionsRetired);
        }
    }

    [Fact]
    public void TranslationsSurviveAcrossRunsAndCanBeInvalidated()
    {
        using var g = new GuestBuilder(a => { a.mov(eax, 1); a.hlt(); });
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        long translated = g.Vm.Statistics.RegionsTranslated;
        g.Cpu.State.Rip = GuestBuilder.CodeBase;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(translated, g.Vm.Statistics.RegionsTranslated);
        // Patch the immediate through the VMM: the stale translation must not run.
        g.Vm.WritePhysical(GuestBuilder.CodeBase + 1, [2, 0, 0, 0]);
        g.Cpu.State.Rip = GuestBuilder.CodeBase;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(2UL, g.Cpu.State.Rax);
    }

    [Fact]
    public void SelfModifyingCodeRunsTheNewCode()
    {
        // The guest patches the immediate of a later "mov eax, imm32" in its own page, then runs it.
        using var g = new GuestBuilder(a =>
        {
            var target = a.CreateLabel();
            a.lea(rbx, __[target]);
            a.mov(__dword_ptr[rbx + 1], 0x77);
            a.Label(ref target);
            a.mov(eax, 0x11);
            a.hlt();
        }, MemoryPermissions.All);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0x77UL, g.Cpu.State.Rax);
    }

    [Fact]
    public void CodeWrittenByTheGuestAfterItRanIsRetranslated()
    {
        // A loop calls a function, then overwrites the function's immediate and calls it again.
        using var g = new GuestBuilder(a =>
        {
            var f = a.CreateLabel();
            a.call(f);
            a.mov(rcx, rax);
            a.lea(rbx, __[f]);
            a.mov(__dword_ptr[rbx + 1], 0x99);
            a.call(f);
            a.hlt();
            a.Label(ref f);
            a.mov(eax, 0x11);
            a.ret();
        }, MemoryPermissions.All);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0x11UL, g.Cpu.State.Rcx);
        Assert.Equal(0x99UL, g.Cpu.State.Rax);
        Assert.True(g.Vm.Statistics.RegionsInvalidated > 0);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    public void InlinedCallsGiveTheSameResultsAsDispatchedOnes(int depth)
    {
        // Recursion, a loop calling a leaf, and a callee that replaces its return address.
        using var g = new GuestBuilder(a =>
        {
            var sum = a.CreateLabel();
            var basecase = a.CreateLabel();
            var leaf = a.CreateLabel();
            var hijack = a.CreateLabel();
            var landing = a.CreateLabel();
            var loop = a.CreateLabel();
            a.mov(edi, 30);
            a.call(sum);
            a.mov(r12, rax);
            a.mov(ecx, 1000);
            a.xor(ebx, ebx);
            a.Label(ref loop);
            a.call(leaf);
            a.dec(ecx);
            a.jnz(loop);
            a.call(hijack);
            a.mov(r13, 1);       // skipped: hijack returns to landing
            a.Label(ref landing);
            a.hlt();
            a.Label(ref sum);
            a.test(rdi, rdi);
            a.jz(basecase);
            a.push(rdi);
            a.dec(rdi);
            a.call(sum);
            a.pop(rdi);
            a.add(rax, rdi);
            a.ret();
            a.Label(ref basecase);
            a.xor(eax, eax);
            a.ret();
            a.Label(ref leaf);
            a.add(rbx, rcx);
            a.ret();
            a.Label(ref hijack);
            a.lea(rdx, __[landing]);
            a.mov(__qword_ptr[rsp], rdx);
            a.ret();
        }, options: new VirtualMachineOptions { MaxInlineCallDepth = depth });
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(465UL, g.Cpu.State.R12);           // 1 + … + 30
        Assert.Equal(500500UL, g.Cpu.State.Rbx);        // 1 + … + 1000
        Assert.Equal(0UL, g.Cpu.State.R13);
        Assert.Equal(GuestBuilder.RamBase + GuestBuilder.RamSize - 0x100, g.Cpu.State.Rsp);
    }
}
