// SPDX-License-Identifier: MIT
using System.Text;

namespace Jitvmx.Linux;

/// <summary>How one system-call argument is checked, translated and shown by --strace.</summary>
internal enum ArgKind
{
    /// <summary>Signed integer (shown in decimal).</summary>
    Int,
    /// <summary>Unsigned value shown in hex (flags, addresses the call does not dereference).</summary>
    Hex,
    /// <summary>Octal (file modes).</summary>
    Octal,
    /// <summary>A file descriptor the guest must own (AT_FDCWD passes).</summary>
    Fd,
    /// <summary>A NUL-terminated string the call reads (path).</summary>
    String,
    /// <summary>A buffer the call reads, length in argument <see cref="ArgSpec.Param"/>.</summary>
    In,
    /// <summary>A buffer the call writes, length in argument <see cref="ArgSpec.Param"/>.</summary>
    Out,
    /// <summary>A fixed-size structure the call reads (<see cref="ArgSpec.Param"/> bytes).</summary>
    InFixed,
    /// <summary>A fixed-size structure the call writes.</summary>
    OutFixed,
    /// <summary>A fixed-size structure the call reads and writes.</summary>
    InOutFixed,
    /// <summary>An array the call reads and writes: count in argument <see cref="ArgSpec.Param"/>, <see cref="ArgSpec.Scale"/> bytes each.</summary>
    InOutArray,
    /// <summary>A pointer an emulated handler deals with itself.</summary>
    Pointer,
}

internal readonly record struct ArgSpec(ArgKind Kind, int Param = 0, int Scale = 1);

/// <summary>One row of the system-call table.</summary>
/// <param name="Number">x86-64 system-call number.</param>
/// <param name="Name">Name, as strace prints it.</param>
/// <param name="Args">How each argument is checked, translated and printed.</param>
/// <param name="Handler">Emulation; null means "pass to the host with pointers translated".</param>
/// <param name="HexResult">Print the result in hex (addresses).</param>
/// <param name="ReturnsFd">A non-negative result is a new file descriptor the guest owns.</param>
internal sealed record SyscallEntry(int Number, string Name, ArgSpec[] Args, Func<LinuxProcess, ulong[], long>? Handler, bool HexResult, bool ReturnsFd);

/// <summary>
/// The Linux x86-64 personality: one table row per system call. Rows without a handler are passed
/// to the host (same number: the host is x86-64 Linux) after every pointer argument was checked
/// against the guest's mappings (−EFAULT otherwise) and translated to a host pointer; the others
/// are emulated because the guest's view differs from the host process's (memory, signals, thread
/// identity, the files the .NET runtime itself holds open).
/// </summary>
internal static partial class Syscalls
{
    public static readonly SyscallEntry?[] Table = new SyscallEntry?[512];

    /// <summary>
    /// Argument format, one token per argument: i (int), x (hex), o (octal), fd, s (string), in:N /
    /// out:N (buffer with its length in argument N), in#S / out#S / io#S (struct of S bytes),
    /// arr:N*S (array of argument-N elements of S bytes, read and written), p (pointer handled by
    /// the emulation). A trailing "=x" prints the result in hex, "=fd" marks a new descriptor.
    /// </summary>
    private static void Add(int nr, string name, string format, Func<LinuxProcess, ulong[], long>? handler = null)
    {
        var args = new List<ArgSpec>();
        bool hex = false, fd = false;
        foreach (var tok in format.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (tok == "=x") { hex = true; continue; }
            if (tok == "=fd") { fd = true; continue; }
            int colon = tok.IndexOfAny([':', '#']);
            string head = colon < 0 ? tok : tok[..colon];
            string tail = colon < 0 ? "" : tok[(colon + 1)..];
            int Num(string s) => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
            args.Add(head switch
            {
                "i" => new ArgSpec(ArgKind.Int),
                "x" => new ArgSpec(ArgKind.Hex),
                "o" => new ArgSpec(ArgKind.Octal),
                "fd" => new ArgSpec(ArgKind.Fd),
                "s" => new ArgSpec(ArgKind.String),
                "p" => new ArgSpec(ArgKind.Pointer),
                "in" when tok[colon] == ':' => new ArgSpec(ArgKind.In, Num(tail)),
                "out" when tok[colon] == ':' => new ArgSpec(ArgKind.Out, Num(tail)),
                "in" => new ArgSpec(ArgKind.InFixed, Num(tail)),
                "out" => new ArgSpec(ArgKind.OutFixed, Num(tail)),
                "io" => new ArgSpec(ArgKind.InOutFixed, Num(tail)),
                "arr" => new ArgSpec(ArgKind.InOutArray, Num(tail.Split('*')[0]), Num(tail.Split('*')[1])),
                _ => throw new InvalidOperationException($"bad syscall format token '{tok}' for {name}"),
            });
        }
        Table[nr] = new SyscallEntry(nr, name, [.. args], handler, hex, fd);
    }

