// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

public class StackTests
{
    private const ulong Stack = HostOracle.DataBase + 0x800;

    private static OracleCase Case(Random rng, Action<Assembler> emit, ulong? rflags = null)
    {
        var g = new ulong[16];
        for (int r = 0; r < 16; r++) g[r] = DiffHarness.Interesting(rng);
        g[(int)Gpr.Rsp] = Stack;
        g[(int)Gpr.Rbp] = Stack + 0x100;
        g[(int)Gpr.Rsi] = HostOracle.DataBase + 0x100;
        var m = new byte[HostOracle.MemorySize];
        rng.NextBytes(m);
        return OracleCase.FromAssembler(emit, g, rflags ?? ((ulong)rng.Next() & OracleFlags.Input), m);
    }

    private static Action<Assembler> Imm(Code c, int v) => a => a.AddInstruction(Instruction.Create(c, v));

    [Fact]
    public void PushPop()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        Action<Assembler>[] forms =
        [
            a => a.push(rbx), a => a.push(r13), a => a.push(bx), a => a.push(r9w), a => a.push(rsp), a => a.push(sp),
            a => a.push(__qword_ptr[rsi + 8]), a => a.push(__word_ptr[rsi + 3]), a => a.push(__qword_ptr[rsp + 8]), a => a.push(__qword_ptr[rsp]),
            Imm(Code.Pushq_imm8, -5), Imm(Code.Pushq_imm8, 0x7F), Imm(Code.Pushq_imm32, int.MinValue), Imm(Code.Pushq_imm32, 0x12345678),
            Imm(Code.Pushw_imm8, -2), Imm(Code.Push_imm16, 0x1234),
            a => a.pop(rbx), a => a.pop(r13), a => a.pop(bx), a => a.pop(r9w), a => a.pop(rsp), a => a.pop(sp),
            a => a.pop(__qword_ptr[rsi + 8]), a => a.pop(__word_ptr[rsi + 3]), a => a.pop(__qword_ptr[rsp + 8]), a => a.pop(__qword_ptr[rsp]),
            a => a.pop(__qword_ptr[rsp - 8]), a => a.pop(__word_ptr[rsp + 1]),
            a => { a.push(rax); a.pop(rcx); }, a => { a.push(ax); a.push(rbx); a.pop(rcx); a.pop(dx); },
            a => { a.push(__qword_ptr[rsp + 16]); a.pop(__qword_ptr[rsp + 8]); },
        ];
        foreach (var f in forms)
            for (int k = 0; k < 5; k++)
                cases.Add(Case(rng, f));
        // RSP pointing outside the window: the faulting push or pop changes nothing.
        cases.Add(Case(rng, a => a.push(rbx)).With(Gpr.Rsp, HostOracle.DataBase));
        cases.Add(Case(rng, a => a.push(rbx)).With(Gpr.Rsp, HostOracle.DataBase + 4));
        cases.Add(Case(rng, a => a.pop(rbx)).With(Gpr.Rsp, HostOracle.DataBase + 0xFF8 + 4));
        cases.Add(Case(rng, a => a.pop(__qword_ptr[rsi + 0x1000])));
        cases.Add(Case(rng, a => a.pop(__qword_ptr[rsp + 0x1000]))); // RSP stays as it was
        cases.Add(Case(rng, a => a.pop(__qword_ptr[rsp + 0x7F8]))); // the incremented RSP puts this just outside
        cases.Add(Case(rng, a => a.push(__qword_ptr[rsi - 0x108])));
        DiffHarness.Check(cases, label: "push/pop", seed: seed);
    }

    [Fact]
    public void PushPopSegmentRegisters()
    {
        // Not differential: the host's selectors are not the guest's. The host CPU writes the whole slot, zero-extended.
        using var g = new Engine.GuestBuilder(a =>
        {
            a.AddInstruction(Instruction.Create(Code.Pushq_FS, Register.FS));
            a.AddInstruction(Instruction.Create(Code.Pushw_GS, Register.GS));
            a.AddInstruction(Instruction.Create(Code.Popw_FS, Register.FS));
            a.AddInstruction(Instruction.Create(Code.Pushq_imm8, 0x2B));
            a.AddInstruction(Instruction.Create(Code.Popq_GS, Register.GS));
            a.hlt();
        });
        g.Cpu.State.Fs.Selector = 0x1234;
        g.Cpu.State.Gs.Selector = 0x5678;
        ulong rsp = g.Cpu.State.Rsp;
        var fill = new byte[16];
        Array.Fill(fill, (byte)0xAA);
        g.Vm.WritePhysical(rsp - 16, fill);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        var slot = new byte[16];
        g.Vm.ReadPhysical(rsp - 16, slot);
        Assert.Equal(0x1234UL, BitConverter.ToUInt64(slot, 8));
        Assert.Equal(0x5678, g.Cpu.State.Fs.Selector);
        Assert.Equal(0x2B, g.Cpu.State.Gs.Selector);
        Assert.Equal(rsp - 8, g.Cpu.State.Rsp);
    }

    [Fact]
    public void PushfPopf()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 24; k++)
        {
            cases.Add(Case(rng, a => { a.pushfq(); a.pop(rax); }));
            cases.Add(Case(rng, a => { a.pushf(); a.pop(ax); }));
            // Every bit offered to POPF except TF (single-stepping the oracle); IF, IOPL, VM, VIF, VIP and RF stay.
            ulong image = (((ulong)rng.NextInt64() << 1) ^ (ulong)rng.NextInt64()) & ~0x100UL;
            cases.Add(Case(rng, a => { a.push(rbx); a.popfq(); a.pushfq(); a.pop(rcx); a.push(2); a.popfq(); a.mov(rdx, rbx); })
                .With(Gpr.Rbx, image));
            cases.Add(Case(rng, a => { a.push(bx); a.popf(); a.pushfq(); a.pop(rcx); a.push(2); a.popfq(); })
                .With(Gpr.Rbx, image));
            // POPF as the last instruction: the harness compares the status flags and DF.
            cases.Add(Case(rng, a => { a.push(rbx); a.popfq(); }).With(Gpr.Rbx, image & 0xCD5));
        }
        // The flags POPF wrote feed SETcc and conditional moves in the same block.
        for (int k = 0; k < 16; k++)
        {
            cases.Add(Case(rng, a =>
            {
                a.push(rbx); a.popfq(); a.setb(al); a.setbe(ah); a.setl(cl); a.setle(ch); a.seto(dl); a.setp(dh); a.sets(r8b); a.cmovz(r9, r10);
            }).With(Gpr.Rbx, (ulong)rng.Next() & 0xCD5));
        }
        cases.Add(Case(rng, a => a.popfq()).With(Gpr.Rsp, HostOracle.DataBase + 0x1000));
        DiffHarness.Check(cases, label: "pushf/popf", seed: seed);
    }

    [Fact]
    public void LahfSahfAndFlagInstructions()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 12; k++)
        {
            cases.Add(Case(rng, a => a.lahf()));
            cases.Add(Case(rng, a => { a.sahf(); a.setb(cl); a.setz(dl); a.sets(bl); a.setp(r8b); a.seto(r9b); }));
            cases.Add(Case(rng, a => { a.sahf(); a.lahf(); }));
            cases.Add(Case(rng, a => { a.clc(); a.setb(cl); a.cmc(); a.setae(dl); }));
            cases.Add(Case(rng, a => { a.stc(); a.setb(cl); a.cmc(); a.setbe(dl); }));
            cases.Add(Case(rng, a => a.cmc()));
            cases.Add(Case(rng, a => { a.std(); a.pushfq(); a.pop(rbx); }));
            cases.Add(Case(rng, a => { a.cld(); a.pushfq(); a.pop(rbx); }));
            cases.Add(Case(rng, a => a.std()));
            // A SUB-like producer followed by CLC/STC/CMC: conditions on CF must see the new CF.
            cases.Add(Case(rng, a => { a.cmpxchg(rbx, rcx); a.clc(); a.setb(dl); a.seta(r8b); a.setbe(r9b); }));
            cases.Add(Case(rng, a => { a.cmpxchg(rbx, rcx); a.stc(); a.setae(dl); a.setb(r8b); a.seta(r9b); }));
            cases.Add(Case(rng, a => { a.cmpxchg(rbx, rcx); a.cmc(); a.setb(dl); a.setl(r8b); }));
        }
        DiffHarness.Check(cases, label: "lahf/sahf/clc/stc/cmc/cld/std", seed: seed);
    }

    [Fact]
    public void EnterLeave()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int level in new[] { 0, 1, 2, 3, 5, 31, 32, 33 })
        {
            foreach (int alloc in new[] { 0, 8, 0x28, 0x101 })
            {
                cases.Add(Case(rng, a => a.enter((ushort)alloc, (byte)level)));
                cases.Add(Case(rng, a => { a.enter((ushort)alloc, (byte)level); a.leave(); }));
            }
            cases.Add(Case(rng, a => a.AddInstruction(Instruction.Create(Code.Enterw_imm16_imm8, 0x10, level))));
        }
        for (int k = 0; k < 8; k++)
        {
            cases.Add(Case(rng, a => a.leave()));
            cases.Add(Case(rng, a => a.AddInstruction(Instruction.Create(Code.Leavew))));
            cases.Add(Case(rng, a => { a.push(rbp); a.mov(rbp, rsp); a.lea(rsp, __[rsp - 0x40]); a.leave(); }));
        }
        // RBP outside the window: LEAVE faults before changing RSP.
        cases.Add(Case(rng, a => a.leave()).With(Gpr.Rbp, HostOracle.DataBase + 0x1000));
        // A display entry outside the window: ENTER faults with nothing changed.
        cases.Add(Case(rng, a => a.enter(0x10, 3)).With(Gpr.Rbp, HostOracle.DataBase + 8));
        DiffHarness.Check(cases, label: "enter/leave", seed: seed);
    }
}
