// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.Intrinsics;
using Iced.Intel;
using Jitvmx.Lifting;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of the SSE2 packed-integer instructions and the float-domain logic/shuffle
/// operations: every legacy non-MMX encoding with random and edge lanes, register and memory
/// forms (misaligned memory #GP(0)), edge immediates, shift counts at and beyond the element width.
/// </summary>
public sealed class SseIntegerTests
{
    internal static IReadOnlyList<Code> Codes => SimdCases.Encodings(
        Mnemonic.Paddb, Mnemonic.Paddw, Mnemonic.Paddd, Mnemonic.Paddq, Mnemonic.Psubb, Mnemonic.Psubw, Mnemonic.Psubd, Mnemonic.Psubq,
        Mnemonic.Paddsb, Mnemonic.Paddsw, Mnemonic.Paddusb, Mnemonic.Paddusw, Mnemonic.Psubsb, Mnemonic.Psubsw, Mnemonic.Psubusb, Mnemonic.Psubusw,
        Mnemonic.Pmullw, Mnemonic.Pmulhw, Mnemonic.Pmulhuw, Mnemonic.Pmuludq, Mnemonic.Pmaddwd, Mnemonic.Psadbw, Mnemonic.Pavgb, Mnemonic.Pavgw,
        Mnemonic.Pminub, Mnemonic.Pmaxub, Mnemonic.Pminsw, Mnemonic.Pmaxsw, Mnemonic.Pcmpeqb, Mnemonic.Pcmpeqw, Mnemonic.Pcmpeqd,
        Mnemonic.Pcmpgtb, Mnemonic.Pcmpgtw, Mnemonic.Pcmpgtd, Mnemonic.Pand, Mnemonic.Pandn, Mnemonic.Por, Mnemonic.Pxor,
        Mnemonic.Psllw, Mnemonic.Pslld, Mnemonic.Psllq, Mnemonic.Psrlw, Mnemonic.Psrld, Mnemonic.Psrlq, Mnemonic.Psraw, Mnemonic.Psrad,
        Mnemonic.Pslldq, Mnemonic.Psrldq, Mnemonic.Pshufd, Mnemonic.Pshufhw, Mnemonic.Pshuflw,
        Mnemonic.Punpcklbw, Mnemonic.Punpckhbw, Mnemonic.Punpcklwd, Mnemonic.Punpckhwd, Mnemonic.Punpckldq, Mnemonic.Punpckhdq,
        Mnemonic.Punpcklqdq, Mnemonic.Punpckhqdq, Mnemonic.Packsswb, Mnemonic.Packssdw, Mnemonic.Packuswb,
        Mnemonic.Pmovmskb, Mnemonic.Pinsrw, Mnemonic.Pextrw, Mnemonic.Movmskps, Mnemonic.Movmskpd,
        Mnemonic.Andps, Mnemonic.Andnps, Mnemonic.Orps, Mnemonic.Xorps, Mnemonic.Andpd, Mnemonic.Andnpd, Mnemonic.Orpd, Mnemonic.Xorpd,
        Mnemonic.Shufps, Mnemonic.Shufpd, Mnemonic.Unpcklps, Mnemonic.Unpckhps, Mnemonic.Unpcklpd, Mnemonic.Unpckhpd);

    [Fact]
    public void Forms() => SimdCases.RunAll(Codes, 16);

    /// <summary>
    /// Runs of random instructions over shared registers (moves, SSE2, SSSE3, SSE4.1 mixed) in one
    /// translation: values flow between instructions through the promoted XMM locals and across the
    /// blocks the alignment checks split off.
    /// </summary>
    [Fact]
    public void Sequences()
    {
        var rng = DiffHarness.Rng(out int seed);
        Code[] all = [.. Codes, .. Ssse3Sse41Tests.Codes, .. SseMoveTests.Codes];
        var cases = new List<OracleCase>();
        for (int k = 0; k < 60; k++)
        {
            var insns = Enumerable.Range(0, 10).Select(_ => SimdCases.RandomInstruction(all[rng.Next(all.Length)], rng, misalign: k % 6 == 5)).ToArray();
            cases.Add(SimdCases.Case(insns, SimdCases.Gprs(rng), SimdCases.Memory(rng, counts: k % 2 == 0), rng));
        }
        DiffHarness.Check(cases, label: "sequences", seed: seed);
    }

