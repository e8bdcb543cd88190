// SPDX-License-Identifier: MIT
using System.Diagnostics;

namespace Jitvmx.Linux;

/// <summary>Options of a <see cref="LinuxProcess"/>.</summary>
public sealed class LinuxOptions
{
    /// <summary>Print each system call with its arguments and result, as strace does.</summary>
    public bool Strace { get; init; }

    /// <summary>Where --strace output and the fatal-signal message go (default: standard error).</summary>
    public TextWriter? Diagnostics { get; init; }

    /// <summary>The CPUID model the guest sees (AT_HWCAP is derived from it).</summary>
    public CpuidModel Cpuid { get; init; } = CpuidModel.Default;

    /// <summary>Options of the VM the process runs in.</summary>
    public VirtualMachineOptions? Machine { get; init; }
}

/// <summary>
/// A Linux x86-64 user-mode process running on Jitvmx: a VMM whose guest is a static executable.
/// SYSCALL, CPUID and guest faults reach it as VM exits; system calls are answered by the table in
/// <see cref="Syscalls"/>, CPUID from the <see cref="CpuidModel"/>, and faults end the process
/// with the signal Linux would send (signal handlers are recorded but not delivered).
/// </summary>
public sealed partial class LinuxProcess : IDisposable
{
    private readonly AddressSpace _mem;
    private bool _disposed;

    private LinuxProcess(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp, LinuxOptions options)
    {
        Options = options;
        Diagnostics = options.Diagnostics ?? Console.Error;
        Machine = new VirtualMachine(options.Machine);
        try
        {
            _mem = new AddressSpace(Machine);
            // All guest memory lies in the reservation, guest address 0 at its base.
            Machine.FlatAddend = _mem.Base;
            // The reservation is inaccessible wherever the guest may not read (AddressSpace).
            // JITVMX_HOST_READS=0 keeps the software check on reads too (for comparisons).
            Machine.HostReadFaults = Environment.GetEnvironmentVariable("JITVMX_HOST_READS") != "0";
            // And read-only wherever the guest may not write; JITVMX_HOST_WRITES=0 keeps LLVM code's software write check.
            Machine.HostWriteFaults = Machine.HostReadFaults && Environment.GetEnvironmentVariable("JITVMX_HOST_WRITES") != "0";
            ExecutablePath = Path.GetFullPath(path);
            var image = ElfLoader.Load(path, _mem);
            _brkStart = _brk = image.BrkStart;
            var ids = ((uint)Native.Syscall(102), (uint)Native.Syscall(107), (uint)Native.Syscall(104), (uint)Native.Syscall(108));
            ulong sp = ElfLoader.BuildStack(_mem, image, path, argv, envp, options.Cpuid, ids);

            Cpu = Machine.CreateCpu();
            ref var s = ref Cpu.State;
            s.Cs = new SegmentRegister { Selector = 0x33, Limit = 0xFFFFFFFF, AccessRights = 0xA0FB };
            var data = new SegmentRegister { Selector = 0x2B, Limit = 0xFFFFFFFF, AccessRights = 0xC0F3 };
            s.Ss = data; s.Ds = data; s.Es = data;
            s.Fs = new SegmentRegister { AccessRights = 0x1C000 }; // null selectors, bases set by arch_prctl
            s.Gs = s.Fs;
            s.Rip = image.Entry;
            s.Rsp = sp;
            s.Rflags = 0x202;
            s.Efer |= 1; // SCE
            // Linux enables XSAVE and every user state component the CPU reports (here x87 and SSE).
            if ((options.Cpuid.Leaf1Ecx & (1u << 26)) != 0)
            {
                s.Cr4 |= CpuidModel.Cr4OsXsave;
                s.Xcr0 = CpuidModel.SupportedXcr0;
            }
            Cpu.Controls.SyscallExiting = true;
            Cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;
        }
        catch
        {
            _mem?.Dispose();
            Machine.Dispose();
            throw;
        }
    }

    /// <summary>Loads <paramref name="path"/>; throws <see cref="LinuxLoadException"/> with a one-line reason when it cannot run.</summary>
    /// <param name="path">The executable.</param>
    /// <param name="argv">argv, including argv[0].</param>
    /// <param name="envp">The environment, as NAME=value strings.</param>
    /// <param name="options">Options, or null for the defaults.</param>
    public static LinuxProcess Load(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp, LinuxOptions? options = null) =>
        new(path, argv, envp, options ?? new LinuxOptions());

