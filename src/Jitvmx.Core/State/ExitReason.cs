// SPDX-License-Identifier: MIT
namespace Jitvmx;

/// <summary>
/// Basic VM-exit reasons. Values below 0x1000 are Intel's numbering (SDM Vol. 3C, Appendix C);
/// values from 0x1000 up are Jitvmx extensions for events VMX has no reason for.
/// </summary>
public enum ExitReason : uint
{
    /// <summary>0: an exception or NMI whose vector is set in the exception bitmap.</summary>
    ExceptionOrNmi = 0,
    /// <summary>1: an external interrupt.</summary>
    ExternalInterrupt = 1,
    /// <summary>2: a triple fault (an exception while delivering a double fault, or no way to deliver one).</summary>
    TripleFault = 2,
    /// <summary>7: the interrupt window opened.</summary>
    InterruptWindow = 7,
    /// <summary>9: task switch.</summary>
    TaskSwitch = 9,
    /// <summary>10: CPUID (always exits).</summary>
    Cpuid = 10,
    /// <summary>11: GETSEC.</summary>
    Getsec = 11,
    /// <summary>12: HLT with HLT exiting.</summary>
    Hlt = 12,
    /// <summary>13: INVD (always exits).</summary>
    Invd = 13,
    /// <summary>14: INVLPG with INVLPG exiting.</summary>
    Invlpg = 14,
    /// <summary>15: RDPMC with RDPMC exiting.</summary>
    Rdpmc = 15,
    /// <summary>16: RDTSC with RDTSC exiting.</summary>
    Rdtsc = 16,
    /// <summary>18: VMCALL (always exits).</summary>
    Vmcall = 18,
    /// <summary>19: VMCLEAR.</summary>
    Vmclear = 19,
    /// <summary>20: VMLAUNCH.</summary>
    Vmlaunch = 20,
    /// <summary>21: VMPTRLD.</summary>
    Vmptrld = 21,
    /// <summary>22: VMPTRST.</summary>
    Vmptrst = 22,
    /// <summary>23: VMREAD.</summary>
    Vmread = 23,
    /// <summary>24: VMRESUME.</summary>
    Vmresume = 24,
    /// <summary>25: VMWRITE.</summary>
    Vmwrite = 25,
    /// <summary>26: VMXOFF.</summary>
    Vmxoff = 26,
    /// <summary>27: VMXON.</summary>
    Vmxon = 27,
    /// <summary>28: MOV to or from a control register that the controls intercept.</summary>
    ControlRegisterAccess = 28,
    /// <summary>29: MOV DR.</summary>
    MovDr = 29,
    /// <summary>30: IN, OUT, INS or OUTS to an intercepted port.</summary>
    IoInstruction = 30,
    /// <summary>31: RDMSR of an intercepted MSR.</summary>
    Rdmsr = 31,
    /// <summary>32: WRMSR of an intercepted MSR.</summary>
    Wrmsr = 32,
    /// <summary>36: MWAIT.</summary>
    Mwait = 36,
    /// <summary>37: monitor trap flag.</summary>
    MonitorTrapFlag = 37,
    /// <summary>39: MONITOR.</summary>
    Monitor = 39,
    /// <summary>40: PAUSE with PAUSE exiting.</summary>
    Pause = 40,
    /// <summary>46: LGDT, LIDT, SGDT or SIDT with descriptor-table exiting.</summary>
    GdtrIdtrAccess = 46,
    /// <summary>47: LLDT, LTR, SLDT or STR with descriptor-table exiting.</summary>
    LdtrTrAccess = 47,
    /// <summary>48: an access to a guest-physical address that is unmapped or whose permissions forbid it.</summary>
    EptViolation = 48,
    /// <summary>50: INVEPT.</summary>
    Invept = 50,
    /// <summary>51: RDTSCP with RDTSC exiting.</summary>
    Rdtscp = 51,
    /// <summary>52: the VMX-preemption timer (counted in guest instructions) expired.</summary>
    PreemptionTimer = 52,
    /// <summary>53: INVVPID.</summary>
    Invvpid = 53,
    /// <summary>54: WBINVD or WBNOINVD with WBINVD exiting.</summary>
    Wbinvd = 54,
    /// <summary>55: XSETBV (always exits).</summary>
    Xsetbv = 55,
    /// <summary>57: RDRAND with RDRAND exiting.</summary>
    Rdrand = 57,
    /// <summary>58: INVPCID.</summary>
    Invpcid = 58,
    /// <summary>61: RDSEED with RDSEED exiting.</summary>
    Rdseed = 61,

