// SPDX-License-Identifier: MIT

using Iced.Intel;

namespace Jitvmx.Tests.Oracle;

/// <summary>General-purpose registers in the oracle protocol's order (the x86 encoding order).</summary>
public enum Gpr
{
    Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi,
    R8, R9, R10, R11, R12, R13, R14, R15,
}

/// <summary>Signal numbers (Linux x86-64) that an <see cref="OracleResult"/> can report.</summary>
public static class OracleSignal
{
    public const int None = 0;
    public const int Sigill = 4;   // #UD
    public const int Sigtrap = 5;  // INT3, single step
    public const int Sigbus = 7;   // alignment check, some #GP
    public const int Sigfpe = 8;   // #DE, unmasked x87/SSE exceptions
    public const int Sigsegv = 11; // #GP, #PF, #SS
    public const int Sigalrm = 14; // the per-case timeout expired
}

/// <summary>RFLAGS bits as they appear in oracle cases and results.</summary>
public static class OracleFlags
{
    public const ulong CF = 1UL << 0;
    public const ulong Reserved1 = 1UL << 1; // always set
    public const ulong PF = 1UL << 2;
    public const ulong AF = 1UL << 4;
    public const ulong ZF = 1UL << 6;
    public const ulong SF = 1UL << 7;
    public const ulong TF = 1UL << 8;
    public const ulong IF = 1UL << 9;        // always set in user mode
    public const ulong DF = 1UL << 10;
    public const ulong OF = 1UL << 11;
    public const ulong RF = 1UL << 16;       // set by the CPU in the RFLAGS image of most faults
    public const ulong AC = 1UL << 18;

    /// <summary>CF PF AF ZF SF OF: the arithmetic status flags.</summary>
    public const ulong Status = CF | PF | AF | ZF | SF | OF;

    /// <summary>The bits a case can choose (<see cref="Status"/> and DF); the oracle ignores the rest.</summary>
    public const ulong Input = Status | DF;

    /// <summary>The bits the host always sets while user code runs (bit 1 and IF).</summary>
    public const ulong HostForced = Reserved1 | IF;
}

/// <summary>
/// One oracle case: code placed at <see cref="HostOracle.CodeBase"/>, the initial 16 GPRs
/// (protocol order, see <see cref="Gpr"/>), initial RFLAGS (only <see cref="OracleFlags.Input"/>
/// bits are used) and the initial 4096-byte data window at <see cref="HostOracle.DataBase"/>.
/// </summary>
public sealed record OracleCase(byte[] Code, ulong[] Gprs, ulong Rflags, byte[] Memory)
{
    /// <summary>Builds a case whose code is assembled by <paramref name="emit"/> at <see cref="HostOracle.CodeBase"/>.</summary>
    /// <param name="gprs">Initial registers (16, protocol order); all zero if null.</param>
    /// <param name="memory">Initial data window (4096 bytes); all zero if null.</param>
    public static OracleCase FromAssembler(Action<Assembler> emit, ulong[]? gprs = null, ulong rflags = 0, byte[]? memory = null)
    {
        return new OracleCase(Assemble(emit), gprs ?? new ulong[16], rflags, memory ?? new byte[HostOracle.MemorySize]);
    }

    /// <summary>Assembles <paramref name="emit"/>'s instructions at <see cref="HostOracle.CodeBase"/>.</summary>
    public static byte[] Assemble(Action<Assembler> emit)
    {
        var asm = new Assembler(64);
        emit(asm);
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), HostOracle.CodeBase);
        return ms.ToArray();
    }

    /// <summary>Returns a copy of this case with one register changed.</summary>
    public OracleCase With(Gpr reg, ulong value)
    {
        var gprs = (ulong[])Gprs.Clone();
        gprs[(int)reg] = value;
        return this with { Gprs = gprs };
    }

    internal void Validate(int index)
    {
        if (Code is null || Gprs is null || Memory is null)
            throw new ArgumentException($"Oracle case {index}: Code, Gprs and Memory must not be null.");
        if (Gprs.Length != 16)
            throw new ArgumentException($"Oracle case {index}: Gprs has {Gprs.Length} entries, expected 16.");
        if (Memory.Length != HostOracle.MemorySize)
            throw new ArgumentException($"Oracle case {index}: Memory has {Memory.Length} bytes, expected {HostOracle.MemorySize}.");
        if (Code.Length > HostOracle.MaxCodeSize)
            throw new ArgumentException($"Oracle case {index}: Code has {Code.Length} bytes, at most {HostOracle.MaxCodeSize} allowed.");
    }
}

/// <summary>
/// What the host CPU did with one <see cref="OracleCase"/>.
/// <para><see cref="Signal"/> is 0 when the code ran to its end (then <see cref="RipOffset"/> is the
/// code length); otherwise it is one of <see cref="OracleSignal"/> and <see cref="RipOffset"/> is the
/// RIP the CPU reported, relative to <see cref="HostOracle.CodeBase"/>: the faulting instruction for
/// faults (#DE, #UD, #GP, #PF), the next instruction for traps (INT3), wherever the code was for a timeout.
/// <see cref="Gprs"/> and <see cref="Rflags"/> are the state at that point; <see cref="Rflags"/> is the
/// full value read (see <see cref="OracleFlags.HostForced"/> and <see cref="OracleFlags.RF"/>).</para>
/// </summary>
public sealed record OracleResult(int Signal, ulong RipOffset, ulong[] Gprs, ulong Rflags, byte[] Memory)
{
    /// <summary>True when the code ran to its end without a signal.</summary>
    public bool Completed => Signal == OracleSignal.None;

    public ulong this[Gpr reg] => Gprs[(int)reg];

    public override string ToString()
    {
        var regs = string.Join(" ", Enum.GetValues<Gpr>().Select(r => $"{r.ToString().ToLowerInvariant()}={Gprs[(int)r]:x}"));
        return $"OracleResult {{ Signal = {Signal}, RipOffset = {RipOffset:x}, Rflags = {Rflags:x}, {regs} }}";
    }
}
