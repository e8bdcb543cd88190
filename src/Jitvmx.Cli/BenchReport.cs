// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

[assembly: InternalsVisibleTo("Jitvmx.Linux.Tests")]

namespace Jitvmx.Cli;

/// <summary>What one child process did: exit status, output, wall and CPU time.</summary>
internal sealed record BenchRun(int Status, string Stdout, string Stderr, double Seconds, double CpuSeconds, bool TimedOut = false);

/// <summary>One timed child process, as written to the CSV file.</summary>
internal sealed record BenchMeasurement(string Program, string Runner, int Repetition, bool WarmUp, double Seconds, double CpuSeconds, int Status, string? Failure);

/// <summary>The measurements of one runner on one program; a failure replaces every timing.</summary>
internal sealed class BenchCell
{
    /// <summary>Seconds of the measured runs (the warm-up run is not among them).</summary>
    public List<double> Times { get; } = [];

    /// <summary>CPU seconds (user + system) of the measured runs, in the order of <see cref="Times"/>.</summary>
    public List<double> CpuTimes { get; } = [];

    /// <summary>Seconds of the warm-up run, which the statistics leave out.</summary>
    public double? WarmUp { get; set; }

    /// <summary>Why the runner's result cannot be trusted (wrong output, status, timeout); null when every run matched native.</summary>
    public string? Failure { get; set; }

    /// <summary>The median of <see cref="Times"/>, or null when failed or nothing was measured.</summary>
    public double? Median => Failure is null && Times.Count > 0 ? BenchStats.Median(Times) : null;
}

/// <summary>Statistics of the harness: no timing is trusted from a run whose output differs from native.</summary>
internal static class BenchStats
{
    /// <summary>The median; the mean of the two middle values for an even count.</summary>
    public static double Median(IReadOnlyCollection<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("no values", nameof(values));
        var sorted = values.Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>The geometric mean of positive ratios (the right mean for slowdowns); null for none.</summary>
    public static double? GeoMean(IEnumerable<double> ratios)
    {
        double logSum = 0;
        int n = 0;
        foreach (double r in ratios)
        {
            if (!(r > 0)) throw new ArgumentException($"ratio {r} is not positive", nameof(ratios));
            logSum += Math.Log(r);
            n++;
        }
        return n == 0 ? null : Math.Exp(logSum / n);
    }

    /// <summary>
    /// Null when <paramref name="run"/> matches the native <paramref name="reference"/> (same exit status,
    /// byte-identical standard output), else a one-line reason. Standard error is not compared: Jitvmx may
    /// add notes there, and the programs write nothing to it.
    /// </summary>
    public static string? Verify(BenchRun reference, BenchRun run)
    {
        if (run.TimedOut) return $"timed out after {run.Seconds:0} s";
        if (run.Status != reference.Status)
        {
            string why = FirstLine(run.Stderr);
            return $"exit status {run.Status} (native {reference.Status})" + (why.Length > 0 ? ": " + why : "");
        }
        if (run.Stdout != reference.Stdout)
        {
            string[] got = Lines(run.Stdout), want = Lines(reference.Stdout);
            int i = 0;
            while (i < got.Length && i < want.Length && got[i] == want[i]) i++;
            string g = i < got.Length ? got[i] : "<end of output>", w = i < want.Length ? want[i] : "<end of output>";
            return $"output differs at line {i + 1}: got \"{Clip(g)}\", native \"{Clip(w)}\"";
        }
        return null;
    }

    /// <summary>Null when a native run can serve as the reference: status 0 and a checksum line.</summary>
    public static string? CheckReference(BenchRun native)
    {
        if (native.TimedOut) return $"native run timed out after {native.Seconds:0} s";
        if (native.Status != 0) return $"native run exited with status {native.Status}: {FirstLine(native.Stderr)}";
        return Checksum(native.Stdout) is null ? "native output has no checksum line" : null;
    }

    /// <summary>The program's "NAME checksum HEX" line, or null.</summary>
    public static string? Checksum(string stdout) =>
        stdout.Split('\n').FirstOrDefault(l => l.Contains(" checksum ", StringComparison.Ordinal))?.Trim();

    private static string[] Lines(string s) => (s.EndsWith('\n') ? s[..^1] : s).Split('\n');

    private static string FirstLine(string s) => Clip(s.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim() ?? "");

    private static string Clip(string s) => s.Length <= 100 ? s : s[..100] + "…";
}

/// <summary>Everything one <c>jitvmx bench</c> invocation measured, and the tables made from it.</summary>
internal sealed class BenchReport
{
    /// <summary>The reference runner: slowdowns are times over its time.</summary>
    public const string Native = "native";

    /// <summary>The peer Jitvmx is compared with when it is installed.</summary>
    public const string Qemu = "qemu";

    private readonly Dictionary<(string Program, string Runner), BenchCell> _cells = [];

    public BenchReport(IReadOnlyList<string> programs, IReadOnlyList<string> runners)
    {
        if (runners.Count == 0 || runners[0] != Native) throw new ArgumentException("the first runner must be native", nameof(runners));
        Programs = programs;
        Runners = runners;
        foreach (string p in programs)
            foreach (string r in runners)
                _cells[(p, r)] = new BenchCell();
    }

    public IReadOnlyList<string> Programs { get; }

    public IReadOnlyList<string> Runners { get; }

    /// <summary>Header lines (date, host CPU, version, commit, settings), printed above every table.</summary>
    public List<(string Key, string Value)> Facts { get; } = [];

    /// <summary>The native checksum line of each program (what every runner had to reproduce).</summary>
    public Dictionary<string, string> Checksums { get; } = [];

    public BenchCell this[string program, string runner] => _cells[(program, runner)];