    static Syscalls()
    {
        // ---- files: passed through ----
        Add(0, "read", "fd out:2 i");
        Add(1, "write", "fd in:2 i");
        Add(2, "open", "s x o =fd");
        Add(3, "close", "fd", (p, a) => p.Close(a));
        Add(4, "stat", "s out#144");
        Add(5, "fstat", "fd out#144");
        Add(6, "lstat", "s out#144");
        Add(7, "poll", "arr:1*8 i i");
        Add(8, "lseek", "fd i i");
        Add(16, "ioctl", "fd x p", (p, a) => p.Ioctl(a));
        Add(17, "pread64", "fd out:2 i i");
        Add(18, "pwrite64", "fd in:2 i i");
        Add(19, "readv", "fd p i", (p, a) => p.Vectored(19, a, write: false));
        Add(20, "writev", "fd p i", (p, a) => p.Vectored(20, a, write: true));
        Add(21, "access", "s o");
        Add(22, "pipe", "p", (p, a) => p.Pipe(a[0], 0));
        Add(32, "dup", "fd =fd");
        Add(33, "dup2", "fd i", (p, a) => p.Dup2(33, a));
        Add(40, "sendfile", "fd fd io#8 i");
        Add(72, "fcntl", "fd i x", (p, a) => p.Fcntl(a));
        Add(73, "flock", "fd i");
        Add(74, "fsync", "fd");
        Add(75, "fdatasync", "fd");
        Add(76, "truncate", "s i");
        Add(77, "ftruncate", "fd i");
        Add(78, "getdents", "fd out:2 i");
        Add(79, "getcwd", "out:1 i");
        Add(80, "chdir", "s");
        Add(81, "fchdir", "fd");
        Add(82, "rename", "s s");
        Add(83, "mkdir", "s o");
        Add(84, "rmdir", "s");
        Add(85, "creat", "s o =fd");
        Add(86, "link", "s s");
        Add(87, "unlink", "s");
        Add(88, "symlink", "s s");
        Add(89, "readlink", "s p i", (p, a) => p.Readlink(-100, a[0], a[1], a[2]));
        Add(90, "chmod", "s o");
        Add(91, "fchmod", "fd o");
        Add(92, "chown", "s i i");
        Add(93, "fchown", "fd i i");
        Add(94, "lchown", "s i i");
        Add(95, "umask", "o");
        Add(132, "utime", "s in#16");
        Add(133, "mknod", "s o i");
        Add(137, "statfs", "s out#120");
        Add(138, "fstatfs", "fd out#120");
        Add(162, "sync", "");
        Add(217, "getdents64", "fd out:2 i");
        Add(221, "fadvise64", "fd i i i");
        Add(235, "utimes", "s in#32");
        Add(257, "openat", "fd s x o =fd");
        Add(258, "mkdirat", "fd s o");
        Add(259, "mknodat", "fd s o i");
        Add(260, "fchownat", "fd s i i x");
        Add(261, "futimesat", "fd s in#32");
        Add(262, "newfstatat", "fd s out#144 x");
        Add(263, "unlinkat", "fd s x");
        Add(264, "renameat", "fd s fd s");
        Add(265, "linkat", "fd s fd s x");
        Add(266, "symlinkat", "s fd s");
        Add(267, "readlinkat", "fd s p i", (p, a) => p.Readlink((int)a[0], a[1], a[2], a[3]));
        Add(268, "fchmodat", "fd s o");
        Add(269, "faccessat", "fd s o");
        Add(271, "ppoll", "arr:1*8 in#16 in:4 i");
        Add(280, "utimensat", "fd s in#32 x");
        Add(285, "fallocate", "fd i i i");
        Add(292, "dup3", "fd i x", (p, a) => p.Dup2(292, a));
        Add(293, "pipe2", "p x", (p, a) => p.Pipe(a[0], (int)a[1]));
        Add(295, "preadv", "fd p i i", (p, a) => p.Vectored(295, a, write: false));
        Add(296, "pwritev", "fd p i i", (p, a) => p.Vectored(296, a, write: true));
        Add(316, "renameat2", "fd s fd s x");
        Add(326, "copy_file_range", "fd io#8 fd io#8 i x");
        Add(332, "statx", "fd s x x out#256");
        Add(439, "faccessat2", "fd s o x");

        // ---- time, identity, system information: passed through ----
        Add(24, "sched_yield", "");
        Add(35, "nanosleep", "in#16 out#16");
        Add(39, "getpid", "");
        Add(63, "uname", "out#390");
        Add(96, "gettimeofday", "out#16 out#8");
        Add(98, "getrusage", "i out#144");
        Add(99, "sysinfo", "out#112");
        Add(100, "times", "out#32");
        Add(102, "getuid", "");
        Add(104, "getgid", "");
        Add(107, "geteuid", "");
        Add(108, "getegid", "");
        Add(110, "getppid", "");
        Add(111, "getpgrp", "");
        Add(115, "getgroups", "i p", (p, a) => p.Pass(115, (long)a[0], p.Buffer(a[1], a[0] * 4, write: true)));
        Add(118, "getresuid", "out#4 out#4 out#4");
        Add(120, "getresgid", "out#4 out#4 out#4");
        Add(121, "getpgid", "i");
        Add(124, "getsid", "i");
        Add(201, "time", "out#8");
        Add(228, "clock_gettime", "i out#16");
        Add(229, "clock_getres", "i out#16");
        Add(230, "clock_nanosleep", "i x in#16 out#16");

        // ---- emulated ----
        Add(9, "mmap", "x i x x i i =x", (p, a) => p.Mmap(a));
        Add(10, "mprotect", "x i x", (p, a) => p.Mprotect(a));
        Add(11, "munmap", "x i", (p, a) => p.Munmap(a));
        Add(12, "brk", "x =x", (p, a) => p.Brk(a));
        Add(13, "rt_sigaction", "i p p i", (p, a) => p.RtSigaction(a));
        Add(14, "rt_sigprocmask", "i p p i", (p, a) => p.RtSigprocmask(a));
        Add(25, "mremap", "x i i x x =x", (p, a) => p.Mremap(a));
        Add(28, "madvise", "x i i", (p, a) => p.Madvise(a));
        Add(60, "exit", "i", (p, a) => p.Exit((int)a[0]));
        Add(61, "wait4", "i p x p", (p, a) => -Errno.ECHILD);
        Add(62, "kill", "i i", (p, a) => (long)a[0] == p.Pid || a[0] == 0 ? p.RaiseSignal((int)a[1]) : Native.Syscall(62, (long)a[0], (long)a[1]));
        Add(97, "getrlimit", "i out#16", (p, a) => p.GetRlimit((int)a[0], a[1]));
        Add(131, "sigaltstack", "p p", (p, a) => p.SigAltStack(a));
        Add(158, "arch_prctl", "x x", (p, a) => p.ArchPrctl(a));
        Add(160, "setrlimit", "i in#16", (p, a) => 0);
        Add(186, "gettid", "", (p, a) => p.Pid);
        Add(200, "tkill", "i i", (p, a) => (long)a[0] == p.Pid ? p.RaiseSignal((int)a[1]) : -Errno.ESRCH);
        Add(202, "futex", "x i i p x i", (p, a) => p.Futex(a));
        Add(203, "sched_setaffinity", "i i p", (p, a) => 0);
        Add(204, "sched_getaffinity", "i i p", (p, a) => p.SchedGetaffinity(a));
        Add(218, "set_tid_address", "x", (p, a) => p.Pid);
        Add(231, "exit_group", "i", (p, a) => p.Exit((int)a[0]));
        Add(234, "tgkill", "i i i", (p, a) => (long)a[1] == p.Pid ? p.RaiseSignal((int)a[2]) : -Errno.ESRCH);
        Add(273, "set_robust_list", "x i", (p, a) => 0);
        Add(302, "prlimit64", "i i p p", (p, a) => p.Prlimit64(a));
        Add(318, "getrandom", "p i x", (p, a) => p.Getrandom(a));
        Add(334, "rseq", "x i x x", (p, a) => -Errno.ENOSYS); // as on kernels before 4.18: libc carries on without it
        Add(56, "clone", "x x p p x", (p, a) => -Errno.ENOSYS);
        Add(57, "fork", "", (p, a) => -Errno.ENOSYS);
        Add(58, "vfork", "", (p, a) => -Errno.ENOSYS);
        Add(59, "execve", "s p p", (p, a) => -Errno.ENOSYS);
    }
}

