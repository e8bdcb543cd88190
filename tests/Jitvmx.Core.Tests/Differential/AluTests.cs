// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Random cases for any integer encoding, built from Iced's operand description of a <see cref="Code"/>:
/// registers of every size (AH–BH and REX bytes included), memory through [rsi+d], [esi+d] and
/// [rip+d], immediates at the edges of their encodings, and operands that are sometimes equal.
/// </summary>
internal static class CaseGen
{
    /// <summary>What RSI points at; memory operands address [Window + d], d &lt; 0x60.</summary>
    public const ulong Window = HostOracle.DataBase + 0x100;

    private static readonly Register[] Legacy8 = [Register.AL, Register.CL, Register.DL, Register.BL, Register.AH, Register.CH, Register.DH, Register.BH];
    private static readonly Register[] Rex8 =
    [
        Register.AL, Register.CL, Register.DL, Register.BL, Register.BPL, Register.DIL, Register.R8L, Register.R9L,
        Register.R10L, Register.R11L, Register.R12L, Register.R13L, Register.R14L, Register.R15L,
    ];
    // RSI is the memory base and RSP is left alone.
    private static readonly Register[] Full =
    [
        Register.RAX, Register.RCX, Register.RDX, Register.RBX, Register.RBP, Register.RDI, Register.R8, Register.R9,
        Register.R10, Register.R11, Register.R12, Register.R13, Register.R14, Register.R15,
    ];

    /// <summary>A random register of <paramref name="bits"/> bits (8-bit: legacy set with AH–BH, or the REX set).</summary>
    public static Register Reg(Random rng, int bits, bool legacy8)
    {
        if (bits == 8) return legacy8 ? Legacy8[rng.Next(Legacy8.Length)] : Rex8[rng.Next(Rex8.Length)];
        var r = Full[rng.Next(Full.Length)];
        return bits switch { 16 => r - Register.RAX + Register.AX, 32 => r - Register.RAX + Register.EAX, _ => r };
    }

    /// <summary>A random memory operand inside the window: mostly [rsi+d], sometimes [rip+d] or [esi+d].</summary>
    public static MemoryOperand Mem(Random rng)
    {
        int d = rng.Next(3) == 0 ? rng.Next(0x58) : rng.Next(11) * 8;
        return rng.Next(8) switch
        {
            0 => new MemoryOperand(Register.RIP, (long)(Window + (ulong)d)),
            1 => new MemoryOperand(Register.ESI, d),
            _ => new MemoryOperand(Register.RSI, d),
        };
    }

    /// <summary>An immediate at the edges of an encoding, or random, as Iced expects it for <paramref name="kind"/>.</summary>
    public static int Imm(Random rng, OpCodeOperandKind kind)
    {
        long v = rng.Next(3) switch
        {
            0 => (long)DiffHarness.Interesting(rng),
            1 => new long[] { 0, 1, -1, 0x7F, -0x80, 0x7FFF, -0x8000, 0x7FFFFFFF, int.MinValue, 0x80, 0xFF, 0x8000, 0xFFFF }[rng.Next(13)],
            _ => rng.NextInt64(),
        };
        return kind switch
        {
            OpCodeOperandKind.imm8 => (byte)v,
            OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32 or OpCodeOperandKind.imm8sex64 => (sbyte)v,
            OpCodeOperandKind.imm16 => (ushort)v,
            _ => (int)v,
        };
    }

    private static bool IsImm(OpCodeOperandKind k) => k is OpCodeOperandKind.imm8 or OpCodeOperandKind.imm16 or OpCodeOperandKind.imm32
        or OpCodeOperandKind.imm8sex16 or OpCodeOperandKind.imm8sex32 or OpCodeOperandKind.imm8sex64 or OpCodeOperandKind.imm32sex64;

    private static int RegBits(OpCodeOperandKind k) => k switch
    {
        OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r8_reg or OpCodeOperandKind.al => 8,
        OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r16_reg or OpCodeOperandKind.ax => 16,
        OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r32_reg or OpCodeOperandKind.eax => 32,
        _ => 64,
    };

