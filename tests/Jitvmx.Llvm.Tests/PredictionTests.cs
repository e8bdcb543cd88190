// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Predicted computed-branch targets: hot code takes the targets its indirect jumps, calls and
/// returns were seen to go to inside itself behind a compare, and still leaves for anything else.
/// </summary>
[Collection(BackgroundTier.Collection)]
public class PredictionTests
{
    private const ulong Table = TestGuest.RamBase + 0x8000;
    private const ulong Bytecode = TestGuest.RamBase + 0x9000;
    private const int Steps = 300_000;

    // A bytecode interpreter: a dispatch loop jumping through a table to four handlers that jump
    // back. Halfway through, the guest rewrites one table entry (data, not code), so a target the
    // hot code predicted stops being used and one it did not predict for that opcode appears.
    private static void Interpreter(Assembler a)
    {
        var head = a.CreateLabel();
        var done = a.CreateLabel();
        var noPatch = a.CreateLabel();
        var h = new[] { a.CreateLabel(), a.CreateLabel(), a.CreateLabel(), a.CreateLabel() };
        a.mov(r9, Table);
        a.mov(rdi, Bytecode);
        for (int i = 0; i < 4; i++)
        {
            a.lea(rax, __[h[i]]);
            a.mov(__qword_ptr[r9 + i * 8], rax);
        }
        byte[] program = [0, 1, 2, 3, 1, 0, 2, 2, 3, 0, 1, 3, 2, 0, 0, 1];
        for (int i = 0; i < program.Length; i++) a.mov(__byte_ptr[rdi + i], program[i]);
        a.xor(esi, esi);
        a.mov(ebx, 0x1234567);
        a.mov(r8d, Steps);

        a.Label(ref head);
        a.movzx(eax, __byte_ptr[rdi + rsi]);
        a.inc(rsi);
        a.and(rsi, 15);
        a.cmp(r8d, Steps / 2);
        a.jne(noPatch);
        a.mov(rdx, __qword_ptr[r9 + 24]);
        a.mov(__qword_ptr[r9 + 16], rdx);
        a.Label(ref noPatch);
        a.dec(r8d);
        a.jz(done);
        a.jmp(__qword_ptr[r9 + rax * 8]);

        a.Label(ref h[0]);
        a.add(rbx, rsi);
        a.jmp(head);
        a.Label(ref h[1]);
        a.imul(rbx, rbx, 3);
        a.jmp(head);
        a.Label(ref h[2]);
        a.xor(rbx, 0x55);
        a.jmp(head);
        a.Label(ref h[3]);
        a.rol(rbx, 5);
        a.adc(r10, 0);
        a.jmp(head);

        a.Label(ref done);
        a.hlt();
    }

    // Calls through a function pointer that alternates between two callees, whose RETs go back to
    // the one call site; then a third callee appears that the hot code has never seen.
    private static void IndirectCalls(Assembler a)
    {
        var loop = a.CreateLabel();
        var f0 = a.CreateLabel();
        var f1 = a.CreateLabel();
        var f2 = a.CreateLabel();
        var done = a.CreateLabel();
        var keep = a.CreateLabel();
        a.mov(r9, Table);
        a.lea(rax, __[f0]);
        a.mov(__qword_ptr[r9], rax);
        a.lea(rax, __[f1]);
        a.mov(__qword_ptr[r9 + 8], rax);
        a.xor(r10d, r10d);
        a.mov(ebx, 7);
        a.Label(ref loop);
        a.cmp(r10d, Steps / 2);
        a.jne(keep);
        a.lea(rax, __[f2]);
        a.mov(__qword_ptr[r9 + 8], rax);
        a.Label(ref keep);
        a.mov(eax, r10d);
        a.and(eax, 1);
        a.call(__qword_ptr[r9 + rax * 8]);
        a.inc(r10d);
        a.cmp(r10d, Steps);
        a.jne(loop);
        a.jmp(done);
        a.Label(ref f0);
        a.add(rbx, r10);
        a.ret();
        a.Label(ref f1);
        a.imul(rbx, rbx, 7);
        a.ret();
        a.Label(ref f2);
        a.ror(rbx, 3);
        a.ret();
        a.Label(ref done);
        a.hlt();
    }

