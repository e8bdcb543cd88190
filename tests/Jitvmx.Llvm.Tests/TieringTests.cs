// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>Background tiering: hot regions are recompiled by LLVM while the guest runs, with no change in results.</summary>
[Collection(BackgroundTier.Collection)]
public class TieringTests
{
    // A memory-heavy loop (xorshift into a buffer, then a checksum) entered once, as a program's main loop is.
    private static void Program(Assembler a)
    {
        var fill = a.CreateLabel();
        var sum = a.CreateLabel();
        a.mov(rdi, TestGuest.RamBase);
        a.mov(ecx, 8192);
        a.mov(eax, 0x2545F491);
        a.Label(ref fill);
        a.mov(edx, eax); a.shl(edx, 13); a.xor(eax, edx);
        a.mov(edx, eax); a.shr(edx, 17); a.xor(eax, edx);
        a.mov(edx, eax); a.shl(edx, 5); a.xor(eax, edx);
        a.mov(__dword_ptr[rdi + rcx * 4 - 4], eax);
        a.dec(ecx);
        a.jnz(fill);
        a.mov(r8d, 200);
        var round = a.CreateLabel();
        a.xor(ebx, ebx);
        a.Label(ref round);
        a.mov(ecx, 8192);
        a.Label(ref sum);
        a.mov(edx, __dword_ptr[rdi + rcx * 4 - 4]);
        a.imul(rbx, rbx, 31);
        a.add(rbx, rdx);
        a.setc(r9b);
        a.add(r10, r9);
        a.dec(ecx);
        a.jnz(sum);
        a.dec(r8d);
        a.jnz(round);
        a.hlt();
    }

    [Fact]
    public void AShortRegionEnteredOftenIsAsHotAsItsEntriesCost()
    {
        // The RET is a one-instruction region: 20,000 calls retire 20,000 instructions in it, a tenth of
        // the threshold, but each entry through the dispatcher costs as much as 32 more.
        static void Calls(Assembler a)
        {
            var loop = a.CreateLabel();
            var f = a.CreateLabel();
            a.mov(ecx, 20_000);
            a.Label(ref loop);
            a.call(f);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
            a.Label(ref f);
            a.ret();
        }
        using var g = new TestGuest(Calls, options: new VirtualMachineOptions { TierUpThreshold = 200_000 });
        Assert.True(LlvmTier.TryAttachBackground(g.Vm, LlvmOptLevel.O1, out string? why), why);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        // The tier may have compiled and installed it already (with the return predicted, as a bigger
        // region): stopped first, so that the cache holds still while it is looked at.
        g.Vm.TierCompiler!.Dispose();
        const ulong retAt = TestGuest.CodeBase + 15; // after mov ecx (5), call (5), dec ecx (2), jnz (2), hlt (1)
        var ret = Tiers.Regions(g.Vm)[retAt];
        Assert.True(ret.TierQueued || Tiers.IsLlvm(ret), "the RET's region was not queued");
    }

    [Fact]
    public void TheWarmUpRegionLiftsAndCompiles()
    {
        // A warm-up that no longer lifts or compiles would fail silently on the tier's thread, and
        // the first hot region would pay the cold start again.
        var ir = LlvmTier.BackgroundTier.WarmUpRegion();
        Assert.NotNull(ir);
        Assert.Equal(10, ir.GuestInstructionCount);
        Assert.False(LlvmTier.HelperBound(ir));
        Assert.True(LlvmBackend.TryCompile(ir, LlvmOptLevel.O1, out var code, out string? why), why);
        Assert.NotNull(code);
    }

    [Fact]
    public void TheBackgroundTierTakesTheRegionThatRanMostSinceItsLastChoice()
    {
        // Region 0 was hot once (a big total) but has not run since it was last looked at;
        // region 1 keeps running; region 2 was just queued.
        long[] seen = [5_000_000, 2_000_000, 2_000_000];
        long[] now = [5_000_000, 2_600_000, 2_100_000];
        Assert.Equal(1, LlvmTier.Hottest(seen, now));
        Assert.Equal(now, seen);

        // Nothing ran since: the newest (the last queued) goes first.
        Assert.Equal(2, LlvmTier.Hottest(seen, now));
        // Equal growth: the newer of the two.
        long[] later = [5_000_100, 2_600_000, 2_100_100];
        Assert.Equal(2, LlvmTier.Hottest(seen, later));
        Assert.Equal(0, LlvmTier.Hottest([0], [0]));
    }

