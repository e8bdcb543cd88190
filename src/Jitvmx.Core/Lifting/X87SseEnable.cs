// SPDX-License-Identifier: MIT
using Iced.Intel;

namespace Jitvmx.Lifting;

/// <summary>
/// The SDM's enable checks for x87, MMX, SSE and XSAVE instructions, decided at translation time.
/// </summary>
/// <remarks>
/// <para>CR0.MP/EM/TS, CR4.OSFXSR and CR4.OSXSAVE change rarely (at OS start-up, or on lazy-FPU
/// context switches), so instead of testing them at every instruction the translator bakes the
/// checks in: a region is translated for one <see cref="Mode"/> value, an instruction the mode
/// disables becomes the exception itself, and an enabled one costs nothing. The mode is part of a
/// region's identity: <c>VirtualCpu.Lookup</c> accepts a cached region only when its mode is the
/// vCPU's current one (otherwise it translates again). Successor slots need no check because the
/// mode only changes at points that return to the dispatcher's lookup: MOV to CR0/CR4 and CLTS end
/// their region through a helper, and a VMM changes the state only between runs.</para>
/// <para>The rules (SDM Vol. 1 §13.1, Vol. 3 §2.5 and the per-instruction exception tables): x87
/// instructions raise #NM when CR0.EM or CR0.TS is set, WAIT/FWAIT when CR0.MP and CR0.TS are;
/// MMX instructions (mm operands only, and EMMS) #UD when CR0.EM is set, else #NM when CR0.TS is;
/// SSE instructions (an XMM operand, or LDMXCSR/STMXCSR) #UD when CR0.EM is set or CR4.OSFXSR is
/// clear, else #NM when CR0.TS is; FXSAVE/FXRSTOR #NM when CR0.EM or CR0.TS is set; XSAVE, XSAVEOPT,
/// XSAVEC, XRSTOR and XSETBV #UD when CR4.OSXSAVE is clear, and the XSAVE family #NM when CR0.TS is set.
/// Not affected, as on hardware: CRC32, POPCNT, MOVNTI, the fences, prefetches and CLFLUSH.</para>
/// </remarks>
internal static class X87SseEnable
{
    /// <summary>Mode bits: CR0.MP, CR0.EM, CR0.TS, CR4.OSFXSR clear, CR4.OSXSAVE clear.</summary>
    private const int Mp = 1, Em = 2, Ts = 4, NoFxsr = 8, NoXsave = 16;

    /// <summary>The enable-relevant control-register bits of <paramref name="s"/>; 0 when everything is enabled.</summary>
    public static int Mode(in GuestState s) =>
        (int)((s.Cr0 >> 1) & 7) | (int)((~s.Cr4 >> 6) & NoFxsr) | (int)((~s.Cr4 >> 14) & NoXsave);

    /// <summary>The exception vector <paramref name="insn"/> raises instead of executing in <paramref name="mode"/>, or null.</summary>
    public static int? Fault(in Instruction insn, int mode)
    {
        if ((mode & (Em | Ts | NoFxsr | NoXsave)) == 0) return null;
        switch (Classify(insn))
        {
            case Kind.X87: return (mode & (Em | Ts)) != 0 ? ExceptionVector.NM : null;
            case Kind.Wait: return (mode & (Mp | Ts)) == (Mp | Ts) ? ExceptionVector.NM : null;
            case Kind.Mmx: return (mode & Em) != 0 ? ExceptionVector.UD : (mode & Ts) != 0 ? ExceptionVector.NM : null;
            case Kind.Sse: return (mode & (Em | NoFxsr)) != 0 ? ExceptionVector.UD : (mode & Ts) != 0 ? ExceptionVector.NM : null;
            case Kind.Fxsr: return (mode & (Em | Ts)) != 0 ? ExceptionVector.NM : null;
            case Kind.Xsave: return (mode & NoXsave) != 0 ? ExceptionVector.UD : (mode & Ts) != 0 ? ExceptionVector.NM : null;
            case Kind.Xsetbv: return (mode & NoXsave) != 0 ? ExceptionVector.UD : null;
            default: return null;
        }
    }

    private enum Kind { None, X87, Wait, Mmx, Sse, Fxsr, Xsave, Xsetbv }

    private static Kind Classify(in Instruction insn)
    {
        switch (insn.Mnemonic)
        {
            case Mnemonic.Wait: return Kind.Wait;
            case Mnemonic.Emms: return Kind.Mmx;
            case Mnemonic.Ldmxcsr or Mnemonic.Stmxcsr: return Kind.Sse;
            case Mnemonic.Fxsave or Mnemonic.Fxsave64 or Mnemonic.Fxrstor or Mnemonic.Fxrstor64: return Kind.Fxsr;
            case Mnemonic.Xsave or Mnemonic.Xsave64 or Mnemonic.Xsaveopt or Mnemonic.Xsaveopt64 or Mnemonic.Xsavec or Mnemonic.Xsavec64
                or Mnemonic.Xrstor or Mnemonic.Xrstor64:
                return Kind.Xsave;
            case Mnemonic.Xsetbv: return Kind.Xsetbv;
        }
        if (insn.Encoding != EncodingKind.Legacy) return Kind.None; // VEX-encoded BMI use GPRs only
        var op = insn.OpCode;
        // ESC opcodes D8-DF; register forms such as FLD1 (D9 E8) have a two-byte opcode.
        uint first = op.OpCodeLength == 2 ? op.OpCode >> 8 : op.OpCode;
        if (op.Table == OpCodeTableKind.Normal && first is >= 0xD8 and <= 0xDF) return Kind.X87;
        bool mm = false;
        for (int n = 0; n < insn.OpCount; n++)
        {
            if (insn.GetOpKind(n) != OpKind.Register) continue;
            var r = insn.GetOpRegister(n);
            if (r.IsXMM()) return Kind.Sse;
            mm |= r.IsMM();
        }
        return mm ? Kind.Mmx : Kind.None;
    }
}
