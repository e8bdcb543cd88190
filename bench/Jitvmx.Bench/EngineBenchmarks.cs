// SPDX-License-Identifier: MIT
using BenchmarkDotNet.Attributes;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Bench;

/// <summary>Costs of the engine's basic operations, per guest event.</summary>
[MemoryDiagnoser]
public class EngineBenchmarks
{
    private const ulong Code = 0x1000, Ram = 0x100000;
    private VirtualMachine _vm = null!;
    private VirtualCpu _exitCpu = null!, _loadCpu = null!, _callCpu = null!, _entryCpu = null!, _indirectCpu = null!;
    private const int Iterations = 1_000_000;

    private static VirtualCpu Guest(VirtualMachine vm, ulong at, Action<Assembler> emit)
    {
        var a = new Assembler(64);
        emit(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), at);
        vm.WritePhysical(at, ms.ToArray());
        var cpu = vm.CreateCpu();
        cpu.State.Rip = at;
        cpu.State.Rsp = Ram + 0xF000;
        return cpu;
    }

    [GlobalSetup]
    public void Setup()
    {
        _vm = new VirtualMachine();
        _vm.MapMemory(Code, 0x10000, MemoryPermissions.ReadExecute);
        _vm.MapMemory(Ram, 0x100000, MemoryPermissions.ReadWrite);
        // CPUID in a loop: one exit per iteration.
        _exitCpu = Guest(_vm, Code, a => { var l = a.CreateLabel(); a.Label(ref l); a.cpuid(); a.jmp(l); });
        // A loop of loads and stores over 64 KiB.
        _loadCpu = Guest(_vm, Code + 0x1000, a =>
        {
            var l = a.CreateLabel();
            a.Label(ref l);
            a.mov(rax, __qword_ptr[rsi]);
            a.mov(__qword_ptr[rsi + 8], rax);
            a.add(rsi, 16);
            a.and(rsi, 0xFFFF);
            a.or(rsi, (int)Ram);
            a.dec(rcx);
            a.jnz(l);
            a.hlt();
        });
        // call/ret pairs: two region transitions per iteration.
        _callCpu = Guest(_vm, Code + 0x2000, a =>
        {
            var f = a.CreateLabel();
            var l = a.CreateLabel();
            a.Label(ref l);
            a.call(f);
            a.dec(rcx);
            a.jnz(l);
            a.hlt();
            a.Label(ref f);
            a.ret();
        });

        // HLT as the first instruction: Run() enters, runs one region and leaves at once.
        _entryCpu = Guest(_vm, Code + 0x3000, a => a.hlt());
        // Indirect jumps: each leaves its region, so every one is a dispatcher lookup by RIP.
        _indirectCpu = Guest(_vm, Code + 0x4000, a =>
        {
            var top = a.CreateLabel();
            var first = a.CreateLabel();
            var second = a.CreateLabel();
            a.Label(ref top);
            a.lea(rax, __[first]);
            a.jmp(rax);
            a.Label(ref first);
            a.lea(rax, __[second]);
            a.jmp(rax);
            a.Label(ref second);
            a.dec(rcx);
            a.jnz(top);
            a.hlt();
        });
    }

    [GlobalCleanup]
    public void Cleanup() => _vm.Dispose();

    /// <summary>Guest CPUID → VMM handler → resume, per exit.</summary>
    [Benchmark(OperationsPerInvoke = 1000)]
    public void ExitRoundTrip()
    {
        for (int i = 0; i < 1000; i++)
        {
            _exitCpu.Run();
            _exitCpu.CompleteCpuid(0, 0, 0, 0);
        }
    }

    /// <summary>One load and one store through the memory fast path (with loop overhead), per iteration.</summary>
    [Benchmark(OperationsPerInvoke = Iterations)]
    public void LoadStoreIteration()
    {
        _loadCpu.State.Rip = Code + 0x1000;
        _loadCpu.State.Rsi = Ram;
        _loadCpu.State.Rcx = Iterations;
        _loadCpu.Run();
    }

    /// <summary>A call and a ret: two dispatcher transitions between regions, per iteration.</summary>
    [Benchmark(OperationsPerInvoke = Iterations)]
    public void CallRetTransition()
    {
        _callCpu.State.Rip = Code + 0x2000;
        _callCpu.State.Rsp = Ram + 0xF000;
        _callCpu.State.Rcx = Iterations;
        _callCpu.Run();
    }

    /// <summary>Run() entry and return for a guest whose first instruction exits (HLT): the fixed cost of every VM entry.</summary>
    [Benchmark(OperationsPerInvoke = 1000)]
    public void RunEntry()
    {
        for (int i = 0; i < 1000; i++)
        {
            _entryCpu.State.Rip = Code + 0x3000;
            _entryCpu.Run();
        }
    }

    /// <summary>An indirect JMP that leaves its region: one dispatcher transition (RIP lookup, successor region), per jump.</summary>
    [Benchmark(OperationsPerInvoke = 2 * Iterations)]
    public void IndirectTransition()
    {
        _indirectCpu.State.Rip = Code + 0x4000;
        _indirectCpu.State.Rcx = Iterations;
        _indirectCpu.Run();
    }
}
