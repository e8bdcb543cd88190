// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Text;
using Jitvmx.Ir;
using Jitvmx.Lifting;

namespace Jitvmx.Llvm.Tests;

public class ObjectTests
{
    [Fact]
    public void RegionRoundTripsThroughARelocatableObject()
    {
        using var g = new TestGuest(ProgramTests.LoadStoreLoop);
        var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, RegionLimits.Default, out _)!;
        Passes.Run(ir);
        string symbol = LlvmJit.Instance.UniqueName("cached_region");
        Assert.True(LlvmBackend.TryEmitObject(ir, LlvmOptLevel.O2, symbol, out var obj, out var successors, out var helpers, out var reason), reason);

        // An ELF relocatable that imports the runtime by name.
        Assert.Equal("\x7f" + "ELF", Encoding.ASCII.GetString(obj!, 0, 4));
        Assert.Equal(1, BitConverter.ToUInt16(obj!, 16)); // ET_REL
        string text = Encoding.ASCII.GetString(obj!);
        Assert.Contains(LlvmRuntime.LoadSymbol, text);
        Assert.Contains(symbol, text);
        // No helper address of this process appears in the code: they are relocations against names.
        foreach (var (name, address) in LlvmRuntime.Symbols())
            Assert.True(obj!.AsSpan().IndexOf(BitConverter.GetBytes((long)address)) < 0, $"{name}'s address is baked into the object");

        string file = Path.Combine(Path.GetTempPath(), $"{symbol}.o");
        File.WriteAllBytes(file, obj!);
        var sw = Stopwatch.StartNew();
        var loaded = LlvmBackend.LoadObject(File.ReadAllBytes(file), symbol, successors, helpers);
        double loadMs = sw.Elapsed.TotalMilliseconds;
        File.Delete(file);
        Assert.True(loadMs < 100, $"loading took {loadMs} ms");

        // Run the program with the loaded object as its entry region, against the IL tier.
        var il = Tiers.Run(ProgramTests.LoadStoreLoop, x => x.Cpu.Run());
        var ll = Tiers.Run(ProgramTests.LoadStoreLoop, x =>
        {
            var region = x.Vm.Cache.Translate(x.Cpu, TestGuest.CodeBase, false, out _)!;
            Assert.Equal(region.SuccessorRips, loaded.SuccessorRips);
            typeof(Runtime.Region).GetField(nameof(Runtime.Region.Function))!.SetValue(region, loaded.Function);
            return x.Cpu.Run();
        });
        Tiers.Same(il, ll);
    }
}
