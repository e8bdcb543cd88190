// SPDX-License-Identifier: MIT
using System.Runtime.Intrinsics;
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of SSE floating point (SSE, SSE2, SSE3, SSE4.1) and LDMXCSR/STMXCSR. Each case
/// loads MXCSR, then runs the instruction on eight operand pairs (register and memory forms
/// alternating), storing every result and the MXCSR after each one to the data window, so
/// results and sticky flags are compared under every rounding mode, DAZ, FTZ, preset flags and
/// unmasked exceptions (#XM: SIGFPE on the host). Operands mix the special values (±0, ±inf, QNaN,
/// SNaN, denormals, min/max normal, integer-conversion edges, ties) with random ones.
/// </summary>
public sealed class SseFloatTests
{
    private const ulong Data = HostOracle.DataBase;
    private const int InBase = 0x100, OutBase = 0x600, Stride = 0x40;

    /// <summary>Masked environments: the four rounding modes, DAZ, FTZ, both, flags already set (the fast paths).</summary>
    private static readonly uint[] s_masked = [0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x1FC0, 0x9F80, 0xFFC0, 0x1FA0, 0x1FBF, 0x5FA0, 0xDFE0];

    /// <summary>One exception unmasked at a time (IM DM ZM OM UM PM), all unmasked, and a sticky unmasked flag that must not fault by itself.</summary>
    private static readonly uint[] s_unmasked = [0x1F00, 0x1E80, 0x1D80, 0x1B80, 0x1780, 0x0F80, 0x0000, 0x0FA0, 0x1F01, 0x6F80];

    private static readonly uint[] s_specialS =
    [
        0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFFC0_1234, 0x7F80_0001, 0xFFA0_0000, 0x0000_0001, 0x807F_FFFF,
        0x0040_0000, 0x0080_0000, 0x8080_0000, 0x7F7F_FFFF, 0xFF7F_FFFF, 0x3F80_0000, 0xBF80_0000, 0x3FC0_0000, 0x4020_0000,
        0xC020_0000, 0x3EAA_AAAB, 0x4F00_0000, 0xCF00_0000, 0x4EFF_FFFF, 0x5F00_0000, 0xDF00_0000, 0x1E3C_E508, 0x60AD_78EC,
        0x0C00_0000, 0x3F00_0000, 0x4040_0000, 0x3F80_0001, 0x0100_0000, 0x7E80_0000,
    ];

    private static readonly ulong[] s_specialD =
    [
        0, 0x8000_0000_0000_0000, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000, 0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0123,
        0x7FF0_0000_0000_0001, 0xFFF4_0000_0000_0000, 1, 0x800F_FFFF_FFFF_FFFF, 0x0008_0000_0000_0000, 0x0010_0000_0000_0000,
        0x7FEF_FFFF_FFFF_FFFF, 0xFFEF_FFFF_FFFF_FFFF, 0x3FF0_0000_0000_0000, 0xBFF0_0000_0000_0000, 0x3FF8_0000_0000_0000,
        0x4004_0000_0000_0000, 0xC004_0000_0000_0000, 0x3FD5_5555_5555_5555, 0x3FF0_0000_1000_0000, 0x3FF0_0000_0800_0000,
        D(2147483647.5), D(-2147483648.5), D(-2147483648.0), D(2147483648.0), D(9223372036854775808.0), D(-9223372036854775808.0),
        D(1e-200), D(1e200), D(1e-310), D(3.4028235677973366e38), D(3.5e38), D(1e-40), D(1.1754942e-38), D(0.5), D(3.0),
    ];

    private static ulong D(double d) => (ulong)BitConverter.DoubleToInt64Bits(d);

