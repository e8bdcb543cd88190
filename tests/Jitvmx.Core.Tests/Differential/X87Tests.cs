// SPDX-License-Identifier: MIT
using System.Text;
using Iced.Intel;
using Jitvmx.Lifting;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// The x87 family: the software extended-precision arithmetic compared bit for bit with the host
/// FPU (in-process stubs, every rounding and precision control), then each instruction
/// differentially through the oracle (results stored with FSTP m80, status/control/tags with
/// FNSTSW/FNSTENV into the data window).
/// </summary>
public sealed class X87Tests
{
    private const ulong Data = HostOracle.DataBase;

    // ---- operands ----

    private static readonly Float80[] s_special =
    [
        new(0, 0), new(0, 0x8000), // ±0
        new(0x8000000000000000, 0x7FFF), new(0x8000000000000000, 0xFFFF), // ±inf
        new(0xC000000000000000, 0x7FFF), new(0xC000000000000001, 0xFFFF), // QNaN
        new(0xA000000000000000, 0x7FFF), new(0x8000000000000001, 0xFFFF), // SNaN
        Float80.Indefinite,
        new(0x0000000000000001, 0), new(0x7FFFFFFFFFFFFFFF, 0x8000), new(0x4000000000000000, 0), // denormals
        new(0x8000000000000000, 0), new(0x8000000000000123, 0x8000), // pseudo-denormals
        new(0x4000000000000000, 0x3FFF), new(0x0000000000000000, 0x7FFF), new(0x4000000000000000, 0x7FFF), // unnormal, pseudo-inf/NaN
        new(0xFFFFFFFFFFFFFFFF, 0x7FFE), new(0x8000000000000000, 0x0001), new(0xFFFFFFFFFFFFFFFF, 0x0001),
        Float80.One, new(0x8000000000000000, 0xBFFF), new(0xC000000000000000, 0x4000), // 1, -1, 3
        new(0x8000000000000000, 0x3FFE), new(0xC000000000000000, 0x3FFE), // 0.5, 0.75
        new(0xFFFFFF8000000000, 0x3FFF), new(0xFFFFFFFFFFFFF800, 0x3FFF), new(0x8000008000000000, 0x3FFF), new(0x8000000000000400, 0x3FFF),
        new(0x8000000000000001, 0x3FFF), new(0xFFFFFFFFFFFFFFFF, 0x3FFF),
        new(0x8000000000000000, 0x403E), new(0xFFFFFFFFFFFFFFFF, 0x403D), new(0x8000000000000000, 0xC03E), // 2^63, -2^63
        new(0xC90FDAA22168C235, 0x4000), new(0x8000000000000000, 0x407E), new(0x8000000000000000, 0x3F81), // pi, 2^127, 2^-126
    ];

    private static Float80 RandomValue(Random rng)
    {
        switch (rng.Next(8))
        {
            case 0: return s_special[rng.Next(s_special.Length)];
            case 1: // small exponent range: lots of cancellation and exact cases
                return new((ulong)rng.NextInt64() | 0x8000000000000000, (ushort)(0x3FFF + rng.Next(-3, 4) | (rng.Next(2) << 15)));
            case 2: // near the extremes
                return new((ulong)rng.NextInt64() | 0x8000000000000000, (ushort)((rng.Next(2) == 0 ? rng.Next(1, 80) : 0x7FFE - rng.Next(80)) | (rng.Next(2) << 15)));
            case 3: // short significands (exact in 24/53 bits, ties)
                return new((ulong)rng.NextInt64() & (ulong.MaxValue << rng.Next(10, 63)) | 0x8000000000000000, (ushort)(0x3FFF + rng.Next(-70, 70) | (rng.Next(2) << 15)));
            case 4: // integers and halves
                {
                    var v = F80.FromInt(rng.NextInt64(-100000, 100000));
                    return rng.Next(2) == 0 || v.M == 0 ? v : new Float80(v.M, (ushort)(v.SE - 1));
                }
            case 5: return new((ulong)rng.NextInt64() >> rng.Next(64), (ushort)(rng.Next(2) << 15)); // denormals
            default:
                return new((ulong)rng.NextInt64() | 0x8000000000000000, (ushort)(rng.Next(1, 0x7FFF) | (rng.Next(2) << 15)));
        }
    }

    private static readonly ushort[] s_controlWords = BuildControlWords();

