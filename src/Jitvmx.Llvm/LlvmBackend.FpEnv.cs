// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Llvm.Native;
using Jitvmx.Runtime;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>
/// The guest's MXCSR in the host's while region code runs SSE arithmetic natively. The host runs the
/// same SSE instructions, so under the guest's MXCSR they give the guest's results and raise the
/// guest's flags, bit for bit; nothing needs emulating. This holds while the guest masks every SSE
/// exception (an unmasked one would trap in the host): then the region loads the guest's MXCSR on
/// entry and after every call out, and stores it back and restores the host's before every call out
/// and at every exit, so managed code never runs under the guest's rounding or flags. With an
/// exception unmasked the helpers run the operations as before.
/// <para>A region that never writes MXCSR itself (nearly all) cannot unmask an exception while it
/// runs: helpers change only the flags, and the pending-#XM marker only when an exception is
/// unmasked. Such a region checks once, at entry, and when the guest's MXCSR cannot be loaded it
/// returns <see cref="RegionCode.Step"/> before doing anything, and the dispatcher runs that
/// instruction on its own. Past the check the guest's MXCSR is loaded throughout, so the region
/// carries no helper path for its arithmetic and no #XM checks: about a third less code to compile
/// in floating-point loops.</para>
/// </summary>
internal sealed unsafe partial class LlvmBackend
{
    // Whether the region has natively lowered SSE arithmetic (and so switches MXCSR at all).
    private bool _hostFp;
    // i1: the host's MXCSR holds the guest's now; i32: the host's own MXCSR, and a scratch slot.
    private nint _fpLoaded, _fpSaved, _fpScratch, _strictFp;
    // GetState(MXCSR) nodes read only for the pending-#XM marker (bit 31), which memory always holds.
    private readonly HashSet<IrValue> _mxcsrSignOnly = [];
    // Blocks entered only when that marker is set. A helper sets it only for an unmasked exception,
    // so the guest's MXCSR is not loaded there and switching is a no-op: none is emitted.
    private readonly HashSet<IrBlock> _fpOffBlocks = [];
    private bool _fpOff;
    // The region checks MXCSR at entry only (see the class summary).
    private bool _fpGuard;

    /// <summary>Guest MXCSR values the host may run under: every exception masked, no bit the host would reject.</summary>
    private const uint MxcsrNativeMask = 0xFFFF_1F80, MxcsrNativeValue = 0x1F80;

    /// <summary>Part of <see cref="Scan"/>: whether MXCSR is switched, and which reads need only bit 31.</summary>
    private void ScanFpEnv()
    {
        var mxcsrReads = new Dictionary<IrValue, int>();
        foreach (var b in _region.Blocks)
            foreach (var v in b.Nodes)
            {
                if (v.Op == IrOp.Call && IsNativeSseArithmetic(v)) _hostFp = true;
                if (v.Op == IrOp.Slt && v.Args[0] is { Op: IrOp.GetState } g && g.Aux == StateOffsets.Mxcsr && v.Args[1] is { Op: IrOp.Const, Imm: 0 })
                    mxcsrReads[g] = mxcsrReads.GetValueOrDefault(g) + 1;
            }
        foreach (var (g, signUses) in mxcsrReads)
            if (signUses == g.Uses) _mxcsrSignOnly.Add(g);
        var preds = new Dictionary<IrBlock, int>();
        foreach (var b in _region.Blocks)
            foreach (var s in b.Successors) preds[s] = preds.GetValueOrDefault(s) + 1;
        foreach (var b in _region.Blocks)
            if (b.Terminator is { Op: IrOp.Branch, Target: { } marked } t && t.Args[0] is { Op: IrOp.Slt } c
                && _mxcsrSignOnly.Contains(c.Args[0]) && preds[marked] == 1)
                _fpOffBlocks.Add(marked);
        // Clearing the marker (before raising #XM) is not a write that counts: it unmasks nothing.
        _fpGuard = _hostFp && !WritesMxcsr(_region);
    }

