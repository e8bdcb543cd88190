// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Runtime;
using static Jitvmx.Ir.IrType;
using static Jitvmx.Lifting.EmitterTable;

namespace Jitvmx.Lifting;

/// <summary>
/// MMX (and the SSE/SSE2/SSSE3 additions on mm registers). mmN aliases the significand of the
/// physical x87 register R[N], which lives only in guest state: reads and writes go through
/// GetState/SetState. A write sets the register's sign/exponent to 0xFFFF; every MMX instruction
/// sets TOP to 0 and marks every register in use, EMMS sets all tags empty. The arithmetic reuses the
/// XMM helpers of <see cref="SimdIntOps"/> on the zero-extended low lane. All memory accesses
/// happen before any state changes. Registered by <see cref="Code"/> so the XMM forms keep their
/// own emitters.
/// </summary>
[InstructionFamily]
internal static class Mmx
{
    // X87State layout: R[8] (16 bytes each), Control, Status, Tag.
    private static readonly int s_status = StateOffsets.X87 + 8 * 16 + 2;
    private static readonly int s_tag = StateOffsets.X87 + 8 * 16 + 4;

    private static readonly int s_unpackLo = SseMove.Op(nameof(SimdIntOps.Punpcklqdq));
    private static readonly int s_unpackHi = SseMove.Op(nameof(SimdIntOps.Punpckhqdq));
    private static readonly int s_pshuflw = SseMove.Op(nameof(SimdIntOps.Pshuflw));
    private static readonly int s_insert = SseMove.Op(nameof(SimdIntOps.Insert));
    private static readonly int s_extract = SseMove.Op(nameof(SimdIntOps.Extract));
    private static readonly int s_pmovmskb = SseMove.Op(nameof(SimdIntOps.Pmovmskb));
    private static readonly int s_pshufb = SseMove.Op(nameof(SimdIntOps.Pshufb));
    private static readonly int s_maskMerge = Helpers.Register(typeof(MmxOps), nameof(MmxOps.MaskMerge), pure: true);
    private static readonly int s_palignr = Helpers.Register(typeof(MmxOps), nameof(MmxOps.Palignr), pure: true);
    private static readonly int s_enter = Helpers.Register(typeof(MmxOps), nameof(MmxOps.Enter), pure: false);

