// SPDX-License-Identifier: MIT
namespace Jitvmx.Llvm.Tests;

[Collection(BackgroundTier.Collection)]
public class HookTests
{
    [Fact]
    public void EveryRegionIsLlvmThroughTheHook()
    {
        var il = Tiers.Run(ProgramTests.LoadStoreLoop, x => x.Cpu.Run());
        var ll = Tiers.Run(ProgramTests.LoadStoreLoop, x =>
        {
            Assert.True(LlvmTier.TryAttach(x.Vm, LlvmOptLevel.O1, out var why), why);
            return x.Cpu.Run();
        });
        Assert.Equal(0, ll.IlRegions);
        Tiers.Same(il, ll);
    }
}
