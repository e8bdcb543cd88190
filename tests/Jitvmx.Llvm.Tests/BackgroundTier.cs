// SPDX-License-Identifier: MIT
namespace Jitvmx.Llvm.Tests;

/// <summary>
/// The test classes that attach background tiers run one at a time: <see cref="LlvmTier.CompilationsInProgress"/>
/// counts every VM's compilations in the process, and <see cref="ShutdownTests"/> checks that it is 0 after a dispose.
/// </summary>
[CollectionDefinition(Collection)]
public sealed class BackgroundTier
{
    public const string Collection = "background tier";
}
