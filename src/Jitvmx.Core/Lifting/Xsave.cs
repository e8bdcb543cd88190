// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Runtime;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// XSAVE, XSAVEOPT, XSAVEC and XRSTOR (and their 64-bit forms) for the x87 (component 0) and SSE
/// (component 1) state: legacy region as FXSAVE, XSAVE header (XSTATE_BV, XCOMP_BV), requested-feature
/// bitmap EDX:EAX ∧ XCR0, standard and compacted XRSTOR with init of components whose XSTATE_BV bit is clear.
/// XINUSE is computed from the state (a component counts as in use unless it is in its initial configuration).
/// </summary>
[InstructionFamily]
internal static class Xsave
{
    private enum Kind { Standard, Opt, Compact }

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add((Lifter l, in Instruction i) => Save(l, i, Kind.Standard), Mnemonic.Xsave, Mnemonic.Xsave64);
        t.Add((Lifter l, in Instruction i) => Save(l, i, Kind.Opt), Mnemonic.Xsaveopt, Mnemonic.Xsaveopt64);
        t.Add((Lifter l, in Instruction i) => Save(l, i, Kind.Compact), Mnemonic.Xsavec, Mnemonic.Xsavec64);
        t.Add(Restore, Mnemonic.Xrstor, Mnemonic.Xrstor64);
    }

    private static int G(string f) => (int)Marshal.OffsetOf<GuestState>(f);
    private static readonly int s_xcr0 = G(nameof(GuestState.Xcr0));

    private static int X(string name) => Helpers.Register(typeof(X87Ops), name, pure: false);
    private static readonly int s_fxHeader = X(nameof(X87Ops.FxHeader)), s_regField = X(nameof(X87Ops.RegField)),
        s_fxRestoreHeader = X(nameof(X87Ops.FxRestoreHeader)), s_restoreReg = X(nameof(X87Ops.RestoreReg)),
        s_fxRestoreTags = X(nameof(X87Ops.FxRestoreTags));
    private static readonly int s_inUse = Helpers.Register(typeof(XsaveOps), nameof(XsaveOps.InUse), pure: false);
    private static readonly int s_initX87 = Helpers.Register(typeof(XsaveOps), nameof(XsaveOps.InitX87), pure: false);

    /// <summary>MXCSR bits XRSTOR accepts (reported as MXCSR_MASK, as by FXSAVE).</summary>
    private const uint MxcsrMask = MxcsrInstructions.WritableMask;

    /// <summary>#GP(0) unless 64-byte aligned (#UD without CR4.OSXSAVE is decided at translation, <see cref="X87SseEnable"/>); returns the area's address and RFBM.</summary>
    private static (IrValue Addr, IrValue Rfbm) Prologue(Lifter l, in Instruction i)
    {
        var b = l.B;
        var a = l.Address(i);
        l.RaiseExceptionIf(b.Ne(b.And(a, b.I64(63)), b.I64(0)), ExceptionVector.GP);
        var edxEax = b.Or(b.Shl(b.And(l.Gpr(GuestRegister.Rdx), b.I64(0xFFFF_FFFF)), b.I64(32)), b.And(l.Gpr(GuestRegister.Rax), b.I64(0xFFFF_FFFF)));
        return (a, b.And(edxEax, b.GetState(I64, s_xcr0)));
    }

    /// <summary>Emits <paramref name="body"/> only where bit(s) <paramref name="mask"/> of <paramref name="v"/> are set.</summary>
    private static void If(Lifter l, IrValue v, ulong mask, Action body, Action? otherwise = null)
    {
        var b = l.B;
        var then = b.NewBlock();
        var other = b.NewBlock();
        var join = b.NewBlock();
        b.Branch(b.Ne(b.And(v, b.I64(mask)), b.I64(0)), then, other);
        b.SetBlock(then);
        body();
        b.Jump(join);
        b.SetBlock(other);
        otherwise?.Invoke();
        b.Jump(join);
        b.SetBlock(join);
    }

    private static void Save(Lifter l, in Instruction i, Kind kind)
    {
        var b = l.B;
        var (a, rfbm) = Prologue(l, i);
        IrValue At(ulong off) => b.Add(a, b.I64(off));
        var inUse = b.Call(s_inUse, I64);
        // XSAVE writes every requested component; XSAVEOPT and XSAVEC skip those in their initial configuration.
        var save = kind == Kind.Standard ? rfbm : b.And(rfbm, inUse);
        // XSAVE/XSAVEOPT update only the requested XSTATE_BV bits; XSAVEC writes XSTATE_BV and XCOMP_BV whole.
        var bv = kind == Kind.Compact ? b.And(rfbm, inUse)
            : b.Or(b.And(l.Load(I64, At(512)), b.Xor(rfbm, b.I64(ulong.MaxValue))), b.And(rfbm, inUse));
        var insn = i;
        If(l, save, 1, () =>
        {
            l.Store(a, b.Call(s_fxHeader, I64));
            X87.StorePointers(l, insn, a);
            for (ulong r = 0; r < 8; r++)
            {
                l.Store(At(32 + 16 * r), b.Call(s_regField, I64, b.I64(r), b.I64(0)));
                l.Store(At(40 + 16 * r), b.Trunc(b.Call(s_regField, I64, b.I64(r), b.I64(1)), I16));
                l.Store(At(42 + 16 * r), b.Const(I16, 0));
                l.Store(At(44 + 16 * r), b.I32(0));
            }
        });
        // MXCSR belongs to the SSE and AVX components.
        If(l, kind == Kind.Compact ? save : rfbm, 6, () =>
        {
            l.Store(At(24), b.GetState(I32, StateOffsets.Mxcsr));
            l.Store(At(28), b.I32(MxcsrMask));
        });
        If(l, save, 2, () =>
        {
            for (int x = 0; x < 16; x++) l.Store(At(160 + 16 * (ulong)x), b.GetXmm(x));
        });
        l.Store(At(512), bv);
        if (kind == Kind.Compact) l.Store(At(520), b.Or(rfbm, b.I64(1UL << 63)));
    }

    private static void Restore(Lifter l, in Instruction i)
    {
        var b = l.B;
        var (a, rfbm) = Prologue(l, i);
        IrValue At(ulong off) => b.Add(a, b.I64(off));
        IrValue Nz(IrValue v) => b.Ne(v, b.I64(0));
        var xcr0 = b.GetState(I64, s_xcr0);
        var bv = l.Load(I64, At(512));
        var comp = l.Load(I64, At(520));
        var h16 = l.Load(I64, At(528));
        var rest = b.I64(0);
        for (ulong off = 536; off < 576; off += 8) rest = b.Or(rest, l.Load(I64, At(off)));
        // The whole legacy region is read up front so that no guest state changes before a fault.
        var header = l.Load(I64, a);
        var (ip, dp) = X87.LoadPointers(l, i, a);
        var mxcsr = l.Load(I32, At(24));
        var regs = new IrValue[16];
        for (int r = 0; r < 8; r++)
        {
            regs[2 * r] = l.Load(I64, At(32 + 16 * (ulong)r));
            regs[2 * r + 1] = b.ZExt(l.Load(I16, At(40 + 16 * (ulong)r)), I64);
        }
        var xmm = new IrValue[16];
        for (int x = 0; x < 16; x++) xmm[x] = l.Load(V128, At(160 + 16 * (ulong)x));

        var compact = b.BitOf(comp, 63);
        var notXcr0 = b.Xor(xcr0, b.I64(ulong.MaxValue));
        // Standard form: XSTATE_BV within XCR0, header bytes 8–23 zero. Compacted: XCOMP_BV within XCR0,
        // XSTATE_BV within XCOMP_BV, header bytes 16–63 zero.
        var badStd = b.Or(Nz(b.And(bv, notXcr0)), Nz(b.Or(comp, h16)));
        var badCmp = b.Or(Nz(b.And(b.And(comp, b.I64(~(1UL << 63))), notXcr0)),
            b.Or(Nz(b.And(bv, b.Xor(comp, b.I64(ulong.MaxValue)))), Nz(b.Or(h16, rest))));
        l.RaiseExceptionIf(b.Select(compact, badCmp, badStd), ExceptionVector.GP);
        // Components present in the image: in the compacted form only those XCOMP_BV lists.
        var present = b.And(rfbm, bv);
        // MXCSR: the standard form loads it for RFBM[1] or RFBM[2]; the compacted form only when one is present, else initialises it.
        var loadMx = Nz(b.And(b.Select(compact, present, rfbm), b.I64(6)));
        var initMx = b.And(compact, b.And(Nz(b.And(rfbm, b.I64(6))), b.IsZero(b.And(present, b.I64(6)))));
        l.RaiseExceptionIf(b.And(loadMx, b.Ne(b.And(mxcsr, b.I32(~MxcsrMask)), b.I32(0))), ExceptionVector.GP);

        If(l, rfbm, 1, () => If(l, present, 1, () =>
        {
            b.Call(s_fxRestoreHeader, IrType.Void, header, ip, dp);
            for (int r = 0; r < 8; r++) b.Call(s_restoreReg, IrType.Void, b.I64((ulong)r), regs[2 * r], regs[2 * r + 1]);
            b.Call(s_fxRestoreTags, IrType.Void, header);
        }, () => b.Call(s_initX87, IrType.Void)));
        var old = b.GetState(I32, StateOffsets.Mxcsr);
        b.SetState(StateOffsets.Mxcsr, b.Select(loadMx, mxcsr, b.Select(initMx, b.I32(0x1F80), old)));
        If(l, rfbm, 2, () => If(l, present, 2,
            () => { for (int x = 0; x < 16; x++) b.SetXmm(x, xmm[x]); },
            () => { for (int x = 0; x < 16; x++) b.SetXmm(x, b.ZExt(b.I64(0), V128)); }));
    }
}

