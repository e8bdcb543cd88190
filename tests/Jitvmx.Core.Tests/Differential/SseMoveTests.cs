// SPDX-License-Identifier: MIT
using System.Reflection;
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of the SSE data moves: every legacy (non-MMX) encoding of each mnemonic,
/// register and memory forms, misaligned operands (#GP(0) for the aligned forms), MOVQ/MOVD
/// zeroing, the MOVSS/MOVSD register merge and load zeroing, MASKMOVDQU.
/// </summary>
public sealed class SseMoveTests
{
    internal static IReadOnlyList<Code> Codes => SimdCases.Encodings(
        Mnemonic.Movaps, Mnemonic.Movups, Mnemonic.Movapd, Mnemonic.Movupd, Mnemonic.Movdqa, Mnemonic.Movdqu,
        Mnemonic.Movd, Mnemonic.Movq, Mnemonic.Movss, Mnemonic.Movsd, Mnemonic.Movhps, Mnemonic.Movlps, Mnemonic.Movhpd,
        Mnemonic.Movlpd, Mnemonic.Movhlps, Mnemonic.Movlhps, Mnemonic.Movntps, Mnemonic.Movntpd, Mnemonic.Movntdq,
        Mnemonic.Movntdqa, Mnemonic.Lddqu);

    [Fact]
    public void Forms() => SimdCases.RunAll(Codes, 24);

