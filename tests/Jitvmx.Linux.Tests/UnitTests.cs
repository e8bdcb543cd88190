// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux.Tests;

/// <summary>In-process tests of the address space and the CPUID model.</summary>
public class UnitTests
{
    [Fact]
    public void AddressSpaceSplitsAndMergesRegions()
    {
        using var vm = new VirtualMachine();
        using var mem = new AddressSpace(vm);
        const ulong A = 0x100000;
        mem.Map(A, A + 0x10000, MemoryPermissions.ReadWrite);
        Assert.Single(vm.MemoryRegions);
        Assert.True(mem.Protect(A + 0x4000, A + 0x5000, MemoryPermissions.Read));
        Assert.Equal(3, vm.MemoryRegions.Count);
        Assert.False(mem.CanAccess(A + 0x4000, 1, write: true));
        Assert.True(mem.CanAccess(A + 0x4000, 0x1000, write: false));
        Assert.False(mem.CanAccess(A + 0x3FFF, 2, write: true));
        Assert.True(mem.Protect(A + 0x4000, A + 0x5000, MemoryPermissions.ReadWrite));
        Assert.Single(vm.MemoryRegions); // merged back
        mem.Unmap(A + 0x2000, A + 0x3000);
        Assert.Equal(2, vm.MemoryRegions.Count);
        Assert.False(mem.IsMapped(A, A + 0x10000));
        Assert.False(mem.Protect(A, A + 0x10000, MemoryPermissions.Read));
        Assert.True(mem.IsFree(A + 0x2000, A + 0x3000));
        ulong? free = mem.FindFree(0x5000);
        Assert.Equal(AddressSpace.MmapTop - 0x5000, free);
        mem.Map(free!.Value, free.Value + 0x5000, MemoryPermissions.ReadWrite);
        Assert.Equal(AddressSpace.MmapTop - 0xA000, mem.FindFree(0x5000));
    }

    /// <summary>The host's flags ("VmFlags" in /proc/self/smaps) of the mapping holding <paramref name="address"/>.</summary>
    private static string[] HostVmFlags(nint address)
    {
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            if (dash > 0 && line.IndexOf(' ') > dash && ulong.TryParse(line.AsSpan(0, dash), System.Globalization.NumberStyles.HexNumber, null, out ulong lo)
                && ulong.TryParse(line.AsSpan(dash + 1, line.IndexOf(' ') - dash - 1), System.Globalization.NumberStyles.HexNumber, null, out ulong hi))
                inside = lo <= (ulong)address && (ulong)address < hi;
            else if (inside && line.StartsWith("VmFlags:", StringComparison.Ordinal))
                return line["VmFlags:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        throw new InvalidOperationException($"no host mapping holds 0x{address:x}");
    }

    [Fact]
    public unsafe void LargeAnonymousMappingsAskForHugePages()
    {
        // A kernel built without transparent huge pages rejects the advice, and has nothing to check.
        if (!Directory.Exists("/sys/kernel/mm/transparent_hugepage")) return;
        using var vm = new VirtualMachine();
        using var mem = new AddressSpace(vm);
        const ulong Big = 0x4000_0000, Small = 0x1000_0000;
        mem.Map(Big + 0x1000, Big + 0x600000, MemoryPermissions.ReadWrite);   // 2 MiB-aligned interior [Big + 2 MiB, Big + 6 MiB)
        mem.Map(Small, Small + 0x100000, MemoryPermissions.ReadWrite);         // no whole huge page
        Assert.Contains("hg", HostVmFlags((nint)mem.Host(Big + 0x200000)));
        Assert.Contains("hg", HostVmFlags((nint)mem.Host(Big + 0x5FF000)));
        Assert.DoesNotContain("hg", HostVmFlags((nint)mem.Host(Big + 0x1000)));
        Assert.DoesNotContain("hg", HostVmFlags((nint)mem.Host(Small)));
        // Unmapping puts fresh memory back without the advice; mapping again advises again.
        mem.Unmap(Big + 0x1000, Big + 0x600000);
        Assert.DoesNotContain("hg", HostVmFlags((nint)mem.Host(Big + 0x200000)));
        mem.Map(Big, Big + 0x400000, MemoryPermissions.ReadWrite);
        Assert.Contains("hg", HostVmFlags((nint)mem.Host(Big)));
    }

    [Fact]
    public unsafe void UnmappedMemoryComesBackZeroed()
    {
        using var vm = new VirtualMachine();
        using var mem = new AddressSpace(vm);
        mem.Map(0x200000, 0x201000, MemoryPermissions.ReadWrite);
        *mem.Host(0x200010) = 0x5A;
        vm.ReadPhysical(0x200010, new byte[1]);
        mem.Unmap(0x200000, 0x201000);
        mem.Map(0x200000, 0x201000, MemoryPermissions.ReadWrite);
        Assert.Equal(0, *mem.Host(0x200010));
    }

    [Fact]
    public void CpuidModelReportsVendorFeaturesAndBrand()
    {
        var m = CpuidModel.Default;
        var (max, b, c, d) = m.Query(0, 0);
        Assert.Equal(CpuidModel.MaxBasicLeaf, max);
        Assert.Equal("GenuineIntel", string.Concat(new[] { b, d, c }.Select(v => System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(v)))));
        var (_, _, ecx1, edx1) = m.Query(1, 0);
        Assert.Equal(m.Leaf1Edx, edx1);
        Assert.NotEqual(0u, edx1 & (1u << 26)); // SSE2: x86-64 baseline
        Assert.Equal((1u << 0) | (1u << 9) | (1u << 19) | (1u << 20), ecx1 & ((1u << 0) | (1u << 9) | (1u << 19) | (1u << 20))); // SSE3 SSSE3 SSE4.1 SSE4.2
        Assert.Equal(0u, ecx1 & (1u << 28)); // no AVX
        var (_, ebx7, _, _) = m.Query(7, 0);
        Assert.Equal(0u, ebx7 & (1u << 5)); // no AVX2
        var brand = string.Concat(Enumerable.Range(0, 3).Select(i => m.Query(0x80000002u + (uint)i, 0))
            .SelectMany(r => new[] { r.Eax, r.Ebx, r.Ecx, r.Edx }).Select(v => System.Text.Encoding.ASCII.GetString(BitConverter.GetBytes(v)))).TrimEnd('\0');
        Assert.Equal("Jitvmx virtual CPU", brand);
        Assert.Equal((0u, 0u, 0u, 0u), m.Query(0x40000000, 0));
    }
}
