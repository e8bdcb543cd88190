// SPDX-License-Identifier: MIT

using System.Buffers.Binary;
using System.Diagnostics;

namespace Jitvmx.Tests.Oracle;

/// <summary>
/// Runs x86-64 code on the host CPU through the native oracle (native/oracle/oracle.c) and
/// reports the resulting architectural state, for differential tests against the translator.
/// </summary>
public static class HostOracle
{
    public const ulong DataBase = 0x10000000, CodeBase = 0x20000000;
    public const int MemorySize = 4096;
    public const int MaxCodeSize = 65536;

    /// <summary>Default per-case timeout of the oracle, after which a case reports SIGALRM.</summary>
    public const int DefaultTimeoutMs = 1000;

    private const uint CaseMagic = 0x434F564A;   // "JVOC"
    private const uint ResultMagic = 0x524F564A; // "JVOR"
    private const int CaseHeaderSize = 4 + 4 + 16 * 8 + 8;
    private const int ResultSize = 4 + 4 + 8 + 16 * 8 + 8 + MemorySize;

    private static readonly Lazy<string> s_executablePath = new(LocateOrBuild, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Path of native/build/oracle/oracle, built on first use if it is missing or older than its
    /// source (with <c>make -C native</c>, or gcc directly when there is no native/Makefile).
    /// </summary>
    public static string ExecutablePath => s_executablePath.Value;

    /// <summary>Runs one case in its own oracle process.</summary>
    public static OracleResult Run(OracleCase oracleCase, int timeoutMs = DefaultTimeoutMs) => Run([oracleCase], timeoutMs)[0];

    /// <summary>Runs all cases, in order, in one oracle process.</summary>
    public static IReadOnlyList<OracleResult> Run(IReadOnlyList<OracleCase> cases) => Run(cases, DefaultTimeoutMs);

    /// <summary>Runs all cases, in order, in one oracle process, with a per-case timeout.</summary>
    public static IReadOnlyList<OracleResult> Run(IReadOnlyList<OracleCase> cases, int timeoutMs)
    {
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentOutOfRangeException.ThrowIfLessThan(timeoutMs, 1);
        for (int i = 0; i < cases.Count; i++)
            cases[i].Validate(i);
        if (cases.Count == 0)
            return [];

        var psi = new ProcessStartInfo(ExecutablePath, ["-t", timeoutMs.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"Cannot start {ExecutablePath}.");
        var stderr = process.StandardError.ReadToEndAsync();

        // Feed the cases on another thread while results are read here, so that neither pipe fills up.
        var writer = Task.Run(() =>
        {
            try
            {
                using var stdin = new BufferedStream(process.StandardInput.BaseStream, 1 << 16);
                foreach (var c in cases)
                    WriteCase(stdin, c);
                stdin.Flush();
            }
            catch (IOException)
            {
                // The oracle went away; the reader reports why.
            }
        });

        // Guard against an oracle that hangs outside the guest code (where its own timer does not help).
        var budget = TimeSpan.FromMilliseconds((double)timeoutMs * cases.Count + 30_000);
        int killed = 0;
        using var watchdog = new Timer(_ => { Interlocked.Exchange(ref killed, 1); TryKill(process); }, null, budget, Timeout.InfiniteTimeSpan);

        var results = new List<OracleResult>(cases.Count);
        var stdout = process.StandardOutput.BaseStream;
        var buffer = new byte[ResultSize];
        string? error = null;
        for (int i = 0; i < cases.Count; i++)
        {
            int got = stdout.ReadAtLeast(buffer, ResultSize, throwOnEndOfStream: false);
            if (got < ResultSize)
            {
                error = $"oracle output ended at case {i} of {cases.Count} (got {got} of {ResultSize} bytes)";
                break;
            }
            var result = ParseResult(buffer);
            if (result is null)
            {
                error = $"bad result magic for case {i}";
                break;
            }
            results.Add(result);
        }

        if (error is not null)
            TryKill(process);
        writer.Wait();
        process.WaitForExit();
        watchdog.Dispose();
        if (error is null && process.ExitCode != 0)
            error = "oracle exited with an error";
        if (error is null)
            return results;

        var exit = process.ExitCode;
        var why = Volatile.Read(ref killed) != 0 ? $" (killed after {budget.TotalSeconds:0} s)" : "";
        throw new InvalidOperationException($"{error}; exit code {exit}{why}; stderr: {stderr.Result.Trim()}");
    }

    private static void WriteCase(Stream stream, OracleCase c)
    {
        var header = new byte[CaseHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0), CaseMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), (uint)c.Code.Length);
        for (int r = 0; r < 16; r++)
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(8 + 8 * r), c.Gprs[r]);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(8 + 16 * 8), c.Rflags);
        stream.Write(header);
        stream.Write(c.Memory);
        stream.Write(c.Code);
    }

    private static OracleResult? ParseResult(ReadOnlySpan<byte> b)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != ResultMagic)
            return null;
        int signal = BinaryPrimitives.ReadInt32LittleEndian(b[4..]);
        ulong rip = BinaryPrimitives.ReadUInt64LittleEndian(b[8..]);
        var gprs = new ulong[16];
        for (int r = 0; r < 16; r++)
            gprs[r] = BinaryPrimitives.ReadUInt64LittleEndian(b[(16 + 8 * r)..]);
        ulong rflags = BinaryPrimitives.ReadUInt64LittleEndian(b[(16 + 16 * 8)..]);
        var memory = b.Slice(24 + 16 * 8, MemorySize).ToArray();
        return new OracleResult(signal, rip, gprs, rflags, memory);
    }

    private static void TryKill(Process process)
    {
        try
        {
            if (!process.HasExited)
                process.Kill();
        }
        catch (InvalidOperationException)
        {
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    private static string LocateOrBuild()
    {
        var root = FindRepositoryRoot();
        var native = Path.Combine(root, "native");
        var source = Path.Combine(native, "oracle", "oracle.c");
        var exe = Path.Combine(native, "build", "oracle", "oracle");

        bool upToDate = File.Exists(exe) && (!File.Exists(source) || File.GetLastWriteTimeUtc(exe) >= File.GetLastWriteTimeUtc(source));
        if (upToDate)
            return exe;
        if (!File.Exists(source))
            throw new InvalidOperationException($"Host oracle not found: neither {exe} nor its source {source} exists.");

        string log;
        if (File.Exists(Path.Combine(native, "Makefile")))
        {
            log = RunTool("make", ["-C", native], root);
        }
        else
        {
            // No generic native Makefile: compile as it would, into a temporary file then move it
            // in place, so that concurrent test runs never see a half-written executable.
            Directory.CreateDirectory(Path.GetDirectoryName(exe)!);
            var temp = $"{exe}.{Environment.ProcessId}.tmp";
            log = RunTool("gcc", ["-O2", "-Wall", "-Werror", "-o", temp, source], root);
            if (File.Exists(temp))
                File.Move(temp, exe, overwrite: true);
        }
        if (!File.Exists(exe))
            throw new InvalidOperationException($"Building the host oracle did not produce {exe}. Build output:\n{log}");
        return exe;
    }

    private static string RunTool(string tool, string[] args, string workingDirectory)
    {
        var psi = new ProcessStartInfo(tool, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"Cannot start {tool}.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Cannot build the host oracle: '{tool}' could not be started ({e.Message}).", e);
        }
        using (process)
        {
            var err = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            var log = $"$ {tool} {string.Join(' ', args)}\n{output}{err.Result}";
            if (process.ExitCode != 0)
                throw new InvalidOperationException($"Building the host oracle failed (exit code {process.ExitCode}):\n{log}");
            return log;
        }
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Jitvmx.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"Cannot find the directory holding Jitvmx.sln above {AppContext.BaseDirectory}.");
    }
}
