// SPDX-License-Identifier: MIT
using Jitvmx.Cli;

namespace Jitvmx.Linux.Tests;

/// <summary>
/// The whole-program benchmarks of native/bench at a tiny scale, natively and under the IL tier of
/// <c>jitvmx run</c>: same checksum line, same output, same status. What <c>jitvmx bench</c> times must
/// first be right.
/// </summary>
public class BenchProgramsTests
{
    private const string TinyScale = "0.001";

    public static TheoryData<string> Programs() =>
        new(Directory.GetFiles(Path.Combine(GuestRunner.Root, "native", "bench"), "*.c")
            .Select(Path.GetFileNameWithoutExtension).OfType<string>().Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(Programs))]
    public void SameOutputAsNativeUnderIlTier(string name)
    {
        string program = GuestRunner.Program("bench", name);
        var native = GuestRunner.Native(program, [TinyScale]);
        Assert.Equal(0, native.Status);
        Assert.Matches($"(?m)^{name} checksum [0-9a-f]{{16}}$", native.Stdout);
        var jit = GuestRunner.Jitvmx(["--tier", "il", program, TinyScale]);
        Assert.Equal(native.Stdout, jit.Stdout);
        Assert.Equal(native.Status, jit.Status);
    }

    [Fact]
    public void ScaleChangesTheWorkAndBadScalesAreRefused()
    {
        string program = GuestRunner.Program("bench", "collatz");
        var small = GuestRunner.Native(program, ["0.001"]);
        var larger = GuestRunner.Native(program, ["0.002"]);
        Assert.NotEqual(small.Stdout, larger.Stdout);
        foreach (string bad in new[] { "0", "-1", "x", "2000" })
        {
            var r = GuestRunner.Native(program, [bad]);
            Assert.Equal(2, r.Status);
            Assert.StartsWith("usage:", r.Stderr);
        }
    }
}

/// <summary>The statistics and table logic of <c>jitvmx bench</c>, on made-up measurements.</summary>
public class BenchReportTests
{
    private static BenchRun Ok(string stdout = "x checksum 0123456789abcdef\n", int status = 0) => new(status, stdout, "", 1, 1);

    [Fact]
    public void MedianOfOddAndEvenCounts()
    {
        Assert.Equal(2.0, BenchStats.Median([3.0, 1.0, 2.0]));
        Assert.Equal(2.5, BenchStats.Median([4.0, 1.0, 3.0, 2.0]));
        Assert.Equal(7.0, BenchStats.Median([7.0]));
        Assert.Throws<ArgumentException>(() => BenchStats.Median([]));
    }

    [Fact]
    public void GeoMeanOfRatios()
    {
        Assert.Equal(4.0, BenchStats.GeoMean([2.0, 8.0])!.Value, 12);
        Assert.Equal(1.0, BenchStats.GeoMean([0.5, 2.0])!.Value, 12);
        Assert.Null(BenchStats.GeoMean([]));
        Assert.Throws<ArgumentException>(() => BenchStats.GeoMean([1.0, 0.0]));
    }

    [Fact]
    public void VerifyReportsEveryKindOfMismatch()
    {
        var native = Ok("line\nsieve checksum 00000000000000aa\n");
        Assert.Null(BenchStats.Verify(native, native with { Seconds = 9, Stderr = "jitvmx: note: something\n" }));
        Assert.Contains("line 2", BenchStats.Verify(native, Ok("line\nsieve checksum 00000000000000ab\n")));
        Assert.Contains("<end of output>", BenchStats.Verify(native, Ok("line\n")));
        Assert.Contains("exit status 139 (native 0): jitvmx: guest terminated by SIGSEGV",
            BenchStats.Verify(native, new BenchRun(139, "", "jitvmx: guest terminated by SIGSEGV\n", 1, 1)));
        Assert.Contains("timed out", BenchStats.Verify(native, new BenchRun(-1, "", "", 600, 1, TimedOut: true)));
        Assert.Null(BenchStats.CheckReference(native));
        Assert.NotNull(BenchStats.CheckReference(Ok("no sum\n")));
        Assert.NotNull(BenchStats.CheckReference(Ok(status: 1)));
        Assert.Equal("sieve checksum 00000000000000aa", BenchStats.Checksum(native.Stdout));
    }

