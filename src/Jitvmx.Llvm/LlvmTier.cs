// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm;

/// <summary>Selects the LLVM tier for a VM (<c>--tier llvm</c>).</summary>
public static class LlvmTier
{
    /// <summary>Compiles every new region of <paramref name="vm"/> with LLVM; false with the reason (the package to install) when libLLVM 19 is missing.</summary>
    public static bool TryAttach(VirtualMachine vm, LlvmOptLevel level, out string? whyNot)
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
        vm.RegionCompiler = new Compiler(level);
        whyNot = null;
        return true;
    }

    private sealed class Compiler(LlvmOptLevel level) : IRegionCompiler
    {
        public CompiledRegion? TryCompile(IrRegion region, out string? reason) =>
            LlvmBackend.TryCompile(region, level, out var compiled, out reason) ? compiled : null;
    }
}
