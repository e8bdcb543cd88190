// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux;

/// <summary>
/// The guest's virtual address space. All of it lives in one host reservation (guest address +
/// <see cref="Base"/> = host address), so system-call buffers pass to the host without copying.
/// Each guest mapping (a VMA) is also one region of the VM's guest-physical map with the guest's
/// permissions, so the engine's memory path checks every access; mprotect/munmap split regions
/// and register the pieces again (the host memory stays: it is the reservation).
/// <para>
/// The reservation spans the VM's whole flat window (<see cref="VirtualMachine.FlatWindow"/> and its guards),
/// and each page has the host protection the guest's permissions call for: read-write where the guest may
/// write, read-only where it may only read or execute, inaccessible elsewhere. So reads and writes in compiled
/// code can rely on host faults (<see cref="VirtualMachine.HostReadFaults"/>, <see cref="VirtualMachine.HostWriteFaults"/>;
/// the VM also keeps writable pages that hold translated code read-only meanwhile), and a guest address up to
/// 1 TiB never reaches host memory outside the reservation. This program's own
/// writes into guest memory check the guest's permissions first (<see cref="CanAccess"/>); the loader fills
/// read-only segments through <see cref="Fill"/>.
/// </para>
/// </summary>
internal sealed unsafe class AddressSpace : IDisposable
{
    /// <summary>Size of the reservation: guest addresses are below this.</summary>
    public const ulong Size = 64UL << 30;
    public const ulong PageSize = 4096;
    /// <summary>Top of the initial stack (a guard page above it stays unmapped).</summary>
    public const ulong StackTop = Size - PageSize;
    public const ulong StackSize = 8UL << 20;
    /// <summary>mmap allocates top-down below this (1 GiB under the stack).</summary>
    public const ulong MmapTop = StackTop - StackSize - (1UL << 30);
    /// <summary>Where a static-PIE executable is loaded.</summary>
    public const ulong PieBase = 0x1_0000_0000;
    /// <summary>Lowest address mmap hands out without a hint (like vm.mmap_min_addr).</summary>
    public const ulong MinAddress = 0x10000;

    private readonly VirtualMachine _vm;
    private readonly List<Vma> _vmas = []; // sorted by Start, non-overlapping
    private bool _disposed;

    private sealed record Vma(ulong Start, ulong End, MemoryPermissions Perms, GuestMemoryRegion Region);

    public AddressSpace(VirtualMachine vm)
    {
        _vm = vm;
        nint reservation = Native.Mmap(0, unchecked((nuint)ReservationSize), 0, Native.MapPrivate | Native.MapAnonymous | Native.MapNoReserve, -1, 0);
        if (reservation == -1) throw new InvalidOperationException($"cannot reserve {ReservationSize >> 30} GiB of address space for the guest");
        Base = reservation + unchecked((nint)VirtualMachine.FlatWindowGuard);
    }

    /// <summary>Bytes of host address space reserved: the flat window and a guard on each side, inaccessible where nothing is mapped.</summary>
    public const ulong ReservationSize = VirtualMachine.FlatWindow + 2 * VirtualMachine.FlatWindowGuard;

    /// <summary>Host address of guest address 0.</summary>
    public nint Base { get; }

    /// <summary>Number of guest mappings.</summary>
    public int Count => _vmas.Count;

    public static ulong PageUp(ulong a) => (a + PageSize - 1) & ~(PageSize - 1);
    public static ulong PageDown(ulong a) => a & ~(PageSize - 1);

    /// <summary>Whether [start, end) lies inside the reservation.</summary>
    public static bool InRange(ulong start, ulong end) => start <= end && end <= Size;

    /// <summary>Host pointer of a guest address (no checks).</summary>
    public byte* Host(ulong guest) => (byte*)Base + guest;

    /// <summary>Maps [start, end) (page aligned) with fresh zeroed memory, replacing what was there.</summary>
    public void Map(ulong start, ulong end, MemoryPermissions perms)
    {
        Unmap(start, end);
        if (perms != MemoryPermissions.None) AdviseHugePages(start, end); // not a reservation the guest keeps inaccessible
        Insert(start, end, perms);
        HostProtect(start, end, perms, shared: false);
    }

    /// <summary>Bytes of a transparent huge page on x86-64.</summary>
    public const ulong HugePageSize = 2UL << 20;

    /// <summary>
    /// Asks the host for transparent huge pages over the 2 MiB-aligned interior of a fresh anonymous
    /// mapping, where the host leaves that to the program (THP "madvise" mode, Debian's default).
    /// Every guest access goes through the host's TLB as well as the software one: a guest that walks
    /// a large heap at random pays a host page walk on most accesses with 4 KiB pages. Only mappings
    /// spanning a whole huge page qualify (large heaps, stacks, big segments), so small mappings stay
    /// as they were; a large mapping the guest touches sparsely costs up to 2 MiB of memory per page
    /// touched, as under a kernel in THP "always" mode. Advice the host rejects (THP disabled)
    /// changes nothing.
    /// </summary>
    private void AdviseHugePages(ulong start, ulong end)
    {
        ulong lo = (start + HugePageSize - 1) & ~(HugePageSize - 1), hi = end & ~(HugePageSize - 1);
        if (hi > lo) Native.Madvise((nint)Host(lo), (nuint)(hi - lo), Native.MadvHugePage);
    }

