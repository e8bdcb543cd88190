// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Jitvmx.Cli;

/// <summary>
/// The files a bench run leaves under <c>bench/results/</c>: every measurement as CSV, the summary as
/// JSON, a bar chart of slowdowns as SVG and <c>latest.md</c> for the README. The chart is drawn by
/// this small writer rather than a plotting library so the CLI needs no native graphics libraries.
/// </summary>
internal static class BenchOutput
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Writes <c>&lt;stamp&gt;.csv/.json/.svg</c> and <c>latest.md</c> into <paramref name="dir"/>; returns their paths.</summary>
    public static IReadOnlyList<string> WriteAll(BenchReport report, string dir, string stamp)
    {
        Directory.CreateDirectory(dir);
        var written = new List<string>();
        void Write(string name, string text)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllText(path, text, new UTF8Encoding(false));
            written.Add(path);
        }
        Write(stamp + ".csv", Csv(report));
        Write(stamp + ".json", Json(report));
        Write(stamp + ".svg", Svg(report));
        Write("latest.md", "# Jitvmx whole-program benchmarks\n\n" + report.Format(markdown: true) +
            $"\nMedian wall seconds of the measured runs (the first run of each runner is a warm-up and is not counted); " +
            $"details in {stamp}.csv, {stamp}.json and {stamp}.svg.\n");
        return written;
    }

    /// <summary>One line per child process, warm-ups and failures included.</summary>
    public static string Csv(BenchReport report)
    {
        var sb = new StringBuilder("program,runner,repetition,warmup,seconds,cpu_seconds,status,result\n");
        foreach (var m in report.Measurements)
        {
            sb.Append(Inv, $"{m.Program},{m.Runner},{m.Repetition},{(m.WarmUp ? 1 : 0)},{m.Seconds:0.000000},{m.CpuSeconds:0.000000},{m.Status},");
            sb.Append(CsvField(m.Failure is null ? "ok" : "FAILED: " + m.Failure)).Append('\n');
        }
        return sb.ToString();
    }

    private static string CsvField(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    /// <summary>The facts, settings, and per program and runner the times, medians and ratios.</summary>
    public static string Json(BenchReport report)
    {
        var facts = new JsonObject();
        foreach (var (key, value) in report.Facts) facts[key] = value;
        var programs = new JsonArray();
        foreach (string p in report.Programs)
        {
            var runners = new JsonObject();
            foreach (string r in report.Runners)
            {
                var cell = report[p, r];
                runners[r] = new JsonObject
                {
                    ["ok"] = cell.Failure is null,
                    ["failure"] = cell.Failure,
                    ["median_seconds"] = cell.Median,
                    ["slowdown_vs_native"] = report.Slowdown(p, r),
                    ["ratio_vs_qemu"] = r is BenchReport.Native or BenchReport.Qemu || !report.Runners.Contains(BenchReport.Qemu)
                        ? null : report.Ratio(p, r, BenchReport.Qemu),
                    ["warmup_seconds"] = cell.WarmUp,
                    ["seconds"] = new JsonArray(cell.Times.Select(t => (JsonNode?)t).ToArray()),
                    ["cpu_seconds"] = new JsonArray(cell.CpuTimes.Select(t => (JsonNode?)t).ToArray()),
                };
            }
            report.Checksums.TryGetValue(p, out string? checksum);
            programs.Add(new JsonObject { ["name"] = p, ["checksum"] = checksum, ["runners"] = runners });
        }
        var geo = new JsonObject();
        var vsQemu = new JsonObject();
        foreach (string r in report.Runners)
        {
            var (mean, count) = report.GeoMeanRatio(r, BenchReport.Native);
            geo[r] = new JsonObject { ["slowdown"] = mean, ["programs"] = count };
            if (r is not BenchReport.Native and not BenchReport.Qemu && report.Runners.Contains(BenchReport.Qemu))
            {
                var (q, qCount) = report.GeoMeanRatio(r, BenchReport.Qemu);
                vsQemu[r] = new JsonObject { ["ratio"] = q, ["programs"] = qCount };
            }
        }
        var root = new JsonObject
        {
            ["facts"] = facts,
            ["runners"] = new JsonArray(report.Runners.Select(r => (JsonNode?)r).ToArray()),
            ["programs"] = programs,
            ["geomean_slowdown_vs_native"] = geo,
            ["geomean_ratio_vs_qemu"] = vsQemu,
            ["failed"] = report.AnyFailure,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static readonly string[] Palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f"];

    /// <summary>
    /// Horizontal bars of slowdown versus native per program and runner, plus the geometric means, on a
    /// logarithmic axis (slowdowns span 1× to tens of ×) with native's 1× marked. A failed runner gets
    /// the word FAILED instead of a bar.
    /// </summary>
    public static string Svg(BenchReport report)
    {
        var runners = report.Runners.Where(r => r != BenchReport.Native).ToList();
        var groups = report.Programs.Select(p => (Label: p, Values: runners.Select(r => (report[p, r].Failure is not null, report.Slowdown(p, r))).ToList())).ToList();
        groups.Add(("geometric mean", runners.Select(r => (false, report.GeoMeanRatio(r, BenchReport.Native).Mean)).ToList()));

        double max = groups.SelectMany(g => g.Values).Select(v => v.Item2 ?? 1).Append(2).Max();
        double min = Math.Min(0.5, groups.SelectMany(g => g.Values).Select(v => v.Item2 ?? 1).Append(1).Min());
        double lo = Math.Log2(min), hi = Math.Ceiling(Math.Log2(max));
        const int left = 130, plotWidth = 560, bar = 12, gap = 10, top = 56, legendHeight = 24;
        int rowsHeight = groups.Count * (Math.Max(1, runners.Count) * bar + gap);
        int width = left + plotWidth + 90, height = top + rowsHeight + 40 + legendHeight;
        double X(double ratio) => left + (Math.Log2(ratio) - lo) / (hi - lo) * plotWidth;

        var sb = new StringBuilder();
        sb.Append(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n");
        sb.Append(Inv, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        string title = "Slowdown vs native (median wall time, log scale; lower is better)";
        sb.Append(Inv, $"<text x=\"{left}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{Esc(title)}</text>\n");
        string subtitle = string.Join(", ", report.Facts.Where(f => f.Key is "date" or "host CPU" or "jitvmx").Select(f => f.Value));
        sb.Append(Inv, $"<text x=\"{left}\" y=\"34\" fill=\"#555\">{Esc(subtitle)}</text>\n");

        // Grid lines at powers of two.
        int axisBottom = top + rowsHeight;
        for (double e = Math.Floor(lo); e <= hi; e++)
        {
            double v = Math.Pow(2, e);
            if (v < min) continue;
            double x = X(v);
            string stroke = v == 1 ? "#000" : "#ddd";
            sb.Append(Inv, $"<line x1=\"{x:0.0}\" y1=\"{top - 6}\" x2=\"{x:0.0}\" y2=\"{axisBottom}\" stroke=\"{stroke}\"/>\n");
            sb.Append(Inv, $"<text x=\"{x:0.0}\" y=\"{axisBottom + 14}\" text-anchor=\"middle\">{v.ToString("0.##", Inv)}×</text>\n");
        }
        sb.Append(Inv, $"<text x=\"{X(1) + 4:0.0}\" y=\"{top - 8}\" fill=\"#000\">native</text>\n");

        int y = top;
        foreach (var (label, values) in groups)
        {
            int groupHeight = values.Count * bar;
            sb.Append(Inv, $"<text x=\"{left - 6}\" y=\"{y + groupHeight / 2.0 + 4:0.0}\" text-anchor=\"end\"{(label == "geometric mean" ? " font-weight=\"bold\"" : "")}>{Esc(label)}</text>\n");
            for (int i = 0; i < values.Count; i++)
            {
                var (failed, ratio) = values[i];
                int by = y + i * bar;
                string color = Palette[i % Palette.Length];
                if (failed)
                {
                    sb.Append(Inv, $"<text x=\"{left + 4}\" y=\"{by + bar - 2}\" fill=\"#c00\" font-weight=\"bold\">FAILED ({Esc(runners[i])})</text>\n");
                }
                else if (ratio is double r)
                {
                    double x0 = X(min), x1 = X(r);
                    sb.Append(Inv, $"<rect x=\"{x0:0.0}\" y=\"{by + 1}\" width=\"{Math.Max(1, x1 - x0):0.0}\" height=\"{bar - 2}\" fill=\"{color}\"><title>{Esc($"{label}, {runners[i]}: {BenchReport.Times(r)}")}</title></rect>\n");
                    sb.Append(Inv, $"<text x=\"{x1 + 3:0.0}\" y=\"{by + bar - 2}\">{Esc(BenchReport.Times(r))}</text>\n");
                }
            }
            y += groupHeight + gap;
        }

        // Legend.
        int lx = left, ly = axisBottom + 30;
        for (int i = 0; i < runners.Count; i++)
        {
            sb.Append(Inv, $"<rect x=\"{lx}\" y=\"{ly}\" width=\"12\" height=\"12\" fill=\"{Palette[i % Palette.Length]}\"/>\n");
            sb.Append(Inv, $"<text x=\"{lx + 16}\" y=\"{ly + 10}\">{Esc(runners[i])}</text>\n");
            lx += 24 + 7 * runners[i].Length + 16;
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private static string Esc(string s) => WebUtility.HtmlEncode(s);
}
