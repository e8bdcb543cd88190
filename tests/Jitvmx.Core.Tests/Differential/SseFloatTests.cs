// SPDX-License-Identifier: MIT
using System.Runtime.Intrinsics;
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of SSE floating point (SSE, SSE2, SSE3, SSE4.1) and LDMXCSR/STMXCSR. Each case
/// loads MXCSR, then runs the instruction on six operand pairs (register and memory forms
/// alternating), storing every result and the MXCSR after each one to the data window, so
/// results and sticky flags are compared under every rounding mode, DAZ, FTZ, preset flags and
/// unmasked exceptions (#XM: SIGFPE on the host). Operands mix the special values (±0, ±inf, QNaN,
/// SNaN, denormals, min/max normal, integer-conversion edges, ties) with random ones.
/// </summary>
public sealed class SseFloatTests
{
    private const ulong Data = HostOracle.DataBase;
    private const int InBase = 0x100, OutBase = 0x600, Stride = 0x40, SubOps = 6;

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

    /// <summary>Immediate for sub-operation <paramref name="k"/>: random (CMP predicates 0–7).</summary>
    private static int ImmFor(string code, int k, Random rng) => code switch
    {
        _ when code.StartsWith("Cmp", StringComparison.Ordinal) => rng.Next(8),
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

    /// <summary>A case: MXCSR from +0, then the instruction on six operand pairs, results and MXCSR to the output area.</summary>
    private static OracleCase BuildCase(string codeName, char elem, uint mxcsr, Random rng, bool misaligned = false)
    {
        var code = Enum.Parse<Code>(codeName);
        var shape = ShapeOf(codeName);
        var mem = new byte[HostOracle.MemorySize];
        BitConverter.TryWriteBytes(mem.AsSpan(0), mxcsr);
        bool wide = codeName.Contains("r64", StringComparison.Ordinal) || codeName.EndsWith("rm64", StringComparison.Ordinal);
        var gpr = wide ? Register.RAX : Register.EAX;
        var emit = new List<Action<Assembler>>();
        for (int k = 0; k < SubOps; k++)
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

    /// <summary>LDMXCSR of every control/flag combination (STMXCSR back), reserved bits (#GP), an unaligned operand, and flags preset with their exceptions unmasked (no fault until an instruction raises one).</summary>
    [Fact]
    public void LdmxcsrAndStmxcsr()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        uint[] values = [0x1F80, 0xFFFF, 0, 0x0040, 0x8000, 0x6000, 0x003F, 0x1F3F, 0x1_0000, 0x8000_0000, 0xFFFF_FFFF, 0x0004_1F80];
        foreach (uint v in values.Concat(Enumerable.Range(0, 20).Select(_ => (uint)rng.Next(0x10000))))
        {
            var mem = new byte[HostOracle.MemorySize];
            BitConverter.TryWriteBytes(mem.AsSpan(0x13), v);
            BitConverter.TryWriteBytes(mem.AsSpan(0x20), 1.0f);
            BitConverter.TryWriteBytes(mem.AsSpan(0x24), 3.0f);
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.stmxcsr(__dword_ptr[rbx + 0x100]);
                a.ldmxcsr(__dword_ptr[rbx + 0x13]);
                a.stmxcsr(__dword_ptr[rbx + 0x104]);
                // An exact operation raises nothing, whatever is unmasked or already flagged.
                a.blendps(xmm1, __xmmword_ptr[rbx + 0x20], 0xF);
                a.addss(xmm1, xmm1);
                a.stmxcsr(__dword_ptr[rbx + 0x108]);
                StoreXmm(a, xmm1, 0x110);
            }, memory: mem).With(Gpr.Rbx, Data));
        }
        Check(cases, "ldmxcsr", seed);
    }

    /// <summary>
    /// Arithmetic that runs under the guest's MXCSR in native code: every rounding mode with FTZ and
    /// DAZ, flags raised before and after helper calls (CVTSI2SD, CVTSD2SI), an LDMXCSR in the middle
    /// that changes rounding and unmasks exceptions (the next one raised is #XM), and STMXCSR reading
    /// the flags between.
    /// </summary>
    [Fact]
    public void ArithmeticAcrossMxcsrChangesAndCalls()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (uint first in (uint[])[0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x9FC0, 0xFFC0, 0x1FBF])
        foreach (uint second in (uint[])[0x1F80, 0x7F80, 0x1F00, 0x1E80])
        {
            var mem = new byte[HostOracle.MemorySize];
            BitConverter.TryWriteBytes(mem.AsSpan(0), first);
            BitConverter.TryWriteBytes(mem.AsSpan(4), second);
            for (int k = 0; k < 8; k++)
            {
                double d = k switch
                {
                    0 => 1e-310, // denormal: DAZ/DE
                    1 => 1e308,
                    _ => (rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-30, 30)),
                };
                BitConverter.TryWriteBytes(mem.AsSpan(0x20 + 8 * k), d);
            }
            BitConverter.TryWriteBytes(mem.AsSpan(0x60), rng.NextInt64());
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.ldmxcsr(__dword_ptr[rbx]);
                a.movsd(xmm1, __qword_ptr[rbx + 0x20]);
                a.movsd(xmm2, __qword_ptr[rbx + 0x28]);
                a.movsd(xmm3, __qword_ptr[rbx + 0x30]);
                a.mulsd(xmm2, xmm2);          // overflow
                a.addsd(xmm1, xmm3);          // denormal operand
                a.cvtsi2sd(xmm4, __qword_ptr[rbx + 0x60]); // a helper call between native operations
                a.divsd(xmm3, __qword_ptr[rbx + 0x38]);
                a.stmxcsr(__dword_ptr[rbx + 0x200]);
                a.sqrtsd(xmm5, xmm3);
                a.subpd(xmm4, __xmmword_ptr[rbx + 0x40]);
                a.cvtsd2si(rcx, xmm3);
                a.ldmxcsr(__dword_ptr[rbx + 4]);
                a.mulsd(xmm1, __qword_ptr[rbx + 0x50]);
                a.addsd(xmm3, xmm4);
                a.stmxcsr(__dword_ptr[rbx + 0x204]);
                for (int r = 1; r <= 5; r++) StoreXmm(a, new AssemblerRegisterXMM(Register.XMM0 + r), 0x100 + 16 * r);
                a.mov(__qword_ptr[rbx + 0x208], rcx);
            }, memory: mem).With(Gpr.Rbx, Data));
        }
        Check(cases, "mxcsr-switch", seed);
    }

    /// <summary>Edge cases the random operands may miss: exact tiny results with UE unmasked (#XM though nothing is inexact) and masked (no flag), FTZ, integer indefinite.</summary>
    [Fact]
    public void TinyExactResultsAndIndefinite()
    {
        var cases = new List<OracleCase>();
        foreach (uint m in (uint[])[0x1F80, 0x1780, 0x9F80, 0x9780, 0x1FC0])
        {
            var mem = new byte[HostOracle.MemorySize];
            BitConverter.TryWriteBytes(mem.AsSpan(0), m);
            BitConverter.TryWriteBytes(mem.AsSpan(0x20), 0x0080_0000u); // smallest normal single
            BitConverter.TryWriteBytes(mem.AsSpan(0x30), 0.5f);
            BitConverter.TryWriteBytes(mem.AsSpan(0x40), 0x0010_0000_0000_0000UL); // smallest normal double
            BitConverter.TryWriteBytes(mem.AsSpan(0x50), 0.5);
            BitConverter.TryWriteBytes(mem.AsSpan(0x60), 3e9f);
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.ldmxcsr(__dword_ptr[rbx]);
                a.mov(rax, -1L);
                a.cvttss2si(eax, __dword_ptr[rbx + 0x60]);
                a.mov(__qword_ptr[rbx + 0x200], rax);
                a.cvtss2si(rcx, __dword_ptr[rbx + 0x24]); // NaN-free denormal-ish bits: exercises DAZ
                a.mov(__qword_ptr[rbx + 0x208], rcx);
                a.stmxcsr(__dword_ptr[rbx + 0x210]);
                a.blendps(xmm1, __xmmword_ptr[rbx + 0x20], 0xF);
                a.mulss(xmm1, __dword_ptr[rbx + 0x30]);
                StoreXmm(a, xmm1, 0x100);
                a.stmxcsr(__dword_ptr[rbx + 0x110]);
                a.blendpd(xmm2, __xmmword_ptr[rbx + 0x40], 3);
                a.mulsd(xmm2, __qword_ptr[rbx + 0x50]);
                StoreXmm(a, xmm2, 0x120);
                a.stmxcsr(__dword_ptr[rbx + 0x130]);
            }, memory: mem).With(Gpr.Rbx, Data));
        }
        Check(cases, "tiny", 0);
    }

    /// <summary>(U)COMIS whose flags are overwritten at once still updates MXCSR and still raises #XM.</summary>
    [Fact]
    public void ComisWithDeadFlags()
    {
        var cases = new List<OracleCase>();
        foreach (uint m in (uint[])[0x1F80, 0x1F00, 0x1E80, 0x1FC0])
        foreach (uint v in (uint[])[0x7F80_0001, 0x7FC0_0000, 0x0000_0001, 0x3F80_0000])
        {
            var mem = new byte[HostOracle.MemorySize];
            BitConverter.TryWriteBytes(mem.AsSpan(0), m);
            BitConverter.TryWriteBytes(mem.AsSpan(0x20), v);
            BitConverter.TryWriteBytes(mem.AsSpan(0x30), 1f);
            cases.Add(OracleCase.FromAssembler(a =>
            {
                a.ldmxcsr(__dword_ptr[rbx]);
                a.blendps(xmm1, __xmmword_ptr[rbx + 0x20], 0xF);
                a.comiss(xmm1, __dword_ptr[rbx + 0x30]);
                a.xor(eax, eax);
                a.ucomiss(xmm1, __dword_ptr[rbx + 0x30]);
                a.xor(ecx, ecx);
                a.stmxcsr(__dword_ptr[rbx + 0x100]);
            }, memory: mem).With(Gpr.Rbx, Data));
        }
        Check(cases, "comis", 0);
    }

    /// <summary>Runs ldmxcsr, loads of xmm1/xmm2, then <paramref name="op"/> under Jitvmx; returns the exit, xmm1, MXCSR, RIP and the op's offset.</summary>
    private static (VmExit Exit, Vector128<byte> Dst, uint Mxcsr, ulong Rip, int OpOffset) RunDirect(uint mxcsr, Action<Assembler> op, uint[] a, uint[] b)
    {
        var mem = new byte[HostOracle.MemorySize];
        BitConverter.TryWriteBytes(mem.AsSpan(0), mxcsr);
        for (int k = 0; k < 4; k++)
        {
            BitConverter.TryWriteBytes(mem.AsSpan(0x10 + 4 * k), a[k]);
            BitConverter.TryWriteBytes(mem.AsSpan(0x20 + 4 * k), b[k]);
        }
        void Prefix(Assembler asm)
        {
            asm.ldmxcsr(__dword_ptr[rbx]);
            asm.blendps(xmm1, __xmmword_ptr[rbx + 0x10], 0xF);
            asm.blendps(xmm2, __xmmword_ptr[rbx + 0x20], 0xF);
        }
        var code = OracleCase.Assemble(asm =>
        {
            Prefix(asm);
            op(asm);
            asm.hlt();
        });
        using var vm = new VirtualMachine(DiffHarness.TierOptions());
        vm.MapMemory(HostOracle.DataBase, HostOracle.MemorySize, MemoryPermissions.ReadWrite);
        vm.MapMemory(HostOracle.CodeBase, 0x1000, MemoryPermissions.ReadExecute);
        vm.WritePhysical(HostOracle.DataBase, mem);
        vm.WritePhysical(HostOracle.CodeBase, code);
        var cpu = vm.CreateCpu();
        cpu.State[GuestRegister.Rbx] = Data;
        cpu.State.Rip = HostOracle.CodeBase;
        cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;
        cpu.Controls.HltExiting = true;
        var exit = cpu.Run(1000);
        return (exit, cpu.State.Xmm[1], cpu.State.Mxcsr, cpu.State.Rip - HostOracle.CodeBase, OracleCase.Assemble(Prefix).Length);
    }

    private static Vector128<byte> V(uint[] f) => Vector128.Create(f[0], f[1], f[2], f[3]).AsByte();

    private static uint F(float f) => BitConverter.SingleToUInt32Bits(f);

    /// <summary>
    /// An unmasked exception raises #XM at the instruction with the destination unchanged and the
    /// flags set: only the pre-computation ones (IE DE ZE) when one of those is unmasked, else
    /// all raised (SDM Vol. 1 §11.5.1). A flag already set does not fault by itself; a new occurrence does.
    /// </summary>
    [Theory]
    [InlineData(0x1D80u, "divps", true, 0x1D84u)]  // ZM unmasked: 1/0 in lane 0 → ZE; the inexact 3/7 in lane 1 is not flagged
    [InlineData(0x0FA0u, "divps", true, 0x0FA4u)]  // PM unmasked with PE already set: ZE masked, PE raised again → #XM
    [InlineData(0x1F00u, "addps", true, 0x1F01u)]  // IM unmasked: SNaN in lane 2 → IE only
    [InlineData(0x1F01u, "mulps", false, 0x1F21u)] // IE flagged and unmasked but only PE raised: no fault
    public void UnmaskedExceptionsRaiseXm(uint mxcsr, string op, bool faults, uint expectMxcsr)
    {
        // Bit patterns: a float SNaN would be quieted on its way through C#.
        uint[] a = [F(1), F(3), F(1), F(2)];
        uint[] b = op == "divps" ? [0, F(7), F(1), F(1)] : op == "addps" ? [F(1), F(3), 0x7F80_0001, F(1)] : [F(1), F(1f / 3), F(1), F(1)];
        var (exit, dst, m, rip, at) = RunDirect(mxcsr, asm =>
        {
            if (op == "divps") asm.divps(xmm1, xmm2);
            else if (op == "addps") asm.addps(xmm1, xmm2);
            else asm.mulps(xmm1, xmm2);
        }, a, b);
        Assert.True(expectMxcsr == m, $"mxcsr {m:x}, expected {expectMxcsr:x}; {exit}; {dst}");
        if (faults)
        {
            Assert.Equal(ExitReason.ExceptionOrNmi, exit.Reason);
            Assert.Equal(ExceptionVector.XM, exit.Vector);
            Assert.Equal((ulong)at, rip);
            Assert.Equal(V(a), dst);
        }
        else
        {
            Assert.Equal(ExitReason.Hlt, exit.Reason);
            Assert.NotEqual(V(a), dst);
        }
        Assert.Equal(expectMxcsr, m);
    }

    /// <summary>
    /// RCPPS/RSQRTPS results are the host's (the SDM fixes only the bound, |relative error| ≤ 1.5·2⁻¹²,
    /// and implementations differ, so a guest sees the approximation of the CPU it runs on, as
    /// under hardware virtualization). This checks the bound; the differential tests check the bits.
    /// </summary>
    [Fact]
    public void ReciprocalApproximationsAreWithinTheArchitecturalBound()
    {
        var rng = new Random(1);
        for (int n = 0; n < 20; n++)
        {
            float[] f = [.. Enumerable.Range(0, 4).Select(_ => (float)(rng.NextDouble() * Math.Pow(2, rng.Next(-60, 60)) + 1e-30))];
            uint[] x = [.. f.Select(F)];
            var (_, rcp, _, _, _) = RunDirect(0x1F80, asm => asm.rcpps(xmm1, xmm1), x, x);
            var (_, rsq, _, _, _) = RunDirect(0x1F80, asm => asm.rsqrtps(xmm1, xmm1), x, x);
            for (int k = 0; k < 4; k++)
            {
                Assert.InRange(Math.Abs(rcp.AsSingle()[k] * (double)f[k] - 1), 0, 1.5 * Math.Pow(2, -12));
                Assert.InRange(Math.Abs(rsq.AsSingle()[k] * Math.Sqrt(f[k]) - 1), 0, 1.5 * Math.Pow(2, -12));
            }
        }
    }
}
