// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// MMX and its SSE/SSSE3 additions on mm registers: every case loads mm0–mm7 from the data
/// window, runs the instruction (register and memory forms), stores mm0–mm7 back, and records
/// FNSTSW/FNSTENV after the MMX instruction and again after EMMS (TOP, full tag word).
/// </summary>
public sealed class MmxTests
{
    private const int In = 0, Mem = 0x48, Out = 0x200;

    private static readonly MemoryOperand s_mem = new(Register.RBX, Mem);

    private static readonly string[] s_binary =
    [
        "Paddb", "Paddw", "Paddd", "Paddq", "Psubb", "Psubw", "Psubd", "Psubq",
        "Paddsb", "Paddsw", "Paddusb", "Paddusw", "Psubsb", "Psubsw", "Psubusb", "Psubusw",
        "Pmullw", "Pmulhw", "Pmulhuw", "Pmuludq", "Pmaddwd", "Psadbw", "Pavgb", "Pavgw",
        "Pminub", "Pmaxub", "Pminsw", "Pmaxsw", "Pcmpeqb", "Pcmpeqw", "Pcmpeqd", "Pcmpgtb", "Pcmpgtw", "Pcmpgtd",
        "Pand", "Pandn", "Por", "Pxor",
        "Punpcklbw", "Punpckhbw", "Punpcklwd", "Punpckhwd", "Punpckldq", "Punpckhdq", "Packsswb", "Packssdw", "Packuswb",
        "Pshufb", "Phaddw", "Phaddd", "Phaddsw", "Phsubw", "Phsubd", "Phsubsw", "Pmaddubsw", "Pmulhrsw",
        "Psignb", "Psignw", "Psignd", "Pabsb", "Pabsw", "Pabsd",
        "Psllw", "Pslld", "Psllq", "Psrlw", "Psrld", "Psrlq", "Psraw", "Psrad",
    ];