    private static bool WritesMxcsr(IrRegion region) =>
        region.Blocks.Any(b => b.Nodes.Any(v => v.Op == IrOp.SetState && v.Aux == StateOffsets.Mxcsr && !ClearsMarkerOnly(v)));

    /// <summary>
    /// Whether the region switches MXCSR as it runs (native SSE arithmetic, and an MXCSR write of its
    /// own, so no entry guard): each native operation then tests whether the guest's MXCSR is loaded,
    /// and jump threading sends one operation's fast path straight to the next one's.
    /// </summary>
    internal static bool SwitchesFpEnv(IrRegion region) =>
        region.Blocks.Any(b => b.Nodes.Any(v => v.Op == IrOp.Call && IsNativeSseArithmetic(v))) && WritesMxcsr(region);

    /// <summary>SetState(MXCSR, GetState(MXCSR) &amp; 0x7FFFFFFF): the lifter's clearing of the pending-#XM marker.</summary>
    private static bool ClearsMarkerOnly(IrValue set) =>
        set.Args[0] is { Op: IrOp.And, Args: [var x, var y] }
        && (x is { Op: IrOp.GetState } g && g.Aux == StateOffsets.Mxcsr && y is { Op: IrOp.Const, Imm: 0x7FFF_FFFF }
            || y is { Op: IrOp.GetState } g2 && g2.Aux == StateOffsets.Mxcsr && x is { Op: IrOp.Const, Imm: 0x7FFF_FFFF });

    /// <summary>Allocas of the MXCSR switch (in the entry block, with the others).</summary>
    private void FpEnvAllocas()
    {
        if (!_hostFp) return;
        _fpLoaded = LLVMBuildAlloca(_b, _i1, "fp.loaded");
        _fpSaved = LLVMBuildAlloca(_b, _i32, "fp.host");
        _fpScratch = LLVMBuildAlloca(_b, _i32, "fp.scratch");
        _strictFp = LLVMCreateEnumAttribute(_ctx, LLVMGetEnumAttributeKindForName("strictfp", 8), 0);
        LLVMAddAttributeAtIndex(_fn, LLVMAttributeFunctionIndex, _strictFp);
    }

    /// <summary>End of the prologue: remember the host's MXCSR and load the guest's.</summary>
    private void FpEnvPrologue()
    {
        if (!_hostFp) return;
        Intrinsic("llvm.x86.sse.stmxcsr", 0, _fpSaved);
        if (!_fpGuard)
        {
            FpEnvIn();
            return;
        }
        nint m = CtxLoad(_i32, StateOffsets.Mxcsr, 4);
        nint step = NewBlock("fp.step"), load = NewBlock("fp.in");
        CondBrUnlikely(LLVMBuildNot(_b, Loadable(m), ""), step, load);
        // Nothing is written yet: the instruction at the entry runs on its own (with the helpers).
        LLVMPositionBuilderAtEnd(_b, step);
        CtxStore(I64(_region.EntryRip), StateOffsets.Rip, 8);
        LLVMBuildRet(_b, I32(RegionCode.Step));
        LLVMPositionBuilderAtEnd(_b, load);
        LoadGuestMxcsr(m);
    }

    /// <summary>i1: the host may run under guest MXCSR value <paramref name="m"/> (<see cref="MxcsrNativeMask"/>).</summary>
    private nint Loadable(nint m) =>
        LLVMBuildICmp(_b, LlvmIntPredicate.Eq, LLVMBuildAnd(_b, m, I32(unchecked((int)MxcsrNativeMask)), ""), I32(MxcsrNativeValue), "");

    private void LoadGuestMxcsr(nint m)
    {
        LLVMBuildStore(_b, m, _fpScratch);
        Intrinsic("llvm.x86.sse.ldmxcsr", 0, _fpScratch);
        LLVMBuildStore(_b, LLVMConstInt(_i1, 1, 0), _fpLoaded);
    }

