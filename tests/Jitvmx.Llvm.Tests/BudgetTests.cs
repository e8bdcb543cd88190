// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// LLVM code checks the budget only at its entry and loop heads, for the longest stretch that can
/// follow (<see cref="LlvmBackend.BudgetNeeds"/>); the blocks between only subtract. Every budget
/// must still stop at the same instruction, with the same state and count, as the IL tier's
/// per-block checks.
/// </summary>
public sealed class BudgetTests
{
    private const ulong Ram = TestGuest.RamBase;

    // A loop whose two sides retire different numbers of instructions, with a REP loop (whose
    // iterations retire nothing) and memory accesses inside, and a tail after it.
    private static void Diamonds(Assembler a)
    {
        Label loop = a.CreateLabel(), even = a.CreateLabel(), next = a.CreateLabel(), skip = a.CreateLabel();
        a.mov(ecx, 40);
        a.xor(edx, edx);
        a.mov(rbx, Ram);
        a.Label(ref loop);
        a.test(cl, 1);
        a.jz(even);
        a.add(edx, 3);
        a.imul(edx, edx, 5);
        a.mov(__dword_ptr[rbx + rcx * 4], edx);
        a.jmp(next);
        a.Label(ref even);
        a.add(edx, __dword_ptr[rbx + rcx * 4 + 0x100]);
        a.Label(ref next);
        a.test(cl, 7);
        a.jnz(skip);
        a.push(rcx);
        a.lea(rsi, __[rbx + 0x200]);
        a.lea(rdi, __[rbx + 0x400]);
        a.mov(ecx, 5);
        a.rep.movsb();
        a.pop(rcx);
        a.Label(ref skip);
        a.dec(ecx);
        a.jnz(loop);
        a.add(edx, 1);
        a.xor(edx, 0x55);
        a.hlt();
    }

    [Fact]
    public void EveryBudgetStopsWhereTheIlTierStops()
    {
        // Small budgets end inside the first iterations, where the entry and header checks run short.
        // (A check that runs short stops at a loop head the IL run never entered: that region is IL.)
        for (ulong budget = 1; budget <= 90; budget++)
            Tiers.Compare(Diamonds, g => g.Cpu.Run(budget), level: LlvmOptLevel.O1, allLlvm: false);
        foreach (ulong budget in (ulong[])[150, 333, 500])
            Tiers.Compare(Diamonds, g => g.Cpu.Run(budget), level: LlvmOptLevel.O1, allLlvm: false);
    }

    [Fact]
    public void RepeatedSlicesAddUpExactly()
    {
        // Run in slices of every size up to 13: each slice must end exactly, including slices that
        // begin at a loop head with less budget than its longest stretch.
        for (ulong slice = 1; slice <= 13; slice++)
            Tiers.Compare(Diamonds, g =>
            {
                VmExit exit;
                while ((exit = g.Cpu.Run(slice)).Reason == ExitReason.InstructionBudget) { }
                return exit;
            }, level: LlvmOptLevel.O1, allLlvm: false);
    }

    [Fact]
    public void NeedsCoverTheLongestStretch()
    {
        using var g = new TestGuest(Diamonds);
        var limits = new RegionLimits(400, 32, 96);
        var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, limits, out _)!;
        Passes.Run(ir);
        var need = LlvmBackend.BudgetNeeds(ir);
        Assert.NotNull(need); // a REP loop inside does not force per-block checks
        var entry = ir.Blocks[0];
        Assert.True(need[entry] >= entry.ChargedInsns);
        // The loop head's stretch includes the longer side of the diamond, not just its own block.
        var heads = ir.Blocks.Where(b => b.IsLoopHeader && b.ChargedInsns > 0).ToList();
        Assert.NotEmpty(heads);
        Assert.Contains(heads, h => need[h] > h.ChargedInsns + 3);
        Assert.All(heads, h => Assert.True(need[h] >= h.ChargedInsns));
        Assert.Equal(need[entry], LlvmBackend.EntryNeed(ir));
    }
}
