// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of BMI1 (ANDN BEXTR BLSI BLSR BLSMSK), BMI2 (BZHI PDEP PEXT SARX SHLX SHRX
/// RORX MULX) and ADX (ADCX ADOX). Each test checks the host's CPUID first: without the extension
/// the instruction is #UD on the host and there is nothing to compare against.
/// </summary>
public sealed class BmiTests
{
    private const ulong Data = HostOracle.DataBase;

    private static readonly Lazy<string> s_cpuFlags = new(() =>
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "";
        }
        catch (IOException)
        {
            return "";
        }
    });

    private static bool HostHas(string feature) => s_cpuFlags.Value.Split(' ', ':', '\t').Contains(feature);

    /// <summary>Operand shapes by the Iced code name: r = register, m = the r/m operand, i = imm8.</summary>
    [Theory]
    [InlineData("Andn", "bmi1", "rrm", F.AF | F.PF)]
    [InlineData("Bextr", "bmi1", "rmr", F.AF | F.SF | F.PF)]
    [InlineData("Blsi", "bmi1", "rm", F.AF | F.PF)]
    [InlineData("Blsr", "bmi1", "rm", F.AF | F.PF)]
    [InlineData("Blsmsk", "bmi1", "rm", F.AF | F.PF)]
    [InlineData("Bzhi", "bmi2", "rmr", F.AF | F.PF)]
    [InlineData("Pdep", "bmi2", "rrm", 0UL)]
    [InlineData("Pext", "bmi2", "rrm", 0UL)]
    [InlineData("Sarx", "bmi2", "rmr", 0UL)]
    [InlineData("Shlx", "bmi2", "rmr", 0UL)]
    [InlineData("Shrx", "bmi2", "rmr", 0UL)]
    [InlineData("Rorx", "bmi2", "rmi", 0UL)]
    [InlineData("Mulx", "bmi2", "rrm", 0UL)]
    [InlineData("Adcx", "adx", "rm", 0UL)]
    [InlineData("Adox", "adx", "rm", 0UL)]
    public void Forms(string op, string feature, string shape, ulong undefined)
    {
        if (!HostHas(feature)) return;
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        var mem = CaseSet.RandomMemory(rng);
        foreach (int w in (int[])[32, 64])
        {
            var code = Enum.Parse<Code>(op is "Adcx" or "Adox" ? $"{op}_r{w}_rm{w}" : $"VEX_{op}_" + string.Join("_", shape.Select(c => c switch
            {
                'r' => $"r{w}",
                'm' => $"rm{w}",
                _ => "imm8",
            })));
            for (int k = 0; k < 60; k++)
            {
                var gprs = CaseSet.RandomGprs(rng);
                gprs[(int)Gpr.Rbx] = Data;
                bool memory = k % 4 == 3;
                var regs = new Register[shape.Length];
                for (int n = 0; n < shape.Length; n++)
                {
                    // Registers may repeat (MULX hi == lo, ANDN x, x, x …); RBX is the memory base.
                    do regs[n] = CaseSet.PickReg(rng, w, allowHigh8: false);
                    while (memory && Index(regs[n]) == (int)Gpr.Rbx);
                    // Counts, controls and indices: the low byte is what matters; mostly edge values.
                    if (shape[n] == 'r' && n > 0 && op is "Bextr" or "Bzhi" or "Sarx" or "Shlx" or "Shrx")
                        gprs[Index(regs[n])] = (gprs[Index(regs[n])] & ~0xFFFFUL) | Control(rng, w, op == "Bextr");
                }
                var ops = new object[shape.Length];
                for (int n = 0; n < shape.Length; n++)
                {
                    ops[n] = shape[n] switch
                    {
                        'i' => rng.Next(2) == 0 ? rng.Next(256) : (object)(int)(DiffHarness.Interesting(rng) & 0xFF),
                        'm' when memory => new MemoryOperand(Register.RBX, rng.Next(0, 4096 - w / 8)),
                        _ => regs[n],
                    };
                }
                set.Add(CaseSet.Of([Create(code, ops)], gprs, CaseSet.RandomFlags(rng), mem), undefined);
            }
        }
        set.Check(op, seed);
    }

    private static int Index(Register r) => r.GetFullRegister() - Register.RAX;

    /// <summary>A low 16-bit control: BEXTR start (bits 0–7) and length (8–15), else a count/index byte, mostly at the edges.</summary>
    private static ulong Control(Random rng, int w, bool twoFields)
    {
        int[] edges = [0, 1, 7, 8, w - 1, w, w + 1, 31, 32, 63, 64, 65, 0x80, 0xFF];
        int Pick() => rng.Next(3) == 0 ? rng.Next(256) : edges[rng.Next(edges.Length)];
        return twoFields ? (ulong)(Pick() | Pick() << 8) : (ulong)(Pick() | rng.Next(256) << 8);
    }

    private static Instruction Create(Code code, object[] ops) => ops switch
    {
        [Register a, Register b] => Iced.Intel.Instruction.Create(code, a, b),
        [Register a, MemoryOperand b] => Iced.Intel.Instruction.Create(code, a, b),
        [Register a, Register b, Register c] => Iced.Intel.Instruction.Create(code, a, b, c),
        [Register a, Register b, MemoryOperand c] => Iced.Intel.Instruction.Create(code, a, b, c),
        [Register a, MemoryOperand b, Register c] => Iced.Intel.Instruction.Create(code, a, b, c),
        [Register a, Register b, int c] => Iced.Intel.Instruction.Create(code, a, b, c),
        [Register a, MemoryOperand b, int c] => Iced.Intel.Instruction.Create(code, a, b, c),
        _ => throw new ArgumentException("unexpected operand shape"),
    };

    /// <summary>ADCX and ADOX carry chains interleaved: each reads only its own flag and keeps the other one.</summary>
    [Fact]
    public void AdxCarryChains()
    {
        if (!HostHas("adx")) return;
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        for (int k = 0; k < 60; k++)
        {
            var c = OracleCase.FromAssembler(a =>
            {
                a.adcx(rax, rbx);
                a.adox(rcx, rdx);
                a.adcx(esi, edi);
                a.adox(r8d, __dword_ptr[r15 + 8]);
                a.adcx(r9, __qword_ptr[r15]);
                a.adox(r10, r10);
                a.adcx(r11, r11);
            }, CaseSet.RandomGprs(rng), CaseSet.RandomFlags(rng), CaseSet.RandomMemory(rng));
            set.Add(c.With(Gpr.R15, Data + (ulong)rng.Next(0, 4000)), 0);
        }
        set.Check("adx chain", seed);
    }

    /// <summary>MULX with overlapping registers: hi == lo keeps the high half; EDX/RDX as a destination or the source.</summary>
    [Fact]
    public void MulxRegisterOverlap()
    {
        if (!HostHas("bmi2")) return;
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        Action<Assembler>[] forms =
        [
            a => a.mulx(rax, rax, rcx), a => a.mulx(eax, eax, ecx), a => a.mulx(rdx, rax, rcx), a => a.mulx(rax, rdx, rcx),
            a => a.mulx(rdx, rdx, rdx), a => a.mulx(edx, ecx, edx), a => a.mulx(rcx, rax, __qword_ptr[rbx]),
        ];
        foreach (var form in forms)
        {
            for (int k = 0; k < 6; k++)
            {
                var gprs = CaseSet.RandomGprs(rng);
                gprs[(int)Gpr.Rbx] = Data + 0x100;
                set.Add(OracleCase.FromAssembler(form, gprs, CaseSet.RandomFlags(rng), CaseSet.RandomMemory(rng)), 0);
            }
        }
        set.Check("mulx overlap", seed);
    }

    /// <summary>BMI flag results feed conditional branches.</summary>
    [Fact]
    public void ConditionsAfterBmi()
    {
        if (!HostHas("bmi1") || !HostHas("bmi2")) return;
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        Action<Assembler>[] ops =
        [
            a => a.andn(rdx, rax, rcx), a => a.blsr(edx, eax), a => a.blsi(rdx, rax), a => a.blsmsk(edx, eax),
            a => a.bzhi(rdx, rax, rcx), a => a.bextr(edx, eax, ecx),
        ];
        (Action<Assembler, Label> Emit, ulong Reads)[] jumps =
        [
            ((a, l) => a.jb(l), F.CF), ((a, l) => a.je(l), F.ZF), ((a, l) => a.jbe(l), F.CF | F.ZF),
            ((a, l) => a.js(l), F.SF), ((a, l) => a.jl(l), F.SF | F.OF), ((a, l) => a.jo(l), F.OF), ((a, l) => a.jg(l), F.SF | F.OF | F.ZF),
        ];
        for (int k = 0; k < 80; k++)
        {
            int which = rng.Next(ops.Length);
            ulong undefined = F.AF | F.PF | (which == 5 ? F.SF : 0);
            var jump = jumps[rng.Next(jumps.Length)];
            while ((jump.Reads & undefined) != 0) jump = jumps[rng.Next(jumps.Length)];
            var gprs = CaseSet.RandomGprs(rng);
            gprs[(int)Gpr.Rcx] = Control(rng, 64, which == 5);
            if (k % 4 == 0) gprs[(int)Gpr.Rax] = 0;
            var c = OracleCase.FromAssembler(a =>
            {
                var taken = a.CreateLabel();
                ops[which](a);
                jump.Emit(a, taken);
                a.mov(edi, 1);
                a.Label(ref taken);
                a.nop();
            }, gprs, CaseSet.RandomFlags(rng));
            set.Add(c, undefined);
        }
        set.Check("bmi + jcc", seed);
    }
}