    /// <summary>The VM the guest runs in (for its statistics).</summary>
    public VirtualMachine Machine { get; }

    /// <summary>Name of the compilation tier, for <see cref="FormatStatistics"/>.</summary>
    public string TierName { get; set; } = "il";

    /// <summary>The guest's only vCPU.</summary>
    public VirtualCpu Cpu { get; } = null!;

    /// <summary>Options the process was created with.</summary>
    public LinuxOptions Options { get; }

    /// <summary>Absolute path of the executable (what /proc/self/exe reads as).</summary>
    public string ExecutablePath { get; }

    /// <summary>Number of times each system call was made, by name (unknown ones as "syscall_N").</summary>
    public Dictionary<string, long> SyscallCounts { get; } = [];

    /// <summary>Unknown system calls (answered with ENOSYS), by number.</summary>
    public Dictionary<long, long> UnknownSyscalls { get; } = [];

    /// <summary>The signal that ended the process, or 0.</summary>
    public int TerminatingSignal { get; private set; }

    /// <summary>Guest mappings, for diagnostics.</summary>
    public int MappingCount => _mem.Count;

    internal TextWriter Diagnostics { get; }
    internal AddressSpace Memory => _mem;

    /// <summary>Runs the guest to its end; returns the exit status a shell would see (128 + signal for a fatal signal).</summary>
    public int Run()
    {
        while (true)
        {
            VmExit exit = Cpu.Run();
            switch (exit.Reason)
            {
                case ExitReason.Syscall:
                    if (HandleSyscall() is int status) return status;
                    break;
                case ExitReason.Cpuid:
                    Options.Cpuid.Complete(Cpu);
                    break;
                case ExitReason.ExceptionOrNmi:
                    return Die(exit.Vector switch
                    {
                        ExceptionVector.DE => Signals.SIGFPE,
                        ExceptionVector.UD => Signals.SIGILL,
                        ExceptionVector.BP or ExceptionVector.DB => Signals.SIGTRAP,
                        ExceptionVector.MF or ExceptionVector.XM => Signals.SIGFPE,
                        ExceptionVector.AC => Signals.SIGBUS,
                        _ => Signals.SIGSEGV,
                    }, exit.Rip);
                case ExitReason.EptViolation or ExitReason.TripleFault:
                    return Die(Signals.SIGSEGV, exit.Rip);
                default:
                    Diagnostics.WriteLine($"jitvmx: unexpected VM exit {exit}");
                    return Die(Signals.SIGSEGV, exit.Rip);
            }
        }
    }

    /// <summary>Ends the process with a fatal signal: one line on the diagnostics writer, status 128 + signal.</summary>
    internal int Die(int signal, ulong rip)
    {
        TerminatingSignal = signal;
        Console.Out.Flush();
        Diagnostics.WriteLine($"jitvmx: guest terminated by {Signals.Name(signal)} ({Signals.Description(signal)}) at rip 0x{rip:x}");
        Diagnostics.Flush();
        return 128 + signal;
    }

