// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using Jitvmx.Ir;

namespace Jitvmx.Runtime;

/// <summary>
/// A second backend for the translation cache (the LLVM tier, which Core does not reference).
/// Called on the translating thread with the IR after <see cref="Passes.Run"/>.
/// </summary>
internal interface IRegionCompiler
{
    /// <summary>Code for <paramref name="region"/>, or null (with the reason) to keep the IL tier's.</summary>
    CompiledRegion? TryCompile(IrRegion region, out string? reason);
}