    [Fact]
    public void Maskmovdqu()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 40; k++)
        {
            var mem = SimdCases.Memory(rng, counts: false);
            var gprs = SimdCases.Gprs(rng);
            gprs[(int)Gpr.Rdi] = HostOracle.DataBase + 0x100 + (ulong)rng.Next(0x40);
            var insn = Instruction.CreateMaskmovdqu(64, Register.XMM0 + rng.Next(16), Register.XMM0 + rng.Next(16), Register.None);
            cases.Add(SimdCases.Case([insn], gprs, mem, rng, all: true));
        }
        DiffHarness.Check(cases, label: "maskmovdqu", seed: seed);
    }

    /// <summary>Register-to-register MOVQ and MOVD to an XMM register zero the upper bits; MOVSS/MOVSD loads zero, register forms merge.</summary>
    [Fact]
    public void ZeroingAndMerging()
    {
        var rng = DiffHarness.Rng(out int seed);
        var mem = SimdCases.Memory(rng, counts: false);
        var gprs = SimdCases.Gprs(rng);
        Action<Assembler>[] forms =
        [
            a => a.movq(xmm1, xmm2), a => a.movq(xmm1, __qword_ptr[rbx + 0x100]), a => a.movd(xmm1, ecx), a => a.movq(xmm1, rcx),
            a => a.movd(ecx, xmm3), a => a.movq(rcx, xmm3), a => a.movss(xmm1, xmm2), a => a.movss(xmm1, __dword_ptr[rbx + 0x100]),
            a => a.movsd(xmm1, xmm2), a => a.movsd(xmm1, __qword_ptr[rbx + 0x100]), a => a.movss(__dword_ptr[rbx + 0x100], xmm1),
            a => a.movsd(__qword_ptr[rbx + 0x104], xmm1), a => a.movhlps(xmm1, xmm1), a => a.movlhps(xmm1, xmm1),
            a => a.movaps(xmm1, __xmmword_ptr[rbx + 0x108]), a => a.movups(xmm1, __xmmword_ptr[rbx + 0x108]),
            a => a.movdqa(__xmmword_ptr[rbx + 0x101], xmm1), a => a.movntdq(__xmmword_ptr[rbx + 0x10f], xmm1),
            a => a.movntdqa(xmm1, __xmmword_ptr[rbx + 0x104]), a => a.lddqu(xmm1, __xmmword_ptr[rbx + 0x10c]),
            a => a.movhps(xmm1, __qword_ptr[rbx + 0x101]), a => a.movlpd(__qword_ptr[rbx + 0x103], xmm1),
            // RIP-relative (compilers' constant pools), absolute, 32-bit address size and indexed operands.
            a => a.AddInstruction(Instruction.Create(Code.Movdqa_xmm_xmmm128, Register.XMM1, new MemoryOperand(Register.RIP, (long)HostOracle.DataBase + 0x110))),
            a => a.AddInstruction(Instruction.Create(Code.Pshufb_xmm_xmmm128, Register.XMM2, new MemoryOperand(Register.RIP, (long)HostOracle.DataBase + 0x120))),
            a => a.AddInstruction(Instruction.Create(Code.Movdqu_xmmm128_xmm, new MemoryOperand(Register.RIP, (long)HostOracle.DataBase + 0x105), Register.XMM7)),
            a => a.pand(xmm1, __xmmword_ptr[(ulong)HostOracle.DataBase + 0x100]),
            a => a.movdqa(xmm1, __xmmword_ptr[ebx + 0x100]),
            a => { a.mov(ecx, 3); a.movdqu(__xmmword_ptr[rbx + rcx * 8 + 0x100], xmm2); },
        ];
        var cases = forms.Select(f => SimdCases.Case(OracleCase.Assemble(f), gprs, mem, rng)).ToList();
        DiffHarness.Check(cases, label: "zeroing/merging", seed: seed);
    }

    /// <summary>Accesses straddling the end of the data window (a guard page follows): the fault leaves memory and registers untouched.</summary>
    [Fact]
    public void Faults()
    {
        var rng = DiffHarness.Rng(out int seed);
        var mem = SimdCases.Memory(rng, counts: false);
        var gprs = SimdCases.Gprs(rng);
        Action<Assembler>[] forms =
        [
            a => a.movdqu(xmm1, __xmmword_ptr[rbx + 0xFF8]), a => a.movdqu(__xmmword_ptr[rbx + 0xFF8], xmm1),
            a => a.movups(__xmmword_ptr[rbx + 0xFF1], xmm2), a => a.movaps(__xmmword_ptr[rbx + 0x1000], xmm2),
            a => a.movq(__qword_ptr[rbx + 0xFFC], xmm1), a => a.movd(__dword_ptr[rbx + 0xFFE], xmm1),
            a => a.movhps(__qword_ptr[rbx + 0xFFC], xmm1), a => a.movsd(xmm1, __qword_ptr[rbx + 0xFF9]),
            a => a.pextrq(__qword_ptr[rbx + 0xFFC], xmm1, 1), a => a.pextrw(__word_ptr[rbx + 0xFFF], xmm1, 0),
            a => a.paddb(xmm1, __xmmword_ptr[rbx + 0x1000]), a => a.pinsrd(xmm1, __dword_ptr[rbx + 0xFFE], 0),
            a => { a.mov(ecx, 77); a.pcmpistri(xmm1, __xmmword_ptr[rbx + 0xFF8], 0); },
            a => { a.cmp(eax, ecx); a.ptest(xmm1, __xmmword_ptr[rbx + 0x1000]); },
            a => a.pmovzxbw(xmm2, __qword_ptr[rbx + 0xFFC]),
        ];
        var cases = forms.Select(f => SimdCases.Case(OracleCase.Assemble(f), gprs, mem, rng)).ToList();
        DiffHarness.Check(cases, label: "faults", seed: seed);
    }
}

/// <summary>
/// Builds SIMD oracle cases. The data window holds the 16 XMM inputs at +0x000, the memory operand
/// at +0x100 (aligned; sometimes moved by a few bytes to test alignment), and receives all 16 XMM
/// registers at +0x200 after the code under test; the oracle then compares them with the host's.
/// </summary>
internal static class SimdCases
{
    private const ulong Data = HostOracle.DataBase;
    private const int MemOperand = 0x100;

    /// <summary>The legacy (non-VEX, non-MMX) encodings of the mnemonics.</summary>
    public static IReadOnlyList<Code> Encodings(params Mnemonic[] ms)
    {
        var data = new List<Code>();
        foreach (var code in Enum.GetValues<Code>())
        {
            if (!ms.Contains(code.Mnemonic())) continue;
            var op = code.ToOpCode();
            if (op.Encoding != EncodingKind.Legacy || !op.Mode64) continue;
            bool ok = true;
            for (int n = 0; n < op.OpCount; n++) ok &= Supported(op.GetOpKind(n));
            if (ok) data.Add(code);
        }
        return data;
    }

