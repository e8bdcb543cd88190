// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace Jitvmx.Tests.Oracle;

/// <summary>
/// Where the host processor may legitimately differ from Jitvmx: behaviour the SDM leaves to the
/// implementation, on which Intel and AMD processors differ. Jitvmx (and the differential tests, written on
/// AMD EPYC) follow AMD; on a host that behaves otherwise, the tests compare such state only where both
/// behaviours agree (see <c>DiffHarness.ResultNormalizer</c>). Every property is false on AMD processors, so
/// there every check stays bit for bit.
/// </summary>
public static class HostQuirks
{
    /// <summary>The CPUID vendor string, e.g. "GenuineIntel" or "AuthenticAMD".</summary>
    public static string Vendor { get; } = ReadVendor();

    public static bool IsIntel => Vendor == "GenuineIntel";

    /// <summary>
    /// FOP is kept only for an x87 non-control instruction that had an unmasked exception (Intel, with
    /// FOP compatibility mode disabled: the default, and not readable at CPL 3). AMD keeps it for every
    /// non-control instruction.
    /// </summary>
    public static bool FopOnlyForUnmaskedException => IsIntel;

    /// <summary>
    /// FDP is updated only by an x87 non-control instruction that has an unmasked exception:
    /// CPUID.(EAX=7,ECX=0):EBX[6] (FDP_EXCPTN_ONLY). AMD keeps the last memory operand's address.
    /// </summary>
    public static bool FdpOnlyForUnmaskedException { get; } =
        X86Base.IsSupported && X86Base.CpuId(0, 0).Eax >= 7 && (X86Base.CpuId(7, 0).Ebx & (1 << 6)) != 0;

    /// <summary>
    /// XSAVE may report x87 state as in use (XSTATE_BV[0] = 1, writing its initial configuration) after
    /// x87 instructions left it in that configuration (Intel); AMD and Jitvmx report it as initial. The SDM
    /// allows either: XINUSE[i] = 1 does not mean that component i is out of its initial configuration.
    /// </summary>
    public static bool XsaveMayReportInitialX87InUse => IsIntel;

    /// <summary>
    /// A REP string instruction with a 32-bit address size and ECX = 0 still writes ECX, ESI and EDI,
    /// clearing the upper halves of RCX, RSI and RDI (Intel); AMD leaves the registers alone.
    /// </summary>
    public static bool A32RepWithZeroCountWritesRegisters => IsIntel;

    /// <summary>
    /// A fault in the middle of REPE/REPNE CMPS or SCAS restores RFLAGS to their value before the
    /// instruction (Intel, SDM vol. 2 "REP/REPE/REPZ/REPNE/REPNZ"); AMD reports the flags of the last
    /// completed iteration.
    /// </summary>
    public static bool RepCmpsScasFaultRestoresFlags => IsIntel;

    /// <summary>
    /// Normalises the FOP and FDP of an FNSTENV/FNSAVE image (32-bit format) at <paramref name="at"/> in the
    /// data window, as the x87 tests store it. See <see cref="NormalizeX87Pointers"/>.
    /// </summary>
    public static void NormalizeX87Env(byte[] memory, int at) => NormalizeX87Pointers(memory, at + 4, at + 0x12, at + 0x14, 4);

    /// <summary>The same for the legacy region of an FXSAVE (4-byte FDP) or FXSAVE64 (8-byte FDP) image.</summary>
    public static void NormalizeFxsave(byte[] memory, int at, bool rex64) => NormalizeX87Pointers(memory, at + 2, at + 6, at + 16, rex64 ? 8 : 4);

    /// <summary>
    /// Clears FOP and FDP where this host keeps them only for an unmasked exception and the image shows
    /// none: ES clear in the status word (with ES set, the last non-control instruction is the one that
    /// had it, as a later one would have raised #MF instead of running). FDP is also cleared when that
    /// instruction had no memory operand (ModRM.mod = 3 in FOP): the SDM leaves FDP undefined then.
    /// </summary>
    private static void NormalizeX87Pointers(byte[] memory, int fsw, int fop, int fdp, int fdpSize)
    {
        bool pending = (memory[fsw] & 0x80) != 0;
        if (FopOnlyForUnmaskedException && !pending) BinaryPrimitives.WriteUInt16LittleEndian(memory.AsSpan(fop), 0);
        bool memoryOperand = memory[fop] >> 6 != 3;
        if (FdpOnlyForUnmaskedException && !(pending && memoryOperand)) Array.Clear(memory, fdp, fdpSize);
    }

    /// <summary>
    /// Brings the x87 component of an XSAVE image at <paramref name="at"/> to one form where this host may
    /// report its initial configuration as in use (<see cref="XsaveMayReportInitialX87InUse"/>): either
    /// way it becomes XSTATE_BV[0] = 0 with the initial configuration in the legacy region (where XSAVEOPT
    /// and XSAVEC write nothing for a component they skip).
    /// </summary>
    public static void NormalizeXsaveX87(byte[] memory, int at)
    {
        if (!XsaveMayReportInitialX87InUse) return;
        var legacy = memory.AsSpan(at, 160);
        bool initial = BinaryPrimitives.ReadUInt16LittleEndian(legacy) == 0x037F && !legacy[2..24].ContainsAnyExcept((byte)0);
        for (int r = 0; r < 8; r++) initial &= !legacy.Slice(32 + 16 * r, 10).ContainsAnyExcept((byte)0);
        if ((memory[at + 512] & 1) != 0 && !initial) return;
        memory[at + 512] &= 0xFE;
        legacy[..24].Clear();
        legacy[32..].Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(legacy, 0x037F);
    }

    /// <summary>Clears the upper halves of RCX, RSI and RDI where <see cref="A32RepWithZeroCountWritesRegisters"/>.</summary>
    public static void NormalizeA32RepWithZeroCount(ulong[] gprs)
    {
        if (!A32RepWithZeroCountWritesRegisters) return;
        foreach (var r in (Gpr[])[Gpr.Rcx, Gpr.Rsi, Gpr.Rdi]) gprs[(int)r] &= 0xFFFF_FFFF;
    }

    private static string ReadVendor()
    {
        if (!X86Base.IsSupported) return "";
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<byte> s = stackalloc byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(s, ebx);
        BinaryPrimitives.WriteInt32LittleEndian(s[4..], edx);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], ecx);
        return System.Text.Encoding.ASCII.GetString(s);
    }
}
