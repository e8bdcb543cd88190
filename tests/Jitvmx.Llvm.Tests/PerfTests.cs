// SPDX-License-Identifier: MIT
using System.Diagnostics;
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Compile cost per optimisation level and run time against the IL tier (reported, not asserted).
/// Times are CPU time of the measuring thread, so a loaded machine inflates them less than wall time.
/// </summary>
public unsafe partial class PerfTests(ITestOutputHelper output)
{
    [System.Runtime.InteropServices.LibraryImport("libc")]
    private static partial int clock_gettime(int clock, long* ts);

    private static double ThreadCpuMs()
    {
        long* ts = stackalloc long[2];
        clock_gettime(3, ts); // CLOCK_THREAD_CPUTIME_ID
        return ts[0] * 1e3 + ts[1] / 1e6;
    }

    private const ulong Ram = TestGuest.RamBase;

    /// <summary>One load, one store and five ALU instructions per iteration.</summary>
    private static void HotLoop(Assembler a, int iterations)
    {
        var loop = a.CreateLabel();
        a.mov(rbx, Ram);
        a.mov(ecx, iterations);
        a.Label(ref loop);
        a.mov(rax, __qword_ptr[rbx]);
        a.add(rax, rcx);
        a.xor(rax, rdx);
        a.shr(rax, 1);
        a.mov(__qword_ptr[rbx + 8], rax);
        a.add(rdx, rax);
        a.dec(rcx);
        a.jnz(loop);
        a.hlt();
    }

    private static void Fib(Assembler a)
    {
        var fib = a.CreateLabel();
        var small = a.CreateLabel();
        a.mov(edi, 22);
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
    }

    private static double Calls(LlvmOptLevel? level)
    {
        var warm = Tiers.Run(Fib, g => g.Cpu.Run());
        using var g = new TestGuest(Fib);
        if (level is LlvmOptLevel l)
            foreach (ulong rip in warm.Rips) Tiers.Install(g, rip, l);
        else
            foreach (ulong rip in warm.Rips) g.Vm.Cache.Translate(g.Cpu, rip, false, out _);
        double c0 = ThreadCpuMs();
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        double ms = ThreadCpuMs() - c0;
        Assert.Equal(17711UL, g.Cpu.State.Rax);
        return ms;
    }

    [Fact]
    public void CompileTimesAndLoopSpeed()
    {
        // Compile cost per region and level (each compiled several times; the first is not counted).
        var programs = new (string Name, Action<Assembler> Emit)[]
        {
            ("tiny (3 insns)", a => { a.add(rax, rbx); a.mov(__qword_ptr[rcx], rax); a.hlt(); }),
            ("hot loop (11 insns)", a => HotLoop(a, 10)),
            ("load/store loop (15 insns, 5 accesses)", ProgramTests.LoadStoreLoop),
        };
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        foreach (var (name, emit) in programs)
            foreach (LlvmOptLevel level in Enum.GetValues<LlvmOptLevel>())
            {
                var cpu = new List<double>();
                var parts = new List<LlvmCompileTimes>();
                using var g = new TestGuest(emit);
                for (int i = 0; i < 6; i++)
                {
                    var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, RegionLimits.Default, out _)!;
                    Passes.Run(ir);
                    double c0 = ThreadCpuMs();
                    Assert.True(LlvmBackend.TryCompile(ir, level, out _, out var reason, out var t), reason);
                    double c1 = ThreadCpuMs();
                    if (i > 0) { parts.Add(t); cpu.Add(c1 - c0); }
                }
                cpu.Sort();
                output.WriteLine($"{name} {level}: median {cpu[cpu.Count / 2]:F2} ms CPU (wall means: lower {parts.Average(x => Ms(x.Lower)):F2}, optimise {parts.Average(x => Ms(x.Optimize)):F2}, codegen {parts.Average(x => Ms(x.CodeGen)):F2}, link {parts.Average(x => Ms(x.Link)):F2})");
            }

        // Loading a region from a relocatable object (the ahead-of-time cache's path).
        {
            using var g = new TestGuest(ProgramTests.LoadStoreLoop);
            var loads = new List<double>();
            for (int i = 0; i < 6; i++)
            {
                var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, RegionLimits.Default, out _)!;
                Passes.Run(ir);
                string symbol = LlvmJit.Instance.UniqueName("perf_obj");
                Assert.True(LlvmBackend.TryEmitObject(ir, LlvmOptLevel.O2, symbol, out var obj, out var succ, out var helpers, out var reason), reason);
                double c0 = ThreadCpuMs();
                LlvmBackend.LoadObject(obj, symbol, succ, helpers);
                if (i > 0) loads.Add(ThreadCpuMs() - c0);
            }
            loads.Sort();
            output.WriteLine($"object load + link: median {loads[loads.Count / 2]:F3} ms CPU");
        }

        // Run time of the hot loop: IL tier against LLVM (code compiled before timing).
        const int n = 20_000_000;
        double Time(LlvmOptLevel? level)
        {
            using var g = new TestGuest(a => HotLoop(a, n));
            if (level is LlvmOptLevel l)
            {
                // The loop is the region at its label (entered from the first region's exit).
                g.Cpu.Run(3);
                foreach (ulong rip in Tiers.Regions(g.Vm).Keys.ToList()) Tiers.Install(g, rip, l);
            }
            else g.Cpu.Run(3);
            double c0 = ThreadCpuMs();
            var exit = g.Cpu.Run();
            double elapsed = ThreadCpuMs() - c0;
            Assert.Equal(ExitReason.Hlt, exit.Reason);
            if (level is not null) Assert.All(Tiers.Regions(g.Vm).Values, r => Assert.True(Tiers.IsLlvm(r)));
            return elapsed * 1e6 / n;
        }
        Time(null);
        output.WriteLine($"calls (recursive fib(22), a region transition per call and return): IL {Calls(null):F1} ms, LLVM O2 {Calls(LlvmOptLevel.O2):F1} ms");
        output.WriteLine($"hot loop (1 load, 1 store, 5 ALU per iteration): IL {Time(null):F2} ns/iter, LLVM O0 {Time(LlvmOptLevel.O0):F2}, O1 {Time(LlvmOptLevel.O1):F2}, O2 {Time(LlvmOptLevel.O2):F2} ns/iter");
    }
}