    /// <summary>Loads the guest's MXCSR into the host's when the guest masks every exception.</summary>
    private void FpEnvIn()
    {
        // Clearing the marker leaves the exception that set it unmasked: still nothing to load.
        if (!_hostFp || _fpOff) return;
        nint m = CtxLoad(_i32, StateOffsets.Mxcsr, 4);
        if (_fpGuard)
        {
            // After a call out: the helper changed at most the flags.
            LoadGuestMxcsr(m);
            return;
        }
        nint ok = Loadable(m);
        LLVMBuildStore(_b, ok, _fpLoaded);
        nint load = NewBlock("fp.in"), done = NewBlock("fp.in.done");
        LLVMBuildCondBr(_b, ok, load, done);
        LLVMPositionBuilderAtEnd(_b, load);
        LLVMBuildStore(_b, m, _fpScratch);
        Intrinsic("llvm.x86.sse.ldmxcsr", 0, _fpScratch);
        LLVMBuildBr(_b, done);
        LLVMPositionBuilderAtEnd(_b, done);
    }

    /// <summary>When the guest's MXCSR is loaded: stores it (with the flags raised since) and restores the host's.</summary>
    private void FpEnvOut()
    {
        if (!_hostFp || _fpOff) return;
        nint store = NewBlock("fp.out"), done = NewBlock("fp.out.done");
        LLVMBuildCondBr(_b, Load(_i1, _fpLoaded), store, done);
        LLVMPositionBuilderAtEnd(_b, store);
        StoreGuestMxcsr();
        Intrinsic("llvm.x86.sse.ldmxcsr", 0, _fpSaved);
        LLVMBuildStore(_b, LLVMConstInt(_i1, 0, 0), _fpLoaded);
        LLVMBuildBr(_b, done);
        LLVMPositionBuilderAtEnd(_b, done);
    }

    private void StoreGuestMxcsr()
    {
        Intrinsic("llvm.x86.sse.stmxcsr", 0, _fpScratch);
        CtxStore(Load(_i32, _fpScratch, 4), StateOffsets.Mxcsr, 4);
    }

    /// <summary>GetState(MXCSR): memory, brought up to date with the flags the host raised when the guest's MXCSR is loaded.</summary>
    private nint MxcsrValue(IrValue v)
    {
        if (!_mxcsrSignOnly.Contains(v) && !_fpOff)
        {
            nint sync = NewBlock("fp.sync"), done = NewBlock("fp.sync.done");
            LLVMBuildCondBr(_b, Load(_i1, _fpLoaded), sync, done);
            LLVMPositionBuilderAtEnd(_b, sync);
            StoreGuestMxcsr();
            LLVMBuildBr(_b, done);
            LLVMPositionBuilderAtEnd(_b, done);
        }
        nint value = CtxLoad(_i32, StateOffsets.Mxcsr, 4);
        // While the guest's MXCSR is loaded its marker is clear (the load requires it, and only a
        // helper sets it, which runs with the host's MXCSR): the check after a native operation folds.
        if (_mxcsrSignOnly.Contains(v) && _hostFp && !_fpOff)
            value = LLVMBuildSelect(_b, Load(_i1, _fpLoaded), I32(0), value, "");
        return value;
    }

    /// <summary>SetState(MXCSR): the new value goes to memory, and to the host when it may run under it.</summary>
    private void SetMxcsr(nint value)
    {
        FpEnvOut();
        CtxStore(value, StateOffsets.Mxcsr, 4);
        FpEnvIn();
    }

    /// <summary>A constrained (strict, dynamic rounding) floating-point intrinsic: kept in order and never folded.</summary>
    private nint Constrained(string op, nint type, params nint[] operands)
    {
        var args = new nint[operands.Length + 2];
        operands.CopyTo(args, 0);
        args[^2] = MetadataString("round.dynamic");
        args[^1] = MetadataString("fpexcept.strict");
        nint call = Intrinsic("llvm.experimental.constrained." + op, type, args);
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, _strictFp);
        return call;
    }

    private nint MetadataString(string s) => LLVMMetadataAsValue(_ctx, LLVMMDStringInContext2(_ctx, s, (nuint)s.Length));
}
