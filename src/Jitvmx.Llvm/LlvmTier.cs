// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm;

/// <summary>Selects the LLVM tier for a VM (<c>--tier llvm</c>).</summary>
public static class LlvmTier
{
    /// <summary>
    /// Compiles every new region of <paramref name="vm"/> with LLVM; false with the reason (the package to install) when libLLVM 19 is missing.
    /// A region LLVM cannot compile keeps the IL tier's code; <paramref name="onFallback"/> hears of it (tests use it to fail).
    /// </summary>
    public static bool TryAttach(VirtualMachine vm, LlvmOptLevel level, out string? whyNot, Action<IrRegion, string>? onFallback = null)
    {
        try
        {
            _ = LlvmJit.Instance;
        }
        catch (Native.LlvmUnavailableException e)
        {
            whyNot = e.Message;
            return false;
        }
        vm.RegionCompiler = new Compiler(Level(level), onFallback);
        whyNot = null;
        return true;
    }

    /// <summary>
    /// Tiered compilation (<c>--tier auto</c>): regions start in the IL tier; a region that retires
    /// <see cref="VirtualMachineOptions.TierUpThreshold"/> guest instructions is recompiled by LLVM
    /// at <paramref name="level"/> on a background thread while the guest keeps running, and its
    /// code is swapped in atomically. False with the reason when libLLVM 19 is missing.
    /// </summary>
    public static bool TryAttachBackground(VirtualMachine vm, LlvmOptLevel level, out string? whyNot)
    {
        try
        {
            _ = LlvmJit.Instance;
        }
        catch (Native.LlvmUnavailableException e)
        {
            whyNot = e.Message;
            return false;
        }
        vm.TierCompiler = new BackgroundTier(vm, Level(level));
        whyNot = null;
        return true;
    }

    /// <summary>
    /// <paramref name="requested"/>, unless JITVMX_LLVM_LEVEL (O0, O1 or O2) overrides it: whole-program
    /// tests run <c>--tier llvm</c> at O0, where O2 compiles for tens of seconds per program.
    /// </summary>
    private static LlvmOptLevel Level(LlvmOptLevel requested) =>
        Environment.GetEnvironmentVariable("JITVMX_LLVM_LEVEL") is { Length: > 0 } s && Enum.TryParse<LlvmOptLevel>(s, ignoreCase: true, out var l) && Enum.IsDefined(l)
            ? l : requested;

    /// <summary>One background thread per VM compiling hot regions in the order they became hot.</summary>
    private sealed class BackgroundTier : ITierCompiler
    {
        private readonly VirtualMachine _vm;
        private readonly LlvmOptLevel _level;
        private readonly System.Collections.Concurrent.BlockingCollection<(VirtualCpu Cpu, Region Region)> _queue = new(1024);

        public BackgroundTier(VirtualMachine vm, LlvmOptLevel level)
        {
            _vm = vm;
            _level = level;
            var thread = new Thread(Work) { IsBackground = true, Name = "jitvmx-llvm-tier", Priority = ThreadPriority.BelowNormal };
            thread.Start();
        }

        public void Enqueue(VirtualCpu cpu, Region region) => _queue.TryAdd((cpu, region));

        private void Work()
        {
            foreach (var (cpu, region) in _queue.GetConsumingEnumerable())
            {
                try
                {
                    if (!region.Valid) continue;
                    var ir = _vm.Cache.Retranslate(cpu, region);
                    if (ir is null || !LlvmBackend.TryCompile(ir, _level, out var compiled, out _)) continue;
                    _vm.Cache.Swap(region, compiled!);
                }
                catch (ObjectDisposedException)
                {
                    return; // the VM went away while a region was compiling
                }
            }
        }
    }

    private sealed class Compiler(LlvmOptLevel level, Action<IrRegion, string>? onFallback) : IRegionCompiler
    {
        public CompiledRegion? TryCompile(IrRegion region, out string? reason)
        {
            if (LlvmBackend.TryCompile(region, level, out var compiled, out reason)) return compiled;
            onFallback?.Invoke(region, reason ?? "unknown");
            return null;
        }
    }
}