    /// <summary>Quadwords built from saturation-edge bytes and words, interesting values and random bits.</summary>
    private static ulong Value(Random rng)
    {
        ReadOnlySpan<byte> bytes = [0, 1, 0x7F, 0x80, 0x81, 0xFE, 0xFF];
        ReadOnlySpan<ushort> words = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x00FF, 0xFF00, 0x0080, 0xFF7F, 0x4000];
        ulong v = 0;
        switch (rng.Next(4))
        {
            case 0: for (int k = 0; k < 8; k++) v |= (ulong)bytes[rng.Next(bytes.Length)] << (8 * k); return v;
            case 1: for (int k = 0; k < 4; k++) v |= (ulong)words[rng.Next(words.Length)] << (16 * k); return v;
            case 2: return DiffHarness.Interesting(rng);
            default: return (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40);
        }
    }

    private static byte[] Memory(Random rng)
    {
        var mem = new byte[HostOracle.MemorySize];
        for (int k = 0; k < 0x100; k += 8) BitConverter.TryWriteBytes(mem.AsSpan(k), Value(rng));
        return mem;
    }

    private static ulong[] Gprs(Random rng)
    {
        var g = new ulong[16];
        for (int k = 0; k < 16; k++) g[k] = Value(rng);
        g[(int)Gpr.Rbx] = HostOracle.DataBase;
        g[(int)Gpr.Rdi] = HostOracle.DataBase + 0x50 + (ulong)rng.Next(8);
        g[(int)Gpr.Rsp] = 0; // the oracle provides its own stack
        return g;
    }

    private static void Env(Assembler a, int at)
    {
        a.fnstsw(__word_ptr[rbx + at]);
        a.fnstenv(__[rbx + at + 0x10]);
        // FIP, FCS:FOP, FDP and FDS are not compared.
        for (int k = 12; k < 28; k += 4) a.mov(__dword_ptr[rbx + at + 0x10 + k], 0);
    }

    /// <summary>One case: mm0–mm7 (and xmm1/xmm2) loaded, <paramref name="body"/>, results and x87 environment stored.</summary>
    private static OracleCase Case(Random rng, Action<Assembler> body, Action<Assembler>? before = null)
    {
        var code = OracleCase.Assemble(a =>
        {
            before?.Invoke(a);
            a.movdqu(xmm1, __xmmword_ptr[rbx + 0x80]);
            a.movdqu(xmm2, __xmmword_ptr[rbx + 0x90]);
            var mm = new[] { mm0, mm1, mm2, mm3, mm4, mm5, mm6, mm7 };
            for (int k = 0; k < 8; k++) a.movq(mm[k], __qword_ptr[rbx + In + 8 * k]);
            body(a);
            Env(a, Out + 0x100);
            for (int k = 0; k < 8; k++) a.movq(__qword_ptr[rbx + Out + 8 * k], mm[k]);
            a.movdqu(__xmmword_ptr[rbx + Out + 0x40], xmm1);
            a.emms();
            Env(a, Out + 0x140);
        });
        var gprs = Gprs(rng);
        var sp = gprs; // RSP unused by the cases
        return new OracleCase(code, sp, 0x202, Memory(rng));
    }

    private static Action<Assembler> Insn(Instruction i) => a => a.AddInstruction(i);

    private static Code C(string name) => Enum.Parse<Code>(name);

    [Fact]
    public void Binary()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var name in s_binary)
        {
            var c = Enum.TryParse<Code>(name + "_mm_mmm64", out var c64) ? c64 : C(name + "_mm_mmm32");
            cases.Add(Case(rng, Insn(Instruction.Create(c, Register.MM1, Register.MM2))));
            cases.Add(Case(rng, Insn(Instruction.Create(c, Register.MM3, s_mem))));
            cases.Add(Case(rng, Insn(Instruction.Create(c, Register.MM5, Register.MM5))));
        }
        DiffHarness.Check(cases, label: "mmx binary", seed: seed);
    }

    /// <summary>Runs of random MMX instructions over shared registers in one translation (values flow through guest state).</summary>
    [Fact]
    public void Sequences()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 40; k++)
        {
            var insns = new List<Instruction>();
            for (int j = 0; j < 8; j++)
            {
                var name = s_binary[rng.Next(s_binary.Length)];
                var c = Enum.TryParse<Code>(name + "_mm_mmm64", out var c64) ? c64 : C(name + "_mm_mmm32");
                var dst = Register.MM0 + rng.Next(8);
                insns.Add(rng.Next(4) == 0 ? Instruction.Create(c, dst, s_mem) : Instruction.Create(c, dst, Register.MM0 + rng.Next(8)));
                if (rng.Next(6) == 0) insns.Add(Instruction.Create(Code.Movq_mmm64_mm, s_mem, Register.MM0 + rng.Next(8)));
                if (rng.Next(8) == 0) insns.Add(Instruction.Create(Code.Pshufw_mm_mmm64_imm8, Register.MM0 + rng.Next(8), Register.MM0 + rng.Next(8), rng.Next(256)));
            }
            cases.Add(Case(rng, a => { foreach (var i in insns) a.AddInstruction(i); }));
        }
        // A faulting memory operand leaves the destination, TOP and the tags untouched.
        cases.Add(Case(rng, a => { a.emms(); a.paddb(mm1, __qword_ptr[rcx]); }).With(Gpr.Rcx, 0x1000));
        cases.Add(Case(rng, a => { a.emms(); a.movq(__qword_ptr[rcx], mm1); }).With(Gpr.Rcx, 0x1000));
        DiffHarness.Check(cases, label: "mmx sequences", seed: seed);
    }

    [Fact]
    public void ShiftCounts()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        int[] counts = [0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 255];
        foreach (var name in (string[])["Psllw", "Pslld", "Psllq", "Psrlw", "Psrld", "Psrlq", "Psraw", "Psrad"])
        {
            foreach (int n in counts)
                cases.Add(Case(rng, Insn(Instruction.Create(C(name + "_mm_imm8"), Register.MM0 + n % 8, n))));
            foreach (ulong n in (ulong[])[0, 15, 16, 31, 32, 63, 64, 0x100000000, 0x8000000000000001])
                cases.Add(Case(rng, a =>
                {
                    a.mov(rax, (long)n);
                    a.movq(mm6, rax);
                    a.AddInstruction(Instruction.Create(C(name + "_mm_mmm64"), Register.MM1, Register.MM6));
                    a.mov(__qword_ptr[rbx + Mem], rax);
                    a.AddInstruction(Instruction.Create(C(name + "_mm_mmm64"), Register.MM2, s_mem));
                }));
        }
        DiffHarness.Check(cases, label: "mmx shifts", seed: seed);
    }

    [Fact]
    public void Moves()
    {
        var rng = DiffHarness.Rng(out int seed);
        Action<Assembler>[] forms =
        [
            a => a.movd(mm1, eax), a => a.movd(mm1, __dword_ptr[rbx + Mem]), a => a.movq(mm1, rax), a => a.movq(mm1, __qword_ptr[rbx + Mem]),
            a => a.movq(mm1, mm2), a => a.movd(ecx, mm1), a => a.movd(__dword_ptr[rbx + Mem], mm1), a => a.movq(rcx, mm1),
            a => a.movq(__qword_ptr[rbx + Mem], mm1), a => a.movq(mm4, mm4), a => a.movntq(__qword_ptr[rbx + Mem], mm3),
            a => a.movq2dq(xmm1, mm2), a => a.movdq2q(mm1, xmm2), a => a.movd(r9d, mm7), a => a.movq(mm7, r10),
            Insn(Instruction.Create(Code.Movq_rm64_mm, s_mem, Register.MM2)),
            Insn(Instruction.Create(Code.Movq_mm_rm64, Register.MM2, s_mem)),
            a => a.pmovmskb(ecx, mm2), a => a.pmovmskb(r8, mm3),
            a => a.maskmovq(mm1, mm2), a => a.maskmovq(mm6, mm6),
        ];
        var cases = new List<OracleCase>();
        foreach (var f in forms)
            for (int k = 0; k < 3; k++) cases.Add(Case(rng, f));
        DiffHarness.Check(cases, label: "mmx moves", seed: seed);
    }

    [Fact]
    public void Immediates()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int imm in (int[])[0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 0x1B, 0xE4, 0xFF])
        {
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Pshufw_mm_mmm64_imm8, Register.MM1, Register.MM2, imm))));
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Pshufw_mm_mmm64_imm8, Register.MM1, s_mem, imm))));
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Pinsrw_mm_r32m16_imm8, Register.MM1, Register.EAX, imm))));
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Pinsrw_mm_r32m16_imm8, Register.MM1, s_mem, imm))));
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Pextrw_r32_mm_imm8, Register.ECX, Register.MM2, imm))));
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Palignr_mm_mmm64_imm8, Register.MM1, Register.MM2, imm))));
            cases.Add(Case(rng, Insn(Instruction.Create(Code.Palignr_mm_mmm64_imm8, Register.MM1, s_mem, imm))));
        }
        DiffHarness.Check(cases, label: "mmx immediates", seed: seed);
    }

    /// <summary>
    /// The x87 side: registers in use keep their classified tags, empty ones get the tag of their
    /// contents, TOP returns to 0 from anywhere; EMMS empties every tag.
    /// </summary>
    [Fact]
    public void X87Aliasing()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        Action<Assembler>[] x87 =
        [
            a => { a.emms(); a.fld1(); a.fldz(); },
            a => { a.emms(); a.fld1(); a.fstp(st0); a.fldz(); a.fstp(st0); a.fldpi(); },
            a => { a.emms(); a.fldz(); a.fld1(); a.fldz(); a.fincstp(); },
            a => { a.emms(); a.fninit(); a.fld1(); a.fld1(); a.fld1(); a.fstp(st0); },
            a => { a.emms(); a.fldz(); a.fld1(); a.fldpi(); a.fstp(st0); a.fstp(st0); a.fstp(st0); }, // empty registers holding 0, 1, pi
            a => { a.emms(); a.fldz(); a.fld1(); a.fstp(st0); a.fstp(st0); a.fldz(); a.fld1(); a.fldz(); },
        ];
        Action<Assembler>[] mmx =
        [
            a => a.paddb(mm1, mm2), a => a.movd(eax, mm3), a => a.movq(__qword_ptr[rbx + Mem], mm0),
            a => a.pxor(mm7, mm7), a => a.psllq(mm6, 3),
            a => { a.movq(mm0, mm1); a.emms(); a.fld1(); a.fstp(__tword_ptr[rbx + Mem]); }, // FLD after EMMS pushes into R7
        ];
        foreach (var before in x87)
            foreach (var m in mmx)
                cases.Add(Case(rng, a => { before(a); m(a); }));
        // EMMS itself (the case ends with another one). The SDM's EMMS changes only the tag word; the
        // AMD hosts the oracle runs on also zero TOP, so EMMS is not compared after x87 pushes.
        cases.Add(Case(rng, a => a.emms()));
        cases.Add(Case(rng, a => { a.emms(); a.emms(); }));
        // MMX data read back through the x87 view: mm3 as ST(3) after TOP became 0.
        cases.Add(Case(rng, a => { a.paddw(mm3, mm4); a.fstp(__tword_ptr[rbx + Mem]); a.fstp(__tword_ptr[rbx + Mem + 0x10]); }));
        cases.Add(Case(rng, a => { a.movq(mm0, rax); a.fld(st0); a.fstp(__tword_ptr[rbx + Mem]); }));
        // A pending unmasked x87 exception (invalid FSQRT with IM clear) faults the next MMX instruction with #MF.
        foreach (var m in mmx)
            cases.Add(Case(rng, a =>
            {
                a.emms(); // an empty stack: FLD1 must not overflow (that would fault at FCHS already)
                a.mov(__word_ptr[rbx + Mem + 0x10], 0x037E);
                a.fldcw(__word_ptr[rbx + Mem + 0x10]);
                a.fld1();
                a.fchs();
                a.fsqrt();
                m(a);
            }));
        cases.Add(Case(rng, a => { a.emms(); a.mov(__word_ptr[rbx + Mem + 0x10], 0x037E); a.fldcw(__word_ptr[rbx + Mem + 0x10]); a.fld1(); a.fchs(); a.fsqrt(); a.emms(); }));
        DiffHarness.Check(cases, label: "mmx x87", seed: seed);
    }
}
