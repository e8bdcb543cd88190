// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>Disposing a VM while its background tier is compiling.</summary>
[Collection(BackgroundTier.Collection)]
public class ShutdownTests
{
    // A loop over a large unrolled body, so that a compilation is still running when the VM goes.
    private static void Program(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rdi, TestGuest.RamBase);
        a.mov(ecx, 1_000_000);
        a.Label(ref loop);
        for (int i = 0; i < 30; i++)
        {
            a.mov(eax, __dword_ptr[rdi + i * 4]);
            a.imul(eax, eax, 31 + i);
            a.add(__dword_ptr[rdi + i * 4 + 4], eax);
        }
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
    }

    [Fact]
    public void DisposeWaitsForTheCompilationInProgress()
    {
        // Before the background tier was stopped on dispose, its thread could read the guest
        // memory being freed, or run LLVM while the process was exiting.
        for (int i = 0; i < 3; i++)
        {
            var g = new TestGuest(Program, options: new VirtualMachineOptions { TierUpThreshold = 20_000 });
            Assert.True(LlvmTier.TryAttachBackground(g.Vm, LlvmOptLevel.O2, out string? why), why);
            while (g.Vm.Statistics.RegionsQueuedForTierUp == 0)
                Assert.Equal(ExitReason.InstructionBudget, g.Cpu.Run(10_000).Reason);
            g.Dispose();
            Assert.Equal(0, LlvmTier.CompilationsInProgress);
            Assert.Throws<ObjectDisposedException>(() => g.Cpu.Run(1));
        }
    }
}
