// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace Jitvmx.Linux;

/// <summary>
/// Host system calls through libc. Jitvmx.Linux runs on an x86-64 Linux host, so a guest system
/// call that is passed through is the same call with the same number and structure layouts;
/// only guest pointers are translated.
/// </summary>
internal static partial class Native
{
    public const int ProtRead = 1, ProtWrite = 2;
    public const int MapShared = 1, MapPrivate = 2, MapFixed = 0x10, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    public const int MadvDontNeed = 4, MadvHugePage = 14, MadvNoHugePage = 15;

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint length, int prot);

    // glibc's syscall() is an assembly routine that just moves its integer arguments into the
    // kernel's registers, so declaring it with six fixed arguments is exact on x86-64.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long SyscallRaw(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    /// <summary>
    /// Fills <paramref name="buffer"/> from the host's getrandom (no OpenSSL start-up, unlike
    /// RandomNumberGenerator, which it falls back to where getrandom is refused, e.g. by seccomp).
    /// </summary>
    public static unsafe void Random(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
            for (int done = 0; done < buffer.Length;)
            {
                long n = Syscall(318, (long)(p + done), buffer.Length - done);
                if (n == -4 /* EINTR */) continue;
                if (n <= 0)
                {
                    System.Security.Cryptography.RandomNumberGenerator.Fill(buffer[done..]);
                    return;
                }
                done += (int)n;
            }
    }

    /// <summary>Performs a host system call; returns the result or −errno, as the kernel does.</summary>
    public static long Syscall(long number, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
    {
        long r = SyscallRaw(number, a1, a2, a3, a4, a5, a6);
        return r == -1 ? -Marshal.GetLastPInvokeError() : r;
    }
}