    // Recursion: fib(n) = fib(n-1) + fib(n-2) with real CALL/RET, called a few times from a loop;
    // the recursive call continues inside the region and the RETs at predicted return addresses.
    private static void Recursion(Assembler a)
    {
        var fib = a.CreateLabel();
        var rec = a.CreateLabel();
        var loop = a.CreateLabel();
        var done = a.CreateLabel();
        a.xor(r12d, r12d);
        a.mov(r13d, 40);
        a.Label(ref loop);
        a.mov(edi, 18);
        a.call(fib);
        a.add(r12, rax);
        a.dec(r13d);
        a.jnz(loop);
        a.jmp(done);
        a.Label(ref fib);
        a.cmp(edi, 1);
        a.jg(rec);
        a.mov(eax, edi);
        a.ret();
        a.Label(ref rec);
        a.push(rbx);
        a.push(rdi);
        a.dec(edi);
        a.call(fib);
        a.mov(rbx, rax);
        a.pop(rdi);
        a.sub(edi, 2);
        a.call(fib);
        a.add(rax, rbx);
        a.pop(rbx);
        a.ret();
        a.Label(ref done);
        a.hlt();
    }

    public static TheoryData<string> Programs => ["interpreter", "calls", "recursion"];

    internal static Action<Assembler> Program(string name) => name switch
    {
        "interpreter" => Interpreter,
        "calls" => IndirectCalls,
        _ => Recursion,
    };

    [Fact]
    public void TheSameTargetsSeenInAnotherOrderGiveTheSameCode()
    {
        // LLVM's code cache finds hot code again by its IR: the order targets happened to be seen in must not change it.
        using var g = new TestGuest(Interpreter);
        Assert.Equal(ExitReason.InstructionBudget, g.Cpu.Run(20_000).Reason);
        var region = Tiers.Regions(g.Vm).Values.First(r => r.IndirectTargetCount >= 3);
        var seen = region.PredictedTargets();
        string Code((ulong Site, ulong Target)[] order)
        {
            region.IndirectTargetCount = 0;
            foreach (var (site, target) in order) region.RecordIndirectTarget(site, target);
            return g.Vm.Cache.RetranslateWithTargets(g.Cpu, region, out _, out _)!.ToString();
        }
        Assert.Equal(Code(seen), Code([.. seen.Reverse()]));
    }

