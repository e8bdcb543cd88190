// SPDX-License-Identifier: MIT
using System.Reflection;
using Iced.Intel;
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Runs a guest program under the IL tier or with every region compiled by LLVM. Core has no hook
/// for another backend yet, so the LLVM run translates the regions an IL run entered, registers
/// them in the cache as usual and swaps in the LLVM code before the program starts.
/// </summary>
internal static class Tiers
{
    private static readonly FieldInfo s_regions = typeof(TranslationCache).GetField("_regions", BindingFlags.NonPublic | BindingFlags.Instance)!;
    private static readonly FieldInfo s_function = typeof(Region).GetField(nameof(Region.Function))!;

    public sealed record Outcome(VmExit Exit, GuestState State, byte[] Ram, ulong Retired, ulong[] Rips, int IlRegions);

    public static Dictionary<ulong, Region> Regions(VirtualMachine vm) => (Dictionary<ulong, Region>)s_regions.GetValue(vm.Cache)!;

    public static bool IsLlvm(Region r) => r.Function.Target is LlvmRegionThunk;

    /// <summary>Compiles the region at <paramref name="rip"/> with LLVM and puts it in the cache in place of the IL code.</summary>
    public static void Install(TestGuest g, ulong rip, LlvmOptLevel level) => Install(g.Vm, g.Cpu, rip, level);

    /// <inheritdoc cref="Install(TestGuest, ulong, LlvmOptLevel)"/>
    public static void Install(VirtualMachine vm, VirtualCpu cpu, ulong rip, LlvmOptLevel level)
    {
        var region = vm.Cache.Find(rip, false) ?? vm.Cache.Translate(cpu, rip, false, out _);
        if (region is null) return; // nothing fetchable there (any more)
        var limits = new RegionLimits(vm.Options.MaxRegionInstructions, vm.Options.MaxRegionBlocks, Math.Min(96, vm.Options.MaxRegionInstructions));
        var ir = Translator.Translate(cpu, rip, limits, out _) ?? throw new InvalidOperationException("translation failed");
        Passes.Run(ir);
        Assert.True(LlvmBackend.TryCompile(ir, level, out var compiled, out string? reason), reason);
        Assert.Equal(region.SuccessorRips, compiled!.SuccessorRips);
        // As TranslationCache.Swap does: the code may need more budget at entry than the IL code.
        region.EntryCharge = Math.Max(region.EntryCharge, compiled.EntryCharge);
        s_function.SetValue(region, compiled.Function);
    }

    public static Outcome Run(Action<Assembler> code, Func<TestGuest, VmExit> run, Action<TestGuest>? setup = null,
        LlvmOptLevel? llvm = null, ulong[]? rips = null, MemoryPermissions codePermissions = MemoryPermissions.ReadExecute,
        VirtualMachineOptions? options = null)
    {
        using var g = new TestGuest(code, codePermissions, options);
        var span = g.Vm.GetSpan(TestGuest.RamBase, 0x10000);
        for (int i = 0; i < span.Length; i++) span[i] = (byte)(i * 7 + (i >> 8));
        setup?.Invoke(g);
        if (llvm is LlvmOptLevel level)
            foreach (ulong rip in rips ?? []) Install(g, rip, level);
        var exit = run(g);
        var regions = Regions(g.Vm);
        return new Outcome(exit, g.Cpu.State, g.Vm.GetSpan(TestGuest.RamBase, (int)TestGuest.RamSize).ToArray(), g.Cpu.InstructionsRetired,
            [.. regions.Keys], regions.Values.Count(r => !IsLlvm(r)));
    }

    /// <summary>Runs under IL, then with all those regions in LLVM, and checks both end the same way.</summary>
    public static (Outcome Il, Outcome Llvm) Compare(Action<Assembler> code, Func<TestGuest, VmExit> run, Action<TestGuest>? setup = null,
        LlvmOptLevel level = LlvmOptLevel.O2, MemoryPermissions codePermissions = MemoryPermissions.ReadExecute, bool allLlvm = true)
    {
        var il = Run(code, run, setup, null, null, codePermissions);
        var ll = Run(code, run, setup, level, il.Rips, codePermissions);
        // Code translated after an invalidation comes from the IL tier (Core has no backend hook yet).
        if (allLlvm) Assert.Equal(0, ll.IlRegions);
        Same(il, ll);
        return (il, ll);
    }

    public static void Same(Outcome il, Outcome ll)
    {
        Assert.Equal(il.Exit.Reason, ll.Exit.Reason);
        Assert.Equal(il.Exit.Rip, ll.Exit.Rip);
        Assert.Equal(il.Exit.Qualification, ll.Exit.Qualification);
        Assert.Equal(il.Exit.GuestLinearAddress, ll.Exit.GuestLinearAddress);
        Assert.Equal(il.Exit.InterruptionInfo, ll.Exit.InterruptionInfo);
        Assert.Equal(il.Retired, ll.Retired);
        string[] names = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
        for (int i = 0; i < 16; i++)
            Assert.True(Gpr(il.State, i) == Gpr(ll.State, i), $"{names[i]}: IL 0x{Gpr(il.State, i):x}, LLVM 0x{Gpr(ll.State, i):x}");
        Assert.Equal(il.State.Rip, ll.State.Rip);
        Assert.Equal($"{il.State.Rflags:x}", $"{ll.State.Rflags:x}");
        int diff = il.Ram.AsSpan().CommonPrefixLength(ll.Ram);
        Assert.True(diff == il.Ram.Length, $"RAM differs at 0x{TestGuest.RamBase + (ulong)diff:x}");
    }

    private static unsafe ulong Gpr(GuestState s, int i) => ((ulong*)&s)[i];
}
