// SPDX-License-Identifier: MIT
using System.Collections.Concurrent;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using Jitvmx.Llvm.Native;
using Jitvmx.Runtime;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>
/// SSE/SSE2 ADD, SUB, MUL, DIV and SQRT (PS/SS/PD/SD) as the host's own instructions under the
/// guest's MXCSR whenever that is loaded (LlvmBackend.FpEnv.cs), and MIN, MAX and (U)COMISS/SD with
/// the fast path of their <see cref="SimdOps"/> helpers inlined: with zero or normal operands in
/// every lane used they raise nothing in any environment, and the host's comparison is the guest's
/// result. Anything else calls the helper on a cold path, which runs the host instruction under
/// the guest's MXCSR in memory.
/// </summary>
internal sealed unsafe partial class LlvmBackend
{
    private enum FpKind { Add, Sub, Mul, Div, Min, Max, Sqrt }

    private static readonly Dictionary<string, (FpKind Kind, bool Double, bool Scalar)> s_fp = BuildFpTable();
    private static readonly ConcurrentDictionary<int, string?> s_fpNames = new();

    private static Dictionary<string, (FpKind, bool, bool)> BuildFpTable()
    {
        var t = new Dictionary<string, (FpKind, bool, bool)>();
        foreach (var kind in Enum.GetValues<FpKind>())
            foreach (var (suffix, dbl, scalar) in (ReadOnlySpan<(string, bool, bool)>)[("ps", false, false), ("ss", false, true), ("pd", true, false), ("sd", true, true)])
                t[kind + suffix] = (kind, dbl, scalar);
        return t;
    }

    private static string? FpName(int helper) => s_fpNames.GetOrAdd(helper,
        id => Helpers.Method(id) is { } m && m.DeclaringType == typeof(SimdOps) && (s_fp.ContainsKey(m.Name) || m.Name == nameof(SimdOps.Comis)) ? m.Name : null);

    private static bool IsSseFloatFastPath(IrValue call) => call.Op == IrOp.Call && FpName(call.Aux) is { } name
        && (name == nameof(SimdOps.Comis) ? call.Args.Length == 4 && call.Args[3].Op == IrOp.Const : call.Args.Length == 3);

    /// <summary>ADD, SUB, MUL, DIV, SQRT: run natively under the guest's MXCSR (see LlvmBackend.FpEnv.cs).</summary>
    private static bool IsNativeSseArithmetic(IrValue call) => IsSseFloatFastPath(call) && FpName(call.Aux) is { } name
        && s_fp.TryGetValue(name, out var op) && op.Kind is not (FpKind.Min or FpKind.Max);

    private bool TryEmitSseFloat(IrValue v)
    {
        if (!IsSseFloatFastPath(v)) return false;
        if (FpName(v.Aux) == nameof(SimdOps.Comis))
        {
            EmitComis(v);
            return true;
        }
        var (kind, dbl, scalar) = s_fp[FpName(v.Aux)!];
        int bits = dbl ? 64 : 32, n = scalar ? 1 : 128 / bits;
        nint ft = dbl ? LLVMDoubleTypeInContext(_ctx) : LLVMFloatTypeInContext(_ctx);
        nint fvt = n == 1 ? ft : LLVMVectorType(ft, (uint)n);
        // Tests in the float domain (ordered compares are false for NaN), as the helper's on the bits.
        double min = Math.ScaleB(1.0, dbl ? -1022 : -126); // the smallest normal
        nint aBytes = Value(v.Args[1]), bBytes = Value(v.Args[2]);
        nint Floats(nint bytes) => n == 1
            ? LLVMBuildExtractElement(_b, LLVMBuildBitCast(_b, bytes, LLVMVectorType(ft, (uint)(128 / bits)), ""), I32(0), "")
            : LLVMBuildBitCast(_b, bytes, fvt, "");
        nint F(double c)
        {
            nint k = LLVMConstReal(ft, c);
            if (n == 1) return k;
            var elems = new nint[n];
            Array.Fill(elems, k);
            fixed (nint* e = elems) return LLVMConstVector(e, (uint)n);
        }
        nint Cmp(LlvmRealPredicate p, nint x, nint y) => LLVMBuildFCmp(_b, p, x, y, "");
        nint And(nint x, nint y) => LLVMBuildAnd(_b, x, y, "");
        nint Tame(nint x) => TameFloat(x, fvt, F(min), F(double.PositiveInfinity), F(0));
        nint All(nint lanes) => n == 1 ? lanes
            : LLVMBuildICmp(_b, LlvmIntPredicate.Eq, LLVMBuildBitCast(_b, lanes, LLVMIntTypeInContext(_ctx, (uint)n), ""), LLVMConstInt(LLVMIntTypeInContext(_ctx, (uint)n), (1UL << n) - 1, 0), "");

        nint x = Floats(aBytes), y = Floats(bBytes);
        nint Result(nint r) => n == 1
            ? AsBytes(LLVMBuildInsertElement(_b, LLVMBuildBitCast(_b, aBytes, LLVMVectorType(ft, (uint)(128 / bits)), ""), r, I32(0), ""))
            : AsBytes(r);
        if (kind is not (FpKind.Min or FpKind.Max))
        {
            // The host's instruction under the guest's MXCSR, whenever that is loaded (always, past a
            // guarded region's entry check). The helper's path is taken only when the guest's MXCSR is
            // not loaded: no switch around it.
            nint Native() => Result(kind switch
            {
                FpKind.Add => Constrained("fadd", fvt, x, y),
                FpKind.Sub => Constrained("fsub", fvt, x, y),
                FpKind.Mul => Constrained("fmul", fvt, x, y),
                FpKind.Div => Constrained("fdiv", fvt, x, y),
                _ => Constrained("sqrt", fvt, y),
            });
            Define(v, _fpGuard ? Native() : OrHelper(v, Load(_i1, _fpLoaded), switchFpEnv: false, Native));
            return true;
        }
        nint ok = All(And(Tame(x), Tame(y)));

        // MINSD/MAXSD: the second operand unless the first is strictly less (greater); ±0 give the second.
        // With zero or normal operands they raise nothing, in any environment.
        nint r = kind == FpKind.Min
            ? LLVMBuildSelect(_b, Cmp(LlvmRealPredicate.Olt, x, y), x, y, "")
            : LLVMBuildSelect(_b, Cmp(LlvmRealPredicate.Ogt, x, y), x, y, "");
        Define(v, FastOrHelper(v, ok, Result(r)));
        return true;
    }

