// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Flags that a backend computes only where they are observed (lazy flags): loops whose flags are
/// read by nothing but a fault or the loop's exit, with several instructions (kinds) reaching
/// the exit, flags partly preserved (INC keeps CF), and flags read across blocks (ADC, SETcc).
/// </summary>
public sealed class LazyFlagsTests
{
    private const ulong Data = HostOracle.DataBase;

    private static OracleCase Case(Random rng, Action<Assembler> emit)
    {
        var gprs = new ulong[16];
        for (int r = 0; r < 16; r++) gprs[r] = DiffHarness.Interesting(rng);
        gprs[(int)Gpr.Rsi] = Data;
        var mem = new byte[HostOracle.MemorySize];
        rng.NextBytes(mem);
        return OracleCase.FromAssembler(emit, gprs, (ulong)rng.NextInt64() & F.Input, mem);
    }

    [Fact]
    public void AStoreThatFaultsInALoopSeesTheLastIterationsFlags()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 12; k++)
        {
            int stride = 8 << rng.Next(0, 5);
            cases.Add(Case(rng, a =>
            {
                // Walks RSI off the end of the data page: the store faults with the flags of the
                // previous iteration's ADD/CMP, which nothing in the loop reads.
                var top = a.CreateLabel();
                a.Label(ref top);
                a.mov(__qword_ptr[rsi], rax);
                a.add(rax, rdx);
                a.add(rsi, stride);
                a.cmp(rax, rbx);
                a.jmp(top);
            }));
            cases.Add(Case(rng, a =>
            {
                var top = a.CreateLabel();
                var other = a.CreateLabel();
                var join = a.CreateLabel();
                a.Label(ref top);
                a.mov(ecx, __dword_ptr[rsi]);
                a.test(cl, 1);
                a.jne(other);
                a.sub(rax, rcx);      // one kind on this path
                a.jmp(join);
                a.Label(ref other);
                a.add(rdx, rcx);      // another on that one
                a.inc(rdx);           // and INC, which keeps the ADD's CF
                a.Label(ref join);
                a.add(rsi, stride);
                a.jmp(top);
            }));
            cases.Add(Case(rng, a =>
            {
                var top = a.CreateLabel();
                a.mov(ecx, (uint)rng.Next(1, 40));
                a.Label(ref top);
                a.xor(rax, __qword_ptr[rsi]);
                a.add(rax, rax);
                a.adc(rdx, rax);      // reads the ADD's CF in the same block
                a.add(rsi, 8);
                a.dec(ecx);
                a.jne(top);
                a.setb(bl);           // reads DEC's preserved CF (from ADC) after the loop
                a.neg(r8);
            }));
        }
        DiffHarness.Check(cases, 0, "lazy flags", seed);
    }

    [Fact]
    public void FlagsLeaveALoopThroughEveryExit()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 16; k++)
        {
            cases.Add(Case(rng, a =>
            {
                var top = a.CreateLabel();
                var done = a.CreateLabel();
                a.mov(ecx, (uint)rng.Next(1, 64));
                a.Label(ref top);
                a.movzx(eax, __byte_ptr[rsi]);
                a.add(rdx, rax);
                a.cmp(al, 0x80);
                a.ja(done);           // an early exit with the CMP's flags
                a.inc(rsi);
                a.sub(ecx, 1);
                a.jne(top);           // the loop's own exit with the SUB's flags
                a.Label(ref done);
                a.nop();
            }));
        }
        DiffHarness.Check(cases, 0, "lazy flags at exits", seed);
    }
}
