// SPDX-License-Identifier: MIT
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Jitvmx;

/// <summary>A general-purpose register, numbered as in the x86 ModRM encoding.</summary>
public enum GuestRegister
{
    /// <summary>RAX.</summary>
    Rax, /// <summary>RCX.</summary>
    Rcx, /// <summary>RDX.</summary>
    Rdx, /// <summary>RBX.</summary>
    Rbx, /// <summary>RSP.</summary>
    Rsp, /// <summary>RBP.</summary>
    Rbp, /// <summary>RSI.</summary>
    Rsi, /// <summary>RDI.</summary>
    Rdi, /// <summary>R8.</summary>
    R8, /// <summary>R9.</summary>
    R9, /// <summary>R10.</summary>
    R10, /// <summary>R11.</summary>
    R11, /// <summary>R12.</summary>
    R12, /// <summary>R13.</summary>
    R13, /// <summary>R14.</summary>
    R14, /// <summary>R15.</summary>
    R15,
}

/// <summary>RFLAGS bits.</summary>
[Flags]
public enum RFlags : ulong
{
    /// <summary>No flag.</summary>
    None = 0,
    /// <summary>Carry.</summary>
    CF = 1 << 0,
    /// <summary>Reserved, always 1.</summary>
    Reserved1 = 1 << 1,
    /// <summary>Parity of the low byte.</summary>
    PF = 1 << 2,
    /// <summary>Auxiliary carry (bit 3 to 4).</summary>
    AF = 1 << 4,
    /// <summary>Zero.</summary>
    ZF = 1 << 6,
    /// <summary>Sign.</summary>
    SF = 1 << 7,
    /// <summary>Trap (single step).</summary>
    TF = 1 << 8,
    /// <summary>Interrupt enable.</summary>
    IF = 1 << 9,
    /// <summary>Direction.</summary>
    DF = 1 << 10,
    /// <summary>Overflow.</summary>
    OF = 1 << 11,
    /// <summary>Resume.</summary>
    RF = 1 << 16,
    /// <summary>Alignment check / access control.</summary>
    AC = 1 << 18,
    /// <summary>CPUID available.</summary>
    ID = 1 << 21,
    /// <summary>The six arithmetic status flags.</summary>
    Status = CF | PF | AF | ZF | SF | OF,
}

/// <summary>A segment register with its hidden part, as in the VMCS guest-state area.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct SegmentRegister
{
    /// <summary>Base address (the hidden part; for FS and GS the 64-bit base).</summary>
    public ulong Base;
    /// <summary>Limit in bytes.</summary>
    public uint Limit;
    /// <summary>Access rights in the VMCS layout (type, S, DPL, P, AVL, L, D/B, G; bit 16 = unusable).</summary>
    public uint AccessRights;
    /// <summary>Visible selector.</summary>
    public ushort Selector;
    private ushort _pad0;
    private uint _pad1;
}

/// <summary>A descriptor-table register (GDTR, IDTR).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct DescriptorTableRegister
{
    /// <summary>Linear base address.</summary>
    public ulong Base;
    /// <summary>Limit in bytes.</summary>
    public uint Limit;
    private uint _pad;
}

