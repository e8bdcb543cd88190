// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>What the translation cache tells a background tier about regions other hot code already covers.</summary>
public class TierQueueTests
{
    [Fact]
    public void ARegionPassedOverAsCoveredOnceIsCompiledWhenQueuedAgain()
    {
        // The region at the entry follows the jump and takes `body` in: hot code made from it covers body's region.
        using var g = new GuestBuilder(a =>
        {
            var body = a.CreateLabel();
            a.add(rax, 1);
            a.jmp(body);
            a.Label(ref body);
            a.add(rbx, 2);
            a.hlt();
        });
        var cache = g.Vm.Cache;
        var head = cache.Translate(g.Cpu, GuestBuilder.CodeBase, singleStep: false, out _)!;
        var ir = cache.Retranslate(g.Cpu, head)!;
        ulong bodyRip = ir.Blocks.First(b => b.ChargedInsns > 0 && b.GuestAddress != GuestBuilder.CodeBase).GuestAddress;
        var body = cache.Translate(g.Cpu, bodyRip, singleStep: false, out _)!;
        body.TierQueued = true;

        Assert.True(cache.Replace(g.Cpu, head, ir, IlBackend.Compile(ir), cache.Generation));
        Assert.True(cache.RequeueIfCovered(body)); // likely cold now: back to counting
        Assert.False(body.TierQueued);
        Assert.False(cache.RequeueIfCovered(body)); // nothing new covers it

        // New hot code covers it again, but its own entry stayed hot meanwhile (it was queued again):
        // passing it over once more would leave a hot entry in the lower tier for good.
        var hot = cache.Find(GuestBuilder.CodeBase, singleStep: false)!;
        var again = cache.Retranslate(g.Cpu, hot)!;
        Assert.True(cache.Replace(g.Cpu, hot, again, IlBackend.Compile(again), cache.Generation));
        Assert.False(cache.RequeueIfCovered(body));
    }
}
