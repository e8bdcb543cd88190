// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Backend;
using Jitvmx.Lifting;
using Jitvmx.Runtime;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// LLVM code checks the software TLB once for a group of accesses through one base
/// (<see cref="AccessGroups"/>). Whenever the group's span is not on one mapped page (it crosses
/// a page, part of it is unmapped or read-only, the page holds code) every access must still
/// behave as alone: same faults at the same instruction, same state, same memory as the IL tier.
/// </summary>
public sealed class AccessGroupTests
{
    private const ulong Ram = TestGuest.RamBase;

    // An unrolled compare-and-copy over a window that slides by 8 bytes from rsi on, crossing pages:
    // movups with pcmpeqb memory operands (alignment checks split the block), read-modify-writes,
    // indexed accesses and pushes.
    private static Action<Assembler> Slide(ulong start, int steps) => a =>
    {
        Label loop = a.CreateLabel(), ok = a.CreateLabel();
        a.mov(rsi, start);
        a.mov(ecx, steps);
        a.xor(edx, edx);
        a.Label(ref loop);
        a.movups(xmm0, __[rsi + 0x10]);
        a.movups(xmm1, __[rsi + 0x20]);
        a.mov(rdi, rsi);
        a.and(rdi, -16);
        a.pcmpeqb(xmm0, __[rdi + 0x10]);
        a.pcmpeqb(xmm1, __[rdi + 0x20]);
        a.pmovmskb(eax, xmm0);
        a.add(edx, eax);
        a.mov(rax, __qword_ptr[rsi]);
        a.add(__qword_ptr[rsi + 0x8], rax);
        a.mov(__dword_ptr[rsi + 0x30], edx);
        a.add(__byte_ptr[rsi + 0x3f], cl);
        a.mov(r8, __qword_ptr[rsi + rcx + 0x8]);
        a.add(r8, __qword_ptr[rsi + rcx + 0x18]);
        a.mov(__qword_ptr[rsi + rcx + 0x28], r8);
        a.push(rax);
        a.push(rdx);
        a.pop(rax);
        a.pop(rbx);
        a.add(rsi, 8);
        a.dec(ecx);
        a.jnz(loop);
        a.Label(ref ok);
        a.hlt();
    };

    // The interpreter checks every access alone: the IL tier's groups must end the same way.
    private static void IlAsInterpreter(Action<Assembler> code, MemoryPermissions codePermissions = MemoryPermissions.ReadExecute)
    {
        var il = Tiers.Run(code, g => g.Cpu.Run(100_000), codePermissions: codePermissions);
        var interp = Tiers.Run(code, g => g.Cpu.Run(100_000), codePermissions: codePermissions,
            options: new VirtualMachineOptions { InterpreterTierUp = long.MaxValue });
        Tiers.Same(interp, il);
    }

    [Fact]
    public void IlGroupsBehaveAsTheInterpreter()
    {
        ulong end = Ram + TestGuest.RamSize;
        foreach (ulong start in (ulong[])[Ram + 0xF00, Ram + 0x1FF9, end - 0x48, end - 0x39, end - 0x20])
            IlAsInterpreter(Slide(start, 30));
        // Faults after many iterations, with the TLB warm and the groups' checks passing before.
        foreach (ulong start in (ulong[])[end - 0x100, end - 0xC1, end - 0x9F])
            IlAsInterpreter(Slide(start, 40));
        IlAsInterpreter(Slide(TestGuest.CodeBase + 0x200, 4));
        IlAsInterpreter(Slide(TestGuest.CodeBase + 0x200, 4), MemoryPermissions.All);
    }

    [Fact]
    public void GroupsAcrossPageBoundariesBehaveAsSingleAccesses()
    {
        // The window crosses from one page into the next partway through.
        Tiers.Compare(Slide(Ram + 0xF00, 60), g => g.Cpu.Run(100_000), level: LlvmOptLevel.O1);
        Tiers.Compare(Slide(Ram + 0x1FF9, 3), g => g.Cpu.Run(100_000), level: LlvmOptLevel.O1);
    }

