// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>JMP, Jcc, CALL, RET, LOOP*, JrCXZ and NOP forms against the host CPU.</summary>
public class ControlFlowTests
{
    private static ulong[] Regs(Random rng)
    {
        var g = new ulong[16];
        for (int i = 0; i < 16; i++) g[i] = DiffHarness.Interesting(rng);
        g[(int)Gpr.Rsp] = HostOracle.DataBase + 0x800;
        return g;
    }

    private static ulong RandomFlags(Random rng) => (ulong)rng.Next() & OracleFlags.Status;

    [Fact]
    public void EveryConditionalJumpOnRandomFlags()
    {
        var rng = DiffHarness.Rng(out int seed);
        var jumps = new Action<Assembler, Label>[]
        {
            (a, l) => a.jo(l), (a, l) => a.jno(l), (a, l) => a.jb(l), (a, l) => a.jae(l), (a, l) => a.je(l), (a, l) => a.jne(l),
            (a, l) => a.jbe(l), (a, l) => a.ja(l), (a, l) => a.js(l), (a, l) => a.jns(l), (a, l) => a.jp(l), (a, l) => a.jnp(l),
            (a, l) => a.jl(l), (a, l) => a.jge(l), (a, l) => a.jle(l), (a, l) => a.jg(l),
        };
        var cases = new List<OracleCase>();
        foreach (var jcc in jumps)
        {
            for (int k = 0; k < 8; k++)
            {
                cases.Add(OracleCase.FromAssembler(a =>
                {
                    var taken = a.CreateLabel();
                    var end = a.CreateLabel();
                    jcc(a, taken);
                    a.mov(eax, 1);
                    a.jmp(end);
                    a.Label(ref taken);
                    a.mov(eax, 2);
                    a.Label(ref end);
                    a.nop();
                }, Regs(rng), RandomFlags(rng)));
            }
        }
        DiffHarness.Check(cases, seed: seed);
    }

    [Fact]
    public void LoopsAndJrcxz()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 24; k++)
        {
            ulong rcx = (ulong)(uint)rng.Next(0, 5);
            var regs = Regs(rng);
            regs[(int)Gpr.Rcx] = rcx;
            cases.Add(OracleCase.FromAssembler(a =>
            {
                var top = a.CreateLabel();
                a.xor(eax, eax);
                a.Label(ref top);
                a.inc(eax);
                a.loop(top);
            }, regs.Select((v, r) => r == (int)Gpr.Rcx ? v + 1 : v).ToArray(), RandomFlags(rng)));
            var regs2 = (ulong[])regs.Clone();
            regs2[(int)Gpr.Rcx] = rcx & 3;
            cases.Add(OracleCase.FromAssembler(a =>
            {
                var top = a.CreateLabel();
                var skip = a.CreateLabel();
                a.xor(eax, eax);
                a.jrcxz(skip);
                a.Label(ref top);
                a.inc(eax);
                a.cmp(eax, 2);
                a.loopne(top);
                a.Label(ref skip);
                a.nop();
            }, regs2, RandomFlags(rng)));
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.mov(edx, 7);
                a.db(0x67, 0xE3, 0x05); // jecxz over the next 5-byte mov (Iced's assembler only offers it outside 64-bit mode)
                a.mov(edx, 9);
                a.nop();
            }, (ulong[])regs.Clone(), RandomFlags(rng)));
            cases.Add(OracleCase.FromAssembler(a =>
            {
                var top = a.CreateLabel();
                a.xor(eax, eax);
                a.Label(ref top);
                a.add(eax, ebx);
                a.test(eax, 1);
                a.loope(top);
            }, ((ulong[])regs2.Clone()).Select((v, r) => r == (int)Gpr.Rcx ? v + 1 : v).ToArray(), RandomFlags(rng)));
        }
        DiffHarness.Check(cases, seed: seed);
    }

    [Fact]
    public void CallsReturnsAndIndirectBranches()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 16; k++)
        {
            var regs = Regs(rng);
            // Direct call and RET imm16.
            cases.Add(OracleCase.FromAssembler(a =>
            {
                var f = a.CreateLabel();
                var end = a.CreateLabel();
                a.push(rbx);
                a.push(rcx);
                a.call(f);
                a.jmp(end);
                a.Label(ref f);
                a.mov(rax, __qword_ptr[rsp + 8]);
                a.add(rax, __qword_ptr[rsp + 16]);
                a.ret(16);
                a.Label(ref end);
                a.nop();
            }, (ulong[])regs.Clone(), RandomFlags(rng)));
            // Indirect call through a register and through memory, indirect jump through a table.
            cases.Add(OracleCase.FromAssembler(a =>
            {
                var f = a.CreateLabel();
                var g = a.CreateLabel();
                var end = a.CreateLabel();
                a.lea(rdx, __[f]);
                a.call(rdx);
                a.lea(rdx, __[g]);
                a.mov(__qword_ptr[rsp - 64], rdx);
                a.call(__qword_ptr[rsp - 64]);
                a.lea(rdx, __[end]);
                a.mov(__qword_ptr[rsp - 128], rdx);
                a.jmp(__qword_ptr[rsp - 128]);
                a.Label(ref f);
                a.imul(rax, rbx, 3);
                a.ret();
                a.Label(ref g);
                a.sub(rax, rcx);
                a.ret();
                a.Label(ref end);
                a.nop();
            }, (ulong[])regs.Clone(), RandomFlags(rng)));
            // Recursion: sum 0..n with call/ret, n small.
            var r2 = (ulong[])regs.Clone();
            r2[(int)Gpr.Rdi] = (ulong)rng.Next(0, 40);
            cases.Add(OracleCase.FromAssembler(a =>
            {
                var sum = a.CreateLabel();
                var basecase = a.CreateLabel();
                var end = a.CreateLabel();
                a.call(sum);
                a.jmp(end);
                a.Label(ref sum);
                a.test(rdi, rdi);
                a.jz(basecase);
                a.push(rdi);
                a.dec(rdi);
                a.call(sum);
                a.pop(rdi);
                a.add(rax, rdi);
                a.ret();
                a.Label(ref basecase);
                a.xor(eax, eax);
                a.ret();
                a.Label(ref end);
                a.nop();
            }, r2, RandomFlags(rng)));
            // A return to a wild address faults at the target.
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.mov(rdx, 0x1234_5678_0000UL);
                a.push(rdx);
                a.ret();
            }, (ulong[])regs.Clone(), RandomFlags(rng)));
        }
        DiffHarness.Check(cases, seed: seed);
    }

    [Fact]
    public void NopFormsAndEndbr64ChangeNothing()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 8; k++)
        {
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.endbr64();
                a.nop();
                a.nop(__dword_ptr[rax + rax * 1 + 0]);
                a.nop(__word_ptr[rax + rax * 1 + 0]);
                a.db(0x66, 0x2E, 0x0F, 0x1F, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00); // nopw cs:[rax+rax]
                a.db(0x0F, 0x1F, 0x80, 0x00, 0x00, 0x00, 0x00);                     // nopl [rax]
                a.pause();
                a.lfence();
                a.mfence();
                a.sfence();
                a.prefetcht0(__byte_ptr[rsp]);
            }, Regs(rng), RandomFlags(rng)));
        }
        DiffHarness.Check(cases, seed: seed);
    }
}