    /// <summary>Maps [start, end) and fills it from a host file (MAP_FIXED over the reservation).</summary>
    public long MapFile(ulong start, ulong end, MemoryPermissions perms, int fd, long offset, bool shared)
    {
        Unmap(start, end);
        int prot = Native.ProtRead | ((perms & MemoryPermissions.Write) != 0 ? Native.ProtWrite : 0);
        nint r = Native.Mmap((nint)Host(start), (nuint)(end - start), prot,
            Native.MapFixed | (shared ? Native.MapShared : Native.MapPrivate), fd, offset);
        if (r == -1)
        {
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            Zero(start, end); // put anonymous reservation memory back
            return -errno;
        }
        Insert(start, end, perms);
        if (!Readable(perms)) HostProtect(start, end, perms, shared);
        return 0;
    }

    /// <summary>Copies guest memory between two mappings of permissions <paramref name="perms"/> (mremap), read-only and inaccessible ones included.</summary>
    public void Copy(ulong from, ulong to, ulong length, MemoryPermissions perms)
    {
        bool writable = (perms & MemoryPermissions.Write) != 0, readable = Readable(perms);
        if (!readable) Native.Mprotect((nint)Host(from), (nuint)length, Native.ProtRead);
        if (!writable) Native.Mprotect((nint)Host(to), (nuint)length, Native.ProtRead | Native.ProtWrite);
        Buffer.MemoryCopy(Host(from), Host(to), length, length);
        if (!readable) HostProtect(from, from + length, perms, shared: false);
        if (!writable) HostProtect(to, to + length, perms, shared: false);
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> at guest address <paramref name="at"/> whatever the guest's permissions
    /// (the loader's segment contents): the pages are host-writable only meanwhile.
    /// </summary>
    public void Fill(ulong at, ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        ulong start = PageDown(at), end = PageUp(at + (ulong)bytes.Length);
        Native.Mprotect((nint)Host(start), (nuint)(end - start), Native.ProtRead | Native.ProtWrite);
        bytes.CopyTo(new Span<byte>(Host(at), bytes.Length));
        foreach (var v in Overlapping(start, end))
            HostProtect(Math.Max(start, v.Start), Math.Min(end, v.End), v.Perms, shared: false);
    }

    private static bool Readable(MemoryPermissions perms) => (perms & (MemoryPermissions.Read | MemoryPermissions.Execute)) != 0;

    /// <summary>
    /// Host protection of [start, end) for guest permissions <paramref name="perms"/>: read-write where the
    /// guest may write, read-only where it may read or execute, inaccessible elsewhere. A shared file mapping
    /// may refuse write access (the file was opened read-only): then read-only.
    /// </summary>
    private void HostProtect(ulong start, ulong end, MemoryPermissions perms, bool shared)
    {
        nint at = (nint)Host(start);
        nuint len = (nuint)(end - start);
        if (!Readable(perms)) Native.Mprotect(at, len, 0);
        else if ((perms & MemoryPermissions.Write) == 0) Native.Mprotect(at, len, Native.ProtRead);
        else if (Native.Mprotect(at, len, Native.ProtRead | Native.ProtWrite) != 0 && shared) Native.Mprotect(at, len, Native.ProtRead);
    }

    /// <summary>Unmaps every page of [start, end); the host memory is reset to zero pages.</summary>
    public void Unmap(ulong start, ulong end)
    {
        bool any = false;
        foreach (var v in Overlapping(start, end))
        {
            any = true;
            _vm.Unmap(v.Region);
            _vmas.Remove(v);
            if (v.Start < start) Insert(v.Start, start, v.Perms, merge: false);
            if (v.End > end) Insert(end, v.End, v.Perms, merge: false);
        }
        if (any) Zero(start, end);
    }

    /// <summary>Changes the permissions of [start, end); false (ENOMEM) when part of it is not mapped.</summary>
    public bool Protect(ulong start, ulong end, MemoryPermissions perms)
    {
        if (!IsMapped(start, end)) return false;
        foreach (var v in Overlapping(start, end))
        {
            _vm.Unmap(v.Region);
            _vmas.Remove(v);
            if (v.Start < start) Insert(v.Start, start, v.Perms, merge: false);
            if (v.End > end) Insert(end, v.End, v.Perms, merge: false);
        }
        Insert(start, end, perms);
        // Keeps each piece's own kind of host memory: anonymous, or a file mapping that may be shared.
        HostProtect(start, end, perms, shared: true);
        return true;
    }

    /// <summary>Whether every page of [start, end) is mapped.</summary>
    public bool IsMapped(ulong start, ulong end)
    {
        ulong at = start;
        foreach (var v in Overlapping(start, end))
        {
            if (v.Start > at) return false;
            at = v.End;
        }
        return at >= end;
    }

    /// <summary>Whether no page of [start, end) is mapped.</summary>
    public bool IsFree(ulong start, ulong end) => InRange(start, end) && Overlapping(start, end).Count == 0;

    /// <summary>
    /// Whether the guest may access [addr, addr+len) as the kernel would on its behalf. A range about to be
    /// written (by the host kernel or this program) loses the translations of code in it first: they would be
    /// stale, and with <see cref="VirtualMachine.HostWriteFaults"/> their pages are read-only on the host until then.
    /// </summary>
    public bool CanAccess(ulong addr, ulong len, bool write)
    {
        if (len == 0) return true;
        ulong end = addr + len;
        if (end < addr || !InRange(addr, end)) return false;
        var need = write ? MemoryPermissions.Write : MemoryPermissions.Read;
        ulong at = addr;
        foreach (var v in Overlapping(addr, end))
        {
            if (v.Start > at || (v.Perms & need) == 0) return false;
            at = v.End;
        }
        if (at < end) return false;
        if (write) _vm.InvalidateTranslations(addr, len);
        return true;
    }

    /// <summary>Finds a free, page-aligned range of <paramref name="length"/> bytes, top-down below <see cref="MmapTop"/>.</summary>
    public ulong? FindFree(ulong length)
    {
        for (int i = _vmas.Count - 1; i >= -1; i--)
        {
            ulong gapStart = Math.Max(i >= 0 ? _vmas[i].End : 0, MinAddress);
            ulong gapEnd = Math.Min(i + 1 < _vmas.Count ? _vmas[i + 1].Start : Size, MmapTop);
            if (gapEnd > gapStart && gapEnd - gapStart >= length) return gapEnd - length;
        }
        return null;
    }

    /// <summary>Permissions of the mapping holding <paramref name="addr"/>, or null.</summary>
    public MemoryPermissions? PermissionsAt(ulong addr)
    {
        foreach (var v in Overlapping(addr, addr + 1)) return v.Perms;
        return null;
    }

    /// <summary>The mappings, for diagnostics: (start, end, permissions).</summary>
    public IEnumerable<(ulong Start, ulong End, MemoryPermissions Perms)> Mappings => _vmas.Select(v => (v.Start, v.End, v.Perms));

    private List<Vma> Overlapping(ulong start, ulong end)
    {
        var list = new List<Vma>();
        // Binary search for the first VMA whose End > start.
        int lo = 0, hi = _vmas.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (_vmas[mid].End <= start) lo = mid + 1; else hi = mid;
        }
        for (int i = lo; i < _vmas.Count && _vmas[i].Start < end; i++) list.Add(_vmas[i]);
        return list;
    }

