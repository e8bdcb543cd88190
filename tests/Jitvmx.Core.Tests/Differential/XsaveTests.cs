// SPDX-License-Identifier: MIT
using System.Text;
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of XSAVE, XSAVEOPT, XSAVEC and XRSTOR for the x87 and SSE components (requested masks
/// within x87|SSE, so the host's wider XCR0 does not matter): images, round trips, init of components whose
/// XSTATE_BV bit is clear, and the #GP cases (alignment, header, MXCSR). Jitvmx runs with CR4.OSXSAVE and XCR0 = 3.
/// The cases themselves clear the fields the host fills differently (FOP, FIP, FDP, MXCSR_MASK, XSTATE_BV bits above 1).
/// </summary>
public sealed class XsaveTests
{
    private const int Area = 0x400, Fx = 0x800;

    /// <summary>Loads all XMM registers and eight x87 values from the data window.</summary>
    private static void Setup(Assembler a, int from)
    {
        for (int k = 0; k < 16; k++) a.movdqu(new AssemblerRegisterXMM(Register.XMM0 + k), __xmmword_ptr[rbx + from + 16 * k]);
        // A full stack: the image holds every physical register, and stale ones would differ from the host's.
        a.fninit();
        for (int k = 0; k < 8; k++) a.fld(__qword_ptr[rbx + 0x300 + 8 * k]);
    }

    /// <summary>Clears FOP/FIP/FDP of the legacy region at <paramref name="at"/>.</summary>
    private static void MaskLegacy(Assembler a, int at)
    {
        a.mov(__word_ptr[rbx + at + 6], 0);
        a.mov(__qword_ptr[rbx + at + 8], 0);
        a.mov(__qword_ptr[rbx + at + 16], 0);
        a.mov(__dword_ptr[rbx + at + 28], 0); // MXCSR_MASK is host-specific (AMD reports bit 17)
    }

    private static void MaskImage(Assembler a)
    {
        MaskLegacy(a, Area);
        a.and(__qword_ptr[rbx + Area + 512], 3);
    }

    /// <summary>The whole visible state after the case: FXSAVE image (masked), then the x87 stack emptied.</summary>
    private static void Dump(Assembler a)
    {
        a.fxsave(__[rbx + Fx]);
        MaskLegacy(a, Fx);
        a.fninit();
    }

    private static byte[] Memory(Random rng)
    {
        var m = SimdCases.Memory(rng, false);
        double[] vals = [1.5, -0.0, 3.0e300, -2.5e-310, double.PositiveInfinity, Math.PI, -7, 1e-5];
        for (int k = 0; k < 8; k++) BitConverter.GetBytes(vals[rng.Next(vals.Length)]).CopyTo(m, 0x300 + 8 * k);
        Array.Clear(m, Area + 512, 64); // a clean XSAVE header (XSAVE writes only XSTATE_BV)
        return m;
    }

    private static ulong[] Gprs(Random rng, ulong rfbm)
    {
        var g = SimdCases.Gprs(rng);
        g[(int)Gpr.Rax] = (g[(int)Gpr.Rax] & ~0xFFFF_FFFFUL) | rfbm; // garbage above EAX
        g[(int)Gpr.Rdx] = g[(int)Gpr.Rdx] & ~0xFFFF_FFFFUL;
        return g;
    }

    private static readonly Action<Assembler>[] s_saves =
    [
        a => a.xsave(__[rbx + Area]), a => a.xsave64(__[rbx + Area]), a => a.xsaveopt(__[rbx + Area]),
        a => a.xsaveopt64(__[rbx + Area]), a => a.xsavec(__[rbx + Area]), a => a.xsavec64(__[rbx + Area]),
    ];

    [Fact]
    public void SaveImages()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var save in s_saves)
            for (ulong rfbm = 0; rfbm < 4; rfbm++)
                for (int k = 0; k < 3; k++)
                {
                    var code = OracleCase.Assemble(a =>
                    {
                        Setup(a, 0);
                        if (k == 2) a.ldmxcsr(__dword_ptr[rbx + 0x320]);
                        save(a);
                        MaskImage(a);
                        a.fninit();
                    });
                    var m = Memory(rng);
                    BitConverter.GetBytes(0x1F80u ^ (uint)rng.Next(64) ^ (uint)(rng.Next(4) << 13)).CopyTo(m, 0x320);
                    cases.Add(new OracleCase(code, Gprs(rng, rfbm), CaseSet.RandomFlags(rng), m));
                }
        Check(cases, seed);
    }

    [Fact]
    public void RoundTrips()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int s = 0; s < s_saves.Length; s++)
            for (ulong rfbm = 0; rfbm < 4; rfbm++)
                foreach (ulong bv in (ulong[])[0, 1, 2, 3])
                {
                    var save = s_saves[s];
                    bool compact = s >= 4;
                    var code = OracleCase.Assemble(a =>
                    {
                        Setup(a, 0);
                        a.mov(eax, 3);
                        save(a);
                        a.fninit();
                        Setup(a, 0x100); // other state, to be overwritten
                        a.mov(__qword_ptr[rbx + Area + 512], (int)bv);
                        a.mov(eax, (int)rfbm);
                        if (rng.Next(2) == 0) a.xrstor(__[rbx + Area]); else a.xrstor64(__[rbx + Area]);
                        Dump(a);
                        // After an init XRSTOR, XSAVEC/XSAVEOPT skip the initialised components.
                        a.mov(eax, 3);
                        save(a);
                        MaskImage(a);
                        a.fninit();
                    });
                    _ = compact;
                    cases.Add(new OracleCase(code, Gprs(rng, rfbm), CaseSet.RandomFlags(rng), Memory(rng)));
                }
        Check(cases, seed);
    }

    [Fact]
    public void Faults()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        Action<Assembler>[] variants =
        [
            a => a.xsave(__[rbx + Area + 16]),
            a => a.xsavec(__[rbx + Area + 8]),
            a => a.xrstor(__[rbx + Area + 32]),
            a => { a.mov(__qword_ptr[rbx + Area + 512], 0x100); a.xrstor(__[rbx + Area]); },
            a => { a.bts(__qword_ptr[rbx + Area + 512], 63); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 520], 1); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 528], 1); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 560], 1); a.xrstor(__[rbx + Area]); }, // standard form: ignored
            a => { a.or(__dword_ptr[rbx + Area + 24], 0x10000); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 512], 0); a.or(__dword_ptr[rbx + Area + 24], 0x10000); a.xrstor(__[rbx + Area]); },
        ];
        Action<Assembler>[] compactVariants =
        [
            a => { a.mov(__qword_ptr[rbx + Area + 560], 1); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 528], 1); a.xrstor(__[rbx + Area]); },
            a => { a.bts(__qword_ptr[rbx + Area + 520], 8); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 512], 3); a.btr(__qword_ptr[rbx + Area + 520], 1); a.xrstor(__[rbx + Area]); },
            a => { a.mov(__qword_ptr[rbx + Area + 512], 0); a.xrstor(__[rbx + Area]); },
        ];
        foreach (var (list, compact) in (ValueTuple<Action<Assembler>[], bool>[])[(variants, false), (compactVariants, true)])
            foreach (var v in list)
                foreach (ulong rfbm in (ulong[])[1, 2, 3])
                {
                    var code = OracleCase.Assemble(a =>
                    {
                        Setup(a, 0);
                        a.mov(eax, 3);
                        if (compact) a.xsavec(__[rbx + Area]); else a.xsave(__[rbx + Area]);
                        a.mov(eax, (int)rfbm);
                        Setup(a, 0x100);
                        v(a);
                        Dump(a);
                    });
                    var c = new OracleCase(code, Gprs(rng, rfbm), CaseSet.RandomFlags(rng), Memory(rng));
                    cases.Add(c);
                }
        Check(cases, seed, maskImage: true);
    }

    /// <summary>Without CR4.OSXSAVE the XSAVE instructions are #UD.</summary>
    [Fact]
    public void UndefinedWithoutOsxsave()
    {
        foreach (var save in (Action<Assembler>[])[.. s_saves, a => a.xrstor(__[rbx + Area])])
        {
            var c = new OracleCase(OracleCase.Assemble(save), SimdCases.Gprs(new Random(1)), 0x202, new byte[HostOracle.MemorySize]);
            var j = RunJitvmx(c, cr4OsXsave: false);
            Assert.Equal(OracleSignal.Sigill, j.Signal);
            Assert.Equal(0UL, j.RipOffset);
        }
    }

    /// <summary>XSTATE_BV[0] and the x87 fields where the host may report x87's initial configuration as in use.</summary>
    private static readonly ResultNormalizer s_normalize = (_, _, memory) => HostQuirks.NormalizeXsaveX87(memory, Area);

    private static void Check(List<OracleCase> cases, int seed, bool maskImage = false)
    {
        // Without maskImage the cases end with MaskImage, whose AND leaves flags that restate XSTATE_BV[1:0]: where the
        // host may set XSTATE_BV[0] otherwise, they are compared through the normalised image instead.
        ulong undefinedFlags = !maskImage && HostQuirks.XsaveMayReportInitialX87InUse ? OracleFlags.PF | OracleFlags.ZF | OracleFlags.SF : 0;
        var native = HostOracle.Run(cases);
        var report = new StringBuilder();
        int failures = 0;
        for (int i = 0; i < cases.Count; i++)
        {
            var n = native[i];
            var j = RunJitvmx(cases[i], cr4OsXsave: true);
            void Mask(byte[] mem)
            {
                // A fault skips the masking code: compare with the image's FOP/FIP/FDP, MXCSR_MASK and XSTATE_BV bits above 1 masked.
                if (!maskImage) return;
                Array.Clear(mem, Area + 6, 18);
                Array.Clear(mem, Area + 28, 4);
                for (int k = 1; k < 8; k++) mem[Area + 512 + k] = 0;
                mem[Area + 512] &= 3;
            }
            Mask(n.Memory);
            Mask(j.Memory);
            string? diff = DiffHarness.Compare(n, j, undefinedFlags, cases[i], s_normalize);
            // The host's own result is not always repeatable (a preempted oracle run gets its x87/SSE state
            // back from the kernel, which can change what XSAVE reports): a mismatch counts only if fresh host runs confirm it.
            for (int retry = 0; diff is not null && retry < 3; retry++)
            {
                var again = HostOracle.Run(cases[i]);
                Mask(again.Memory);
                if (DiffHarness.Compare(again, j, undefinedFlags, cases[i], s_normalize) is null) diff = null;
            }
            if (diff is null || ++failures > 5) continue;
            report.AppendLine($"case {i}: {diff}\n  code: {DiffHarness.Disassemble(cases[i].Code)}\n  jitvmx exit: {j.Exit}");
        }
        if (failures > 0) Assert.Fail($"{failures} of {cases.Count} cases differ from the host CPU (seed {seed}):\n{report}");
        if (maskImage) // the fault cases must include both outcomes on the host
        {
            Assert.Contains(native, r => r.Signal == OracleSignal.Sigsegv);
            Assert.Contains(native, r => r.Signal == OracleSignal.None);
        }
    }

    /// <summary><see cref="DiffHarness.RunJitvmx"/> with CR4.OSXSAVE (as Linux sets it, or cleared) and XCR0 = x87|SSE.</summary>
    private static JitvmxResult RunJitvmx(OracleCase c, bool cr4OsXsave) => DiffHarness.RunJitvmx(c, cpu =>
    {
        if (cr4OsXsave) cpu.State.Cr4 |= 1UL << 18;
        else cpu.State.Cr4 &= ~(1UL << 18);
        cpu.State.Xcr0 = 3;
    });
}
