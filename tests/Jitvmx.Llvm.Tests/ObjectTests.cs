// SPDX-License-Identifier: MIT
using System.Text;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

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

        // The function's size, as JITVMX_PERF_MAP reports it (not the FILE symbol of the same name).
        Assert.InRange(PerfMap.SymbolSize(obj, symbol) ?? 0, 16UL, (ulong)obj!.Length);
        Assert.Null(PerfMap.SymbolSize(obj, symbol + "_missing"));
        Assert.Null(PerfMap.SymbolSize([1, 2, 3], symbol));

        string file = Path.Combine(Path.GetTempPath(), $"{symbol}.o");
        File.WriteAllBytes(file, obj!);
        var loaded = LlvmBackend.LoadObject(File.ReadAllBytes(file), symbol, successors, helpers);
        File.Delete(file);

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

public class HelperSymbolTests
{
    [Fact]
    public void EveryHelperHasAUniqueSymbolThatResolvesBackToItsNumber()
    {
        var seen = new Dictionary<string, int>();
        for (int id = 0; id < Enum.GetValues<HelperId>().Length; id++)
        {
            if (Helpers.Method(id) is null) continue;
            string symbol = Helpers.Symbol(id);
            Assert.StartsWith(Helpers.SymbolPrefix + "Jitvmx.Helpers.", symbol);
            Assert.True(seen.TryAdd(symbol, id), $"{symbol} twice");
            Assert.True(Helpers.TryResolveSymbol(symbol, Helpers.IsPure(id), out int back, out string? why), why);
            Assert.Equal(id, back);
        }
        int registered = Lifting.SseMove.Op(nameof(Lifting.SimdIntOps.Pmovmskb));
        Assert.Equal(Helpers.SymbolPrefix + "Jitvmx.Lifting.SimdIntOps.Pmovmskb", Helpers.Symbol(registered));
        Assert.True(Helpers.TryResolveSymbol(Helpers.Symbol(registered), pure: true, out int again, out _));
        Assert.Equal(registered, again);
    }

    [Fact]
    public void UnknownOrMismatchedSymbolsAreRefused()
    {
        Assert.False(Helpers.TryResolveSymbol("jitvmx.helper.Jitvmx.Lifting.SimdIntOps.NoSuchOp", true, out _, out string? why));
        Assert.Equal("no helper jitvmx.helper.Jitvmx.Lifting.SimdIntOps.NoSuchOp in this build", why);
        Assert.False(Helpers.TryResolveSymbol("printf", true, out _, out why));
        Assert.Equal("'printf' is not a helper symbol", why);
        Assert.False(Helpers.TryResolveSymbol(Helpers.Symbol((int)HelperId.Cpuid), pure: true, out _, out why));
        Assert.Contains("is not pure in this build", why);
    }

    [Fact]
    public void AnObjectImportsOnlyTheHelpersItsOptimisedCodeCalls()
    {
        // RDX is zero: the 128-bit divide's helpers are on a path LLVM removes.
        using var g = new TestGuest(a =>
        {
            a.mov(eax, 1000);
            a.xor(edx, edx);
            a.mov(r11, 7);
            a.div(r11);
            a.hlt();
        });
        var obj = RegionObject.Compile(g.Cpu, TestGuest.CodeBase, LlvmOptLevel.O2);
        Assert.DoesNotContain(obj.Helpers, h => h.Symbol.Contains("UDiv128"));
        Assert.Contains(obj.Helpers, h => h.Symbol.EndsWith(".Hlt"));
    }

    [Fact]
    public void AnObjectNamesItsHelpersAndContainsNoHelperNumber()
    {
        using var g = new TestGuest(CrossProcessTests.CrcProgram);
        var obj = RegionObject.Compile(g.Cpu, TestGuest.CodeBase, LlvmOptLevel.O2);
        string text = System.Text.Encoding.ASCII.GetString(obj.Object.Span);
        foreach (var h in obj.Helpers) Assert.Contains(h.Symbol, text);
        Assert.Contains(LlvmRuntime.CallHelperSymbol, text);

        // In the IR, the trampoline's helper argument is loaded from the symbol, never a constant.
        var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, RegionLimits.Default, out _)!;
        Passes.Run(ir);
        nint context = Native.LlvmApi.LLVMContextCreate();
        try
        {
            Assert.True(LlvmBackend.TryLower(ir, context, "f", out nint module, out _, out int[] helpers, out string? reason), reason);
            string llvm = LlvmBackend.Print(module);
            Native.LlvmApi.LLVMDisposeModule(module);
            Assert.Equal(obj.Helpers.Count, helpers.Length);
            Assert.Contains($"@{Helpers.SymbolPrefix}Jitvmx.Lifting.CryptoOps.Crc8 = external constant i32", llvm);
            Assert.Matches(@"call void @jitvmx_call_helper\(i32 %", llvm);
            Assert.DoesNotMatch(@"call void @jitvmx_call_helper\(i32 [0-9]", llvm);
        }
        finally
        {
            Native.LlvmApi.LLVMContextDispose(context);
        }
    }
}
