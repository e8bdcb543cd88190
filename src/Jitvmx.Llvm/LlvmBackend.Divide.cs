// SPDX-License-Identifier: MIT
using Jitvmx.Ir;
using Jitvmx.Llvm.Native;
using Jitvmx.Runtime;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>
/// 64-bit DIV and IDIV divide RDX:RAX, 128 bits, which the IR leaves to helpers. Compilers emit them
/// for 64-bit <c>/</c> and <c>%</c> with RDX only extending RAX (CQO before IDIV, a zeroed RDX before
/// DIV): then the host's 64-bit divide of RAX gives the same quotient, remainder and #DE. A real
/// 128-bit dividend calls the helper on a cold path.
/// </summary>
internal sealed unsafe partial class LlvmBackend
{
    private enum WideDivide { Faults, Quotient, Remainder }

    /// <summary>Which wide-divide helper <paramref name="call"/> calls, if any.</summary>
    private static (bool Signed, WideDivide Kind)? WideDivideOf(IrValue call) =>
        call.Op != IrOp.Call || call.Args.Length != 3 || call.Type != IrType.I64 ? null : (HelperId)call.Aux switch
        {
            HelperId.SDiv128Faults => (true, WideDivide.Faults),
            HelperId.SDiv128Quotient => (true, WideDivide.Quotient),
            HelperId.SDiv128Remainder => (true, WideDivide.Remainder),
            HelperId.UDiv128Quotient => (false, WideDivide.Quotient),
            HelperId.UDiv128Remainder => (false, WideDivide.Remainder),
            _ => null,
        };

    private bool TryEmitWideDivide(IrValue v)
    {
        if (WideDivideOf(v) is not var (signed, kind)) return false;

        nint hi = Value(v.Args[0]), lo = Value(v.Args[1]), d = Value(v.Args[2]);
        nint Eq(nint x, nint y) => LLVMBuildICmp(_b, LlvmIntPredicate.Eq, x, y, "");
        // RDX:RAX is RAX itself, sign- or zero-extended.
        nint narrow = Eq(hi, signed ? LLVMBuildAShr(_b, lo, I64(63), "") : I64(0));
        // #DE for a 64-bit dividend: divisor 0, or INT64_MIN / -1 (a quotient of 2^63).
        nint faults = Eq(d, I64(0));
        if (signed) faults = LLVMBuildOr(_b, faults, LLVMBuildAnd(_b, Eq(lo, I64(1UL << 63)), Eq(d, I64(ulong.MaxValue)), ""), "");

        nint ok, fast;
        if (kind == WideDivide.Faults)
        {
            ok = narrow;
            fast = LLVMBuildZExt(_b, faults, _i64, "");
        }
        else
        {
            // The divide runs before the branch: with a divisor that cannot trap when the helper decides.
            ok = LLVMBuildAnd(_b, narrow, LLVMBuildNot(_b, faults, ""), "");
            nint safe = LLVMBuildSelect(_b, faults, I64(1), d, "");
            fast = (signed, kind) switch
            {
                (true, WideDivide.Quotient) => LLVMBuildSDiv(_b, lo, safe, ""),
                (true, _) => LLVMBuildSRem(_b, lo, safe, ""),
                (false, WideDivide.Quotient) => LLVMBuildUDiv(_b, lo, safe, ""),
                _ => LLVMBuildURem(_b, lo, safe, ""),
            };
        }

        nint here = LLVMGetInsertBlock(_b), slow = NewBlock("div.wide"), join = NewBlock("div.done");
        CondBrUnlikely(LLVMBuildNot(_b, ok, ""), slow, join);
        LLVMPositionBuilderAtEnd(_b, slow);
        CallHelper(v);
        nint wide = Load(_i64, _resBuf, 16);
        nint slowEnd = LLVMGetInsertBlock(_b);
        LLVMBuildBr(_b, join);
        LLVMPositionBuilderAtEnd(_b, join);
        Define(v, Phi2(_i64, fast, here, wide, slowEnd));
        return true;
    }
}