    [Fact]
    public void AFaultInsideAGroupStopsAtItsInstruction()
    {
        // The window runs off the end of RAM: a later access of a group faults while earlier ones were fine.
        ulong end = Ram + TestGuest.RamSize;
        foreach (ulong start in (ulong[])[end - 0x48, end - 0x41, end - 0x40, end - 0x39, end - 0x31, end - 0x20, end - 0x11])
            Tiers.Compare(Slide(start, 20), g => g.Cpu.Run(100_000), level: LlvmOptLevel.O1);
        // Faults after many iterations, with the TLB warm and the groups' checks passing before.
        foreach (ulong start in (ulong[])[end - 0x100, end - 0xC1, end - 0x9F])
            Tiers.Compare(Slide(start, 40), g => g.Cpu.Run(100_000), level: LlvmOptLevel.O1);
    }

    [Fact]
    public void StoresIntoCodeOrReadOnlyPagesFaultOrInvalidate()
    {
        // The window over the code page: loads are fine; stores fault (read-only code) or modify code (writable code).
        Tiers.Compare(Slide(TestGuest.CodeBase + 0x200, 4), g => g.Cpu.Run(100_000), level: LlvmOptLevel.O1);
        Tiers.Compare(Slide(TestGuest.CodeBase + 0x200, 4), g => g.Cpu.Run(100_000), level: LlvmOptLevel.O1,
            codePermissions: MemoryPermissions.All, allLlvm: false);
    }

    [Fact]
    public void GroupsFollowABaseAcrossCheckBlocksUntilItIsWritten()
    {
        using var g = new TestGuest(Slide(Ram, 4));
        var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, new RegionLimits(400, 32, 96), out _)!;
        Passes.Run(ir);
        var groups = AccessGroups.Find(ir);
        // The first iteration is peeled with rsi known (constant addresses); the loop's own blocks read it.
        var all = groups.Values.Select(m => m.Group).Distinct().ToList();
        var distinct = all.Where(x => x.Base != "const").ToList();
        var constant = all.Where(x => x.Base == "const").ToList();
        Assert.True(distinct.Count == 5 && constant.Count == 1, Describe(groups));
        // Constant addresses group too: rsi's, rdi's and the indexed accesses of the first iteration.
        Assert.Equal((Ram, Ram + 0x3F, 13), ((ulong)constant[0].Low, (ulong)constant[0].High, constant[0].Count));
        // Indexed accesses share a base: the sum of the two registers.
        var indexed = distinct.Single(x => x.Base.Contains("Rcx"));
        Assert.Equal((8L, 0x2FL, 3), (indexed.Low, indexed.High, indexed.Count));
        // rsi: two movups, mov, add (load and store), mov, add byte (load and store) = 8 accesses over 0..0x3f.
        var rsi = distinct.Single(x => x.Count == 8);
        Assert.Equal((0L, 0x3FL, true, true), (rsi.Low, rsi.High, rsi.Loads, rsi.Stores));
        // rdi's two pcmpeqb loads sit in different blocks (each has an alignment check before it).
        var rdi = distinct.Single(x => x.Count == 2 && x.Low == 0x10);
        Assert.Equal(0x2FL, rdi.High);
        Assert.NotEqual(groups.First(kv => kv.Value.Group == rdi && kv.Value.Offset == 0x10).Key,
            groups.First(kv => kv.Value.Group == rdi && kv.Value.Offset == 0x20).Key);
        // Pushes and pops move rsp: one group at offsets -8, -16 (stores) and -16, -8 (loads), in both copies.
        var stack = distinct.Where(x => x.Count == 4).ToList();
        Assert.Equal(2, stack.Count);
        Assert.All(stack, x => Assert.Equal((-16L, -1L, "Rsp@0"), (x.Low, x.High, x.Base)));
        // Nothing spans more than one group's reach.
        Assert.All(distinct, x => Assert.True(x.High - x.Low < AccessGroups.MaxSpan));
    }

    private static string Describe(Dictionary<IrValue, (AccessGroup Group, long Offset)> groups) =>
        string.Join("; ", groups.GroupBy(kv => kv.Value.Group).Select(g =>
            $"{g.Key.Base} [{g.Key.Low}..{g.Key.High}] x{g.Key.Count}: {string.Join(", ", g.Select(kv => $"{kv.Key.Op}@{kv.Value.Offset}"))}"));

    [Fact]
    public void AWriteToTheBaseOrAnImpureCallEndsTheGroup()
    {
        using var g = new TestGuest(a =>
        {
            a.mov(rsi, Ram);
            a.mov(rax, __qword_ptr[rsi]);
            a.movups(xmm0, __[rsi + 0x10]); // alignment-free load: same block
            a.pcmpeqb(xmm0, __[rsi + 0x20]); // alignment check: a new block
            a.mov(rsi, __qword_ptr[rsi + 0x8]); // writes the base after reading through it
            a.pcmpeqb(xmm0, __[rsi + 0x30]); // a new block, a new value of rsi
            a.mov(rbx, __qword_ptr[rsi + 0x38]);
            a.cpuid(); // leaves the region
            a.hlt();
        });
        var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, new RegionLimits(400, 32, 96), out _)!;
        Passes.Run(ir);
        var found = AccessGroups.Find(ir);
        var groups = found.Values.Select(m => m.Group).Distinct().ToList();
        Assert.True(groups.Count == 2, Describe(found));
        // rsi is known at first (constant addresses), then loaded: the base changes.
        var first = groups.Single(x => x.Base == "const");
        Assert.Equal((Ram, Ram + 0x2F, 4), ((ulong)first.Low, (ulong)first.High, first.Count));
        var second = groups.Single(x => x.Base != "const"); // the value loaded into rsi
        Assert.Equal((0x30L, 0x3FL, 2), (second.Low, second.High, second.Count));
    }
}