    /// <summary>
    /// A random instance of <paramref name="code"/>: r/m operands are memory when <paramref name="mem"/>;
    /// two registers of one size are sometimes the same register.
    /// </summary>
    public static Instruction Make(Random rng, Code code, bool mem)
    {
        var info = code.ToOpCode();
        bool legacy8 = rng.Next(2) == 0;
        var ops = new object[info.OpCount];
        for (int n = 0; n < info.OpCount; n++)
        {
            var k = info.GetOpKind(n);
            ops[n] = k switch
            {
                OpCodeOperandKind.al => Register.AL,
                OpCodeOperandKind.ax => Register.AX,
                OpCodeOperandKind.eax => Register.EAX,
                OpCodeOperandKind.rax => Register.RAX,
                _ when IsImm(k) => Imm(rng, k),
                OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem when mem => Mem(rng),
                _ => Reg(rng, RegBits(k), legacy8),
            };
        }
        if (ops.Length >= 2 && ops[0] is Register r0 && ops[1] is Register && r0.GetSize() == ((Register)ops[1]).GetSize() && rng.Next(6) == 0)
            ops[1] = r0;
        return ops switch
        {
            [Register a] => Instruction.Create(code, a),
            [MemoryOperand a] => Instruction.Create(code, a),
            [Register a, Register b] => Instruction.Create(code, a, b),
            [Register a, MemoryOperand b] => Instruction.Create(code, a, b),
            [MemoryOperand a, Register b] => Instruction.Create(code, a, b),
            [Register a, int b] => Instruction.Create(code, a, b),
            [MemoryOperand a, int b] => Instruction.Create(code, a, b),
            [Register a, Register b, int c] => Instruction.Create(code, a, b, c),
            [Register a, MemoryOperand b, int c] => Instruction.Create(code, a, b, c),
            _ => throw new ArgumentException($"no case shape for {code}"),
        };
    }

    /// <summary>Interesting values in every register (RSI = <see cref="Window"/>), random memory with interesting words around the window, random status flags and DF.</summary>
    public static OracleCase Case(Random rng, Action<Assembler> emit)
    {
        var gprs = new ulong[16];
        for (int r = 0; r < 16; r++) gprs[r] = DiffHarness.Interesting(rng);
        gprs[(int)Gpr.Rsi] = Window;
        var mem = new byte[HostOracle.MemorySize];
        rng.NextBytes(mem);
        for (int k = 0; k < 0x60; k += 8) BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(0x100 + k), DiffHarness.Interesting(rng));
        return OracleCase.FromAssembler(emit, gprs, (ulong)rng.NextInt64() & F.Input, mem);
    }

    /// <summary>A case running one instruction; with <paramref name="tie"/>, operand 1's value is first copied into operand 0 (equal operands).</summary>
    public static OracleCase Case(Random rng, Instruction insn, bool tie = false)
    {
        var c = Case(rng, a => a.AddInstruction(insn));
        if (tie && insn.OpCount >= 2 && insn.Op0Kind is OpKind.Register or OpKind.Memory && insn.Op1Kind is OpKind.Register or OpKind.Memory)
            Set(c, insn, 0, Get(c, insn, 1));
        return c;
    }

    private static int MemOffset(in Instruction insn) =>
        (int)((insn.IsIPRelativeMemoryOperand ? insn.IPRelativeMemoryAddress : Window + insn.MemoryDisplacement64) - HostOracle.DataBase);

    /// <summary>The initial value of operand <paramref name="n"/> of <paramref name="insn"/> in case <paramref name="c"/>.</summary>
    public static ulong Get(OracleCase c, in Instruction insn, int n)
    {
        if (insn.GetOpKind(n) == OpKind.Memory) return BinaryPrimitives.ReadUInt64LittleEndian(c.Memory.AsSpan(MemOffset(insn)));
        var r = insn.GetOpRegister(n);
        ulong full = c.Gprs[r.GetFullRegister() - Register.RAX];
        return r is Register.AH or Register.CH or Register.DH or Register.BH ? full >> 8 : full;
    }

    /// <summary>Sets the low bytes of operand <paramref name="n"/> (its size) to <paramref name="v"/>.</summary>
    public static void Set(OracleCase c, in Instruction insn, int n, ulong v)
    {
        if (insn.GetOpKind(n) == OpKind.Memory)
        {
            var span = c.Memory.AsSpan(MemOffset(insn), insn.MemorySize.GetSize());
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, v);
            bytes[..span.Length].CopyTo(span);
            return;
        }
        var r = insn.GetOpRegister(n);
        int idx = r.GetFullRegister() - Register.RAX;
        int shift = r is Register.AH or Register.CH or Register.DH or Register.BH ? 8 : 0;
        ulong mask = (r.GetSize() == 8 ? ulong.MaxValue : (1UL << (r.GetSize() * 8)) - 1) << shift;
        c.Gprs[idx] = (c.Gprs[idx] & ~mask) | ((v << shift) & mask);
    }

    /// <summary>Every <see cref="Code"/> named <c>{mnemonic}_…</c> that is valid in 64-bit mode.</summary>
    public static IEnumerable<Code> Codes(string mnemonic) =>
        Enum.GetValues<Code>().Where(c => c.ToString().StartsWith(mnemonic + "_", StringComparison.Ordinal) && c.ToOpCode().Mode64 && !c.ToString().EndsWith("_82"));

    /// <summary>Whether the encoding has an r/m operand (so a memory form exists).</summary>
    public static bool HasRm(Code code)
    {
        var info = code.ToOpCode();
        for (int n = 0; n < info.OpCount; n++)
            if (info.GetOpKind(n) is OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem or OpCodeOperandKind.r64_or_mem)
                return true;
        return false;
    }

    /// <summary><paramref name="perForm"/> cases for every encoding of <paramref name="mnemonic"/>, register and memory forms, some locked (memory destinations) and some with equal operands.</summary>
    public static List<OracleCase> AllForms(Random rng, string mnemonic, int perForm, bool lockable)
    {
        var cases = new List<OracleCase>();
        foreach (var code in Codes(mnemonic))
            foreach (bool mem in HasRm(code) ? new[] { false, true } : [false])
                for (int k = 0; k < perForm; k++)
                {
                    var insn = Make(rng, code, mem);
                    if (lockable && insn.Op0Kind == OpKind.Memory && rng.Next(3) == 0) insn.HasLockPrefix = true;
                    cases.Add(Case(rng, insn, tie: rng.Next(6) == 0));
                }
        return cases;
    }
}

