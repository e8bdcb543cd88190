// SPDX-License-Identifier: MIT
namespace Jitvmx.Runtime;

/// <summary>
/// A background tier (LLVM): receives regions that became hot and later swaps better code into
/// them through <see cref="TranslationCache.Swap"/>. Called on the vCPU thread; must not block.
/// </summary>
internal interface ITierCompiler
{
    /// <summary>Queues <paramref name="region"/> of <paramref name="cpu"/> for recompilation.</summary>
    void Enqueue(VirtualCpu cpu, Region region);
}