/// <summary>
/// The software TLB sits after the context, at <see cref="StateOffsets.TlbInline"/>, where LLVM
/// and IL code address it from the context pointer; the runtime reaches it through
/// <c>CpuContext.Tlb</c>. An entry redirected by hand shows which table compiled code reads: a
/// load that missed instead would read guest RAM, through the slow path, and give the old value.
/// </summary>
public sealed unsafe class InlineTlbTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CompiledLoadsUseTheEntryTheRuntimeFilled(bool llvm)
    {
        using var g = new TestGuest(a =>
        {
            a.mov(rax, __qword_ptr[rbx]);
            a.hlt();
        });
        var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, RegionLimits.Default, out _)!;
        Passes.Run(ir);
        RegionFunction fn;
        if (llvm)
        {
            Assert.True(LlvmBackend.TryCompile(ir, LlvmOptLevel.O2, out var compiled, out var reason), reason);
            fn = compiled!.Function;
        }
        else fn = IlBackend.Compile(ir).Function;

        var ctx = g.Cpu.Context;
        Assert.Equal((nint)ctx + StateOffsets.TlbInline, (nint)ctx->Tlb);
        ulong page = TestGuest.RamBase + 0x3000;
        BitConverter.TryWriteBytes(g.Vm.GetSpan(page, 8), 0x1111UL);
        long[] elsewhere = [0x2222];

        ulong Load()
        {
            g.Cpu.Reset();
            g.Cpu.State.Rbx = page;
            ctx->Remaining = 100;
            fn(ctx);
            return g.Cpu.State.Rax;
        }
        Assert.Equal(0x1111UL, Load()); // the slow path fills the entry
        fixed (long* p = elsewhere)
        {
            ref var e = ref ctx->Tlb[(page >> CpuContext.PageBits) & (CpuContext.TlbSize - 1)];
            Assert.Equal(page, e.ReadTag);
            e.Addend = (long)p - (long)page;
            Assert.Equal(0x2222UL, Load());
        }
        g.Cpu.FlushTlb();
    }
}
