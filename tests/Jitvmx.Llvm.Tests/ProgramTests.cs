// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>Real guest code run by the dispatcher with every region compiled by LLVM, against the IL tier.</summary>
public class ProgramTests
{
    private const ulong Ram = TestGuest.RamBase;

    internal static void LoadStoreLoop(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rbx, Ram);
        a.mov(ecx, 1500);
        a.xor(edx, edx);
        a.Label(ref loop);
        a.mov(rax, __qword_ptr[rbx + rcx * 8]);
        a.add(rax, rcx);
        a.imul(rax, rax, 3);
        a.mov(__qword_ptr[rbx + rcx * 8 + 8], rax);
        a.add(rdx, rax);
        a.xor(rdx, rcx);
        a.movzx(esi, __byte_ptr[rbx + rcx]);
        a.add(__word_ptr[rbx + rcx * 2 + 0x4000], si);
        a.dec(rcx);
        a.jnz(loop);
        a.hlt();
    }

    [Theory]
    [InlineData(LlvmOptLevel.O0)]
    [InlineData(LlvmOptLevel.O1)]
    [InlineData(LlvmOptLevel.O2)]
    public void LoopWithLoadsAndStores(LlvmOptLevel level)
    {
        var (il, _) = Tiers.Compare(LoadStoreLoop, g => g.Cpu.Run(), level: level);
        Assert.Equal(ExitReason.Hlt, il.Exit.Reason);
    }

    [Fact]
    public void AluAndFlags()
    {
        Tiers.Compare(a =>
        {
            var skip = a.CreateLabel();
            a.mov(rax, 0x7FFFFFFFFFFFFFF0);
            a.mov(rbx, 0x123456789ABCDEF1);
            a.mov(rcx, 0x8000000000000001);
            a.add(rax, 0x20);
            a.adc(rbx, rcx);
            a.sbb(rdx, rax);
            a.setc(r8b);
            a.seto(r9b);
            a.neg(rcx);
            a.cmovl(r10, rbx);
            a.shl(rbx, cl);
            a.sar(rax, 7);
            a.rol(rdx, 13);
            a.ror(r11d, cl);
            a.rcl(r12, 1);
            a.rcr(r13w, 3);
            a.bsf(r14, rbx);
            a.bsr(r15, rdx);
            a.popcnt(rsi, rax);
            a.lzcnt(rdi, rcx);
            a.bswap(eax);
            a.mov(rbp, rax);
            a.imul(rbp, rbx);
            a.mul(rcx);
            a.xor(edx, edx);
            a.mov(rax, 0x1234567890);
            a.mov(r8, 12345);
            a.div(r8);
            a.mov(rax, -100_000_000_000L);
            a.cqo();
            a.idiv(r8);
            a.shld(rsi, rdi, 9);
            a.shrd(r9w, r10w, 5);
            a.bt(rbx, 17);
            a.btc(rcx, 63);
            a.xadd(r11, r12);
            a.cmp(r12, r13);
            a.jle(skip);
            a.inc(r14);
            a.Label(ref skip);
            a.sub(al, 0x81);
            a.test(ah, 0x40);
            a.hlt();
        }, g => g.Cpu.Run());
    }

    [Fact]
    public void CallsAndReturns()
    {
        var (il, _) = Tiers.Compare(a =>
        {
            // Recursive Fibonacci: calls and returns through the stack, exits indirect.
            var fib = a.CreateLabel();
            var small = a.CreateLabel();
            a.mov(edi, 15);
            a.call(fib);
            a.hlt();
            a.Label(ref fib);
            a.cmp(rdi, 2);
            a.jb(small);
            a.push(rdi);
            a.dec(rdi);
            a.call(fib);
            a.pop(rdi);
            a.push(rax);
            a.sub(rdi, 2);
            a.call(fib);
            a.pop(rcx);
            a.add(rax, rcx);
            a.ret();
            a.Label(ref small);
            a.mov(rax, rdi);
            a.ret();
        }, g => g.Cpu.Run());
        Assert.Equal(610UL, il.State.Rax);
    }

    [Fact]
    public void FaultAtUnmappedMemoryHasPreciseState()
    {
        var (il, _) = Tiers.Compare(a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, Ram + 0xFF000);
            a.mov(ecx, 100);
            a.Label(ref loop);
            a.add(rax, rcx);
            a.mov(__qword_ptr[rbx], rax);
            a.add(rbx, 0x100);     // walks off the end of RAM
            a.dec(rcx);
            a.jnz(loop);
            a.hlt();
        }, g => g.Cpu.Run());
        Assert.Equal(ExitReason.EptViolation, il.Exit.Reason);
        Assert.Equal(Ram + TestGuest.RamSize, il.Exit.GuestLinearAddress);
    }

    [Fact]
    public void CrossPageAndMmioStyleAccesses()
    {
        Tiers.Compare(a =>
        {
            a.mov(rbx, Ram + 0xFFD);
            a.mov(rax, __qword_ptr[rbx]);       // crosses a page: always the slow path
            a.mov(__dword_ptr[rbx + 0x1000], eax);
            a.mov(rcx, 0x200000);               // unmapped: EPT violation on a read
            a.add(rdx, __qword_ptr[rcx]);
            a.hlt();
        }, g => g.Cpu.Run());
    }

    [Fact]
    public void BudgetStopsExactly()
    {
        foreach (ulong budget in new ulong[] { 1, 7, 100, 1001, 5000 })
            Tiers.Compare(LoadStoreLoop, g => g.Cpu.Run(budget));
    }

    [Fact]
    public void RepStringInstructions()
    {
        Tiers.Compare(a =>
        {
            a.mov(rsi, Ram);
            a.mov(rdi, Ram + 0x8000);
            a.mov(ecx, 3000);
            a.rep.movsb();
            a.mov(rdi, Ram + 0x2000);
            a.mov(eax, 0x5A);
            a.mov(ecx, 500);
            a.rep.stosq();
            a.mov(rsi, Ram);
            a.mov(rdi, Ram + 0x8000);
            a.mov(ecx, 3000);
            a.repe.cmpsb();
            a.hlt();
        }, g => g.Cpu.Run());
    }

    [Fact]
    public void ExitHelpersAndCompletion()
    {
        var (il, _) = Tiers.Compare(a =>
        {
            a.mov(eax, 1);
            a.add(rbx, 5);
            a.cpuid();
            a.hlt();
        }, g =>
        {
            var exit = g.Cpu.Run();
            Assert.Equal(ExitReason.Cpuid, exit.Reason);
            g.Cpu.CompleteCpuid(1, 2, 3, 4);
            return g.Cpu.Run();
        });
        Assert.Equal(ExitReason.Hlt, il.Exit.Reason);
    }

    [Fact]
    public void SelfModifyingCodeRestarts()
    {
        Tiers.Compare(a =>
        {
            var patch = a.CreateLabel();
            a.mov(rbx, (long)TestGuest.CodeBase);
            a.lea(rbx, __[patch]);
            a.mov(__byte_ptr[rbx + 1], 42);   // patches the immediate of the mov below
            a.Label(ref patch);
            a.mov(al, 1);
            a.hlt();
        }, g =>
        {
            var exit = g.Cpu.Run();
            Assert.True(g.Vm.Statistics.RegionsInvalidated > 0);
            return exit;
        }, codePermissions: MemoryPermissions.ReadWrite | MemoryPermissions.Execute, allLlvm: false);
    }

    [Fact]
    public async Task ExitRequestStopsAnInfiniteLoop()
    {
        using var g = new TestGuest(a =>
        {
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.inc(rax);
            a.mov(__qword_ptr[Ram], rax);
            a.jmp(loop);
        });
        Tiers.Install(g, TestGuest.CodeBase, LlvmOptLevel.O2);
        var stopper = Task.Run(async () =>
        {
            await Task.Delay(100);
            g.Cpu.RequestExit();
        });
        var exit = g.Cpu.Run();
        await stopper;
        Assert.Equal(ExitReason.ExitRequested, exit.Reason);
        Assert.True(g.Cpu.State.Rax > 1000, $"only {g.Cpu.State.Rax} iterations");
        // Precise at the loop head: three instructions retired per completed iteration.
        Assert.Equal(TestGuest.CodeBase, g.Cpu.State.Rip);
        Assert.Equal(g.Cpu.State.Rax * 3, g.Cpu.InstructionsRetired);
        Assert.Equal(g.Cpu.State.Rax, BitConverter.ToUInt64(g.Vm.GetSpan(Ram, 8)));
        Assert.All(Tiers.Regions(g.Vm).Values, r => Assert.True(Tiers.IsLlvm(r)));
    }
}
