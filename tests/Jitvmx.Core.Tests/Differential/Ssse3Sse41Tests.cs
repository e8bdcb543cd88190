// SPDX-License-Identifier: MIT
using System.Runtime.Intrinsics;
using Iced.Intel;
using Jitvmx.Lifting;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of the SSSE3, SSE4.1 and SSE4.2 (PCMPGTQ) integer instructions: every legacy
/// non-MMX encoding with random and edge lanes, register and memory forms, edge immediates; PTEST's
/// flags and their consumers.
/// </summary>
public sealed class Ssse3Sse41Tests
{
    internal static IReadOnlyList<Code> Codes => SimdCases.Encodings(
        Mnemonic.Pshufb, Mnemonic.Palignr, Mnemonic.Phaddw, Mnemonic.Phaddd, Mnemonic.Phaddsw, Mnemonic.Phsubw, Mnemonic.Phsubd,
        Mnemonic.Phsubsw, Mnemonic.Pmaddubsw, Mnemonic.Pmulhrsw, Mnemonic.Psignb, Mnemonic.Psignw, Mnemonic.Psignd,
        Mnemonic.Pabsb, Mnemonic.Pabsw, Mnemonic.Pabsd, Mnemonic.Pminsb, Mnemonic.Pminsd, Mnemonic.Pminuw, Mnemonic.Pminud,
        Mnemonic.Pmaxsb, Mnemonic.Pmaxsd, Mnemonic.Pmaxuw, Mnemonic.Pmaxud, Mnemonic.Pmulld, Mnemonic.Pmuldq, Mnemonic.Pcmpeqq,
        Mnemonic.Pblendw, Mnemonic.Pblendvb, Mnemonic.Ptest, Mnemonic.Pmovzxbw, Mnemonic.Pmovzxbd, Mnemonic.Pmovzxbq,
        Mnemonic.Pmovzxwd, Mnemonic.Pmovzxwq, Mnemonic.Pmovzxdq, Mnemonic.Pmovsxbw, Mnemonic.Pmovsxbd, Mnemonic.Pmovsxbq,
        Mnemonic.Pmovsxwd, Mnemonic.Pmovsxwq, Mnemonic.Pmovsxdq, Mnemonic.Packusdw, Mnemonic.Pinsrb, Mnemonic.Pinsrd,
        Mnemonic.Pinsrq, Mnemonic.Pextrb, Mnemonic.Pextrd, Mnemonic.Pextrq, Mnemonic.Phminposuw,
        Mnemonic.Mpsadbw, Mnemonic.Pcmpgtq);

    [Fact]
    public void Forms() => SimdCases.RunAll(Codes, 16);