/// <summary>
/// The guest-state area: the architectural state of one vCPU at fixed offsets, shared by every
/// backend. It is valid and precise whenever <see cref="VirtualCpu.Run()"/> has returned.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct GuestState
{
    /// <summary>RAX.</summary>
    public ulong Rax;
    /// <summary>RCX.</summary>
    public ulong Rcx;
    /// <summary>RDX.</summary>
    public ulong Rdx;
    /// <summary>RBX.</summary>
    public ulong Rbx;
    /// <summary>RSP.</summary>
    public ulong Rsp;
    /// <summary>RBP.</summary>
    public ulong Rbp;
    /// <summary>RSI.</summary>
    public ulong Rsi;
    /// <summary>RDI.</summary>
    public ulong Rdi;
    /// <summary>R8.</summary>
    public ulong R8;
    /// <summary>R9.</summary>
    public ulong R9;
    /// <summary>R10.</summary>
    public ulong R10;
    /// <summary>R11.</summary>
    public ulong R11;
    /// <summary>R12.</summary>
    public ulong R12;
    /// <summary>R13.</summary>
    public ulong R13;
    /// <summary>R14.</summary>
    public ulong R14;
    /// <summary>R15.</summary>
    public ulong R15;
    /// <summary>Instruction pointer.</summary>
    public ulong Rip;
    /// <summary>RFLAGS, always materialised when the guest is stopped.</summary>
    public ulong Rflags;

    /// <summary>ES.</summary>
    public SegmentRegister Es;
    /// <summary>CS.</summary>
    public SegmentRegister Cs;
    /// <summary>SS.</summary>
    public SegmentRegister Ss;
    /// <summary>DS.</summary>
    public SegmentRegister Ds;
    /// <summary>FS; its <see cref="SegmentRegister.Base"/> is IA32_FS_BASE.</summary>
    public SegmentRegister Fs;
    /// <summary>GS; its <see cref="SegmentRegister.Base"/> is IA32_GS_BASE.</summary>
    public SegmentRegister Gs;
    /// <summary>LDTR.</summary>
    public SegmentRegister Ldtr;
    /// <summary>TR.</summary>
    public SegmentRegister Tr;
    /// <summary>GDTR.</summary>
    public DescriptorTableRegister Gdtr;
    /// <summary>IDTR.</summary>
    public DescriptorTableRegister Idtr;

    /// <summary>CR0.</summary>
    public ulong Cr0;
    /// <summary>CR2 (page-fault linear address).</summary>
    public ulong Cr2;
    /// <summary>CR3.</summary>
    public ulong Cr3;
    /// <summary>CR4.</summary>
    public ulong Cr4;
    /// <summary>CR8 (task priority).</summary>
    public ulong Cr8;
    /// <summary>IA32_EFER.</summary>
    public ulong Efer;
    /// <summary>XCR0.</summary>
    public ulong Xcr0;
    /// <summary>IA32_KERNEL_GS_BASE (swapped by SWAPGS).</summary>
    public ulong KernelGsBase;
    /// <summary>IA32_STAR.</summary>
    public ulong Star;
    /// <summary>IA32_LSTAR.</summary>
    public ulong Lstar;
    /// <summary>IA32_CSTAR.</summary>
    public ulong Cstar;
    /// <summary>IA32_FMASK.</summary>
    public ulong Sfmask;
    /// <summary>IA32_TSC_AUX (returned by RDTSCP in ECX).</summary>
    public ulong TscAux;
    /// <summary>IA32_SYSENTER_CS.</summary>
    public ulong SysenterCs;
    /// <summary>IA32_SYSENTER_ESP.</summary>
    public ulong SysenterEsp;
    /// <summary>IA32_SYSENTER_EIP.</summary>
    public ulong SysenterEip;
    /// <summary>IA32_PAT.</summary>
    public ulong Pat;
    /// <summary>IA32_APIC_BASE.</summary>
    public ulong ApicBase;

    /// <summary>MXCSR.</summary>
    public uint Mxcsr;
    private uint _pad0;

    /// <summary>XMM0–XMM15.</summary>
    public XmmRegisters Xmm;

    /// <summary>The x87 FPU (and MMX, which aliases its registers).</summary>
    public X87State X87;

    /// <summary>The general-purpose register <paramref name="r"/>.</summary>
    [UnscopedRef]
    public ref ulong this[GuestRegister r] => ref Unsafe.Add(ref Rax, (int)r);

    /// <summary>The flags as <see cref="RFlags"/>.</summary>
    public RFlags Flags
    {
        readonly get => (RFlags)Rflags;
        set => Rflags = (ulong)value | (ulong)RFlags.Reserved1;
    }

    /// <summary>Offset of a field in the structure, for code generators.</summary>
    internal static int OffsetOf(string field) => (int)Marshal.OffsetOf<GuestState>(field);

    /// <summary>Byte offset of a general-purpose register.</summary>
    internal static int GprOffset(int index) => index * 8;
}

/// <summary>One x87 data register: an 80-bit extended-precision value (MMX registers alias <see cref="Mantissa"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct X87Register
{
    /// <summary>Significand, explicit integer bit at bit 63 (or an MMX register's 64 bits).</summary>
    public ulong Mantissa;
    /// <summary>Sign (bit 15) and biased exponent (bits 14:0).</summary>
    public ushort SignExponent;
    private ushort _pad0;
    private uint _pad1;
}

/// <summary>Eight x87 data registers in physical order (R0–R7; ST(i) is R[(TOP + i) mod 8]).</summary>
[InlineArray(8)]
public struct X87Registers
{
    private X87Register _element0;
}

/// <summary>The x87 FPU state as FXSAVE describes it.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct X87State
{
    /// <summary>Data registers R0–R7.</summary>
    public X87Registers R;
    /// <summary>Control word (FCW); 0x037F after FNINIT.</summary>
    public ushort Control;
    /// <summary>Status word (FSW) with TOP in bits 13:11.</summary>
    public ushort Status;
    /// <summary>Full tag word (two bits per physical register: 0 valid, 1 zero, 2 special, 3 empty).</summary>
    public ushort Tag;
    /// <summary>Last instruction opcode (FOP).</summary>
    public ushort Opcode;
    private uint _pad;
    /// <summary>Last instruction pointer.</summary>
    public ulong InstructionPointer;
    /// <summary>Last data (operand) pointer.</summary>
    public ulong DataPointer;
}

/// <summary>Sixteen 128-bit vector registers.</summary>
[InlineArray(16)]
public struct XmmRegisters
{
    private Vector128<byte> _element0;
}