    public static void RegisterFamily(EmitterTable t)
    {
        var forms = new Dictionary<Mnemonic, Emitter>();
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Paddb), Named(Mnemonic.Paddw), Named(Mnemonic.Paddd), Named(Mnemonic.Paddq), Named(Mnemonic.Psubb), Named(Mnemonic.Psubw),
            Named(Mnemonic.Psubd), Named(Mnemonic.Psubq),
            Named(Mnemonic.Paddsb), Named(Mnemonic.Paddsw), Named(Mnemonic.Paddusb), Named(Mnemonic.Paddusw), Named(Mnemonic.Psubsb), Named(Mnemonic.Psubsw),
            Named(Mnemonic.Psubusb), Named(Mnemonic.Psubusw),
            Named(Mnemonic.Pmullw), Named(Mnemonic.Pmulhw), Named(Mnemonic.Pmulhuw), Named(Mnemonic.Pmuludq), Named(Mnemonic.Pmaddwd), Named(Mnemonic.Psadbw),
            Named(Mnemonic.Pavgb), Named(Mnemonic.Pavgw),
            Named(Mnemonic.Pminub), Named(Mnemonic.Pmaxub), Named(Mnemonic.Pminsw), Named(Mnemonic.Pmaxsw), Named(Mnemonic.Pcmpeqb), Named(Mnemonic.Pcmpeqw),
            Named(Mnemonic.Pcmpeqd), Named(Mnemonic.Pcmpgtb), Named(Mnemonic.Pcmpgtw), Named(Mnemonic.Pcmpgtd),
            Named(Mnemonic.Punpcklbw), Named(Mnemonic.Punpcklwd), Named(Mnemonic.Punpckldq),
            Named(Mnemonic.Pmaddubsw), Named(Mnemonic.Pmulhrsw), Named(Mnemonic.Psignb), Named(Mnemonic.Psignw), Named(Mnemonic.Psignd)])
        {
            int op = SseMove.Op(name);
            forms[m] = (Lifter l, in Instruction i) => Lane(l, i, op);
        }
        forms[Mnemonic.Pand] = Lanes(nameof(SimdIntOps.And));
        forms[Mnemonic.Pandn] = Lanes(nameof(SimdIntOps.AndNot));
        forms[Mnemonic.Por] = Lanes(nameof(SimdIntOps.Or));
        forms[Mnemonic.Pxor] = Lanes(nameof(SimdIntOps.Xor));
        foreach (var (m, name) in (ValueTuple<Mnemonic, string>[])[
            (Mnemonic.Punpckhbw, "Punpcklbw"), (Mnemonic.Punpckhwd, "Punpcklwd"), (Mnemonic.Punpckhdq, "Punpckldq")])
        {
            int op = SseMove.Op(name);
            forms[m] = (Lifter l, in Instruction i) => High(l, i, op);
        }
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Packsswb), Named(Mnemonic.Packssdw), Named(Mnemonic.Packuswb), Named(Mnemonic.Phaddw), Named(Mnemonic.Phaddd), Named(Mnemonic.Phaddsw),
            Named(Mnemonic.Phsubw), Named(Mnemonic.Phsubd), Named(Mnemonic.Phsubsw)])
        {
            int op = SseMove.Op(name);
            forms[m] = (Lifter l, in Instruction i) => Joined(l, i, op);
        }
        foreach (var (m, name) in ((Mnemonic, string)[])[Named(Mnemonic.Pabsb), Named(Mnemonic.Pabsw), Named(Mnemonic.Pabsd)])
        {
            int op = SseMove.Op(name);
            forms[m] = (Lifter l, in Instruction i) => Unary(l, i, op);
        }
        foreach (var (m, name) in ((Mnemonic, string)[])[
            Named(Mnemonic.Psllw), Named(Mnemonic.Pslld), Named(Mnemonic.Psllq), Named(Mnemonic.Psrlw), Named(Mnemonic.Psrld), Named(Mnemonic.Psrlq),
            Named(Mnemonic.Psraw), Named(Mnemonic.Psrad)])
        {
            int op = SseMove.Op(name);
            forms[m] = (Lifter l, in Instruction i) => Shift(l, i, op);
        }
        forms[Mnemonic.Movd] = Move;
        forms[Mnemonic.Movq] = Move;
        forms[Mnemonic.Movntq] = Move;
        forms[Mnemonic.Movq2dq] = Move;
        forms[Mnemonic.Movdq2q] = Move;
        forms[Mnemonic.Pshufw] = Pshufw;
        forms[Mnemonic.Pinsrw] = Pinsrw;
        forms[Mnemonic.Pextrw] = Pextrw;
        forms[Mnemonic.Pmovmskb] = Pmovmskb;
        forms[Mnemonic.Pshufb] = Pshufb;
        forms[Mnemonic.Palignr] = Palignr;
        forms[Mnemonic.Maskmovq] = Maskmovq;

        foreach (var c in Enum.GetValues<Code>())
            if (forms.TryGetValue(c.Mnemonic(), out var e) && IsMmxForm(c)) t.Add(c, Waiting(e)); // name check last: it formats the code
        t.Add(Mnemonic.Emms, Waiting(Emms));
    }

    /// <summary>Whether a legacy-encoded code has an mm operand (xmm tokens excluded).</summary>
    private static bool IsMmxForm(Code c)
    {
        var parts = c.ToString().Split('_');
        if (parts[0].StartsWith('V') || parts[0] is "EVEX" or "XOP" or "D3NOW" or "MVEX") return false;
        return parts.Skip(1).Any(p => p == "mm" || p.StartsWith("mmm", StringComparison.Ordinal));
    }

    /// <summary>MMX instructions (EMMS included) first raise #MF for a pending unmasked x87 exception.</summary>
    private static Emitter Waiting(Emitter e) => (Lifter l, in Instruction i) =>
    {
        l.RaiseExceptionIf(l.B.BitOf(l.B.GetState(I16, s_status), 7), ExceptionVector.MF);
        e(l, i);
    };

    private static Emitter Lanes(string name)
    {
        int op = SseMove.Op(name);
        return (Lifter l, in Instruction i) => Lane(l, i, op);
    }

    // ================= register plumbing =================

    private static int Offset(Register r) => StateOffsets.X87 + (r - Register.MM0) * 16;

    private static IrValue Get(Lifter l, Register r) => l.B.GetState(I64, Offset(r));

    /// <summary>Operand <paramref name="n"/> as 64 bits: mm register, XMM low quadword, or memory/GPR zero-extended.</summary>
    private static IrValue Src(Lifter l, in Instruction i, int n)
    {
        if (i.GetOpKind(n) == OpKind.Register && i.GetOpRegister(n).IsMM()) return Get(l, i.GetOpRegister(n));
        var v = l.ReadOp(i, n, i.GetOpKind(n) == OpKind.Register && i.GetOpRegister(n).IsXMM() ? I64 : Lifter.OpType(i, n));
        return v.Type == I64 ? v : l.B.ZExt(v, I64);
    }

    /// <summary>Every MMX instruction but EMMS: TOP = 0, all registers in use (see <see cref="MmxOps.Enter"/>).</summary>
    private static void Touch(Lifter l) => l.B.Call(s_enter, IrType.Void);

    /// <summary>Writes mmN with the exponent field all ones; its contents then classify as special (tag 2).</summary>
    private static void Set(Lifter l, Register r, IrValue v)
    {
        var b = l.B;
        Touch(l);
        b.SetState(Offset(r), v);
        b.SetState(Offset(r) + 8, b.Const(I16, 0xFFFF));
        int shift = (r - Register.MM0) * 2;
        b.SetState(s_tag, b.Or(b.And(b.GetState(I16, s_tag), b.Const(I16, ~(3u << shift) & 0xFFFF)), b.Const(I16, 2u << shift)));
    }

    private static IrValue Wide(Lifter l, IrValue v) => l.B.ZExt(v, V128);

    private static IrValue Low(Lifter l, IrValue v) => l.B.Trunc(v, I64);

    // ================= shapes =================

    /// <summary>Lane-wise: mm = op(mm, mm/m64) in the low lane.</summary>
    private static void Lane(Lifter l, in Instruction i, int op)
    {
        var src = Src(l, i, 1);
        Set(l, i.Op0Register, Low(l, l.CallPure(op, V128, Wide(l, Get(l, i.Op0Register)), Wide(l, src))));
    }

    /// <summary>Unpack high: the XMM unpack-low of the two quadwords, whose high half is the interleaved upper halves.</summary>
    private static void High(Lifter l, in Instruction i, int op)
    {
        var src = Src(l, i, 1);
        var v = l.CallPure(op, V128, Wide(l, Get(l, i.Op0Register)), Wide(l, src));
        Set(l, i.Op0Register, Low(l, l.CallPure(s_unpackHi, V128, v, v)));
    }

    /// <summary>Packs and horizontal ops: dst and src joined into one XMM value x, result = low quadword of op(x, x).</summary>
    private static void Joined(Lifter l, in Instruction i, int op)
    {
        var src = Src(l, i, 1);
        var x = l.CallPure(s_unpackLo, V128, Wide(l, Get(l, i.Op0Register)), Wide(l, src));
        Set(l, i.Op0Register, Low(l, l.CallPure(op, V128, x, x)));
    }

    private static void Unary(Lifter l, in Instruction i, int op) =>
        Set(l, i.Op0Register, Low(l, l.CallPure(op, V128, Wide(l, Src(l, i, 1)))));

    /// <summary>Element shifts by imm8 or by the 64-bit mm/m64 count.</summary>
    private static void Shift(Lifter l, in Instruction i, int op)
    {
        var count = i.Op1Kind == OpKind.Immediate8 ? l.B.I64(i.Immediate8) : Src(l, i, 1);
        Set(l, i.Op0Register, Low(l, l.CallPure(op, V128, Wide(l, Get(l, i.Op0Register)), count)));
    }

    // ================= moves =================

    /// <summary>MOVD/MOVQ/MOVNTQ/MOVQ2DQ/MOVDQ2Q in every direction.</summary>
    private static void Move(Lifter l, in Instruction i)
    {
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsMM())
        {
            Set(l, i.Op0Register, Src(l, i, 1));
            return;
        }
        var v = Get(l, i.Op1Register);
        if (i.Op0Kind == OpKind.Register && i.Op0Register.IsXMM()) l.WriteOp(i, 0, v); // MOVQ2DQ zero-extends
        else
        {
            var t = Lifter.OpType(i, 0);
            l.WriteOp(i, 0, t == I64 ? v : l.B.Trunc(v, t));
        }
        Touch(l);
    }

    // ================= SSE / SSSE3 additions =================

    private static void Pshufw(Lifter l, in Instruction i) =>
        Set(l, i.Op0Register, Low(l, l.CallPure(s_pshuflw, V128, Wide(l, Src(l, i, 1)), l.B.I8(i.Immediate8))));

    private static void Pinsrw(Lifter l, in Instruction i)
    {
        var v = Src(l, i, 1);
        Set(l, i.Op0Register, Low(l, l.CallPure(s_insert, V128, Wide(l, Get(l, i.Op0Register)), v, l.B.I8(2), l.B.I8(i.Immediate8 & 3u))));
    }

    private static void Pextrw(Lifter l, in Instruction i)
    {
        var v = l.CallPure(s_extract, I64, Wide(l, Get(l, i.Op1Register)), l.B.I8(2), l.B.I8(i.Immediate8 & 3u));
        var t = Lifter.OpType(i, 0);
        l.WriteOp(i, 0, t == I64 ? v : l.B.Trunc(v, t));
        Touch(l);
    }

    private static void Pmovmskb(Lifter l, in Instruction i)
    {
        var m = l.CallPure(s_pmovmskb, I32, Wide(l, Get(l, i.Op1Register)));
        l.WriteOp(i, 0, Lifter.OpType(i, 0) == I64 ? l.B.ZExt(m, I64) : m);
        Touch(l);
    }

    /// <summary>PSHUFB mm: index bits 2:0 (bit 7 zeroes), so bit 3 is cleared before the XMM shuffle.</summary>
    private static void Pshufb(Lifter l, in Instruction i)
    {
        var idx = l.B.And(Src(l, i, 1), l.B.I64(0x8787878787878787));
        Set(l, i.Op0Register, Low(l, l.CallPure(s_pshufb, V128, Wide(l, Get(l, i.Op0Register)), Wide(l, idx))));
    }

    private static void Palignr(Lifter l, in Instruction i)
    {
        var src = Src(l, i, 1);
        Set(l, i.Op0Register, l.CallPure(s_palignr, I64, Get(l, i.Op0Register), src, l.B.I8(i.Immediate8)));
    }

    /// <summary>
    /// MASKMOVQ: byte-masked store to DS:rDI, done as an 8-byte read-merge-write (the whole
    /// quadword must be accessible even where the mask is clear).
    /// </summary>
    private static void Maskmovq(Lifter l, in Instruction i)
    {
        var b = l.B;
        var rdi = l.Gpr(GuestRegister.Rdi);
        if (i.Op0Kind == OpKind.MemorySegEDI) rdi = b.ZExt(b.Trunc(rdi, I32), I64);
        var addr = l.AddSegmentBase(i.MemorySegment, rdi);
        var old = l.Load(I64, addr);
        l.Store(addr, l.CallPure(s_maskMerge, I64, old, Get(l, i.Op1Register), Get(l, i.Op2Register)));
        Touch(l);
    }

    /// <summary>EMMS: all tags empty (TOP unchanged).</summary>
    private static void Emms(Lifter l, in Instruction i) => l.B.SetState(s_tag, l.B.Const(I16, 0xFFFF));
}
