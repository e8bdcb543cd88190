// SPDX-License-Identifier: MIT
namespace Jitvmx;

/// <summary>Permissions of a guest-physical mapping, as in an EPT entry.</summary>
[Flags]
public enum MemoryPermissions
{
    /// <summary>No access: every access is an EPT violation.</summary>
    None = 0,
    /// <summary>Data reads.</summary>
    Read = 1,
    /// <summary>Data writes.</summary>
    Write = 2,
    /// <summary>Instruction fetches.</summary>
    Execute = 4,
    /// <summary>Read and write.</summary>
    ReadWrite = Read | Write,
    /// <summary>Read and execute.</summary>
    ReadExecute = Read | Execute,
    /// <summary>Read, write and execute.</summary>
    All = Read | Write | Execute,
}

/// <summary>One mapping of guest-physical memory to host memory.</summary>
public sealed class GuestMemoryRegion
{
    internal GuestMemoryRegion(ulong gpa, ulong size, nint host, MemoryPermissions permissions, bool owned)
    {
        GuestPhysicalAddress = gpa;
        Size = size;
        HostAddress = host;
        Permissions = permissions;
        Owned = owned;
        CodePages = new byte[(size + 4095) >> 12];
    }

    /// <summary>First guest-physical address of the region (page aligned).</summary>
    public ulong GuestPhysicalAddress { get; }

    /// <summary>Size in bytes (a multiple of 4096).</summary>
    public ulong Size { get; }

    /// <summary>Host address of the region's first byte.</summary>
    public nint HostAddress { get; }

    /// <summary>What the guest may do with the region.</summary>
    public MemoryPermissions Permissions { get; internal set; }

    /// <summary>Last guest-physical address + 1.</summary>
    public ulong End => GuestPhysicalAddress + Size;

    internal bool Owned { get; }

    /// <summary>Per 4-KiB page: non-zero while translations read code from it (no writable TLB entry then).</summary>
    internal byte[] CodePages { get; }

    /// <summary>Whether <paramref name="gpa"/> lies in the region.</summary>
    public bool Contains(ulong gpa) => gpa - GuestPhysicalAddress < Size;
}

/// <summary>
/// The guest-physical address space: the EPT of a <see cref="VirtualMachine"/>. Regions never overlap.
/// Lookups are a binary search over a sorted array that is replaced, never mutated, on a change,
/// so vCPU threads read it without locks.
/// </summary>
internal sealed class PhysicalMemory : IDisposable
{
    private GuestMemoryRegion[] _regions = [];
    private readonly Lock _lock = new();

    public GuestMemoryRegion[] Regions => Volatile.Read(ref _regions);

    public GuestMemoryRegion Add(ulong gpa, ulong size, nint host, MemoryPermissions perms, bool owned)
    {
        lock (_lock)
        {
            var region = new GuestMemoryRegion(gpa, size, host, perms, owned);
            foreach (var r in _regions)
            {
                if (gpa < r.End && r.GuestPhysicalAddress < gpa + size)
                    throw new ArgumentException($"guest-physical range 0x{gpa:x}+0x{size:x} overlaps the mapping at 0x{r.GuestPhysicalAddress:x}+0x{r.Size:x}");
            }
            var list = new List<GuestMemoryRegion>(_regions) { region };
            list.Sort((a, b) => a.GuestPhysicalAddress.CompareTo(b.GuestPhysicalAddress));
            Volatile.Write(ref _regions, list.ToArray());
            return region;
        }
    }

    public void Remove(GuestMemoryRegion region)
    {
        lock (_lock)
        {
            var list = new List<GuestMemoryRegion>(_regions);
            if (!list.Remove(region)) throw new ArgumentException("the region is not mapped in this VM");
            Volatile.Write(ref _regions, list.ToArray());
            if (region.Owned) Memory.HostMemory.Free(region.HostAddress, region.Size);
        }
    }

    /// <summary>The region holding <paramref name="gpa"/>, or null.</summary>
    public GuestMemoryRegion? Find(ulong gpa)
    {
        var regions = Volatile.Read(ref _regions);
        int lo = 0, hi = regions.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            var r = regions[mid];
            if (gpa < r.GuestPhysicalAddress) hi = mid - 1;
            else if (gpa >= r.End) lo = mid + 1;
            else return r;
        }
        return null;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var r in _regions)
                if (r.Owned) Memory.HostMemory.Free(r.HostAddress, r.Size);
            _regions = [];
        }
    }
}