    /// <summary>Every run in the order it happened, warm-up runs and failed runs included.</summary>
    public List<BenchMeasurement> Measurements { get; } = [];

    /// <summary>Whether any runner failed on any program.</summary>
    public bool AnyFailure => _cells.Values.Any(c => c.Failure is not null);

    /// <summary>Median time of <paramref name="runner"/> over native's on <paramref name="program"/>; null when either failed.</summary>
    public double? Slowdown(string program, string runner) => Ratio(program, runner, Native);

    /// <summary>Median time of <paramref name="runner"/> over <paramref name="baseline"/>'s; null when either failed.</summary>
    public double? Ratio(string program, string runner, string baseline) =>
        this[program, runner].Median is double t && this[program, baseline].Median is double b && b > 0 ? t / b : null;

    /// <summary>Geometric mean of <see cref="Ratio"/> over the programs where both runners succeeded, with how many those were.</summary>
    public (double? Mean, int Count) GeoMeanRatio(string runner, string baseline)
    {
        var ratios = Programs.Select(p => Ratio(p, runner, baseline)).OfType<double>().ToList();
        return (BenchStats.GeoMean(ratios), ratios.Count);
    }

    /// <summary>The Jitvmx runners (neither native nor qemu).</summary>
    public IEnumerable<string> JitvmxRunners => Runners.Where(r => r is not Native and not Qemu);

    /// <summary>The results as aligned text (for the terminal) or as Markdown tables (for latest.md and the README).</summary>
    public string Format(bool markdown)
    {
        var sb = new StringBuilder();
        foreach (var (key, value) in Facts)
            sb.Append(markdown ? $"- {key}: {value}\n" : $"{key}: {value}\n");
        sb.Append('\n');

        // Median seconds and slowdown versus native.
        var header = new List<string> { "program" };
        header.AddRange(Runners.Select(r => r == Native ? "native (s)" : $"{r} (s, × native)"));
        var rows = new List<List<string>>();
        foreach (string p in Programs)
        {
            var row = new List<string> { p };
            foreach (string r in Runners)
            {
                var cell = this[p, r];
                if (cell.Failure is not null) row.Add("FAILED");
                else if (cell.Median is not double m) row.Add("—");
                else if (r == Native) row.Add(Seconds(m));
                else row.Add($"{Seconds(m)} ({Times(Slowdown(p, r))})");
            }
            rows.Add(row);
        }
        var geo = new List<string> { "geometric mean" };
        foreach (string r in Runners)
        {
            if (r == Native) { geo.Add("1×"); continue; }
            var (mean, count) = GeoMeanRatio(r, Native);
            geo.Add(Times(mean) + Partial(count));
        }
        rows.Add(geo);
        AppendTable(sb, header, rows, markdown);

        // Jitvmx against qemu-user, when it ran.
        if (Runners.Contains(Qemu) && JitvmxRunners.Any())
        {
            sb.Append('\n');
            sb.Append(markdown ? "Jitvmx time over qemu-x86_64 time (below 1×: Jitvmx is faster):\n\n" : "Jitvmx time over qemu-x86_64 time (below 1×: Jitvmx is faster):\n");
            var qHeader = new List<string> { "program" };
            qHeader.AddRange(JitvmxRunners.Select(r => $"{r} / qemu"));
            var qRows = Programs.Select(p => new List<string> { p }.Concat(JitvmxRunners.Select(r => Times(Ratio(p, r, Qemu)))).ToList()).ToList();
            var qGeo = new List<string> { "geometric mean" };
            foreach (string r in JitvmxRunners)
            {
                var (mean, count) = GeoMeanRatio(r, Qemu);
                qGeo.Add(Times(mean) + Partial(count));
            }
            qRows.Add(qGeo);
            AppendTable(sb, qHeader, qRows, markdown);
        }

        var failures = Programs.SelectMany(p => Runners.Select(r => (p, r, this[p, r].Failure))).Where(f => f.Failure is not null).ToList();
        if (failures.Count > 0)
        {
            sb.Append(markdown ? "\nFailures (not timed):\n\n" : "\nFAILURES (not timed):\n");
            foreach (var (p, r, why) in failures)
                sb.Append(markdown ? $"- {p} under {r}: {why}\n" : $"  {p} under {r}: {why}\n");
        }
        return sb.ToString();
    }

    private string Partial(int count) => count == Programs.Count || count == 0 ? "" : $" ({count} of {Programs.Count})";

    /// <summary>Seconds with three significant decimals, invariant culture.</summary>
    public static string Seconds(double s) => s.ToString(s < 10 ? "0.000" : "0.00", CultureInfo.InvariantCulture);

    /// <summary>A ratio as "3.2×", or "—" when there is none.</summary>
    public static string Times(double? ratio) => ratio is double r
        ? r.ToString(r < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) + "×"
        : "—";

    private static void AppendTable(StringBuilder sb, List<string> header, List<List<string>> rows, bool markdown)
    {
        if (markdown)
        {
            sb.Append("| ").Append(string.Join(" | ", header)).Append(" |\n");
            sb.Append('|').Append(string.Concat(header.Select((_, i) => i == 0 ? " --- |" : " ---: |"))).Append('\n');
            foreach (var row in rows)
                sb.Append("| ").Append(string.Join(" | ", row)).Append(" |\n");
            return;
        }
        int[] widths = header.Select((h, i) => rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        string Line(List<string> cells) =>
            string.Join("  ", cells.Select((c, i) => i == 0 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd() + "\n";
        sb.Append(Line(header));
        sb.Append(string.Join("  ", widths.Select(w => new string('-', w)))).Append('\n');
        foreach (var row in rows) sb.Append(Line(row));
    }
}
