// SPDX-License-Identifier: MIT
namespace Jitvmx;

/// <summary>
/// VM-execution controls in the spirit of the VMCS: which guest instructions and events exit to
/// the VMM. An instruction whose exit is off behaves architecturally. Changes take effect at the
/// next <see cref="VirtualCpu.Run()"/>; translated code reads them at run time, so no translation
/// needs to be discarded when they change.
/// </summary>
public sealed class ExecutionControls
{
    private readonly byte[] _ioBitmap = new byte[65536 / 8];
    private readonly byte[] _msrBitmap = new byte[4096];

    /// <summary>HLT exits (reason 12). Off: the vCPU halts and <see cref="VirtualCpu.Run()"/> returns <see cref="ExitReason.Halted"/>.</summary>
    public bool HltExiting { get; set; } = true;
    /// <summary>RDTSC and RDTSCP exit (reasons 16 and 51). Off: they return the host TSC plus <see cref="TscOffset"/>.</summary>
    public bool RdtscExiting { get; set; }
    /// <summary>PAUSE exits (reason 40).</summary>
    public bool PauseExiting { get; set; }
    /// <summary>INVLPG exits (reason 14).</summary>
    public bool InvlpgExiting { get; set; }
    /// <summary>MOV to CR3 exits (reason 28).</summary>
    public bool Cr3LoadExiting { get; set; }
    /// <summary>MOV from CR3 exits (reason 28).</summary>
    public bool Cr3StoreExiting { get; set; }
    /// <summary>MOV to CR8 exits (reason 28).</summary>
    public bool Cr8LoadExiting { get; set; }
    /// <summary>MOV from CR8 exits (reason 28).</summary>
    public bool Cr8StoreExiting { get; set; }
    /// <summary>RDPMC exits (reason 15). Off: RDPMC returns 0.</summary>
    public bool RdpmcExiting { get; set; }
    /// <summary>WBINVD exits (reason 54).</summary>
    public bool WbinvdExiting { get; set; }
    /// <summary>MWAIT exits (reason 36).</summary>
    public bool MwaitExiting { get; set; }
    /// <summary>MONITOR exits (reason 39).</summary>
    public bool MonitorExiting { get; set; }
    /// <summary>RDRAND exits (reason 57).</summary>
    public bool RdrandExiting { get; set; }
    /// <summary>RDSEED exits (reason 61).</summary>
    public bool RdseedExiting { get; set; }

    /// <summary>Every I/O instruction exits, whatever the bitmaps say (used when <see cref="UseIoBitmaps"/> is off).</summary>
    public bool UnconditionalIoExiting { get; set; } = true;
    /// <summary>Consult the I/O bitmap: a port whose bit is set exits; others behave as an absent device (reads all ones, writes ignored).</summary>
    public bool UseIoBitmaps { get; set; }
    /// <summary>Consult the MSR bitmaps; with this off every RDMSR and WRMSR exits.</summary>
    public bool UseMsrBitmaps { get; set; }

    /// <summary>CR0 bits owned by the VMM: a MOV to CR0 that changes one of them from <see cref="Cr0ReadShadow"/> exits.</summary>
    public ulong Cr0GuestHostMask { get; set; }
    /// <summary>What the guest reads for the bits of CR0 set in <see cref="Cr0GuestHostMask"/>.</summary>
    public ulong Cr0ReadShadow { get; set; }
    /// <summary>CR4 bits owned by the VMM.</summary>
    public ulong Cr4GuestHostMask { get; set; }
    /// <summary>What the guest reads for the bits of CR4 set in <see cref="Cr4GuestHostMask"/>.</summary>
    public ulong Cr4ReadShadow { get; set; }

    /// <summary>Bit n set: guest exception with vector n exits (reason 0) instead of being delivered through the guest IDT.</summary>
    public uint ExceptionBitmap { get; set; }

    /// <summary>Added to the host TSC for RDTSC, RDTSCP and IA32_TSC reads.</summary>
    public long TscOffset { get; set; }

    /// <summary>Arms the preemption timer: the vCPU exits with reason 52 after exactly this many guest instructions. Null disarms it.</summary>
    public ulong? PreemptionTimer { get; set; }

    /// <summary>Jitvmx extension: SYSCALL exits with <see cref="ExitReason.Syscall"/> (for user-mode front ends) instead of jumping to IA32_LSTAR.</summary>
    public bool SyscallExiting { get; set; }
    /// <summary>Jitvmx extension: INT n, INT3 and INTO exit with <see cref="ExitReason.SoftwareInterrupt"/> instead of being delivered through the IDT.</summary>
    public bool SoftwareInterruptExiting { get; set; }

    /// <summary>Sets whether an access to <paramref name="port"/> exits when <see cref="UseIoBitmaps"/> is on.</summary>
    public void SetIoExiting(ushort port, bool exits)
    {
        if (exits) _ioBitmap[port >> 3] |= (byte)(1 << (port & 7));
        else _ioBitmap[port >> 3] &= (byte)~(1 << (port & 7));
    }

    /// <summary>Sets the I/O bitmap bit for every port in [first, last].</summary>
    public void SetIoExiting(ushort first, ushort last, bool exits)
    {
        for (int p = first; p <= last; p++) SetIoExiting((ushort)p, exits);
    }

    /// <summary>Whether an access of <paramref name="size"/> bytes at <paramref name="port"/> exits under the current controls.</summary>
    public bool IoExits(ushort port, int size)
    {
        if (!UseIoBitmaps) return UnconditionalIoExiting;
        for (int i = 0; i < size; i++)
        {
            int p = port + i;
            if (p > 0xFFFF) return true; // wraps: VMX exits
            if ((_ioBitmap[p >> 3] & (1 << (p & 7))) != 0) return true;
        }
        return false;
    }

    /// <summary>Sets whether RDMSR/WRMSR of <paramref name="msr"/> exit when <see cref="UseMsrBitmaps"/> is on. MSRs outside the two bitmap ranges always exit.</summary>
    public void SetMsrExiting(uint msr, bool read, bool write)
    {
        if (MsrBitIndex(msr) is not int bit) return;
        SetBit(bit, read);
        SetBit(2048 * 8 + bit, write);
    }

    /// <summary>Whether the access exits under the current controls.</summary>
    public bool MsrExits(uint msr, bool write)
    {
        if (!UseMsrBitmaps) return true;
        if (MsrBitIndex(msr) is not int bit) return true;
        int index = write ? 2048 * 8 + bit : bit;
        return (_msrBitmap[index >> 3] & (1 << (index & 7))) != 0;
    }

    private void SetBit(int index, bool value)
    {
        if (value) _msrBitmap[index >> 3] |= (byte)(1 << (index & 7));
        else _msrBitmap[index >> 3] &= (byte)~(1 << (index & 7));
    }

    // Layout of the 4-KiB MSR bitmap (SDM 25.6.9): read-low, read-high, write-low, write-high, 1 KiB each.
    private static int? MsrBitIndex(uint msr)
    {
        if (msr <= 0x1FFF) return (int)msr;
        if (msr is >= 0xC0000000 and <= 0xC0001FFF) return 1024 * 8 + (int)(msr - 0xC0000000);
        return null;
    }
}