    private static BenchReport Sample()
    {
        var report = new BenchReport(["a", "b"], [BenchReport.Native, "il", BenchReport.Qemu]);
        report.Facts.Add(("host CPU", "Test CPU"));
        void Times(string p, string r, params double[] t) => report[p, r].Times.AddRange(t);
        Times("a", BenchReport.Native, 1.0, 1.2, 0.8);
        Times("a", "il", 2.0, 2.0, 9.0);      // median 2: one slow outlier does not move it
        Times("a", BenchReport.Qemu, 4.0, 4.0, 4.0);
        Times("b", BenchReport.Native, 2.0, 2.0, 2.0);
        Times("b", "il", 1.0, 1.0, 1.0);      // its timing is not trusted below
        report["b", "il"].Failure = "output differs at line 1";
        Times("b", BenchReport.Qemu, 4.0, 4.0, 4.0);
        return report;
    }

    [Fact]
    public void FailureIsNeverATiming()
    {
        var report = Sample();
        Assert.True(report.AnyFailure);
        Assert.Null(report["b", "il"].Median);
        Assert.Null(report.Slowdown("b", "il"));
        Assert.Equal(2.0, report.Slowdown("a", "il"));
        // The geometric mean covers only the program that passed, and says so.
        Assert.Equal((2.0, 1), report.GeoMeanRatio("il", BenchReport.Native));
        Assert.Equal(0.5, report.Ratio("a", "il", BenchReport.Qemu));
        var (qemuMean, qemuCount) = report.GeoMeanRatio(BenchReport.Qemu, BenchReport.Native);
        Assert.Equal(2, qemuCount);
        Assert.Equal(Math.Sqrt(4.0 * 2.0), qemuMean!.Value, 12);

        string text = report.Format(markdown: false);
        Assert.Contains("host CPU: Test CPU", text);
        Assert.Matches(@"(?m)^b\s+2\.000\s+FAILED\s+4\.000 \(2\.00×\)$", text);
        Assert.Matches(@"(?m)^a\s+1\.000\s+2\.000 \(2\.00×\)\s+4\.000 \(4\.00×\)$", text);
        Assert.Matches(@"(?m)^geometric mean\s+1×\s+2\.00× \(1 of 2\)\s+2\.83×$", text);
        Assert.Contains("b under il: output differs at line 1", text);
        Assert.Matches(@"(?m)^a\s+0\.50×$", text);

        string md = report.Format(markdown: true);
        Assert.Contains("| program | native (s) | il (s, × native) | qemu (s, × native) |", md);
        Assert.Contains("| b | 2.000 | FAILED | 4.000 (2.00×) |", md);
    }

    [Fact]
    public void OutputFilesCarryTheFailureAndTheNumbers()
    {
        var report = Sample();
        report.Measurements.Add(new BenchMeasurement("b", "il", 1, false, 1.0, 0.9, 0, "output differs, at line 1"));
        string csv = BenchOutput.Csv(report);
        Assert.Contains("b,il,1,0,1.000000,0.900000,0,\"FAILED: output differs, at line 1\"", csv);

        var json = System.Text.Json.Nodes.JsonNode.Parse(BenchOutput.Json(report))!;
        Assert.True((bool)json["failed"]!);
        var b = json["programs"]![1]!["runners"]!["il"]!;
        Assert.False((bool)b["ok"]!);
        Assert.Null(b["median_seconds"]);
        Assert.Equal(2.0, (double)json["programs"]![0]!["runners"]!["il"]!["slowdown_vs_native"]!);
        Assert.Equal(1, (int)json["geomean_slowdown_vs_native"]!["il"]!["programs"]!);

        string svg = BenchOutput.Svg(report);
        var doc = System.Xml.Linq.XDocument.Parse(svg); // well-formed
        Assert.Contains("FAILED (il)", svg);
        Assert.Equal("svg", doc.Root!.Name.LocalName);
    }
}
