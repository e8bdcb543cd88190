// SPDX-License-Identifier: MIT
namespace Jitvmx;

/// <summary>
/// The VM-exit information fields: why <see cref="VirtualCpu.Run()"/> returned. Guest state is
/// precise at every exit: for faults and intercepted instructions RIP is at the instruction, for
/// traps after it, exactly as VMX reports them.
/// </summary>
public readonly record struct VmExit
{
    /// <summary>Basic exit reason.</summary>
    public ExitReason Reason { get; init; }

    /// <summary>Exit qualification in the SDM layout for <see cref="Reason"/> (see <see cref="ExitQualification"/>).</summary>
    public ulong Qualification { get; init; }

    /// <summary>Length of the instruction that caused the exit, for instruction-based exits; 0 otherwise.</summary>
    public int InstructionLength { get; init; }

    /// <summary>Guest RIP at the exit.</summary>
    public ulong Rip { get; init; }

    /// <summary>Guest-linear address (EPT violations, INVLPG, string I/O, page faults).</summary>
    public ulong GuestLinearAddress { get; init; }

    /// <summary>Guest-physical address (EPT violations).</summary>
    public ulong GuestPhysicalAddress { get; init; }

    /// <summary>VM-exit interruption information (valid bit 31, type bits 10:8, error-code-valid bit 11, vector bits 7:0).</summary>
    public uint InterruptionInfo { get; init; }

    /// <summary>VM-exit interruption error code, when <see cref="InterruptionInfo"/> says it is valid.</summary>
    public uint InterruptionErrorCode { get; init; }

    /// <summary>Jitvmx extension for EPT violations: size in bytes of the data access (1, 2, 4, 8 or 16).</summary>
    public int AccessSize { get; init; }

    /// <summary>Jitvmx extension for EPT violations on writes: the value the guest tried to write (low 64 bits).</summary>
    public ulong WriteValue { get; init; }

    /// <summary>Jitvmx extension for EPT violations on 16-byte writes: the high 64 bits of the value.</summary>
    public ulong WriteValueHigh { get; init; }

    /// <summary>Exception vector when <see cref="Reason"/> is <see cref="ExitReason.ExceptionOrNmi"/>.</summary>
    public int Vector => (int)(InterruptionInfo & 0xFF);

    /// <summary>Whether an error code was delivered with the exception.</summary>
    public bool HasErrorCode => (InterruptionInfo & (1u << 11)) != 0;

    /// <summary>Interruption type of the exception.</summary>
    public InterruptionType InterruptionType => (InterruptionType)((InterruptionInfo >> 8) & 7);

    /// <summary>Builds the interruption-information field.</summary>
    public static uint MakeInterruptionInfo(int vector, InterruptionType type, bool hasErrorCode) =>
        (uint)vector | ((uint)type << 8) | (hasErrorCode ? 1u << 11 : 0) | (1u << 31);

    /// <inheritdoc/>
    public override string ToString() => Reason switch
    {
        ExitReason.ExceptionOrNmi => $"{Reason} vector {Vector}{(HasErrorCode ? $" error 0x{InterruptionErrorCode:x}" : "")} at 0x{Rip:x}",
        ExitReason.EptViolation => $"{Reason} gpa 0x{GuestPhysicalAddress:x} qual 0x{Qualification:x} size {AccessSize} at 0x{Rip:x}",
        _ => $"{Reason} qual 0x{Qualification:x} len {InstructionLength} at 0x{Rip:x}",
    };
}

/// <summary>Decoding and encoding of exit qualifications (SDM Vol. 3C, 28.2.1).</summary>
public static class ExitQualification
{
    /// <summary>EPT violation bit 0: the access was a data read.</summary>
    public const ulong EptRead = 1 << 0;
    /// <summary>EPT violation bit 1: the access was a data write.</summary>
    public const ulong EptWrite = 1 << 1;
    /// <summary>EPT violation bit 2: the access was an instruction fetch.</summary>
    public const ulong EptFetch = 1 << 2;
    /// <summary>EPT violation bit 3: the mapping allowed reads.</summary>
    public const ulong EptReadable = 1 << 3;
    /// <summary>EPT violation bit 4: the mapping allowed writes.</summary>
    public const ulong EptWritable = 1 << 4;
    /// <summary>EPT violation bit 5: the mapping allowed instruction fetches.</summary>
    public const ulong EptExecutable = 1 << 5;
    /// <summary>EPT violation bit 7: the guest-linear-address field is valid.</summary>
    public const ulong EptLinearValid = 1 << 7;
    /// <summary>EPT violation bit 8: the access was to the translation of a linear address (not a paging-structure access).</summary>
    public const ulong EptTranslatedAccess = 1 << 8;

    /// <summary>I/O qualification: access size in bytes (bits 2:0 hold size − 1).</summary>
    public static int IoSize(ulong q) => (int)(q & 7) + 1;
    /// <summary>I/O qualification bit 3: IN (true) or OUT (false).</summary>
    public static bool IoIsIn(ulong q) => (q & 8) != 0;
    /// <summary>I/O qualification bit 4: string instruction (INS/OUTS).</summary>
    public static bool IoIsString(ulong q) => (q & 16) != 0;
    /// <summary>I/O qualification bit 5: REP prefixed.</summary>
    public static bool IoIsRep(ulong q) => (q & 32) != 0;
    /// <summary>I/O qualification bit 6: the port came from an immediate (not DX).</summary>
    public static bool IoIsImmediate(ulong q) => (q & 64) != 0;
    /// <summary>I/O qualification bits 31:16: the port.</summary>
    public static ushort IoPort(ulong q) => (ushort)(q >> 16);

    /// <summary>Builds an I/O qualification.</summary>
    public static ulong MakeIo(int size, bool isIn, bool isString, bool isRep, bool isImmediate, ushort port) =>
        (ulong)(uint)(size - 1) | (isIn ? 8UL : 0) | (isString ? 16UL : 0) | (isRep ? 32UL : 0) | (isImmediate ? 64UL : 0) | ((ulong)port << 16);

    /// <summary>Control-register access type (bits 5:4).</summary>
    public enum CrAccessType
    {
        /// <summary>MOV to CR.</summary>
        MovToCr = 0,
        /// <summary>MOV from CR.</summary>
        MovFromCr = 1,
        /// <summary>CLTS.</summary>
        Clts = 2,
        /// <summary>LMSW.</summary>
        Lmsw = 3,
    }

    /// <summary>CR-access qualification bits 3:0: the control register number.</summary>
    public static int CrNumber(ulong q) => (int)(q & 15);
    /// <summary>CR-access qualification bits 5:4: the access type.</summary>
    public static CrAccessType CrAccess(ulong q) => (CrAccessType)((q >> 4) & 3);
    /// <summary>CR-access qualification bits 11:8: the general-purpose register.</summary>
    public static GuestRegister CrGpr(ulong q) => (GuestRegister)((q >> 8) & 15);

    /// <summary>Builds a CR-access qualification.</summary>
    public static ulong MakeCrAccess(int cr, CrAccessType type, GuestRegister gpr) =>
        (ulong)(uint)cr | ((ulong)type << 4) | ((ulong)gpr << 8);
}