    /// <summary><paramref name="native"/>'s value (emitted on that path only) when <paramref name="ok"/>, else the helper's result (a call on a cold path).</summary>
    private nint OrHelper(IrValue v, nint ok, bool switchFpEnv, Func<nint> native)
    {
        nint fastBlock = NewBlock("fp.native"), slow = NewBlock("fp.slow"), join = NewBlock("fp.done");
        CondBrUnlikely(LLVMBuildNot(_b, ok, ""), slow, fastBlock);

        LLVMPositionBuilderAtEnd(_b, fastBlock);
        nint fast = native();
        nint fastEnd = LLVMGetInsertBlock(_b);
        LLVMBuildBr(_b, join);

        LLVMPositionBuilderAtEnd(_b, slow);
        CallHelper(v, switchFpEnv);
        nint slowValue = Load(_v128, _resBuf, 16);
        nint slowEnd = LLVMGetInsertBlock(_b);
        LLVMBuildBr(_b, join);

        LLVMPositionBuilderAtEnd(_b, join);
        return Phi2(_v128, fast, fastEnd, slowValue, slowEnd);
    }

    /// <summary>
    /// (U)COMISS/SD: ordered zero or normal operands raise nothing in any environment; ZF PF CF come
    /// from the comparison (equal 0x40, less 1, greater 0), as the helper computes them.
    /// </summary>
    private void EmitComis(IrValue v)
    {
        bool dbl = v.Args[3].Imm != 0;
        int bits = dbl ? 64 : 32;
        nint ft = dbl ? LLVMDoubleTypeInContext(_ctx) : LLVMFloatTypeInContext(_ctx);
        nint Lane0(nint bytes) => LLVMBuildExtractElement(_b, LLVMBuildBitCast(_b, bytes, LLVMVectorType(ft, (uint)(128 / bits)), ""), I32(0), "");
        nint x = Lane0(Value(v.Args[1])), y = Lane0(Value(v.Args[2]));
        double min = Math.ScaleB(1.0, dbl ? -1022 : -126);
        nint Tame(nint f) => TameFloat(f, ft, LLVMConstReal(ft, min), LLVMConstReal(ft, double.PositiveInfinity), LLVMConstReal(ft, 0));
        nint ok = LLVMBuildAnd(_b, Tame(x), Tame(y), "");
        nint flags = LLVMBuildSelect(_b, LLVMBuildFCmp(_b, LlvmRealPredicate.Oeq, x, y, ""), I64(0x40),
            LLVMBuildSelect(_b, LLVMBuildFCmp(_b, LlvmRealPredicate.Olt, x, y, ""), I64(1), I64(0), ""), "");
        nint fast = AsBytes(LLVMBuildInsertElement(_b, LLVMConstNull(VecType(64)), flags, I32(0), ""));
        Define(v, FastOrHelper(v, ok, fast));
    }

    /// <summary>Whether <paramref name="x"/> (of float <paramref name="type"/>, scalar or vector) is zero or normal finite: raises nothing as an input.</summary>
    private nint TameFloat(nint x, nint type, nint min, nint inf, nint zero)
    {
        nint abs = Intrinsic("llvm.fabs", type, x);
        return LLVMBuildOr(_b,
            LLVMBuildAnd(_b, LLVMBuildFCmp(_b, LlvmRealPredicate.Oge, abs, min, ""), LLVMBuildFCmp(_b, LlvmRealPredicate.Olt, abs, inf, ""), ""),
            LLVMBuildFCmp(_b, LlvmRealPredicate.Oeq, x, zero, ""), "");
    }

    /// <summary><paramref name="fast"/> when <paramref name="ok"/>, else the helper's result (a call on a cold path).</summary>
    private nint FastOrHelper(IrValue v, nint ok, nint fast) => OrHelper(v, ok, switchFpEnv: true, () => fast);
}
