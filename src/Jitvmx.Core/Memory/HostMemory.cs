// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace Jitvmx.Memory;

/// <summary>Page-granular host memory from the OS (mmap), for guest RAM and executable stubs.</summary>
internal static partial class HostMemory
{
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4;
    private const int MapPrivate = 0x02, MapAnonymous = 0x20, MapNoReserve = 0x4000;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(nint addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mprotect(nint addr, nuint length, int prot);

    /// <summary>Reserves and commits zeroed read/write memory; pages are backed lazily by the OS.</summary>
    public static nint Allocate(ulong size)
    {
        nint p = mmap(0, (nuint)size, ProtRead | ProtWrite, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if (p == -1)
            throw new OutOfMemoryException($"cannot reserve {size} bytes of guest memory (errno {Marshal.GetLastPInvokeError()})");
        return p;
    }

    /// <summary>Allocates a page of memory and makes it executable after <paramref name="code"/> is copied in.</summary>
    public static unsafe nint AllocateExecutable(ReadOnlySpan<byte> code)
    {
        nint p = mmap(0, 4096, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        if (p == -1) throw new OutOfMemoryException("cannot map an executable stub page");
        code.CopyTo(new Span<byte>((void*)p, 4096));
        if (mprotect(p, 4096, ProtRead | ProtExec) != 0)
            throw new InvalidOperationException($"mprotect failed (errno {Marshal.GetLastPInvokeError()})");
        return p;
    }

    /// <summary>
    /// Makes one host page read-write or read-only (<see cref="VirtualMachine.HostWriteFaults"/>); false when
    /// the host refuses (a shared mapping of a file opened read-only cannot become writable).
    /// </summary>
    public static bool ProtectPage(nint page, bool writable) => mprotect(page, 4096, writable ? ProtRead | ProtWrite : ProtRead) == 0;

    /// <summary>Returns memory from <see cref="Allocate"/>.</summary>
    public static void Free(nint p, ulong size)
    {
        if (p != 0) munmap(p, (nuint)size);
    }
}
