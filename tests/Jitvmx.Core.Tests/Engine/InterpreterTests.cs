// SPDX-License-Identifier: MIT
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>The interpreter tier: same results as the IL tier, bounded time inside a region, promotion when hot.</summary>
public class InterpreterTests
{
    private static VirtualMachineOptions Interpreted(long tierUp = long.MaxValue) => new() { InterpreterTierUp = tierUp };

    /// <summary>A loop summing i*i with memory traffic, a call and flags, ending in HLT.</summary>
    private static void SumOfSquares(Iced.Intel.Assembler a, int n)
    {
        var loop = a.CreateLabel();
        var f = a.CreateLabel();
        var done = a.CreateLabel();
        a.xor(eax, eax);
        a.mov(ecx, n);
        a.mov(rbx, GuestBuilder.RamBase);
        a.Label(ref loop);
        a.mov(rdx, rcx);
        a.call(f);
        a.add(__qword_ptr[rbx], rdx);
        a.add(rax, rdx);
        a.dec(ecx);
        a.jnz(loop);
        a.jmp(done);
        a.Label(ref f);
        a.imul(rdx, rdx);
        a.ret();
        a.Label(ref done);
        a.hlt();
    }

    private static (ulong Rax, ulong Mem, ulong Retired, TranslationStatistics Stats) Run(VirtualMachineOptions? options, int n)
    {
        using var g = new GuestBuilder(a => SumOfSquares(a, n), options: options);
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        var mem = new byte[8];
        g.Vm.ReadPhysical(GuestBuilder.RamBase, mem);
        return (g.Cpu.State.Rax, BitConverter.ToUInt64(mem), g.Cpu.InstructionsRetired, g.Vm.Statistics);
    }

    [Fact]
    public void InterpretedRunMatchesTheIlTier()
    {
        var il = Run(null, 5000);
        var interp = Run(Interpreted(), 5000);
        Assert.Equal(il.Rax, interp.Rax);
        Assert.Equal(il.Mem, interp.Mem);
        Assert.Equal(il.Retired, interp.Retired);
        Assert.Equal(0, il.Stats.RegionsInterpreted);
        Assert.True(interp.Stats.RegionsInterpreted > 0);
        Assert.Equal(0, interp.Stats.RegionsPromoted);
    }

    [Fact]
    public void HotRegionsArePromotedToTheIlTier()
    {
        var il = Run(null, 20000);
        var tiered = Run(Interpreted(tierUp: 500), 20000);
        Assert.Equal(il.Rax, tiered.Rax);
        Assert.Equal(il.Mem, tiered.Mem);
        Assert.Equal(il.Retired, tiered.Retired);
        Assert.True(tiered.Stats.RegionsPromoted > 0);
    }

    [Fact]
    public void ALongRepStringInstructionIsHotThoughItRetiresOnce()
    {
        // Eight scans of 512 KiB: each REP LODSB retires once, but it is most of the work, so its
        // region must leave the interpreter although it retires far fewer than the threshold.
        // (REP STOS and MOVS mostly run in bulk; LODS, SCAS and CMPS run element by element.)
        using var g = new GuestBuilder(a =>
        {
            var loop = a.CreateLabel();
            a.mov(r8d, 8);
            a.Label(ref loop);
            a.mov(rsi, GuestBuilder.RamBase);
            a.mov(ecx, 512 * 1024);
            a.rep.lodsb();
            a.dec(r8d);
            a.jnz(loop);
            a.hlt();
        }, options: Interpreted(tierUp: 256));
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.True(g.Vm.Statistics.RegionsPromoted > 0, "the REP LODSB region stayed interpreted");
        Assert.Equal(GuestBuilder.RamBase + 512 * 1024, g.Cpu.State.Rsi);
    }

    [Fact]
    public void RepStringLoopLeavesTheInterpreterAndResumes()
    {
        // A REP STOSB much longer than the interpreter's per-call budget: it must be interrupted
        // inside the instruction and resumed without losing or repeating bytes.
        const int count = 200_000;
        using var g = new GuestBuilder(a =>
        {
            a.mov(rdi, GuestBuilder.RamBase);
            a.mov(ecx, count);
            a.mov(al, 0x5A);
            a.rep.stosb();
            a.hlt();
        }, options: Interpreted());
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.Equal(0UL, g.Cpu.State.Rcx);
        Assert.Equal(GuestBuilder.RamBase + count, g.Cpu.State.Rdi);
        // HLT exits before it retires.
        Assert.Equal(4UL, g.Cpu.InstructionsRetired);
        var mem = new byte[count + 1];
        g.Vm.ReadPhysical(GuestBuilder.RamBase, mem);
        Assert.All(mem[..count], b => Assert.Equal(0x5A, b));
        Assert.Equal(0, mem[count]);
    }

    [Fact]
    public void FaultsInInterpretedCodeArePrecise()
    {
        // A store to unmapped memory after two retired instructions: EPT violation with RIP at the store.
        using var g = new GuestBuilder(a =>
        {
            a.mov(eax, 1);
            a.mov(rbx, 0x4000_0000);
            a.mov(__qword_ptr[rbx], rax);
            a.hlt();
        }, options: Interpreted());
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.EptViolation, exit.Reason);
        Assert.Equal(GuestBuilder.CodeBase + 5 + 10, g.Cpu.State.Rip);
        Assert.Equal(2UL, g.Cpu.InstructionsRetired);
    }
}
