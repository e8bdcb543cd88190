// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Text;
using Jitvmx.Linux;

namespace Jitvmx.Cli;

/// <summary><c>jitvmx run [--tier interp|il|llvm|auto] [--strace] [--stats] [--profile] PROGRAM [ARGS...]</c>: runs a static Linux x86-64 program.</summary>
internal static class RunCommand
{
    public const string Usage = "usage: jitvmx run [--tier interp|il|llvm|auto] [--strace] [--stats] [--profile] PROGRAM [ARGS...]";

    /// <summary>
    /// Guest instructions a region runs interpreted under <c>--tier auto</c> before the IL tier
    /// compiles it (<c>JITVMX_INTERP_TIERUP</c> overrides it). The interpreter runs about 100 million
    /// guest instructions a second, and the host JIT takes 2–5 ms for a region of 100 or so guest
    /// instructions: the cost of interpreting some 300,000 instructions. At 256, a glibc hello world
    /// (38,000 guest instructions) spent 50 ms of its 170 ms compiling regions it then barely ran.
    /// Measured over the nine benchmark programs (best of three, interleaved), 32768 beat 256 by 9 %
    /// (geometric mean) and came out ahead of 4096, 65536 and 131072.
    /// </summary>
    private const long AutoInterpreterTierUp = 32768;

    /// <summary>
    /// LLVM level of the background tier: measured on busybox gzip, md5sum and a CRC loop, O1's
    /// short pipeline gives the same speed as O2 at about half the compile time (hot regions are
    /// large: O2 took ~190 ms each for gzip's), and on two cores the compile competes with the guest.
    /// </summary>
    private const Jitvmx.Llvm.LlvmOptLevel BackgroundLevel = Jitvmx.Llvm.LlvmOptLevel.O1;

    public static int Run(string[] args)
    {
        bool strace = false, stats = false, profile = false;
        string tier = "auto"; // tiered when libLLVM 19 is present, else IL with a note
        int i = 0;
        for (; i < args.Length && args[i].StartsWith('-'); i++)
        {
            switch (args[i])
            {
                case "--strace": strace = true; break;
                case "--stats": stats = true; break;
                case "--profile": profile = stats = true; break;
                case "--tier":
                    if (++i >= args.Length) return Fail("--tier needs a value: interp, il, llvm or auto");
                    switch (args[i])
                    {
                        case "interp" or "il" or "llvm" or "auto": tier = args[i]; break;
                        default: return Fail($"unknown tier '{args[i]}' (interp, il, llvm or auto)");
                    }
                    break;
                case "--": i++; goto done;
                default: return Fail($"unknown option '{args[i]}'");
            }
        }
    done:
        if (i >= args.Length) return Fail("no program given");
        string program = args[i];
        string[] argv = args[i..];
        string[] env = Environment();

        // The guest writes to the inherited descriptors 1 and 2 directly; our own messages go
        // through an unbuffered stderr writer so that they stay in order with the guest's.
        var diagnostics = new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { AutoFlush = true };
        LinuxProcess process;
        try
        {
            var machine = new VirtualMachineOptions
            {
                InterpreterTierUp = tier switch { "interp" => long.MaxValue, "auto" => long.TryParse(System.Environment.GetEnvironmentVariable("JITVMX_INTERP_TIERUP"), out long tu) && tu > 0 ? tu : AutoInterpreterTierUp, _ => 0 },
                Profile = profile,
                // Hot regions of earlier runs are compiled as soon as they are first seen (the code cache makes that a load).
                TierProfile = tier is "auto" or "llvm" ? Jitvmx.Llvm.LlvmTier.TierProfilePath(program) : null,
                // The interpreter's regions of earlier runs (start-up code): taken without lifting while the bytes are the same.
                PreparedRegions = tier is "auto" or "interp" ? Jitvmx.Llvm.LlvmTier.PreparedRegionsPath(program) : null,
            };
            process = LinuxProcess.Load(program, argv, env, new LinuxOptions { Strace = strace, Diagnostics = diagnostics, Machine = machine });
        }
        catch (LinuxLoadException e)
        {
            return Fail(e.Message, 126);
        }
        using (process)
        {
            string? whyNot = null;
            bool attached = tier switch
            {
                // Every region is compiled before it runs: at O0 (a few ms each), and again at O1 in the
                // background once hot (O2 roughly doubles compile time for the same speed on translated code).
                "llvm" => Jitvmx.Llvm.LlvmTier.TryAttachTwoLevel(process.Machine, Jitvmx.Llvm.LlvmOptLevel.O0, BackgroundLevel, out whyNot),
                "auto" => Jitvmx.Llvm.LlvmTier.TryAttachBackground(process.Machine, BackgroundLevel, out whyNot),
                _ => true,
            };
            if (!attached)
            {
                Console.Error.WriteLine($"jitvmx: note: {whyNot}; running {(tier == "auto" ? "without the LLVM tier" : "on the IL tier")}");
                tier = tier == "auto" ? "auto (interpreter and IL)" : "il";
            }
            process.TierName = tier;
            var sw = Stopwatch.StartNew();
            int status = process.Run();
            if (stats) diagnostics.Write(process.FormatStatistics(sw.Elapsed));
            process.Machine.SavePreparedRegions();
            // The guest wrote its output to the descriptors itself (and may have closed them) and
            // ours is unbuffered: leave as the guest's exit_group would, without waiting for a
            // background LLVM compilation that can no longer help (disposing the VM would wait
            // for it, up to a few hundred ms).
            ExitProcess(status);
            return status;
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "_exit")]
    private static extern void ExitProcess(int status);

    /// <summary>The environment in its original order (the kernel's, from /proc/self/environ), as a native exec would pass it.</summary>
    private static string[] Environment()
    {
        try
        {
            // Split by hand: string.Split's separator search was JIT-compiled on every start.
            byte[] all = File.ReadAllBytes("/proc/self/environ");
            var env = new List<string>();
            for (int start = 0, i = 0; i <= all.Length; i++)
            {
                if (i < all.Length && all[i] != 0) continue;
                if (i > start) env.Add(Encoding.UTF8.GetString(all, start, i - start));
                start = i + 1;
            }
            return [.. env];
        }
        catch (IOException)
        {
            return System.Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>().Select(e => $"{e.Key}={e.Value}").ToArray();
        }
    }

    private static int Fail(string message, int status = 2)
    {
        Console.Error.WriteLine($"jitvmx: {message}");
        if (status == 2) Console.Error.WriteLine(Usage);
        return status;
    }
}
