// SPDX-License-Identifier: MIT
using Jitvmx.Lifting;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// The tier profile: hot regions a background tier compiled are written down, and the next run of
/// the same program queues them at their first translation, with the targets they were predicted with.
/// </summary>
[Collection(BackgroundTier.Collection)]
public sealed class TierProfileTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"jitvmx-profile-{Guid.NewGuid():N}");
    private string File1 => Path.Combine(_dir, "profiles", "program.txt");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void ALineReadsBackAsWritten()
    {
        (ulong, ulong)[] targets = [(0x401010, 0x402000), (0x401010, 0x402040)];
        string line = TierProfile.Format(0x401000, 3, targets);
        Assert.Equal("v1 401000 3 401010:402000,401010:402040", line);
        var hint = TierProfile.Parse(line)!;
        Assert.Equal(0x401000ul, hint.Entry);
        Assert.Equal(3, hint.Mode);
        Assert.Equal(targets, hint.Targets);
        Assert.Empty(TierProfile.Parse(TierProfile.Format(0x10, 0, []))!.Targets);
        Assert.Null(hint.Payload);

        string v2 = TierProfile.Format(0x401000, 3, targets, "abc/1/-");
        Assert.Equal("v2 401000 3 401010:402000,401010:402040 abc/1/-", v2);
        Assert.Equal("abc/1/-", TierProfile.Parse(v2)!.Payload);
        Assert.Equal(targets, TierProfile.Parse(v2)!.Targets);
        Assert.Throws<ArgumentException>(() => TierProfile.Format(0x401000, 3, targets, "two words"));
        Assert.Throws<ArgumentException>(() => TierProfile.Format(0x401000, 3, targets, ""));
    }

    [Theory]
    [InlineData("")]
    [InlineData("v2 401000 0 -")]
    [InlineData("v1 401000 0")]
    [InlineData("v1 40100g 0 -")]
    [InlineData("v1 401000 -1 -")]
    [InlineData("v1 401000 0 401010")]
    [InlineData("v1 401000 0 401010:")]
    [InlineData("v1 401000 0 -,")]
    [InlineData("v1 401000 0 - payload")]
    [InlineData("v2 401000 0 - ")]
    [InlineData("v2 401000 0 - a b")]
    public void ALineItDidNotWriteIsNotAHint(string line) => Assert.Null(TierProfile.Parse(line));

    [Fact]
    public void AHintIsTakenOnceAndOnlyInItsMode()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(File1)!);
        File.WriteAllLines(File1, ["v1 1000 2 -", "garbage", "v1 2000 0 2010:3000"]);
        var profile = TierProfile.Load(File1);
        Assert.Equal(2, profile.Count);
        Assert.Null(profile.Take(0x1000, 0)); // another x87/SSE mode
        Assert.NotNull(profile.Take(0x1000, 2));
        Assert.True(profile.Pending(0x1000));
        Assert.Null(profile.Take(0x1000, 2));
        profile.Finish(0x1000);
        Assert.False(profile.Pending(0x1000));
        Assert.Null(profile.Take(0x1000, 2)); // once per process, installed or not
        Assert.Equal([(0x2010ul, 0x3000ul)], profile.Take(0x2000, 0)!.Targets);
        Assert.Null(profile.Take(0x3000, 0));
    }

    [Fact]
    public void ARecordedRegionIsAppendedOnceAndRepeatsAreDroppedOnLoad()
    {
        var profile = TierProfile.Load(File1); // no file yet: an empty profile, and the directory is made on the first record
        Assert.Equal(0, profile.Count);
        profile.Record(0x1000, 0, []);
        profile.Record(0x1000, 0, []);
        profile.Record(0x2000, 0, [(0x2010, 0x3000)]);
        Assert.Equal(["v1 1000 0 -", "v1 2000 0 2010:3000"], File.ReadAllLines(File1));

        // Runs whose hot sets differ append new lines for the same entries; the last one counts.
        File.AppendAllLines(File1, Enumerable.Range(0, 200).Select(i => $"v1 1000 0 1010:{0x4000 + i:x}"));
        var again = TierProfile.Load(File1);
        Assert.Equal(2, again.Count);
        Assert.Equal(2, File.ReadAllLines(File1).Length);
        Assert.Equal([(0x1010ul, 0x4000ul + 199)], again.Take(0x1000, 0)!.Targets);
    }

    [Theory]
    [MemberData(nameof(PredictionTests.Programs), MemberType = typeof(PredictionTests))]
    public void TheNextRunCompilesTheHotRegionsAtOnceWithIdenticalResults(string name)
    {
        using var il = new TestGuest(PredictionTests.Program(name));
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);

        using (var first = new TestGuest(PredictionTests.Program(name), options: new VirtualMachineOptions { TierUpThreshold = 20_000, TierProfile = File1 }))
        {
            Assert.True(LlvmTier.TryAttachBackground(first.Vm, LlvmOptLevel.O1, out string? why), why);
            RunUntilHalt(first, () => first.Vm.Statistics.RegionsTieredUp > 0);
            TieringTests.AssertSameAs(il, first, 65536);
        }
        Assert.NotEmpty(File.ReadAllLines(File1));

        // The threshold is out of reach: only the profile can queue anything.
        using var second = new TestGuest(PredictionTests.Program(name), options: new VirtualMachineOptions { TierUpThreshold = long.MaxValue, TierProfile = File1 });
        Assert.True(LlvmTier.TryAttachBackground(second.Vm, LlvmOptLevel.O1, out string? why2), why2);
        RunUntilHalt(second, () => second.Vm.Statistics.RegionsTieredUpFromProfile > 0);
        Assert.Equal(0, second.Vm.Statistics.RegionsQueuedForTierUp);
        Assert.True(second.Vm.Statistics.RegionsQueuedFromProfile > 0);
        Assert.True(second.Vm.Statistics.RegionsTieredUpFromProfile > 0, "no region was compiled from the profile");
        TieringTests.AssertSameAs(il, second, 65536);
        second.Dispose();

        // Every line now records its code (HotRecord): the third run links it without translating.
        Assert.Contains(File.ReadAllLines(File1), l => l.StartsWith("v2 ", StringComparison.Ordinal));
        using var third = new TestGuest(PredictionTests.Program(name), options: new VirtualMachineOptions { TierUpThreshold = long.MaxValue, TierProfile = File1 });
        Assert.True(LlvmTier.TryAttachBackground(third.Vm, LlvmOptLevel.O1, out string? why3), why3);
        RunUntilHalt(third, () => third.Vm.Statistics.RegionsLoadedFromProfile > 0);
        Assert.True(third.Vm.Statistics.RegionsLoadedFromProfile > 0, "no region was loaded from the profile's records");
        TieringTests.AssertSameAs(il, third, 65536);
    }

    [Theory]
    [InlineData("stamp")]
    [InlineData("guest bytes")]
    [InlineData("object")]
    [InlineData("helper")]
    [InlineData("garbage")]
    public void ARecordThatDoesNotHoldTakesTheLongWayWithIdenticalResults(string broken)
    {
        const string name = "interpreter";
        using var il = new TestGuest(PredictionTests.Program(name));
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);
        using (var first = new TestGuest(PredictionTests.Program(name), options: new VirtualMachineOptions { TierUpThreshold = 20_000, TierProfile = File1 }))
        {
            Assert.True(LlvmTier.TryAttachBackground(first.Vm, LlvmOptLevel.O1, out string? why), why);
            RunUntilHalt(first, () => first.Vm.Statistics.RegionsTieredUp > 0);
        }
        // The interpreter's hot loop has predicted targets: its first line has a record already.
        var lines = File.ReadAllLines(File1).Select(TierProfile.Parse).OfType<TierProfile.Hint>().Where(h => h.Payload is not null).ToList();
        Assert.NotEmpty(lines);
        File.WriteAllLines(File1, lines.Select(h => TierProfile.Format(h.Entry, h.Mode, h.Targets, Break(h.Payload!, broken))));

        using var second = new TestGuest(PredictionTests.Program(name), options: new VirtualMachineOptions { TierUpThreshold = long.MaxValue, TierProfile = File1 });
        Assert.True(LlvmTier.TryAttachBackground(second.Vm, LlvmOptLevel.O1, out string? why2), why2);
        RunUntilHalt(second, () => second.Vm.Statistics.RegionsTieredUpFromProfile > 0);
        Assert.Equal(0, second.Vm.Statistics.RegionsLoadedFromProfile);
        Assert.True(second.Vm.Statistics.RegionsTieredUpFromProfile > 0, "no region was compiled from the profile");
        TieringTests.AssertSameAs(il, second, 65536);
    }

    // A record's fields: STAMP/KEY/NEED/CHARGE/INSNS/SHA/RANGES/SUCCESSORS/HELPERS/COVERED.
    private static string Break(string payload, string how)
    {
        string[] f = payload.Split('/');
        static string Flip(string hex) => (hex[0] == '0' ? "1" : "0") + hex[1..];
        switch (how)
        {
            case "stamp": f[0] = Flip(f[0]); break;        // made under other settings or another build
            case "guest bytes": f[5] = Flip(f[5]); break;  // compiled from other guest code
            case "object": f[1] = Flip(f[1]); break;       // gone from the code cache
            case "helper": f[8] = "1:jitvmx.Jitvmx.NoSuchHelpers.Gone"; break; // a helper this build does not have
            default: return "x/" + payload[2..];
        }
        return string.Join('/', f);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-")]
    [InlineData("a/b/c")]
    [InlineData("STAMP/0000000000000000000000000000000000000000000000000000000000000000/1/1/1/0000000000000000000000000000000000000000000000000000000000000000/-/-/-/-")]
    [InlineData("STAMP/0000000000000000000000000000000000000000000000000000000000000000/1/1/1/0000000000000000000000000000000000000000000000000000000000000000/20-10/-/-/-")]
    [InlineData("STAMP/0000000000000000000000000000000000000000000000000000000000000000/x/1/1/0000000000000000000000000000000000000000000000000000000000000000/10-20/-/-/-")]
    [InlineData("STAMP/00/1/1/1/0000000000000000000000000000000000000000000000000000000000000000/10-20/-/-/-")]
    [InlineData("STAMP/0000000000000000000000000000000000000000000000000000000000000000/1/1/1/0000000000000000000000000000000000000000000000000000000000000000/10-20/-/1:a,x/-")]
    [InlineData("STAMP/0000000000000000000000000000000000000000000000000000000000000000/1/1/1/0000000000000000000000000000000000000000000000000000000000000000/10-20/-/2:a/-")]
    [InlineData("other/0000000000000000000000000000000000000000000000000000000000000000/1/1/1/0000000000000000000000000000000000000000000000000000000000000000/10-20/-/-/-")]
    public void ARecordItDidNotWriteIsNotLoaded(string payload) => Assert.Null(HotRecord.Parse(payload, "STAMP"));

    [Fact]
    public void ARecordReadsBack()
    {
        var r = HotRecord.Parse("STAMP/" + new string('a', 64) + "/7/3/12/" + new string('b', 64) + "/1000-1010,2000-2020/1010,2000/1:jitvmx.A.b,0:jitvmx.C+D.e/1005", "STAMP")!;
        Assert.Equal(new string('a', 64), r.Key);
        Assert.Equal(7, r.EntryNeed);
        Assert.Equal(3, r.Shape.EntryCharge);
        Assert.Equal(12, r.Shape.GuestInstructions);
        Assert.Equal([(0x1000ul, 0x1010ul), (0x2000ul, 0x2020ul)], r.Shape.GuestRanges);
        Assert.Equal([0x1010ul, 0x2000ul], r.Successors);
        Assert.Equal([("jitvmx.A.b", true), ("jitvmx.C+D.e", false)], r.Helpers);
        Assert.Equal([0x1005ul], r.Shape.Covered);
        Assert.Equal(Enumerable.Repeat((byte)0xbb, 32), r.GuestHash);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AHintedRegionStaysInTheInterpreterUntilItsNativeCodeComes(bool hinted)
    {
        // A loop entered once, at the program's entry, which the interpreter promotes to the IL tier after
        // 100 instructions unless a hint says native code is on its way (a tier that never delivers here).
        static void Loop(Iced.Intel.Assembler a)
        {
            var loop = a.CreateLabel();
            a.mov(Iced.Intel.AssemblerRegisters.ecx, 5000);
            a.Label(ref loop);
            a.add(Iced.Intel.AssemblerRegisters.rax, Iced.Intel.AssemblerRegisters.rcx);
            a.dec(Iced.Intel.AssemblerRegisters.ecx);
            a.jnz(loop);
            a.hlt();
        }
        using var g = new TestGuest(Loop, options: new VirtualMachineOptions { InterpreterTierUp = 100, TierUpThreshold = long.MaxValue, TierProfile = File1 });
        // The profile is read at the first translation.
        Directory.CreateDirectory(Path.GetDirectoryName(File1)!);
        File.WriteAllLines(File1, hinted ? [TierProfile.Format(TestGuest.CodeBase, X87SseEnable.Mode(g.Cpu.State), [])] : []);
        var tier = new HintSink();
        g.Vm.TierCompiler = tier;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(5000UL * 5001 / 2, g.Cpu.State.Rax);
        Assert.Equal(hinted ? 1 : 0, tier.Hints);
        // Promotion would have put an IL region at the entry.
        Assert.Equal(hinted, g.Vm.Cache.Find(TestGuest.CodeBase, false)!.Interpreted);
    }

    // A background tier that takes hints and never compiles anything.
    private sealed class HintSink : ITierCompiler
    {
        public int Hints;
        public void Enqueue(VirtualCpu cpu, Region region) { }
        public void EnqueueHint(VirtualCpu cpu, TierProfile.Hint hint) => Hints++;
        public void Dispose() { }
    }

    [Fact]
    public void AnotherProgramsProfileCostsTimeNotCorrectness()
    {
        // The profile names hot regions of one program; another one, at the same addresses, runs with it.
        using (var first = new TestGuest(PredictionTests.Program("interpreter"), options: new VirtualMachineOptions { TierUpThreshold = 20_000, TierProfile = File1 }))
        {
            Assert.True(LlvmTier.TryAttachBackground(first.Vm, LlvmOptLevel.O1, out string? why), why);
            RunUntilHalt(first, () => first.Vm.Statistics.RegionsTieredUp > 0);
        }
        using var il = new TestGuest(PredictionTests.Program("calls"));
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);
        using var other = new TestGuest(PredictionTests.Program("calls"), options: new VirtualMachineOptions { TierUpThreshold = long.MaxValue, TierProfile = File1 });
        Assert.True(LlvmTier.TryAttachBackground(other.Vm, LlvmOptLevel.O1, out string? why2), why2);
        Assert.Equal(ExitReason.Hlt, other.Cpu.Run().Reason);
        TieringTests.AssertSameAs(il, other, 65536);
    }

    // Runs in small slices, waiting after each until the background tier did what the test is about.
    private static void RunUntilHalt(TestGuest g, Func<bool> done)
    {
        VmExit exit;
        var wait = System.Diagnostics.Stopwatch.StartNew();
        while ((exit = g.Cpu.Run(10_000)).Reason == ExitReason.InstructionBudget)
            if (!done() && wait.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(10);
        Assert.Equal(ExitReason.Hlt, exit.Reason);
    }
}
