// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Jitvmx.Cli;

/// <summary>
/// <c>jitvmx bench</c>: runs the programs of <c>native/bench</c> natively, under each Jitvmx tier and
/// under qemu-x86_64, interleaved, and reports median times, slowdowns and the ratio to qemu. Every
/// runner is a child process (Jitvmx through this same jitvmx.dll with <c>run --tier X</c>), and every
/// run's output and status must equal the native run's of the same invocation, or it is a failure.
/// </summary>
internal static partial class BenchCommand
{
    public const string Usage =
        "usage: jitvmx bench [--runs N] [--filter SUBSTR] [--runners native,il,auto,llvm,qemu] [--scale X]\n" +
        "                    [--timeout SECONDS] [--out DIR] [--programs DIR]";

    private static readonly string[] AllRunners = [BenchReport.Native, "il", "auto", "llvm", BenchReport.Qemu];

    /// <summary>How a runner turns a program and its arguments into a command line.</summary>
    private sealed record Runner(string Name, Func<string, string[], (string File, string[] Args)> Command);

    public static int Run(string[] args)
    {
        int runs = 5;
        double timeout = 600;
        var filters = new List<string>();
        string? runnerList = null, scale = null, outDir = null, programDir = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => ++i < args.Length ? args[i] : throw new ArgumentException($"{args[i - 1]} needs a value");
            switch (args[i])
            {
                case "--runs":
                    if (!int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out runs) || runs < 1)
                        return Fail("--runs needs a whole number of at least 1 (2 or more: the first run is a warm-up)");
                    break;
                case "--filter": filters.Add(Value()); break;
                case "--runners": runnerList = Value(); break;
                case "--scale":
                    scale = Value();
                    if (!double.TryParse(scale, NumberStyles.Float, CultureInfo.InvariantCulture, out double s) || !(s > 0) || s > 1000)
                        return Fail("--scale needs a number above 0 and at most 1000");
                    break;
                case "--timeout":
                    if (!double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out timeout) || !(timeout > 0))
                        return Fail("--timeout needs a positive number of seconds");
                    break;
                case "--out": outDir = Value(); break;
                case "--programs": programDir = Value(); break;
                case "-h" or "--help":
                    Console.WriteLine(Usage);
                    return 0;
                default: return Fail($"unknown option '{args[i]}'");
            }
        }

        string? root = RepositoryRoot();
        programDir ??= root is null ? null : Path.Combine(root, "native", "build", "bench");
        outDir ??= Path.Combine(root ?? Directory.GetCurrentDirectory(), "bench", "results");
        if (programDir is null) return Fail("the repository (Jitvmx.sln) was not found above this program or the current directory; give --programs DIR", 1);
        if (root is not null && !BuildPrograms(root, programDir)) return 1;

        var programs = Directory.Exists(programDir)
            ? Directory.GetFiles(programDir).Where(IsExecutable).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList()
            : [];
        if (programs.Count == 0) return Fail($"no benchmark programs in {programDir} (build them with: make -C native)", 1);
        if (filters.Count > 0) programs = programs.Where(p => filters.Any(f => p.Contains(f, StringComparison.Ordinal))).ToList();
        if (programs.Count == 0) return Fail("no program matches --filter " + string.Join(", ", filters), 1);

        var runners = SelectRunners(runnerList, out string? error);
        if (runners is null) return Fail(error!);

        var report = new BenchReport(programs, runners.Select(r => r.Name).ToList());
        report.Facts.AddRange(Facts(root, runs, scale, timeout));
        foreach (var (key, value) in report.Facts) Console.Error.WriteLine($"bench: {key}: {value}");
        Console.Error.WriteLine($"bench: {programs.Count} programs × {runners.Count} runners × {runs} runs (the first is a warm-up)");

        // The files are rewritten after each program, so a long run cut short still leaves its data.
        string stamp = DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        Measure(report, runners, programDir, scale, runs, timeout, () => BenchOutput.WriteAll(report, outDir, stamp));

        Console.WriteLine();
        Console.Write(report.Format(markdown: false));
        foreach (string path in BenchOutput.WriteAll(report, outDir, stamp))
            Console.WriteLine($"wrote {path}");
        if (report.AnyFailure) Console.Error.WriteLine("bench: FAILED: at least one runner's output or status differed from native (see the table)");
        return report.AnyFailure ? 1 : 0;
    }

    /// <summary>
    /// Round-robin over the runners in each repetition, so that a slow spell of the machine (others
    /// building) spreads over all runners instead of falling on one. A runner that fails on a program
    /// is not run on it again: its numbers would mean nothing.
    /// </summary>
    private static void Measure(BenchReport report, List<Runner> runners, string programDir, string? scale, int runs, double timeout, Action afterProgram)
    {
        int total = report.Programs.Count * runners.Count * runs, done = 0;
        string[] programArgs = scale is null ? [] : [scale];
        foreach (string program in report.Programs)
        {
            string path = Path.Combine(programDir, program);
            BenchRun? reference = null;
            for (int rep = 0; rep < runs; rep++)
            {
                foreach (var runner in runners)
                {
                    done++;
                    var cell = report[program, runner.Name];
                    if (cell.Failure is not null || (reference is null && runner.Name != BenchReport.Native))
                    {
                        Progress(done, total, program, runner.Name, rep, runs, "skipped (failed before)");
                        continue;
                    }
                    var (file, argv) = runner.Command(path, programArgs);
                    var run = RunChild(file, argv, timeout);
                    string? failure;
                    if (runner.Name == BenchReport.Native && reference is null)
                    {
                        failure = BenchStats.CheckReference(run);
                        if (failure is null)
                        {
                            reference = run;
                            report.Checksums[program] = BenchStats.Checksum(run.Stdout)!;
                        }
                    }
                    else
                    {
                        failure = BenchStats.Verify(reference!, run);
                    }
                    bool warmUp = rep == 0 && runs > 1;
                    report.Measurements.Add(new BenchMeasurement(program, runner.Name, rep, warmUp, run.Seconds, run.CpuSeconds, run.Status, failure));
                    if (failure is not null)
                    {
                        cell.Failure = failure;
                        Progress(done, total, program, runner.Name, rep, runs, $"{run.Seconds:0.000} s FAILED: {failure}");
                        continue;
                    }
                    if (warmUp) cell.WarmUp = run.Seconds;
                    else
                    {
                        cell.Times.Add(run.Seconds);
                        cell.CpuTimes.Add(run.CpuSeconds);
                    }
                    Progress(done, total, program, runner.Name, rep, runs, $"{run.Seconds:0.000} s{(warmUp ? " (warm-up)" : "")}");
                }
            }
            afterProgram();
        }
    }

    private static void Progress(int done, int total, string program, string runner, int rep, int runs, string what) =>
        Console.Error.WriteLine($"[{done.ToString(CultureInfo.InvariantCulture).PadLeft(total.ToString(CultureInfo.InvariantCulture).Length)}/{total}] {program,-10} {runner,-6} run {rep + 1}/{runs}  {what}");

    /// <summary>The runners asked for (default: every one available), native first; null with the reason on a bad list.</summary>
    private static List<Runner>? SelectRunners(string? list, out string? error)
    {
        error = null;
        var wanted = list?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (wanted?.FirstOrDefault(w => !AllRunners.Contains(w)) is string unknown)
        {
            error = $"unknown runner '{unknown}' (native, il, auto, llvm, qemu)";
            return null;
        }
        bool Want(string name) => wanted is null || wanted.Contains(name);

        // Native always runs: it gives the reference output and the times everything is divided by.
        var runners = new List<Runner> { new(BenchReport.Native, (p, a) => (p, a)) };
        if (wanted is not null && !wanted.Contains(BenchReport.Native))
            Console.Error.WriteLine("bench: note: native runs anyway (it is the reference)");

        var jitvmx = JitvmxCommand();
        string? noLlvm = LlvmUnavailable();
        foreach (string tier in new[] { "il", "auto", "llvm" })
        {
            if (!Want(tier)) continue;
            if (tier != "il" && noLlvm is not null)
            {
                // Without libLLVM, auto and llvm would only measure the IL tier again.
                Console.Error.WriteLine($"bench: note: no '{tier}' runner: {noLlvm}");
                continue;
            }
            runners.Add(new Runner(tier, (p, a) => (jitvmx.File, [.. jitvmx.Args, "run", "--tier", tier, p, .. a])));
        }
        if (Want(BenchReport.Qemu))
        {
            if (FindOnPath("qemu-x86_64") is string qemu) runners.Add(new Runner(BenchReport.Qemu, (p, a) => (qemu, [p, .. a])));
            else Console.Error.WriteLine("bench: note: qemu-x86_64 is not on PATH (Debian package qemu-user): no qemu runner");
        }
        return runners;
    }

    /// <summary>This same CLI as a child process: the dotnet host with jitvmx.dll, or the apphost itself.</summary>
    private static (string File, string[] Args) JitvmxCommand()
    {
        string dll = typeof(BenchCommand).Assembly.Location;
        string? host = Environment.ProcessPath;
        if (host is not null && !Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.Ordinal))
            return (host, []);
        return (host ?? "dotnet", [dll]);
    }

    /// <summary>Null when libLLVM 19 loads, else why not: the same check <c>jitvmx run --tier llvm</c> makes.</summary>
    private static string? LlvmUnavailable()
    {
        using var vm = new VirtualMachine();
        return Jitvmx.Llvm.LlvmTier.TryAttach(vm, Jitvmx.Llvm.LlvmOptLevel.O2, out string? whyNot) ? null : whyNot;
    }

    /// <summary>Runs one child with stdin from /dev/null, capturing its output; wall and CPU seconds.</summary>
    internal static BenchRun RunChild(string file, IEnumerable<string> args, double timeoutSeconds)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);
        double cpuBefore = ChildrenCpuSeconds();
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new IOException($"cannot start {file}");
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        bool exited = p.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds));
        if (!exited)
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        else
        {
            p.WaitForExit(); // the output streams are complete after this
        }
        double seconds = sw.Elapsed.TotalSeconds;
        double cpu = ChildrenCpuSeconds() - cpuBefore;
        return new BenchRun(exited ? p.ExitCode : -1, stdout.Result, stderr.Result, seconds, cpu, TimedOut: !exited);
    }

    /// <summary>struct rusage of x86-64 Linux: two timevals, then fourteen longs this code does not read.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct RUsage
    {
        public long UserSeconds, UserMicroseconds, SystemSeconds, SystemMicroseconds;
        public fixed long Rest[14];
    }

    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRUsage(int who, out RUsage usage);

    /// <summary>
    /// User plus system CPU seconds of all waited-for children (RUSAGE_CHILDREN): one child runs at a
    /// time, so the difference around a run is that child's, LLVM's background thread included.
    /// </summary>
    private static double ChildrenCpuSeconds()
    {
        if (!OperatingSystem.IsLinux() || GetRUsage(-1, out var u) != 0) return 0;
        return u.UserSeconds + u.UserMicroseconds / 1e6 + u.SystemSeconds + u.SystemMicroseconds / 1e6;
    }

    /// <summary>Builds the benchmark programs with make (incremental); false when that fails and some are missing.</summary>
    private static bool BuildPrograms(string root, string programDir)
    {
        string sources = Path.Combine(root, "native", "bench");
        if (!Directory.Exists(sources) || FindOnPath("make") is null) return true;
        var targets = Directory.GetFiles(sources, "*.c").Select(c => "build/bench/" + Path.GetFileNameWithoutExtension(c)).Order(StringComparer.Ordinal).ToList();
        if (!string.Equals(Path.GetFullPath(programDir), Path.Combine(root, "native", "build", "bench"), StringComparison.Ordinal)) return true;
        var r = RunChild("make", ["-C", Path.Combine(root, "native"), "-s", "--no-print-directory", .. targets], 600);
        if (r.Status == 0) return true;
        Console.Error.Write(r.Stdout + r.Stderr);
        bool allThere = targets.All(t => File.Exists(Path.Combine(root, "native", t)));
        Console.Error.WriteLine(allThere
            ? "bench: warning: make -C native failed; using the programs already built"
            : "bench: make -C native failed and some benchmark programs are missing");
        return allThere;
    }

    /// <summary>The repository holding this CLI (artifacts/cli or a bin folder), or the current directory's.</summary>
    private static string? RepositoryRoot()
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Jitvmx.sln"))) return d.FullName;
        return null;
    }

    private static IEnumerable<(string, string)> Facts(string? root, int runs, string? scale, double timeout)
    {
        yield return ("date", DateTime.Now.ToString("yyyy-MM-dd HH:mm:ss zzz", CultureInfo.InvariantCulture));
        yield return ("host CPU", $"{CpuModel()}, {Environment.ProcessorCount} cores");
        yield return ("load average at start", LoadAverage());
        yield return ("OS", RuntimeInformation.OSDescription);
        yield return (".NET", RuntimeInformation.FrameworkDescription);
        yield return ("jitvmx", $"{typeof(VirtualMachine).Assembly.GetName().Version}" + (root is null ? "" : GitCommit(root) is string c ? $" (commit {c})" : ""));
        yield return ("settings", $"--runs {runs} (first discarded), --scale {scale ?? "1"}, --timeout {timeout.ToString(CultureInfo.InvariantCulture)} s; median wall seconds");
        // Measured runs load what the warm-up (or an earlier bench) compiled; JITVMX_CACHE=0 measures without.
        yield return ("LLVM code cache", Jitvmx.Llvm.LlvmTier.CodeCacheDirectory is string dir
            ? $"on ({dir}): measured runs load hot code compiled by earlier runs; JITVMX_CACHE=0 measures without"
            : "off (JITVMX_CACHE=0): every run compiles its hot code");
    }

    private static string CpuModel()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal) && line.IndexOf(':') is int at and >= 0)
                    return line[(at + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    /// <summary>The short commit, with "+changes" when the tree differs from it; null without git.</summary>
    private static string? GitCommit(string root)
    {
        if (FindOnPath("git") is null) return null;
        try
        {
            var head = RunChild("git", ["-C", root, "rev-parse", "--short=12", "HEAD"], 30);
            if (head.Status != 0) return null;
            var status = RunChild("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"], 30);
            return head.Stdout.Trim() + (status.Status == 0 && status.Stdout.Trim().Length > 0 ? "+changes" : "");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(IsExecutable);

    private static bool IsExecutable(string path) =>
        File.Exists(path) && !OperatingSystem.IsWindows() &&
        (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    private static int Fail(string message, int status = 2)
    {
        Console.Error.WriteLine($"jitvmx: {message}");
        if (status == 2) Console.Error.WriteLine(Usage);
        return status;
    }
}