    /// <summary>glibc's SSE2 strlen/strchr/memchr idioms, with the consumers of PMOVMSKB's result (TEST/BSF/Jcc).</summary>
    [Fact]
    public void StringIdioms()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 40; k++)
        {
            var mem = SimdCases.Memory(rng, counts: false);
            // A NUL-free string of random length at +0x100 with the target byte somewhere (or not).
            int len = rng.Next(0, 0x60);
            for (int j = 0; j < len; j++) if (mem[0x100 + j] == 0) mem[0x100 + j] = 1;
            mem[0x100 + len] = 0;
            var gprs = SimdCases.Gprs(rng);
            gprs[(int)Gpr.Rdi] = HostOracle.DataBase + 0x100 + (ulong)rng.Next(16);
            gprs[(int)Gpr.Rsi] = mem[0x100 + rng.Next(0x60)];
            var code = OracleCase.Assemble(a =>
            {
                var loop = a.CreateLabel();
                var found = a.CreateLabel();
                a.movd(xmm1, esi);
                a.punpcklbw(xmm1, xmm1);
                a.punpcklwd(xmm1, xmm1);
                a.pshufd(xmm1, xmm1, 0);
                a.pxor(xmm0, xmm0);
                a.mov(rax, rdi);
                a.and(rax, -16);
                a.Label(ref loop);
                a.movdqa(xmm2, __xmmword_ptr[rax]);
                a.movdqa(xmm3, xmm2);
                a.pcmpeqb(xmm2, xmm0);
                a.pcmpeqb(xmm3, xmm1);
                a.por(xmm2, xmm3);
                a.pminub(xmm3, xmm2);
                a.pmovmskb(ecx, xmm2);
                a.add(rax, 16);
                a.test(ecx, ecx);
                a.jz(loop);
                a.Label(ref found);
                a.bsf(ecx, ecx);
                a.lea(rax, __[rax + rcx - 16]);
                a.sub(rax, rdi);
                a.psubb(xmm3, xmm1);
                a.pslldq(xmm3, 3);
                a.psrldq(xmm2, 5);
            });
            cases.Add(SimdCases.Case(code, gprs, mem, rng));
        }
        DiffHarness.Check(cases, undefinedFlags: OracleFlags.Status, label: "string idioms", seed: seed);
    }

    /// <summary>Each vector shift against every interesting count, by immediate and by register.</summary>
    [Fact]
    public void ShiftCounts()
    {
        var rng = DiffHarness.Rng(out int seed);
        var mem = SimdCases.Memory(rng, counts: false);
        var gprs = SimdCases.Gprs(rng);
        var cases = new List<OracleCase>();
        Code[] byImm = [Code.Psllw_xmm_imm8, Code.Pslld_xmm_imm8, Code.Psllq_xmm_imm8, Code.Psrlw_xmm_imm8, Code.Psrld_xmm_imm8,
            Code.Psrlq_xmm_imm8, Code.Psraw_xmm_imm8, Code.Psrad_xmm_imm8, Code.Pslldq_xmm_imm8, Code.Psrldq_xmm_imm8];
        Code[] byReg = [Code.Psllw_xmm_xmmm128, Code.Pslld_xmm_xmmm128, Code.Psllq_xmm_xmmm128, Code.Psrlw_xmm_xmmm128,
            Code.Psrld_xmm_xmmm128, Code.Psrlq_xmm_xmmm128, Code.Psraw_xmm_xmmm128, Code.Psrad_xmm_xmmm128];
        int[] counts = [0, 1, 15, 16, 17, 31, 32, 63, 64, 65, 255];
        foreach (var c in byImm)
        {
            var insns = counts.Select(n => Instruction.Create(c, Register.XMM0 + n % 16, n)).ToArray();
            cases.Add(SimdCases.Case(insns, gprs, mem, rng, all: true));
        }
        ulong[] regCounts = [0, 1, 15, 16, 31, 32, 63, 64, 0x1_0000_0001, 0x8000_0000_0000_0000];
        foreach (var c in byReg)
        {
            var m = (byte[])mem.Clone();
            for (int n = 0; n < regCounts.Length; n++) BitConverter.TryWriteBytes(m.AsSpan(16 * (15 - n)), regCounts[n]);
            var insns = Enumerable.Range(0, regCounts.Length).Select(n => Instruction.Create(c, Register.XMM0 + n % 4, Register.XMM15 - n)).ToArray();
            cases.Add(SimdCases.Case(insns, gprs, m, rng, all: true));
        }
        DiffHarness.Check(cases, label: "shift counts", seed: seed);
    }

    /// <summary>The portable paths (for hosts without SSE2…SSE4.1) agree with the intrinsics on this host.</summary>
    [Fact]
    public void PortableMatchesIntrinsics()
    {
        var rng = DiffHarness.Rng(out int seed);
        const BindingFlags Any = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;
        foreach (var portable in typeof(SimdIntOps.Portable).GetMethods(BindingFlags.Static | BindingFlags.Public))
        {
            var types = portable.GetParameters().Select(p => p.ParameterType).ToArray();
            var native = typeof(SimdIntOps).GetMethod(portable.Name, Any, types)!;
            for (int k = 0; k < 500; k++)
            {
                var mem = SimdCases.Memory(rng, counts: false);
                var args = types.Select((t, n) => t == typeof(Vector128<byte>) ? (object)Vector128.Create(mem.AsSpan(32 * n, 16).ToArray())
                    : t == typeof(int) ? 1 << rng.Next(4) : (object)(rng.Next(2) == 0)).ToArray();
                var expected = native.Invoke(null, args);
                var actual = portable.Invoke(null, args);
                Assert.True(Equals(expected, actual), $"{portable.Name}({string.Join(", ", args)}): {actual}, intrinsic {expected} (seed {seed})");
            }
        }
    }
}
