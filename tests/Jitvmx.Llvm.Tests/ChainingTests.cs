// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Native code chained region to region (linked exits and the indirect-branch jump cache): the same
/// results as the IL tier, exact budgets, exit requests honoured inside a chain that never returns
/// to the dispatcher, and no stale link after the code changes.
/// </summary>
[Collection(BackgroundTier.Collection)]
public class ChainingTests
{
    // Calls and returns in a loop: direct exits (the call) and indirect ones (the return).
    private static void Calls(Assembler a)
    {
        var loop = a.CreateLabel();
        var f = a.CreateLabel();
        a.mov(ecx, 60_000);
        a.xor(ebx, ebx);
        a.Label(ref loop);
        a.call(f);
        a.add(rbx, rax);
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
        a.Label(ref f);
        a.mov(eax, 1);     // patched by a test: B8 imm32
        a.imul(rax, rbx);
        a.add(rax, 3);
        a.ret();
    }

    private static TestGuest Llvm(Action<Assembler> program)
    {
        var g = new TestGuest(program);
        Assert.True(LlvmTier.TryAttach(g.Vm, LlvmOptLevel.O1, out string? why, (ir, reason) => throw new Xunit.Sdk.XunitException(reason)), why);
        return g;
    }

    private static void AssertSameState(VirtualCpu expected, VirtualCpu actual)
    {
        for (int r = 0; r < 16; r++) Assert.Equal(expected.State[(GuestRegister)r], actual.State[(GuestRegister)r]);
        Assert.Equal(expected.State.Rip, actual.State.Rip);
        Assert.Equal(expected.State.Rflags, actual.State.Rflags);
        Assert.Equal(expected.InstructionsRetired, actual.InstructionsRetired);
    }

    [Fact]
    public void CallsAndReturnsChainWithTheIlTiersResults()
    {
        using var il = new TestGuest(Calls);
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);
        using var native = Llvm(Calls);
        Assert.Equal(ExitReason.Hlt, native.Cpu.Run().Reason);
        AssertSameState(il.Cpu, native.Cpu);
        Assert.True(native.Vm.Statistics.ChainLinks > 0, "no exit was linked");
        Assert.True(native.Vm.Statistics.JumpsCached > 0, "no return target was cached");
    }

    [Fact]
    public void CodeSwappedInWhileTheOldCodeRunsChainsCorrectly()
    {
        // The background tier swaps native code in while the dispatcher runs a region's old IL
        // code: the IL code reports no cookie, and the dispatcher must not take its slot for
        // another region's. Small budgets make many dispatches around the swaps.
        using var il = new TestGuest(Calls);
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);
        for (int round = 0; round < 4; round++)
        {
            using var tiered = new TestGuest(Calls, options: new VirtualMachineOptions { TierUpThreshold = 500 + 300 * round });
            Assert.True(LlvmTier.TryAttachBackground(tiered.Vm, LlvmOptLevel.O0, out string? why), why);
            VmExit exit;
            while ((exit = tiered.Cpu.Run(997)).Reason == ExitReason.InstructionBudget) { }
            Assert.Equal(ExitReason.Hlt, exit.Reason);
            AssertSameState(il.Cpu, tiered.Cpu);
        }
    }

    [Fact]
    public void BudgetsStopAtTheExactInstructionInsideAChain()
    {
        using var il = new TestGuest(Calls);
        using var native = Llvm(Calls);
        // Odd slices end inside regions entered by chaining.
        foreach (ulong slice in (ulong[])[1, 7, 1000, 33_333, 3, 250_001])
        {
            var e1 = il.Cpu.Run(slice);
            var e2 = native.Cpu.Run(slice);
            Assert.Equal(e1.Reason, e2.Reason);
            AssertSameState(il.Cpu, native.Cpu);
        }
    }

    [Fact]
    public void AnExitRequestStopsAChainThatNeverReturns()
    {
        // An endless loop through an indirect jump: every iteration leaves its region, and the jump
        // cache makes native code enter the next iteration itself.
        using var g = Llvm(a =>
        {
            var top = a.CreateLabel();
            a.lea(rbx, __[top]);
            a.Label(ref top);
            a.inc(rax);
            a.jmp(rbx);
        });
        var cpu = g.Cpu;
        var stats = g.Vm.Statistics;
        // Ask once the loop runs chained (a fixed delay raced the first compile on a busy machine).
        var requester = new Thread(() =>
        {
            var wait = System.Diagnostics.Stopwatch.StartNew();
            while (Volatile.Read(ref stats.JumpsCached) == 0 && wait.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(5);
            Thread.Sleep(100);
            cpu.RequestExit();
        }) { IsBackground = true };
        requester.Start();
        var exit = cpu.Run();
        requester.Join();
        Assert.Equal(ExitReason.ExitRequested, exit.Reason);
        Assert.True(cpu.State.Rax > 1000, $"the loop ran {cpu.State.Rax} times");
        Assert.True(g.Vm.Statistics.JumpsCached > 0);
    }

    [Fact]
    public void ChangedCodeIsNotReachedThroughAStaleLink()
    {
        using var il = new TestGuest(Calls);
        using var native = Llvm(Calls);
        // Find f's MOV EAX, imm32 (B8 01 00 00 00).
        int at = Array.IndexOf(il.Code, (byte)0xB8);
        while (il.Code[at + 1] != 1) at = Array.IndexOf(il.Code, (byte)0xB8, at + 1);
        foreach (var g in new[] { il, native })
        {
            Assert.Equal(ExitReason.InstructionBudget, g.Cpu.Run(40_000).Reason);
            g.Vm.WritePhysical(TestGuest.CodeBase + (ulong)at + 1, [5, 0, 0, 0]);
            Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        }
        AssertSameState(il.Cpu, native.Cpu);
        Assert.True(native.Vm.Statistics.ChainLinks > 0);
    }
}