    /// <summary>A one-block summary for --stats.</summary>
    public string FormatStatistics(TimeSpan wall)
    {
        var st = Machine.Statistics;
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("jitvmx: --stats");
        sb.AppendLine($"  guest instructions executed  {Cpu.InstructionsRetired:N0}");
        sb.AppendLine($"  wall time                    {wall.TotalMilliseconds:N1} ms");
        sb.AppendLine($"  tier {TierName}: regions translated {st.RegionsTranslated:N0} ({st.BlocksTranslated:N0} blocks, {st.InstructionsTranslated:N0} instructions)");
        if (st.RegionsInterpreted > 0)
            sb.AppendLine($"  interpreted regions          {st.RegionsInterpreted:N0} ({st.RegionsFromPreparedCache:N0} prepared by an earlier run); promoted to IL when hot {st.RegionsPromoted:N0}");
        if (st.RegionsQueuedForTierUp + st.RegionsQueuedFromProfile > 0)
            sb.AppendLine($"  hot regions recompiled by LLVM in the background: {st.RegionsTieredUp:N0} of {st.RegionsQueuedForTierUp + st.RegionsQueuedFromProfile:N0} queued "
                + $"({st.RegionsQueuedFromProfile:N0} from the tier profile, {st.RegionsTieredUpFromProfile:N0} of them installed, {st.RegionsLoadedFromProfile:N0} without translating), "
                + $"{st.TierCompileTicks * 1000.0 / Stopwatch.Frequency:N1} ms compiling; {st.RegionsPredicted:N0} with predicted indirect targets, "
                + $"{st.RegionsRequeued:N0} skipped as covered; {st.TierCompilesCached:N0} compilations taken from the code cache");
        if (st.ChainLinks + st.JumpsCached > 0)
            sb.AppendLine($"  native chaining              {st.ChainLinks:N0} exits linked, {st.JumpsCached:N0} indirect targets cached");
        sb.AppendLine($"  translation time             {st.TranslationTime.TotalMilliseconds:N1} ms (lifting {st.LiftTime.TotalMilliseconds:N1} ms)");
        // Region code and Jitvmx's own code share the host JIT; its total shows what cold start costs.
        sb.AppendLine($"  host JIT                     {System.Runtime.JitInfo.GetCompiledMethodCount():N0} methods, {System.Runtime.JitInfo.GetCompilationTime().TotalMilliseconds:N1} ms");
        sb.AppendLine($"  cache hits                   {st.CacheHits:N0}; regions invalidated {st.RegionsInvalidated:N0}");
        sb.AppendLine($"  guest mappings               {_mem.Count}");
        sb.AppendLine("  exits by reason:");
        foreach (var (r, n) in Cpu.ExitCounts.OrderByDescending(p => p.Value)) sb.AppendLine($"    {r,-24} {n:N0}");
        sb.AppendLine("  syscalls by name:");
        foreach (var (name, n) in SyscallCounts.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal))
            sb.AppendLine($"    {name,-24} {n:N0}");
        if (UnknownSyscalls.Count > 0)
            sb.AppendLine("  unknown syscalls (ENOSYS): " + string.Join(", ", UnknownSyscalls.Select(p => $"{p.Key}×{p.Value}")));
        lock (st.Unsupported)
        {
            if (st.Unsupported.Count > 0)
                sb.AppendLine("  unsupported instructions (#UD): " + string.Join(", ", st.Unsupported.OrderByDescending(p => p.Value).Select(p => $"{p.Key}×{p.Value}")));
        }
        var profile = Machine.Profile();
        if (profile.Count > 0)
        {
            double total = Math.Max(1e-9, profile.Sum(p => p.Time.TotalSeconds));
            sb.AppendLine($"  hottest regions (--profile; {total * 1000:N1} ms in guest code):");
            sb.AppendLine("    entry               tier    time   share   instructions       entries  per entry  size");
            foreach (var p in profile.Take(20))
                sb.AppendLine($"    0x{p.Entry,-16:x}  {p.Tier,-6} {p.Time.TotalMilliseconds,6:F0}ms {100.0 * p.Time.TotalSeconds / total,5:F1}%  {p.Instructions,13:N0} {p.Entries,13:N0} {(double)p.Instructions / p.Entries,10:F1} {p.GuestInstructions,5}");
        }
        return sb.ToString();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _mem.Dispose();
        Machine.Dispose();
    }
}

/// <summary>Linux x86-64 signal numbers and names.</summary>
public static class Signals
{
#pragma warning disable CS1591 // the names are the documentation
    public const int SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7, SIGFPE = 8,
        SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15, SIGCHLD = 17,
        SIGCONT = 18, SIGSTOP = 19, SIGURG = 23, SIGWINCH = 28;
#pragma warning restore CS1591

    private static readonly string[] s_names =
    [
        "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
        "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
        "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];

    /// <summary>SIGxxx name of a signal.</summary>
    public static string Name(int sig) => sig > 0 && sig < s_names.Length ? s_names[sig] : $"SIGRT{sig}";

    /// <summary>The shell's description of a signal.</summary>
    public static string Description(int sig) => sig switch
    {
        SIGILL => "Illegal instruction",
        SIGTRAP => "Trace/breakpoint trap",
        SIGABRT => "Aborted",
        SIGBUS => "Bus error",
        SIGFPE => "Floating point exception",
        SIGKILL => "Killed",
        SIGSEGV => "Segmentation fault",
        SIGPIPE => "Broken pipe",
        SIGTERM => "Terminated",
        _ => Name(sig),
    };

    /// <summary>Whether the default action of <paramref name="sig"/> is to ignore it.</summary>
    public static bool IgnoredByDefault(int sig) => sig is SIGCHLD or SIGCONT or SIGURG or SIGWINCH;
}