    private static uint RandomS(Random rng) => rng.Next(4) switch
    {
        0 or 1 => s_specialS[rng.Next(s_specialS.Length)],
        2 => BitConverter.SingleToUInt32Bits((float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-40, 40)))),
        _ => (uint)rng.Next() ^ ((uint)rng.Next(2) << 31),
    };

    private static ulong RandomD(Random rng) => rng.Next(4) switch
    {
        0 or 1 => s_specialD[rng.Next(s_specialD.Length)],
        2 => D((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-80, 80))),
        _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63),
    };

    /// <summary>16 random operand bytes whose lanes are singles ('S'), doubles ('D'), integers ('I') or a mix.</summary>
    private static void Fill(Random rng, byte[] mem, int at, char elem)
    {
        for (int q = 0; q < 2; q++)
        {
            char e = elem == 'M' ? "SDI"[rng.Next(3)] : elem;
            ulong v = e switch
            {
                'S' => RandomS(rng) | ((ulong)RandomS(rng) << 32),
                'D' => RandomD(rng),
                _ => rng.Next(2) == 0 ? DiffHarness.Interesting(rng) : (ulong)(long)(int)DiffHarness.Interesting(rng) & 0xFFFF_FFFF | (DiffHarness.Interesting(rng) << 32),
            };
            BitConverter.TryWriteBytes(mem.AsSpan(at + q * 8), v);
        }
    }

    private enum Shape { Vec, ToInt, FromInt, Comis, BlendV, Extract }

    private static Shape ShapeOf(string code) => code switch
    {
        _ when code.StartsWith("Cvtsi2", StringComparison.Ordinal) => Shape.FromInt,
        _ when code.Contains("2si_", StringComparison.Ordinal) => Shape.ToInt,
        _ when code.Contains("comis", StringComparison.OrdinalIgnoreCase) => Shape.Comis,
        _ when code.StartsWith("Blendv", StringComparison.Ordinal) => Shape.BlendV,
        _ when code.StartsWith("Extractps", StringComparison.Ordinal) => Shape.Extract,
        _ => Shape.Vec,
    };

    private static void Load(Assembler a, AssemblerRegisterXMM x, int at) => a.blendps(x, __xmmword_ptr[rbx + at], 0xF);

    private static void StoreXmm(Assembler a, AssemblerRegisterXMM x, int at)
    {
        for (int k = 0; k < 4; k++) a.extractps(__dword_ptr[rbx + at + 4 * k], x, (byte)k);
    }

    /// <summary>Immediate for sub-operation <paramref name="k"/>: every CMP predicate, random others.</summary>
    private static int ImmFor(string code, int k, Random rng) => code switch
    {
        _ when code.StartsWith("Cmp", StringComparison.Ordinal) => k,
        _ when code.StartsWith("Round", StringComparison.Ordinal) => rng.Next(16),
        _ when code.StartsWith("Extractps", StringComparison.Ordinal) => k & 3,
        _ when code.EndsWith("_imm8", StringComparison.Ordinal) => rng.Next(256),
        _ => -1,
    };

    private static Instruction Make(Code code, Register r0, Register r1, bool mem, int disp, int imm)
    {
        var m = new MemoryOperand(Register.RBX, disp);
        if (imm >= 0)
            return mem ? (code.ToString().StartsWith("Extractps", StringComparison.Ordinal) ? Instruction.Create(code, m, r1, imm) : Instruction.Create(code, r0, m, imm))
                : Instruction.Create(code, r0, r1, imm);
        return mem ? Instruction.Create(code, r0, m) : Instruction.Create(code, r0, r1);
    }

    /// <summary>A case: MXCSR from +0, then the instruction on eight operand pairs, results and MXCSR to the output area.</summary>
    private static OracleCase BuildCase(string codeName, char elem, uint mxcsr, Random rng, bool misaligned = false)
    {
        var code = Enum.Parse<Code>(codeName);
        var shape = ShapeOf(codeName);
        var mem = new byte[HostOracle.MemorySize];
        BitConverter.TryWriteBytes(mem.AsSpan(0), mxcsr);
        bool wide = codeName.Contains("r64", StringComparison.Ordinal) || codeName.EndsWith("rm64", StringComparison.Ordinal);
        var gpr = wide ? Register.RAX : Register.EAX;
        var emit = new List<Action<Assembler>>();
        for (int k = 0; k < 8; k++)
        {
            int a = InBase + k * Stride, b = a + 16, c = a + 32, o = OutBase + k * Stride;
            Fill(rng, mem, a, elem);
            Fill(rng, mem, b, shape == Shape.FromInt ? 'I' : elem);
            Fill(rng, mem, c, 'M');
            bool useMem = (k & 1) == 1;
            int disp = misaligned && useMem ? b + 4 : b;
            int imm = ImmFor(codeName, k, rng);
            emit.Add(asm =>
            {
                asm.ldmxcsr(__dword_ptr[rbx]);
                Load(asm, xmm1, a);
                Load(asm, xmm2, b);
                Load(asm, xmm0, c);
                asm.mov(rax, __qword_ptr[rbx + c]); // garbage in the upper half for 32-bit destinations
                switch (shape)
                {
                    case Shape.FromInt:
                        asm.mov(rcx, __qword_ptr[rbx + b]);
                        asm.AddInstruction(Make(code, Register.XMM1, wide ? Register.RCX : Register.ECX, useMem, disp, imm));
                        StoreXmm(asm, xmm1, o);
                        break;
                    case Shape.ToInt:
                        asm.AddInstruction(Make(code, gpr, Register.XMM2, useMem, disp, imm));
                        asm.mov(__qword_ptr[rbx + o], rax);
                        break;
                    case Shape.Comis:
                        asm.AddInstruction(Make(code, Register.XMM1, Register.XMM2, useMem, disp, imm));
                        asm.pushfq();
                        asm.pop(rax);
                        asm.mov(__qword_ptr[rbx + o], rax);
                        break;
                    case Shape.Extract:
                        asm.AddInstruction(Make(code, gpr, Register.XMM2, useMem, o, imm));
                        asm.mov(__qword_ptr[rbx + o + 8], rax);
                        break;
                    default:
                        asm.AddInstruction(Make(code, Register.XMM1, Register.XMM2, useMem, disp, imm));
                        StoreXmm(asm, xmm1, o);
                        break;
                }
                asm.stmxcsr(__dword_ptr[rbx + o + 16]);
            });
        }
        return OracleCase.FromAssembler(asm => { foreach (var e in emit) e(asm); }, memory: mem)
            .With(Gpr.Rbx, Data).With(Gpr.Rsp, Data + 0x1000);
    }

    /// <summary>Like <see cref="DiffHarness.Check"/>, with #XM matched to the host's SIGFPE (the harness maps it to SIGSEGV).</summary>
    private static void Check(IReadOnlyList<OracleCase> cases, string label, int seed)
    {
        var native = HostOracle.Run(cases);
        var report = new System.Text.StringBuilder();
        int failures = 0;
        for (int i = 0; i < cases.Count; i++)
        {
            var j = DiffHarness.RunJitvmx(cases[i]);
            if (j.Exit.Reason == ExitReason.ExceptionOrNmi && j.Exit.Vector == ExceptionVector.XM) j = j with { Signal = OracleSignal.Sigfpe };
            string? diff = DiffHarness.Compare(native[i], j, 0);
            if (diff is null || ++failures > 5) continue;
            report.AppendLine($"case {i} ({label}, mxcsr {BitConverter.ToUInt32(cases[i].Memory, 0):x}): {diff}");
            report.AppendLine("  code: " + DiffHarness.Disassemble(cases[i].Code));
        }
        if (failures > 0) Assert.Fail($"{failures} of {cases.Count} cases differ from the host CPU (seed {seed}):\n{report}");
    }

    private static void Run(string code, char elem)
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (uint m in s_masked.Concat(s_unmasked))
            cases.Add(BuildCase(code, elem, m, rng));
        if (code.Contains("xmmm128", StringComparison.Ordinal)) cases.Add(BuildCase(code, elem, 0x1F80, rng, misaligned: true));
        Check(cases, code, seed);
    }

    [Theory]
    [InlineData("Addps_xmm_xmmm128", 'S')]
    [InlineData("Addss_xmm_xmmm32", 'S')]
    [InlineData("Addpd_xmm_xmmm128", 'D')]
    [InlineData("Addsd_xmm_xmmm64", 'D')]
    [InlineData("Subps_xmm_xmmm128", 'S')]
    [InlineData("Subss_xmm_xmmm32", 'S')]
    [InlineData("Subpd_xmm_xmmm128", 'D')]
    [InlineData("Subsd_xmm_xmmm64", 'D')]
    [InlineData("Mulps_xmm_xmmm128", 'S')]
    [InlineData("Mulss_xmm_xmmm32", 'S')]
    [InlineData("Mulpd_xmm_xmmm128", 'D')]
    [InlineData("Mulsd_xmm_xmmm64", 'D')]
    [InlineData("Divps_xmm_xmmm128", 'S')]
    [InlineData("Divss_xmm_xmmm32", 'S')]
    [InlineData("Divpd_xmm_xmmm128", 'D')]
    [InlineData("Divsd_xmm_xmmm64", 'D')]
    [InlineData("Minps_xmm_xmmm128", 'S')]
    [InlineData("Minss_xmm_xmmm32", 'S')]
    [InlineData("Minpd_xmm_xmmm128", 'D')]
    [InlineData("Minsd_xmm_xmmm64", 'D')]
    [InlineData("Maxps_xmm_xmmm128", 'S')]
    [InlineData("Maxss_xmm_xmmm32", 'S')]
    [InlineData("Maxpd_xmm_xmmm128", 'D')]
    [InlineData("Maxsd_xmm_xmmm64", 'D')]
    [InlineData("Sqrtps_xmm_xmmm128", 'S')]
    [InlineData("Sqrtss_xmm_xmmm32", 'S')]
    [InlineData("Sqrtpd_xmm_xmmm128", 'D')]
    [InlineData("Sqrtsd_xmm_xmmm64", 'D')]
    [InlineData("Rcpps_xmm_xmmm128", 'S')]
    [InlineData("Rcpss_xmm_xmmm32", 'S')]
    [InlineData("Rsqrtps_xmm_xmmm128", 'S')]
    [InlineData("Rsqrtss_xmm_xmmm32", 'S')]
    public void Arithmetic(string code, char elem) => Run(code, elem);

    [Theory]
    [InlineData("Cmpps_xmm_xmmm128_imm8", 'S')]
    [InlineData("Cmppd_xmm_xmmm128_imm8", 'D')]
    [InlineData("Cmpss_xmm_xmmm32_imm8", 'S')]
    [InlineData("Cmpsd_xmm_xmmm64_imm8", 'D')]
    [InlineData("Comiss_xmm_xmmm32", 'S')]
    [InlineData("Comisd_xmm_xmmm64", 'D')]
    [InlineData("Ucomiss_xmm_xmmm32", 'S')]
    [InlineData("Ucomisd_xmm_xmmm64", 'D')]
    public void Comparisons(string code, char elem) => Run(code, elem);

    [Theory]
    [InlineData("Cvtsi2ss_xmm_rm32", 'S')]
    [InlineData("Cvtsi2ss_xmm_rm64", 'S')]
    [InlineData("Cvtsi2sd_xmm_rm32", 'D')]
    [InlineData("Cvtsi2sd_xmm_rm64", 'D')]
    [InlineData("Cvtss2si_r32_xmmm32", 'S')]
    [InlineData("Cvtss2si_r64_xmmm32", 'S')]
    [InlineData("Cvtsd2si_r32_xmmm64", 'D')]
    [InlineData("Cvtsd2si_r64_xmmm64", 'D')]
    [InlineData("Cvttss2si_r32_xmmm32", 'S')]
    [InlineData("Cvttss2si_r64_xmmm32", 'S')]
    [InlineData("Cvttsd2si_r32_xmmm64", 'D')]
    [InlineData("Cvttsd2si_r64_xmmm64", 'D')]
    [InlineData("Cvtss2sd_xmm_xmmm32", 'S')]
    [InlineData("Cvtsd2ss_xmm_xmmm64", 'D')]
    [InlineData("Cvtps2pd_xmm_xmmm64", 'S')]
    [InlineData("Cvtpd2ps_xmm_xmmm128", 'D')]
    [InlineData("Cvtdq2ps_xmm_xmmm128", 'I')]
    [InlineData("Cvtps2dq_xmm_xmmm128", 'S')]
    [InlineData("Cvttps2dq_xmm_xmmm128", 'S')]
    [InlineData("Cvtdq2pd_xmm_xmmm64", 'I')]
    [InlineData("Cvtpd2dq_xmm_xmmm128", 'D')]
    [InlineData("Cvttpd2dq_xmm_xmmm128", 'D')]
    public void Conversions(string code, char elem) => Run(code, elem);

    [Theory]
    [InlineData("Addsubps_xmm_xmmm128", 'S')]
    [InlineData("Addsubpd_xmm_xmmm128", 'D')]
    [InlineData("Haddps_xmm_xmmm128", 'S')]
    [InlineData("Haddpd_xmm_xmmm128", 'D')]
    [InlineData("Hsubps_xmm_xmmm128", 'S')]
    [InlineData("Hsubpd_xmm_xmmm128", 'D')]
    [InlineData("Movsldup_xmm_xmmm128", 'M')]
    [InlineData("Movshdup_xmm_xmmm128", 'M')]
    [InlineData("Movddup_xmm_xmmm64", 'M')]
    public void Sse3(string code, char elem) => Run(code, elem);

    [Theory]
    [InlineData("Roundss_xmm_xmmm32_imm8", 'S')]
    [InlineData("Roundsd_xmm_xmmm64_imm8", 'D')]
    [InlineData("Roundps_xmm_xmmm128_imm8", 'S')]
    [InlineData("Roundpd_xmm_xmmm128_imm8", 'D')]
    [InlineData("Dpps_xmm_xmmm128_imm8", 'S')]
    [InlineData("Dppd_xmm_xmmm128_imm8", 'D')]
    [InlineData("Blendps_xmm_xmmm128_imm8", 'M')]
    [InlineData("Blendpd_xmm_xmmm128_imm8", 'M')]
    [InlineData("Blendvps_xmm_xmmm128", 'M')]
    [InlineData("Blendvpd_xmm_xmmm128", 'M')]
    [InlineData("Insertps_xmm_xmmm32_imm8", 'M')]
    [InlineData("Extractps_rm32_xmm_imm8", 'M')]
    [InlineData("Extractps_r64m32_xmm_imm8", 'M')]
    public void Sse41(string code, char elem) => Run(code, elem);
}