    [Fact]
    public void HotRegionsAreSwappedInWithIdenticalResults()
    {
        using var il = new TestGuest(Program);
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);

        using var tiered = new TestGuest(Program, options: new VirtualMachineOptions { TierUpThreshold = 50_000 });
        Assert.True(LlvmTier.TryAttachBackground(tiered.Vm, LlvmOptLevel.O1, out string? why), why);
        // Run in slices so the test also covers the swap happening between and during runs.
        VmExit exit;
        int runs = 0;
        while ((exit = tiered.Cpu.Run(200_000)).Reason == ExitReason.InstructionBudget)
        {
            runs++;
            // Give the background compiler a chance to finish before the loop ends.
            if (tiered.Vm.Statistics.RegionsTieredUp == 0 && runs % 5 == 0) Thread.Sleep(20);
        }
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.True(tiered.Vm.Statistics.RegionsQueuedForTierUp > 0);
        Assert.True(tiered.Vm.Statistics.RegionsTieredUp > 0, "no region was recompiled by the background tier");
        AssertSameAs(il, tiered);
    }

    [Fact]
    public void TwoLevelLlvmTierMeasuresEveryRegionAndChainsOnlyHotCode()
    {
        using var il = new TestGuest(Program);
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);

        // Never hot: all code stays at the first level, which returns to the dispatcher at every exit
        // (so each region's own entries are counted) and is never linked to or from.
        using (var cold = new TestGuest(Program, options: new VirtualMachineOptions { TierUpThreshold = long.MaxValue }))
        {
            Assert.True(LlvmTier.TryAttachTwoLevel(cold.Vm, LlvmOptLevel.O0, LlvmOptLevel.O1, out string? why), why);
            Assert.Equal(ExitReason.Hlt, cold.Cpu.Run().Reason);
            AssertSameAs(il, cold);
            Assert.Equal(0, cold.Vm.Statistics.RegionsTieredUp);
            Assert.Equal(0, cold.Vm.Statistics.ChainLinks);
            Assert.Equal(0, cold.Vm.Statistics.JumpsCached);
        }

        using var hot = new TestGuest(Program, options: new VirtualMachineOptions { TierUpThreshold = 50_000 });
        Assert.True(LlvmTier.TryAttachTwoLevel(hot.Vm, LlvmOptLevel.O0, LlvmOptLevel.O1, out string? why2), why2);
        VmExit exit;
        int runs = 0;
        while ((exit = hot.Cpu.Run(200_000)).Reason == ExitReason.InstructionBudget)
            if (hot.Vm.Statistics.RegionsTieredUp == 0 && ++runs % 5 == 0) Thread.Sleep(20);
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        AssertSameAs(il, hot);
        Assert.True(hot.Vm.Statistics.RegionsTieredUp > 0, "no region was recompiled at the hot level");
    }

    /// <summary>Same registers, RIP, RFLAGS, retired count and the first <paramref name="ramBytes"/> of RAM.</summary>
    internal static void AssertSameAs(TestGuest expected, TestGuest actual, int ramBytes = 32768)
    {
        for (int r = 0; r < 16; r++)
            Assert.Equal(expected.Cpu.State[(GuestRegister)r], actual.Cpu.State[(GuestRegister)r]);
        Assert.Equal(expected.Cpu.State.Rip, actual.Cpu.State.Rip);
        Assert.Equal(expected.Cpu.State.Rflags, actual.Cpu.State.Rflags);
        Assert.Equal(expected.Cpu.InstructionsRetired, actual.Cpu.InstructionsRetired);
        var a = new byte[ramBytes];
        var b = new byte[ramBytes];
        expected.Vm.ReadPhysical(TestGuest.RamBase, a);
        actual.Vm.ReadPhysical(TestGuest.RamBase, b);
        Assert.Equal(a, b);
    }
}