    private static ushort[] BuildControlWords()
    {
        var l = new List<ushort>();
        foreach (int rc in (int[])[0, 1, 2, 3])
            foreach (int pc in (int[])[0, 2, 3])
                l.Add((ushort)(0x7F | (pc << 8) | (rc << 10)));
        return [.. l];
    }

    // ---- Float80 against the host FPU ----

    private delegate Float80 Op2(Float80 a, Float80 b, ref F80.Env env);

    /// <summary>Two-byte x87 opcodes run on ST(0) = a, ST(1) = b.</summary>
    public static TheoryData<string> Operations => ["fadd", "fsub", "fmul", "fdiv", "fsqrt", "frndint", "fscale", "fprem", "fprem1", "fxtract", "fcom", "fucom"];

    [Theory]
    [MemberData(nameof(Operations))]
    public void Float80MatchesHost(string op)
    {
        var rng = DiffHarness.Rng(out int seed);
        var report = new StringBuilder();
        int failures = 0;
        (ushort code, int ccMask) = op switch
        {
            "fadd" => ((ushort)0xC1D8, 0),
            "fsub" => ((ushort)0xE1D8, 0),
            "fmul" => ((ushort)0xC9D8, 0),
            "fdiv" => ((ushort)0xF1D8, 0),
            "fsqrt" => ((ushort)0xFAD9, 0),
            "frndint" => ((ushort)0xFCD9, 0),
            "fscale" => ((ushort)0xFDD9, 0),
            "fprem" => ((ushort)0xF8D9, 0x4500),
            "fprem1" => ((ushort)0xF5D9, 0x4500),
            "fxtract" => ((ushort)0xF4D9, 0),
            "fcom" => ((ushort)0xD1D8, 0x4500),
            _ => ((ushort)0xE1DD, 0x4500),
        };
        for (int n = 0; n < 40000; n++)
        {
            var a = RandomValue(rng);
            var b = RandomValue(rng);
            if (op == "fscale" && rng.Next(2) == 0) b = F80.FromInt(rng.Next(-17000, 17000));
            if (op is "fprem" or "fprem1" && rng.Next(2) == 0)
                b = new Float80((ulong)rng.NextInt64() | 0x8000000000000000, (ushort)(a.Exp - rng.Next(0, 200) & 0x7FFF));
            ushort cw = s_controlWords[rng.Next(s_controlWords.Length)];
            var (h0, h1, hsw) = HostX87.Run(code, a, b, cw);
            var env = new F80.Env(cw);
            Float80 s0 = default, s1 = default;
            ushort cc = 0;
            bool compareOnly = false;
            switch (op)
            {
                case "fadd": s0 = F80.Add(a, b, false, ref env); break;
                case "fsub": s0 = F80.Add(a, b, true, ref env); break;
                case "fmul": s0 = F80.Mul(a, b, ref env); break;
                case "fdiv": s0 = F80.Div(a, b, ref env); break;
                case "fsqrt": s0 = F80.Sqrt(a, ref env); break;
                case "frndint": s0 = F80.RoundInt(a, ref env); break;
                case "fscale": s0 = F80.Scale(a, b, ref env); break;
                case "fprem" or "fprem1":
                    s0 = F80.Remainder(a, b, op == "fprem1", ref env, out cc);
                    env.Flags = (env.Flags & ~F80.C1) | (uint)(cc & 0x200);
                    break;
                case "fxtract": (s1, s0) = F80.Extract(a, ref env); break;
                default:
                    int r = F80.Compare(a, b, op == "fucom", ref env);
                    cc = r switch { 0 => (ushort)0x100, 1 => (ushort)0x4000, 2 => (ushort)0, _ => (ushort)0x4500 };
                    compareOnly = true;
                    break;
            }
            ushort mySw = (ushort)((env.Flags & 0x23F) | cc);
            ushort hostSw = (ushort)(hsw & (0x23F | ccMask));
            if (compareOnly) { mySw &= 0x4503 | 0x3F; hostSw &= 0x453F; }
            bool same = hostSw == (ushort)(mySw & (0x23F | ccMask)) && (compareOnly || (h0 == s0 && (op != "fxtract" || h1 == s1)));
            // An invalid operation whose result is the default NaN: only the bits matter, as checked.
            if (!same && ++failures <= 12)
                report.AppendLine($"{op} cw={cw:X4} a={a} b={b}: host {h0} {h1} sw={hostSw:X4}, Float80 {s0} {s1} sw={(ushort)(mySw & (0x23F | ccMask)):X4}");
        }
        Assert.True(failures == 0, $"seed {seed}: {failures} mismatches\n{report}");
    }
}