/// <summary>Linux errno values used by the emulation.</summary>
internal static class Errno
{
    public const long EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12,
        EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOTTY = 25, ERANGE = 34, ENOSYS = 38,
        ETIMEDOUT = 110;

    private static readonly Dictionary<long, string> s_names = new()
    {
        [1] = "EPERM", [2] = "ENOENT", [3] = "ESRCH", [4] = "EINTR", [5] = "EIO", [6] = "ENXIO", [7] = "E2BIG",
        [8] = "ENOEXEC", [9] = "EBADF", [10] = "ECHILD", [11] = "EAGAIN", [12] = "ENOMEM", [13] = "EACCES",
        [14] = "EFAULT", [16] = "EBUSY", [17] = "EEXIST", [18] = "EXDEV", [19] = "ENODEV", [20] = "ENOTDIR",
        [21] = "EISDIR", [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE", [25] = "ENOTTY", [27] = "EFBIG",
        [28] = "ENOSPC", [29] = "ESPIPE", [30] = "EROFS", [32] = "EPIPE", [34] = "ERANGE", [36] = "ENAMETOOLONG",
        [38] = "ENOSYS", [39] = "ENOTEMPTY", [40] = "ELOOP", [61] = "ENODATA", [75] = "EOVERFLOW", [95] = "EOPNOTSUPP",
        [110] = "ETIMEDOUT",
    };

    public static string Name(long e) => s_names.TryGetValue(e, out var n) ? n : $"E{e}";

    public static string Describe(long e) => $"{Name(e)} ({System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage((int)e)})";
}

/// <summary>strace-like rendering of a call.</summary>
internal static class StraceFormat
{
    public static string Quote(ReadOnlySpan<byte> bytes, int max = 32)
    {
        var sb = new StringBuilder("\"");
        foreach (byte b in bytes[..Math.Min(bytes.Length, max)])
        {
            sb.Append(b switch
            {
                (byte)'\n' => "\\n", (byte)'\t' => "\\t", (byte)'\r' => "\\r", (byte)'"' => "\\\"", (byte)'\\' => "\\\\",
                >= 0x20 and < 0x7F => ((char)b).ToString(),
                _ => $"\\{Convert.ToString(b, 8)}",
            });
        }
        sb.Append('"');
        if (bytes.Length > max) sb.Append("...");
        return sb.ToString();
    }
}
