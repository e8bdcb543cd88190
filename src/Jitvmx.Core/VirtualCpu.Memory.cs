// SPDX-License-Identifier: MIT
using Jitvmx.Runtime;

namespace Jitvmx;

public sealed unsafe partial class VirtualCpu
{
    private readonly List<MmioAccess> _mmioLog = [];
    private int _mmioCursor;

    /// <summary>An MMIO access the VMM has completed, replayed when the instruction runs again.</summary>
    private readonly record struct MmioAccess(ulong Gpa, int Size, bool IsWrite, ulong Value);

    /// <summary>
    /// Completes an EPT-violation exit caused by a data read from unmapped guest-physical memory
    /// (MMIO): the instruction is re-executed with <paramref name="value"/> as the data read.
    /// </summary>
    public void CompleteMmioRead(ulong value)
    {
        Expect(ExitReason.EptViolation);
        if ((LastExit.Qualification & ExitQualification.EptRead) == 0)
            throw new InvalidOperationException("the last EPT violation was not a data read");
        _mmioLog.Add(new MmioAccess(LastExit.GuestPhysicalAddress, LastExit.AccessSize, false, value));
    }

    /// <summary>
    /// Completes an EPT-violation exit caused by a data write to unmapped guest-physical memory
    /// (MMIO): the VMM has taken <see cref="VmExit.WriteValue"/>; the instruction completes without the write.
    /// </summary>
    public void CompleteMmioWrite()
    {
        Expect(ExitReason.EptViolation);
        if ((LastExit.Qualification & ExitQualification.EptWrite) == 0)
            throw new InvalidOperationException("the last EPT violation was not a data write");
        _mmioLog.Add(new MmioAccess(LastExit.GuestPhysicalAddress, LastExit.AccessSize, true, 0));
    }

    /// <summary>Guest-physical address for a data access, or null (flat mode: identity).</summary>
    internal ulong? TranslateData(ulong linear, bool write) => linear;

    private GuestMemoryRegion? ResolvePage(ulong la, bool write, out ulong gpa)
    {
        gpa = TranslateData(la, write) ?? la;
        var r = Machine.Physical.Find(gpa);
        var need = write ? MemoryPermissions.Write : MemoryPermissions.Read;
        if (r is null || (r.Permissions & need) == 0) return null;
        return r;
    }

    private static byte* Host(GuestMemoryRegion r, ulong gpa) => (byte*)r.HostAddress + (long)(gpa - r.GuestPhysicalAddress);

    private void FillTlb(ulong la, GuestMemoryRegion r, ulong gpa)
    {
        ulong page = la & CpuContext.PageMask;
        ulong gpage = gpa & CpuContext.PageMask;
        ref var e = ref Entry(_ctx, la);
        bool code = r.CodePages[(gpage - r.GuestPhysicalAddress) >> 12] != 0;
        e.ReadTag = (r.Permissions & MemoryPermissions.Read) != 0 ? page : TlbEntry.Invalid;
        e.WriteTag = (r.Permissions & MemoryPermissions.Write) != 0 && !code ? page : TlbEntry.Invalid;
        e.Addend = (long)Host(r, gpage) - (long)page;
        // Code compiled for a flat VM uses the VM's addend for every hit: a page elsewhere must miss.
        if (Machine.FlatAddend is long flat && e.Addend != flat) e.ReadTag = e.WriteTag = TlbEntry.Invalid;
    }

    /// <summary>Puts <see cref="VirtualMachine.FlatAddend"/> where compiled code reads it, and drops TLB entries that may not keep to it.</summary>
    internal void SetFlatAddend(long addend)
    {
        _ctx->FlatAddend = addend;
        FlushTlb();
    }

    internal ulong SlowLoad(ulong address, int size, ulong rip, int giveBack)
    {
        ulong last = address + (ulong)size - 1;
        if (((address ^ last) & CpuContext.PageMask) == 0)
        {
            var r = ResolvePage(address, false, out ulong gpa);
            if (r is null) return MmioRead(address, gpa, size, rip, giveBack);
            FillTlb(address, r, gpa);
            return ReadHost(Host(r, gpa), size);
        }
        // Crosses a page: check both pages before reading.
        ulong second = last & CpuContext.PageMask;
        var r1 = ResolvePage(address, false, out ulong g1);
        var r2 = ResolvePage(second, false, out ulong g2);
        if (r1 is null) return Fault(address, g1, size, false, 0, rip, giveBack);
        if (r2 is null) return Fault(second, g2, size, false, 0, rip, giveBack);
        ulong v = 0;
        for (int i = 0; i < size; i++)
        {
            ulong la = address + (ulong)i;
            byte b = la < second ? *Host(r1, g1 + (ulong)i) : *Host(r2, g2 + (la - second));
            v |= (ulong)b << (8 * i);
        }
        return v;
    }

