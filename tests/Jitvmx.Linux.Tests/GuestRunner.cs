// SPDX-License-Identifier: MIT
using System.Diagnostics;

namespace Jitvmx.Linux.Tests;

/// <summary>Result of one run: exit status and everything written to the two output streams.</summary>
public sealed record RunResult(int Status, string Stdout, string Stderr);

/// <summary>
/// Runs guest programs natively and under <c>jitvmx run</c> (the CLI in the test's output
/// directory, in its own process, so the guest really owns descriptors 0–2 and its exit status
/// is the process's).
/// </summary>
public static class GuestRunner
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Jitvmx.sln"))) return d.FullName;
        throw new InvalidOperationException("repository root (Jitvmx.sln) not found above " + AppContext.BaseDirectory);
    });

    private static readonly Lazy<bool> s_built = new(() =>
    {
        // The build's Native target normally did this already; make is incremental.
        var r = Run("make", ["-C", Path.Combine(s_root.Value, "native"), "-s", "--no-print-directory"], null, null);
        if (r.Status != 0) throw new InvalidOperationException("make -C native failed: " + r.Stderr);
        return true;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string Root => s_root.Value;

    /// <summary>Path of native/build/&lt;dir&gt;/&lt;name&gt;, building native/ first.</summary>
    public static string Program(string dir, string name)
    {
        _ = s_built.Value;
        return Path.Combine(Root, "native", "build", dir, name);
    }

    public static string Cli => Path.Combine(AppContext.BaseDirectory, "jitvmx.dll");

    public static RunResult Native(string program, IEnumerable<string> args, string? stdin = null, IDictionary<string, string>? env = null, string? cwd = null) =>
        Run(program, args, stdin, env, cwd);

    /// <summary>
    /// Runs <c>jitvmx run</c>; with JITVMX_TEST_TIER set (interp, il, llvm, auto) as <c>--tier</c> first, which a
    /// test's own <c>--tier</c> overrides. CI runs the suite a second time with JITVMX_TEST_TIER=llvm.
    /// </summary>
    public static RunResult Jitvmx(IEnumerable<string> runArgs, string? stdin = null, IDictionary<string, string>? env = null, string? cwd = null) =>
        Run("dotnet", new[] { Cli, "run" }.Concat(s_tier).Concat(runArgs), stdin, env, cwd);

    private static readonly string[] s_tier = Environment.GetEnvironmentVariable("JITVMX_TEST_TIER") is { Length: > 0 } t ? ["--tier", t] : [];

    public static RunResult Run(string file, IEnumerable<string> args, string? stdin, IDictionary<string, string>? env, string? cwd = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = cwd ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        psi.Environment["DOTNET_TieredPGO"] = "0";
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 60 s");
        }
        return new RunResult(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>
    /// Runs <paramref name="program"/> natively and under Jitvmx and requires the same status and
    /// byte-identical output. For a fatal signal, Jitvmx's own last stderr line (naming the signal
    /// and the guest RIP) is checked and then left out of the comparison.
    /// </summary>
    public static RunResult Compare(string program, string[] args, string? stdin = null, IDictionary<string, string>? env = null,
        Func<string>? freshCwd = null)
    {
        var native = Native(program, args, stdin, env, freshCwd?.Invoke());
        var jit = Jitvmx([program, .. args], stdin, env, freshCwd?.Invoke());
        string jitErr = jit.Stderr;
        int at = jitErr.LastIndexOf("jitvmx: guest terminated by ", StringComparison.Ordinal);
        if (at >= 0)
        {
            Assert.True(native.Status > 128, $"killed under Jitvmx, exit status {native.Status} natively; stderr was:\n{jitErr}");
            string signal = Signals.Name(native.Status - 128);
            Assert.StartsWith($"jitvmx: guest terminated by {signal} (", jitErr[at..]);
            Assert.Matches(@" at rip 0x[0-9a-f]+\n$", jitErr[at..]);
            jitErr = jitErr[..at];
        }
        Assert.Equal(native.Stdout, jit.Stdout);
        Assert.Equal(native.Stderr, jitErr);
        Assert.Equal(native.Status, jit.Status);
        return jit;
    }
}

/// <summary>A temporary directory removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "jitvmx-linux-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