/// <summary>State helpers of <see cref="Xsave"/>.</summary>
internal static unsafe class XsaveOps
{
    /// <summary>XINUSE for components 0 and 1: set unless the component is in its initial configuration.</summary>
    public static ulong InUse(CpuContext* ctx)
    {
        ref var s = ref ctx->State;
        ref var x = ref s.X87;
        bool x87 = x.Control != 0x037F || x.Status != 0 || x.Tag != 0xFFFF || x.Opcode != 0 || x.InstructionPointer != 0 || x.DataPointer != 0;
        for (int p = 0; p < 8 && !x87; p++) x87 = x.R[p].Mantissa != 0 || x.R[p].SignExponent != 0;
        bool sse = s.Mxcsr != 0x1F80;
        for (int r = 0; r < 16 && !sse; r++) sse = s.Xmm[r] != Vector128<byte>.Zero;
        return (x87 ? 1UL : 0) | (sse ? 2UL : 0);
    }

    /// <summary>XRSTOR of component 0 with its XSTATE_BV bit clear: FNINIT's state, registers and pointers zero.</summary>
    public static void InitX87(CpuContext* ctx)
    {
        ref var x = ref ctx->State.X87;
        X87Ops.Init(ref x);
        // XRSTOR's initial configuration also zeroes the registers, which FNINIT leaves alone.
        for (int p = 0; p < 8; p++) x.R[p] = default;
    }
}
