// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace Jitvmx.Runtime;

/// <summary>One software-TLB entry. A tag is a page-aligned guest-linear address; an invalid tag has low bits set so it never matches.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TlbEntry
{
    /// <summary>Page address if loads may use <see cref="Addend"/>.</summary>
    public ulong ReadTag;
    /// <summary>Page address if stores may use <see cref="Addend"/> (never set for pages holding translated code).</summary>
    public ulong WriteTag;
    /// <summary>Host address minus guest-linear address for the page.</summary>
    public long Addend;
    private ulong _pad;

    public const ulong Invalid = ulong.MaxValue;
}

/// <summary>One entry of the indirect-branch cache: native code for a guest RIP, or <see cref="Function"/> 0.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct JumpCacheEntry
{
    public ulong Rip;
    public nint Function;
}

/// <summary>
/// What translated code sees: the guest state followed by run-time fields, in unmanaged memory at a
/// fixed address for the life of the vCPU. Offsets are part of the contract with every backend.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CpuContext
{
    public GuestState State;

    /// <summary>
    /// The software TLB (<see cref="TlbSize"/> entries). It follows the context in the same
    /// allocation, at <see cref="StateOffsets.TlbInline"/>, so compiled code addresses an entry from
    /// the context pointer it holds anyway and keeps no register for the table.
    /// </summary>
    public TlbEntry* Tlb;

    /// <summary>Guest instructions the vCPU may still retire before it must stop (budget or preemption timer).</summary>
    public long Remaining;

    /// <summary>Non-zero when another thread asked the vCPU to exit.</summary>
    public int StopRequested;

    /// <summary>Non-zero when a helper or the memory slow path stopped the region (an exit record is pending, or a restart).</summary>
    public int Pending;

    /// <summary>Instructions to give back to <see cref="Remaining"/> when a region stops mid-block (set by the slow path).</summary>
    public long GiveBack;

    /// <summary>GCHandle of the owning <see cref="VirtualCpu"/>.</summary>
    public nint Owner;

    /// <summary>
    /// Set by native region code that returns a successor slot: the cookie of the region the slot
    /// belongs to, which differs from the region the dispatcher entered when regions chained.
    /// </summary>
    public int ExitCookie;

    /// <summary>Indirect-branch cache of native code (<see cref="JumpCacheSize"/> entries): guest RIP to native entry, filled by the dispatcher.</summary>
    public JumpCacheEntry* JumpCache;

    /// <summary>
    /// Guest RIP of the instruction whose computed branch left the region last (RegionCode.Indirect),
    /// written by code below the last tier so that the dispatcher can record per-site targets.
    /// </summary>
    public ulong IndirectSite;

    /// <summary>
    /// <see cref="VirtualMachine.FlatAddend"/>, or 0: the addend every TLB entry that hits holds, which
    /// code compiled for such a VM adds without loading the entry's own.
    /// </summary>
    public long FlatAddend;

    public const int JumpCacheBits = 12;
    public const int JumpCacheSize = 1 << JumpCacheBits;

    /// <summary>The jump-cache slot of <paramref name="rip"/> (native code computes the same).</summary>
    public static int JumpCacheIndex(ulong rip) => (int)((rip ^ (rip >> JumpCacheBits)) & (JumpCacheSize - 1));

    public const int TlbBits = 13;
    public const int TlbSize = 1 << TlbBits;
    public const int PageBits = 12;
    public const ulong PageMask = ~0xFFFUL;

    public static int OffsetOf(string field) => (int)Marshal.OffsetOf<CpuContext>(field);
}