    private void Insert(ulong start, ulong end, MemoryPermissions perms, bool merge = true)
    {
        if (merge)
        {
            // Coalesce with neighbours of the same permissions, so that a growing heap or many small
            // mmaps do not turn into thousands of VM regions. Code regions are left alone: re-registering
            // them would throw their translations away.
            int idx = IndexAfter(start);
            if ((perms & MemoryPermissions.Execute) == 0)
            {
                if (idx > 0 && _vmas[idx - 1].End == start && _vmas[idx - 1].Perms == perms)
                {
                    var left = _vmas[idx - 1];
                    _vm.Unmap(left.Region);
                    _vmas.RemoveAt(idx - 1);
                    start = left.Start;
                    idx--;
                }
                if (idx < _vmas.Count && _vmas[idx].Start == end && _vmas[idx].Perms == perms)
                {
                    var right = _vmas[idx];
                    _vm.Unmap(right.Region);
                    _vmas.RemoveAt(idx);
                    end = right.End;
                }
            }
        }
        var region = _vm.MapHostMemory(start, end - start, (nint)Host(start), perms);
        _vmas.Insert(IndexAfter(start), new Vma(start, end, perms, region));
    }

    private int IndexAfter(ulong start)
    {
        int lo = 0, hi = _vmas.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (_vmas[mid].Start < start) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    private void Zero(ulong start, ulong end)
    {
        // Replacing the pages with fresh anonymous ones zeroes them and drops any file mapping; unmapped, they are inaccessible.
        Native.Mmap((nint)Host(start), (nuint)(end - start), 0,
            Native.MapPrivate | Native.MapAnonymous | Native.MapNoReserve | Native.MapFixed, -1, 0);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var v in _vmas) _vm.Unmap(v.Region);
        _vmas.Clear();
        Native.Munmap(Base - unchecked((nint)VirtualMachine.FlatWindowGuard), unchecked((nuint)ReservationSize));
    }
}
