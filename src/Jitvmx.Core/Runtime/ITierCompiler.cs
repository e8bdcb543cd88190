// SPDX-License-Identifier: MIT
namespace Jitvmx.Runtime;

/// <summary>
/// A background tier (LLVM): receives regions that became hot and later swaps better code into
/// them through <see cref="TranslationCache.Swap"/>. Called on the vCPU thread; must not block.
/// Disposing it (the VM does, first) waits for the compilation in progress, so that no background
/// work touches guest memory or the compiler library after the VM is gone or the process exits.
/// </summary>
internal interface ITierCompiler : IDisposable
{
    /// <summary>Queues <paramref name="region"/> of <paramref name="cpu"/> for recompilation.</summary>
    void Enqueue(VirtualCpu cpu, Region region);

    /// <summary>
    /// Queues the region a <see cref="TierProfile"/> hint names (its entry was just translated) for
    /// compilation ahead of the regions that became hot in this run; the tier ends the hint with
    /// <see cref="TranslationCache.ReplaceHinted"/> or <see cref="TranslationCache.HintFailed"/>.
    /// </summary>
    void EnqueueHint(VirtualCpu cpu, TierProfile.Hint hint);
}