    [Fact]
    public void RecursiveCallToTheEntryStaysInTheRegion()
    {
        using var g = new TestGuest(Recursion);
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(g.Code), TestGuest.CodeBase);
        ulong fib = decoder.Select(i => i).First(i => i.Mnemonic == Mnemonic.Call).NearBranchTarget;
        var ir = Translator.Translate(g.Cpu, fib, RegionLimits.Default, out _)!;
        var nodes = ir.Blocks.SelectMany(b => b.Nodes).ToList();
        Assert.DoesNotContain(nodes, v => v.Op == IrOp.ExitDirect && v.Imm == fib);
        Assert.Contains(nodes, v => v.Op == IrOp.ExitIndirect); // the RETs still leave when not predicted
    }

    [Theory]
    [MemberData(nameof(Programs))]
    public void BackgroundTierPredictsTargetsWithIdenticalResults(string name)
    {
        using var il = new TestGuest(Program(name));
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);

        using var tiered = new TestGuest(Program(name), options: new VirtualMachineOptions { TierUpThreshold = 20_000 });
        Assert.True(LlvmTier.TryAttachBackground(tiered.Vm, LlvmOptLevel.O1, out string? why), why);
        RunUntilHalt(tiered);
        Assert.True(tiered.Vm.Statistics.RegionsPredicted > 0, "no hot region was compiled with predicted targets");
        TieringTests.AssertSameAs(il, tiered, 65536);
    }

    [Theory]
    [MemberData(nameof(Programs))]
    public void TwoLevelLlvmTierPredictsTargetsWithIdenticalResults(string name)
    {
        using var il = new TestGuest(Program(name));
        Assert.Equal(ExitReason.Hlt, il.Cpu.Run().Reason);

        using var tiered = new TestGuest(Program(name), options: new VirtualMachineOptions { TierUpThreshold = 20_000 });
        Assert.True(LlvmTier.TryAttachTwoLevel(tiered.Vm, LlvmOptLevel.O0, LlvmOptLevel.O1, out string? why), why);
        RunUntilHalt(tiered);
        if (Environment.GetEnvironmentVariable("JITVMX_LLVM_LEVEL") is not { Length: > 0 })
            Assert.True(tiered.Vm.Statistics.RegionsPredicted > 0, "no hot region was compiled with predicted targets");
        TieringTests.AssertSameAs(il, tiered, 65536);
    }

    [Fact]
    public void PredictionCanBeTurnedOff()
    {
        using var tiered = new TestGuest(Interpreter, options: new VirtualMachineOptions { TierUpThreshold = 20_000, PredictIndirectBranches = false });
        Assert.True(LlvmTier.TryAttachBackground(tiered.Vm, LlvmOptLevel.O1, out string? why), why);
        RunUntilHalt(tiered, predicted: false);
        Assert.Equal(0, tiered.Vm.Statistics.RegionsPredicted);
        Assert.True(tiered.Vm.Statistics.RegionsTieredUp > 0);
    }

    [Fact]
    public void TranslatorBranchesToPredictedTargetsOnlyAtTheirSite()
    {
        using var g = new TestGuest(Interpreter);
        // Run the setup and some steps so that the table holds the handlers' addresses.
        g.Cpu.Run(2_000);
        ulong[] handlers = [.. Enumerable.Range(0, 4).Select(i => BitConverter.ToUInt64(g.Vm.GetSpan(Table + (ulong)(i * 8), 8)))];
        ulong head = FindHead(g);
        ulong site = head + (ulong)JumpOffset(g, head);
        // The setup code is reachable from the loop only as another instruction's prediction.
        var predicted = handlers.Select(t => (site, t)).Append((site + 1, TestGuest.CodeBase)).ToArray();
        var ir = Translator.Translate(g.Cpu, head, RegionLimits.Default, out _, predictedTargets: predicted)!;
        var heads = ir.Blocks.Where(b => b.ChargedInsns > 0).Select(b => b.GuestAddress).ToHashSet();
        foreach (ulong t in handlers) Assert.Contains(t, heads);
        Assert.DoesNotContain(TestGuest.CodeBase, heads); // another site's target
        // Anything else still leaves the region.
        Assert.Contains(ir.Blocks.SelectMany(b => b.Nodes), v => v.Op == IrOp.ExitIndirect && v.Imm == site);

        var plain = Translator.Translate(g.Cpu, head, RegionLimits.Default, out _)!;
        foreach (ulong t in handlers) Assert.DoesNotContain(t, plain.Blocks.Where(b => b.ChargedInsns > 0).Select(b => b.GuestAddress));
    }

    // The dispatch loop's head: the instruction after the setup's last store (found by decoding).
    private static ulong FindHead(TestGuest g)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(g.Code), TestGuest.CodeBase);
        ulong last = 0;
        foreach (var insn in decoder)
        {
            if (insn.Mnemonic == Mnemonic.Movzx) return insn.IP;
            last = insn.IP;
        }
        throw new InvalidOperationException($"no dispatch head after 0x{last:x}");
    }

    private static int JumpOffset(TestGuest g, ulong head)
    {
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(g.Code), TestGuest.CodeBase);
        foreach (var insn in decoder)
            if (insn.IP >= head && insn.Mnemonic == Mnemonic.Jmp && insn.Op0Kind == OpKind.Memory) return (int)(insn.IP - head);
        throw new InvalidOperationException("no indirect jump");
    }

    // Runs in small slices, waiting after each until the background compiler has installed what the
    // test is about (however slow the machine), so that the rest of the program runs that code.
    private static void RunUntilHalt(TestGuest g, bool predicted = true)
    {
        VmExit exit;
        while ((exit = g.Cpu.Run(10_000)).Reason == ExitReason.InstructionBudget)
            if ((predicted ? g.Vm.Statistics.RegionsPredicted : g.Vm.Statistics.RegionsTieredUp) == 0) Thread.Sleep(10);
        Assert.Equal(ExitReason.Hlt, exit.Reason);
    }
}