    internal void SlowStore(ulong address, int size, ulong value, ulong rip, int giveBack)
    {
        ulong last = address + (ulong)size - 1;
        bool cross = ((address ^ last) & CpuContext.PageMask) != 0;
        ulong second = last & CpuContext.PageMask;
        var r1 = ResolvePage(address, true, out ulong g1);
        if (r1 is null)
        {
            if (!cross) MmioWrite(address, g1, size, value, rip, giveBack);
            else Fault(address, g1, size, true, value, rip, giveBack);
            return;
        }
        GuestMemoryRegion? r2 = null;
        ulong g2 = 0;
        if (cross)
        {
            r2 = ResolvePage(second, true, out g2);
            if (r2 is null)
            {
                Fault(second, g2, size, true, value, rip, giveBack);
                return;
            }
        }
        // Writes to pages holding translated code discard those translations and restart the instruction.
        if (IsCode(r1, g1) || (r2 is not null && IsCode(r2, g2)))
        {
            Machine.Cache.InvalidatePhysical(g1 & CpuContext.PageMask, 4096);
            if (r2 is not null) Machine.Cache.InvalidatePhysical(g2 & CpuContext.PageMask, 4096);
            _ctx->State.Rip = rip;
            _ctx->GiveBack = giveBack;
            SetRestart();
            return;
        }
        if (!cross)
        {
            FillTlb(address, r1, g1);
            WriteHost(Host(r1, g1), size, value);
            return;
        }
        for (int i = 0; i < size; i++)
        {
            ulong la = address + (ulong)i;
            byte b = (byte)(value >> (8 * i));
            if (la < second) *Host(r1, g1 + (ulong)i) = b;
            else *Host(r2!, g2 + (la - second)) = b;
        }
    }

    /// <summary>Checks that every byte of a store is writable (or MMIO); records the exit on the first that is not.</summary>
    internal bool CheckWritable(ulong address, int size, ulong value, ulong rip, int giveBack)
    {
        ulong last = address + (ulong)size - 1;
        for (ulong page = address & CpuContext.PageMask; ; page += 4096)
        {
            ulong la = Math.Max(page, address);
            if (ResolvePage(la, true, out ulong gpa) is null && _mmioLog.Count == 0)
            {
                Fault(la, gpa, size, true, value, rip, giveBack);
                return false;
            }
            if (page == (last & CpuContext.PageMask)) return true;
        }
    }

    private static bool IsCode(GuestMemoryRegion r, ulong gpa) => r.CodePages[((gpa & CpuContext.PageMask) - r.GuestPhysicalAddress) >> 12] != 0;

    private ulong MmioRead(ulong la, ulong gpa, int size, ulong rip, int giveBack)
    {
        if (_mmioCursor < _mmioLog.Count)
        {
            var a = _mmioLog[_mmioCursor];
            if (a.Gpa == gpa && a.Size == size && !a.IsWrite)
            {
                _mmioCursor++;
                return a.Value;
            }
        }
        return Fault(la, gpa, size, false, 0, rip, giveBack);
    }

    private void MmioWrite(ulong la, ulong gpa, int size, ulong value, ulong rip, int giveBack)
    {
        if (_mmioCursor < _mmioLog.Count)
        {
            var a = _mmioLog[_mmioCursor];
            if (a.Gpa == gpa && a.Size == size && a.IsWrite)
            {
                _mmioCursor++;
                return;
            }
        }
        Fault(la, gpa, size, true, value, rip, giveBack);
    }

    private ulong Fault(ulong la, ulong gpa, int size, bool write, ulong value, ulong rip, int giveBack)
    {
        var region = Machine.Physical.Find(gpa);
        ulong q = (write ? ExitQualification.EptWrite : ExitQualification.EptRead)
            | PermissionBits(region) | ExitQualification.EptLinearValid | ExitQualification.EptTranslatedAccess;
        _ctx->State.Rip = rip;
        _ctx->GiveBack = giveBack;
        SetExit(new VmExit
        {
            Reason = ExitReason.EptViolation,
            Qualification = q,
            Rip = rip,
            GuestLinearAddress = la,
            GuestPhysicalAddress = gpa,
            AccessSize = size,
            WriteValue = write ? value : 0,
        });
        return 0;
    }

    private static ulong ReadHost(byte* p, int size) => size switch
    {
        1 => *p,
        2 => *(ushort*)p,
        4 => *(uint*)p,
        _ => *(ulong*)p,
    };

    private static void WriteHost(byte* p, int size, ulong v)
    {
        switch (size)
        {
            case 1: *p = (byte)v; break;
            case 2: *(ushort*)p = (ushort)v; break;
            case 4: *(uint*)p = (uint)v; break;
            default: *(ulong*)p = v; break;
        }
    }

    /// <summary>Reads guest-linear memory for a helper (no MMIO, no exits); false when any byte is not readable.</summary>
    internal bool TryReadLinear(ulong la, Span<byte> dst)
    {
        for (int i = 0; i < dst.Length; i++)
        {
            var r = ResolvePage(la + (ulong)i, false, out ulong gpa);
            if (r is null) return false;
            dst[i] = *Host(r, gpa);
        }
        return true;
    }

    /// <summary>Writes guest-linear memory for a helper; false when any byte is not writable. Code pages are invalidated.</summary>
    internal bool TryWriteLinear(ulong la, ReadOnlySpan<byte> src)
    {
        for (int i = 0; i < src.Length; i++)
            if (ResolvePage(la + (ulong)i, true, out _) is null) return false;
        for (int i = 0; i < src.Length; i++)
        {
            var r = ResolvePage(la + (ulong)i, true, out ulong gpa)!;
            if (IsCode(r, gpa)) Machine.Cache.InvalidatePhysical(gpa & CpuContext.PageMask, 4096);
            *Host(r, gpa) = src[i];
        }
        return true;
    }
}