    /// <summary>PTEST then JZ/JC/JA: the branch outcome lands in RAX.</summary>
    [Fact]
    public void PtestConsumers()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 30; k++)
        {
            var mem = SimdCases.Memory(rng, counts: false);
            // Often disjoint or subset masks, so ZF and CF are both seen set.
            if (k % 3 == 0) for (int j = 0; j < 16; j++) mem[16 + j] = (byte)(mem[j] & ~mem[16 + j]);
            if (k % 3 == 1) for (int j = 0; j < 16; j++) mem[16 + j] = (byte)(mem[j] & mem[16 + j]);
            var code = OracleCase.Assemble(a =>
            {
                var z = a.CreateLabel();
                var c = a.CreateLabel();
                var end = a.CreateLabel();
                a.xor(eax, eax);
                a.ptest(xmm0, xmm1);
                a.jz(z);
                a.or(eax, 1);
                a.Label(ref z);
                a.ptest(xmm0, xmm1);
                a.jc(c);
                a.or(eax, 2);
                a.Label(ref c);
                a.ptest(xmm1, xmm0);
                a.ja(end);
                a.or(eax, 4);
                a.Label(ref end);
                a.nop();
            });
            cases.Add(SimdCases.Case(code, SimdCases.Gprs(rng), mem, rng));
        }
        DiffHarness.Check(cases, label: "ptest consumers", seed: seed);
    }

    /// <summary>PCMPESTRI/M and PCMPISTRI/M over small alphabets with NULs, every aggregation/polarity/format, lengths at the edges.</summary>
    [Fact]
    public void StringCompares()
    {
        var rng = DiffHarness.Rng(out int seed);
        Code[] codes = [Code.Pcmpestri_xmm_xmmm128_imm8, Code.Pcmpestri64_xmm_xmmm128_imm8, Code.Pcmpestrm_xmm_xmmm128_imm8,
            Code.Pcmpestrm64_xmm_xmmm128_imm8, Code.Pcmpistri_xmm_xmmm128_imm8, Code.Pcmpistrm_xmm_xmmm128_imm8];
        byte[] alphabet = [(byte)'a', (byte)'b', (byte)'c', 0x80, 0xFF, 0x7F, 1];
        long[] lengths = [0, 1, 2, 7, 8, 9, 15, 16, 17, -1, -5, -16, -17, int.MinValue, long.MinValue, 0x1_0000_0003];
        var cases = new List<OracleCase>();
        foreach (var code in codes)
        {
            for (int k = 0; k < 50; k++)
            {
                var mem = SimdCases.Memory(rng, counts: false);
                for (int j = 0; j < 0x150; j++)
                    mem[j] = rng.Next(12) == 0 ? (byte)0 : alphabet[rng.Next(rng.Next(2) == 0 ? 3 : alphabet.Length)];
                var gprs = SimdCases.Gprs(rng);
                gprs[(int)Gpr.Rax] = (ulong)lengths[rng.Next(lengths.Length)];
                gprs[(int)Gpr.Rdx] = (ulong)lengths[rng.Next(lengths.Length)];
                int imm = rng.Next(128) | (rng.Next(2) == 0 ? 0x0C : 0); // equal ordered (substring search) half the time
                var a = SimdCases.Xmm(rng);
                var insn = rng.Next(3) == 0
                    ? Instruction.Create(code, a, __[rbx + 0x100 + rng.Next(16)].ToMemoryOperand(64), imm)
                    : Instruction.Create(code, a, SimdCases.Xmm(rng), imm);
                cases.Add(SimdCases.Case([insn], gprs, mem, rng));
            }
        }
        DiffHarness.Check(cases, label: "pcmpxstrx", seed: seed);
    }

    /// <summary>Every imm8 (reserved bit 7 included) of PCMPISTRI/M and PCMPESTRI/M (32- and 64-bit lengths) against the host.</summary>
    [Fact]
    public void StringComparesEveryControlByte()
    {
        var rng = DiffHarness.Rng(out int seed);
        Code[] codes = [Code.Pcmpistri_xmm_xmmm128_imm8, Code.Pcmpistrm_xmm_xmmm128_imm8, Code.Pcmpestri_xmm_xmmm128_imm8, Code.Pcmpestrm64_xmm_xmmm128_imm8];
        long[] lengths = [0, 1, 3, 8, 15, 16, 17, -2, -9, int.MinValue, long.MinValue];
        var cases = new List<OracleCase>();
        for (int imm = 0; imm < 256; imm++)
        {
            var code = codes[imm % codes.Length];
            var mem = SimdCases.Memory(rng, counts: false);
            for (int j = 0; j < 0x40; j++) mem[j] = rng.Next(10) == 0 ? (byte)0 : (byte)"ab\x80\xff"[rng.Next(4)];
            var gprs = SimdCases.Gprs(rng);
            gprs[(int)Gpr.Rax] = (ulong)lengths[rng.Next(lengths.Length)];
            gprs[(int)Gpr.Rdx] = (ulong)lengths[rng.Next(lengths.Length)];
            // Two compares in a row, the second on a register the first may have written (XMM0 or ECX's source).
            var first = Instruction.Create(code, Register.XMM1, Register.XMM2, imm);
            var second = Instruction.Create(codes[(imm + 1) % codes.Length], Register.XMM0, __[rbx + 0x10 + rng.Next(16)].ToMemoryOperand(64), imm ^ 0x40);
            cases.Add(SimdCases.Case([first, second], gprs, mem, rng));
        }
        DiffHarness.Check(cases, label: "pcmpxstrx imm8", seed: seed);
    }

    /// <summary>The host-instruction stubs and the scalar implementation agree for every imm8, both length kinds and edge lengths (trivially on hosts without SSE4.2).</summary>
    [Fact]
    public void StringCompareStubsMatchPortable()
    {
        var rng = DiffHarness.Rng(out int seed);
        long[] lengths = [0, 1, 7, 8, 9, 16, 17, -1, -16, int.MinValue, long.MinValue, long.MaxValue];
        var buf = new byte[32];
        for (int imm = 0; imm < 256; imm++)
        {
            for (int k = 0; k < 40; k++)
            {
                foreach (ref byte x in buf.AsSpan()) x = rng.Next(8) == 0 ? (byte)0 : (byte)"abc\x80\xff\x7f\x01"[rng.Next(rng.Next(2) == 0 ? 3 : 7)];
                var a = Vector128.Create(buf.AsSpan(0, 16).ToArray());
                var b = Vector128.Create(buf.AsSpan(16, 16).ToArray());
                long la = lengths[rng.Next(lengths.Length)], lb = lengths[rng.Next(lengths.Length)];
                byte implicitLengths = (byte)(k & 1);
                ulong expected = SimdIntOps.PcmpStrPortable(a, b, la, lb, (byte)imm, implicitLengths);
                ulong actual = SimdIntOps.PcmpStr(a, b, la, lb, (byte)imm, implicitLengths);
                Assert.True(expected == actual, $"imm 0x{imm:x2} implicit {implicitLengths} la {la} lb {lb} a {a} b {b}: stub 0x{actual:x}, portable 0x{expected:x} (seed {seed})");
            }
        }
    }
}
