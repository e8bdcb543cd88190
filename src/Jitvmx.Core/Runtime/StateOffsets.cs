// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace Jitvmx;

/// <summary>Byte offsets into the context that translated code addresses (guest state first, run-time fields after).</summary>
internal static class StateOffsets
{
    private static int G(string f) => (int)Marshal.OffsetOf<GuestState>(f);
    private static int Seg(string seg) => G(seg) + (int)Marshal.OffsetOf<SegmentRegister>(nameof(SegmentRegister.Base));
    private static int C(string f) => (int)Marshal.OffsetOf<Runtime.CpuContext>(f);

    public static readonly int Rip = G(nameof(GuestState.Rip));
    public static readonly int Rflags = G(nameof(GuestState.Rflags));
    public static readonly int FsBase = Seg(nameof(GuestState.Fs));
    public static readonly int GsBase = Seg(nameof(GuestState.Gs));
    public static readonly int Mxcsr = G(nameof(GuestState.Mxcsr));
    public static readonly int Xmm = G(nameof(GuestState.Xmm));
    public static readonly int X87 = G(nameof(GuestState.X87));
    /// <summary>Offset of the software TLB itself, after the context in the same allocation (a cache line boundary).</summary>
    public static readonly unsafe int TlbInline = (sizeof(Runtime.CpuContext) + 63) & ~63;
    public static readonly int Remaining = C(nameof(Runtime.CpuContext.Remaining));
    public static readonly int StopRequested = C(nameof(Runtime.CpuContext.StopRequested));
    public static readonly int Pending = C(nameof(Runtime.CpuContext.Pending));
    public static readonly int GiveBack = C(nameof(Runtime.CpuContext.GiveBack));
    public static readonly int FlatAddend = C(nameof(Runtime.CpuContext.FlatAddend));
    public static readonly int ExitCookie = C(nameof(Runtime.CpuContext.ExitCookie));
    public static readonly int JumpCache = C(nameof(Runtime.CpuContext.JumpCache));
    public static readonly int IndirectSite = C(nameof(Runtime.CpuContext.IndirectSite));

    /// <summary>Offset of GPR <paramref name="index"/>.</summary>
    public static int Gpr(int index) => index * 8;

    /// <summary>Offset of XMM register <paramref name="index"/>.</summary>
    public static int XmmReg(int index) => Xmm + index * 16;
}