public sealed class AluTests
{
    private const ulong Logic = F.AF; // AND OR XOR TEST leave AF undefined

    [Theory]
    [InlineData("Add", 0UL, true)]
    [InlineData("Adc", 0UL, true)]
    [InlineData("Sub", 0UL, true)]
    [InlineData("Sbb", 0UL, true)]
    [InlineData("Cmp", 0UL, false)]
    [InlineData("And", Logic, true)]
    [InlineData("Or", Logic, true)]
    [InlineData("Xor", Logic, true)]
    [InlineData("Test", Logic, false)]
    public void BinaryOperationMatchesHost(string mnemonic, ulong undefined, bool lockable)
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = CaseGen.AllForms(rng, mnemonic, 6, lockable);
        DiffHarness.Check(cases, undefined, mnemonic, seed);
    }

    [Theory]
    [InlineData("Inc")]
    [InlineData("Dec")]
    [InlineData("Neg")]
    [InlineData("Not")]
    public void UnaryOperationMatchesHost(string mnemonic)
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = CaseGen.AllForms(rng, mnemonic, 12, lockable: true);
        // The edges: values next to 0 and to the sign bit of each size.
        foreach (ulong v in new ulong[] { 0, 1, 0xFF, 0x7F, 0x80, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue })
            foreach (var code in CaseGen.Codes(mnemonic))
            {
                var insn = CaseGen.Make(rng, code, mem: rng.Next(2) == 0);
                var c = CaseGen.Case(rng, insn);
                CaseGen.Set(c, insn, 0, v);
                cases.Add(c);
            }
        DiffHarness.Check(cases, 0, mnemonic, seed);
    }

    /// <summary>Carry chains: ADC/SBB with CF in, results equal to the first operand (the carry-out edge) and the SBB r,r idiom.</summary>
    [Fact]
    public void CarryChainsMatchHost()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        ulong[] edges = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue];
        foreach (ulong x in edges)
            foreach (ulong y in new ulong[] { 0, 1, ulong.MaxValue, x })
                foreach (bool cf in new[] { false, true })
                {
                    ulong flags = cf ? F.CF : 0;
                    cases.Add(OracleCase.FromAssembler(a => { a.adc(rax, rbx); a.adc(ecx, edx); a.adc(r8w, r9w); a.adc(ah, bl); }, rflags: flags)
                        .With(Gpr.Rax, x).With(Gpr.Rbx, y).With(Gpr.Rcx, x).With(Gpr.Rdx, y).With(Gpr.R8, x).With(Gpr.R9, y));
                    cases.Add(OracleCase.FromAssembler(a => { a.sbb(rax, rbx); a.sbb(ecx, edx); a.sbb(r8w, r9w); a.sbb(bh, al); }, rflags: flags)
                        .With(Gpr.Rax, x).With(Gpr.Rbx, y).With(Gpr.Rcx, x).With(Gpr.Rdx, y).With(Gpr.R8, x).With(Gpr.R9, y));
                }
        // SBB r,r materialises −CF; SUB/XOR r,r zero the register (32-bit forms clear the upper half).
        foreach (bool cf in new[] { false, true })
            cases.Add(OracleCase.FromAssembler(a => { a.sbb(eax, eax); a.sbb(rbx, rbx); a.sbb(cl, cl); a.sub(edx, edx); a.xor(r8d, r8d); a.sub(ah, ah); a.xor(si, si); },
                rflags: cf ? F.CF | F.OF : F.SF).With(Gpr.Rax, ulong.MaxValue).With(Gpr.Rcx, 0x1234).With(Gpr.Rdx, ulong.MaxValue).With(Gpr.R8, 5).With(Gpr.Rsi, ulong.MaxValue));
        // A 128-bit add and subtract through memory.
        for (int k = 0; k < 16; k++)
        {
            var c = CaseGen.Case(rng, a =>
            {
                a.add(__qword_ptr[rsi], rax); a.adc(__qword_ptr[rsi + 8], rdx);
                a.sub(rbx, __qword_ptr[rsi + 16]); a.sbb(rcx, __qword_ptr[rsi + 24]);
            });
            cases.Add(c);
        }
        DiffHarness.Check(cases, 0, "carry chains", seed);
    }

    /// <summary>Each condition code read right after each flag producer, so Jcc sees folded compares and plain flags alike.</summary>
    [Fact]
    public void ConditionsAfterEachProducerMatchHost()
    {
        var rng = DiffHarness.Rng(out int seed);
        string[] producers = ["Add", "Adc", "Sub", "Sbb", "Cmp", "And", "Or", "Xor", "Test", "Inc", "Dec", "Neg"];
        var codes = producers.Select(p => CaseGen.Codes(p).ToArray()).ToArray();
        var cases = new List<OracleCase>();
        for (int k = 0; k < 300; k++)
        {
            var forms = codes[k % codes.Length];
            var code = forms[rng.Next(forms.Length)];
            var insn = CaseGen.Make(rng, code, mem: CaseGen.HasRm(code) && rng.Next(3) == 0);
            int cc = rng.Next(16);
            // op; jcc +4; mov byte [rsi+0x7C], 1
            var c = CaseGen.Case(rng, a => { a.AddInstruction(insn); a.db((byte)(0x70 | cc), 4, 0xC6, 0x46, 0x7C, 0x01); });
            if (rng.Next(3) == 0 && insn.OpCount >= 2 && insn.Op1Kind is OpKind.Register or OpKind.Memory) CaseGen.Set(c, insn, 0, CaseGen.Get(c, insn, 1));
            cases.Add(c);
        }
        // Undefined AF after the logic ops does not reach a condition code.
        DiffHarness.Check(cases, F.AF, "conditions", seed);
    }

    /// <summary>Faulting memory operands leave registers, flags and memory untouched; LOCK without a memory destination is #UD.</summary>
    [Fact]
    public void FaultsArePrecise()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 8; k++)
        {
            cases.Add(CaseGen.Case(rng, a => { a.add(rcx, 1); a.adc(__qword_ptr[rsi - 0x2000], rax); }));
            cases.Add(CaseGen.Case(rng, a => { a.sub(rcx, 1); a.@lock.inc(__dword_ptr[rsi - 0x2000]); }));
            cases.Add(CaseGen.Case(rng, a => { a.xor(rcx, rdx); a.neg(__byte_ptr[rsi + 0x10000]); }));
            cases.Add(CaseGen.Case(rng, a => { a.@not(__word_ptr[rsi + 0x10000]); }));
            cases.Add(CaseGen.Case(rng, a => { a.cmp(rdx, __qword_ptr[rsi - 0x2000]); }));
        }
        // lock add eax, ebx / lock neg rax / lock cmp [rsi], ebx / lock test [rsi], ebx
        foreach (byte[] bytes in new byte[][] { [0xF0, 0x01, 0xD8], [0xF0, 0x48, 0xF7, 0xD8], [0xF0, 0x39, 0x1E], [0xF0, 0x85, 0x1E] })
            cases.Add(CaseGen.Case(rng, a => a.db(bytes)));
        // F6 /1 is an alias of TEST r/m8, imm8.
        cases.Add(CaseGen.Case(rng, a => a.db(0xF6, 0xC9, 0x81)));
        DiffHarness.Check(cases, 0, "faults", seed);
    }
}