    private static bool Supported(OpCodeOperandKind k) => k is OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm
        or OpCodeOperandKind.xmm_or_mem or OpCodeOperandKind.mem or OpCodeOperandKind.imm8 or OpCodeOperandKind.r32_or_mem
        or OpCodeOperandKind.r64_or_mem or OpCodeOperandKind.r32_reg or OpCodeOperandKind.r64_reg or OpCodeOperandKind.r32_rm
        or OpCodeOperandKind.r64_rm;

    /// <summary>Random registers, RBX at the data window.</summary>
    public static ulong[] Gprs(Random rng)
    {
        var g = CaseSet.RandomGprs(rng);
        g[(int)Gpr.Rbx] = Data;
        return g;
    }

    private static readonly ulong[] s_edges =
    [
        0, 0xFFFF_FFFF_FFFF_FFFF, 0x8080_8080_8080_8080, 0x7F7F_7F7F_7F7F_7F7F, 0x8000_8000_8000_8000, 0x7FFF_7FFF_7FFF_7FFF,
        0x8000_0000_8000_0000, 0x7FFF_FFFF_7FFF_FFFF, 0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x0101_0101_0101_0101,
        0x0001_0001_0001_0001, 0x00FF_00FF_00FF_00FF, 0xFF00_FF00_FF00_FF00, 0xFFFF_0000_FFFF_0000, 0x0000_0001_0000_0001,
        0x0000_0000_FFFF_FFFF, 1, 0xFF, 0x8001_7FFF_0080_FF7F,
    ];

    private static readonly ulong[] s_counts = [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 0x1_0000_0003, 0x8000_0000_0000_0001];

    /// <summary>A data window: random bytes, lanes of edge values, lanes copied between vectors (for the equality compares); shift counts in low quadwords when <paramref name="counts"/>.</summary>
    public static byte[] Memory(Random rng, bool counts)
    {
        var m = new byte[HostOracle.MemorySize];
        rng.NextBytes(m);
        var q = new ulong[m.Length / 8];
        Buffer.BlockCopy(m, 0, q, 0, m.Length);
        for (int v = 0; v < 0x150 / 16; v++)
        {
            for (int h = 0; h < 2; h++)
            {
                int k = 2 * v + h;
                switch (rng.Next(4))
                {
                    case 0: q[k] = s_edges[rng.Next(s_edges.Length)]; break;
                    case 1: q[k] = q[rng.Next(0x150 / 8)] ^ (rng.Next(2) == 0 ? 0 : 0xFFUL << (8 * rng.Next(8))); break;
                }
            }
            if (counts && rng.Next(4) != 0)
                q[2 * v] = rng.Next(3) == 0 ? (ulong)rng.Next(70) : s_counts[rng.Next(s_counts.Length)];
        }
        Buffer.BlockCopy(q, 0, m, 0, m.Length);
        return m;
    }