    /// <summary>Jitvmx extension: SYSCALL with SYSCALL exiting (for user-mode front ends). RIP is at the SYSCALL.</summary>
    Syscall = 0x1000,
    /// <summary>Jitvmx extension: <see cref="VirtualCpu.RequestExit"/> was called.</summary>
    ExitRequested = 0x1001,
    /// <summary>Jitvmx extension: the instruction budget given to <see cref="VirtualCpu.Run(ulong)"/> ran out.</summary>
    InstructionBudget = 0x1002,
    /// <summary>Jitvmx extension: HLT without HLT exiting: the vCPU is halted with nothing to wake it. RIP is after the HLT.</summary>
    Halted = 0x1003,
    /// <summary>Jitvmx extension: INT n / INT3 / INTO with software-interrupt exiting (for user-mode front ends). RIP is at the instruction.</summary>
    SoftwareInterrupt = 0x1004,
}

/// <summary>Event type in the interruption-information field (SDM Table 25-17).</summary>
public enum InterruptionType : byte
{
    /// <summary>External interrupt.</summary>
    ExternalInterrupt = 0,
    /// <summary>Non-maskable interrupt.</summary>
    Nmi = 2,
    /// <summary>Hardware exception (faults, traps, aborts).</summary>
    HardwareException = 3,
    /// <summary>Software interrupt (INT n).</summary>
    SoftwareInterrupt = 4,
    /// <summary>Privileged software exception (INT1).</summary>
    PrivilegedSoftwareException = 5,
    /// <summary>Software exception (INT3, INTO).</summary>
    SoftwareException = 6,
}

/// <summary>Exception vectors.</summary>
public static class ExceptionVector
{
    /// <summary>#DE divide error.</summary>
    public const int DE = 0;
    /// <summary>#DB debug.</summary>
    public const int DB = 1;
    /// <summary>NMI.</summary>
    public const int NMI = 2;
    /// <summary>#BP breakpoint.</summary>
    public const int BP = 3;
    /// <summary>#OF overflow.</summary>
    public const int OF = 4;
    /// <summary>#BR bound range.</summary>
    public const int BR = 5;
    /// <summary>#UD invalid opcode.</summary>
    public const int UD = 6;
    /// <summary>#NM device not available.</summary>
    public const int NM = 7;
    /// <summary>#DF double fault.</summary>
    public const int DF = 8;
    /// <summary>#TS invalid TSS.</summary>
    public const int TS = 10;
    /// <summary>#NP segment not present.</summary>
    public const int NP = 11;
    /// <summary>#SS stack-segment fault.</summary>
    public const int SS = 12;
    /// <summary>#GP general protection.</summary>
    public const int GP = 13;
    /// <summary>#PF page fault.</summary>
    public const int PF = 14;
    /// <summary>#MF x87 floating-point error.</summary>
    public const int MF = 16;
    /// <summary>#AC alignment check.</summary>
    public const int AC = 17;
    /// <summary>#MC machine check.</summary>
    public const int MC = 18;
    /// <summary>#XM SIMD floating-point exception.</summary>
    public const int XM = 19;

    /// <summary>Whether the exception pushes an error code.</summary>
    public static bool HasErrorCode(int vector) => vector is DF or TS or NP or SS or GP or PF or AC;
}