    private static readonly byte[] s_imms = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 0x80, 0xE4, 0x1B, 0xFF];

    /// <summary>
    /// The XMM registers random forms use: xmm0 (PBLENDVB's implicit mask), low and REX-extended ones.
    /// Fewer registers keep each case's code, and so the time to translate it, small.
    /// </summary>
    private static readonly int[] s_pool = [0, 1, 2, 7, 8, 15];

    /// <summary>A register from the pool.</summary>
    public static Register Xmm(Random rng) => Register.XMM0 + s_pool[rng.Next(s_pool.Length)];

    /// <summary>Loads the XMM registers (the pool, or all 16), runs <paramref name="code"/>, stores them.</summary>
    public static OracleCase Case(byte[] code, ulong[] gprs, byte[] mem, Random rng, bool all = false)
    {
        var regs = all ? Enumerable.Range(0, 16).ToArray() : s_pool;
        var pre = OracleCase.Assemble(a =>
        {
            foreach (int k in regs) a.movdqu(new AssemblerRegisterXMM(Register.XMM0 + k), __xmmword_ptr[rbx + 16 * k]);
        });
        var post = OracleCase.Assemble(a =>
        {
            foreach (int k in regs) a.movdqu(__xmmword_ptr[rbx + 0x200 + 16 * k], new AssemblerRegisterXMM(Register.XMM0 + k));
        });
        return new OracleCase([.. pre, .. code, .. post], gprs, CaseSet.RandomFlags(rng), mem);
    }

    public static OracleCase Case(Instruction[] insns, ulong[] gprs, byte[] mem, Random rng, bool all = false) =>
        Case(OracleCase.Assemble(a => { foreach (var i in insns) a.AddInstruction(i); }), gprs, mem, rng, all);

    /// <summary>Random instances of every encoding, checked in batches (one host process per batch).</summary>
    public static void RunAll(IReadOnlyList<Code> codes, int each)
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var code in codes)
        {
            cases.AddRange(Random(code, each, rng));
            if (cases.Count < 300) continue;
            DiffHarness.Check(cases, seed: seed);
            cases.Clear();
        }
        if (cases.Count > 0) DiffHarness.Check(cases, seed: seed);
    }

    private static bool IsShiftByVector(Mnemonic m) => m is Mnemonic.Psllw or Mnemonic.Pslld or Mnemonic.Psllq
        or Mnemonic.Psrlw or Mnemonic.Psrld or Mnemonic.Psrlq or Mnemonic.Psraw or Mnemonic.Psrad;

    /// <summary>Random instances of one encoding, each a case of its own.</summary>
    private static List<OracleCase> Random(Code code, int count, Random rng)
    {
        var cases = new List<OracleCase>();
        for (int k = 0; k < count; k++)
            cases.Add(Case([RandomInstruction(code, rng)], Gprs(rng), Memory(rng, IsShiftByVector(code.Mnemonic())), rng));
        return cases;
    }

    /// <summary>One instance of an encoding: pool registers, memory (sometimes misaligned), edge immediates.</summary>
    public static Instruction RandomInstruction(Code code, Random rng, bool misalign = true)
    {
        var op = code.ToOpCode();
        bool useMem = rng.Next(3) == 0;
        // Mostly aligned; sometimes a few bytes off to check #GP(0) of the aligned forms.
        int disp = MemOperand + (misalign && rng.Next(6) == 0 ? (int)s_imms[rng.Next(1, 8)] : 0);
        var args = new List<object>();
        var types = new List<Type> { typeof(Code) };
        for (int n = 0; n < op.OpCount; n++)
        {
            var kind = op.GetOpKind(n);
            bool isMem = kind == OpCodeOperandKind.mem || (useMem && kind is OpCodeOperandKind.xmm_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem);
            if (isMem)
            {
                args.Add(__[rbx + disp].ToMemoryOperand(64));
                types.Add(typeof(MemoryOperand).MakeByRefType());
            }
            else if (kind == OpCodeOperandKind.imm8)
            {
                args.Add((int)(rng.Next(3) == 0 ? (byte)rng.Next(256) : s_imms[rng.Next(s_imms.Length)]));
                types.Add(typeof(int));
            }
            else
            {
                args.Add(kind is OpCodeOperandKind.xmm_reg or OpCodeOperandKind.xmm_rm or OpCodeOperandKind.xmm_or_mem
                    ? Xmm(rng)
                    : PickGpr(rng, kind is OpCodeOperandKind.r64_or_mem or OpCodeOperandKind.r64_reg or OpCodeOperandKind.r64_rm));
                types.Add(typeof(Register));
            }
        }
        var create = typeof(Instruction).GetMethod(nameof(Instruction.Create), BindingFlags.Public | BindingFlags.Static, [.. types])
            ?? throw new InvalidOperationException($"no Instruction.Create for {code}");
        return (Instruction)create.Invoke(null, [code, .. args])!;
    }

    /// <summary>Any GPR but RSP and RBX (the data base).</summary>
    private static Register PickGpr(Random rng, bool wide)
    {
        int n;
        do n = rng.Next(16); while (n is (int)Gpr.Rsp or (int)Gpr.Rbx);
        return (wide ? Register.RAX : Register.EAX) + n;
    }
}
