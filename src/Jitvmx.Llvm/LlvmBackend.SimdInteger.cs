// SPDX-License-Identifier: MIT
using System.Collections.Concurrent;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using Jitvmx.Llvm.Native;
using Jitvmx.Runtime;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>
/// SSE packed-integer, logic and shuffle helpers (<see cref="SimdIntOps"/>) lowered to LLVM vector
/// IR instead of calls: a call from native code into a managed helper costs a transition (several
/// nanoseconds), while the operation itself is one or two host instructions. Each lowering has the
/// helper's exact semantics (out-of-range shift counts, saturation, lane masking); a helper whose
/// immediate operand is not a constant, or that has no lowering here, stays a call.
/// </summary>
internal sealed unsafe partial class LlvmBackend
{
    /// <summary>A lowering: the operands' LLVM values (vectors as &lt;16 x i8&gt;) and the IR call; returns the result.</summary>
    private delegate nint SimdLowering(LlvmBackend b, nint[] args, IrValue call);

    /// <summary>Lowerings by helper name, with the operands that must be IR constants (immediates).</summary>
    private static readonly Dictionary<string, (int[] ConstArgs, SimdLowering Lower)> s_simd = BuildSimdTable();
    private static readonly ConcurrentDictionary<int, string?> s_simdNames = new();

    private static string? SimdName(int helper) => s_simdNames.GetOrAdd(helper,
        id => Helpers.Method(id) is { } m && m.DeclaringType == typeof(SimdIntOps) && s_simd.ContainsKey(m.Name) ? m.Name : null);

    /// <summary>
    /// Whether this backend emits <paramref name="call"/> as native code (SSE integer operations
    /// always, SSE float arithmetic and 64-bit divides in the common case) rather than a helper call.
    /// </summary>
    internal static bool LowersNatively(IrValue call) => IsSimdInteger(call) || IsSseFloatFastPath(call) || WideDivideOf(call) is not null;

    private static bool IsSimdInteger(IrValue call)
    {
        if (call.Op != IrOp.Call || SimdName(call.Aux) is not { } name) return false;
        foreach (int i in s_simd[name].ConstArgs)
            if (i >= call.Args.Length || call.Args[i].Op != IrOp.Const) return false;
        return true;
    }

    private bool TryEmitSimdInteger(IrValue v)
    {
        if (!IsSimdInteger(v)) return false;
        var args = new nint[v.Args.Length];
        for (int i = 0; i < args.Length; i++) args[i] = Value(v.Args[i]);
        nint r = s_simd[SimdName(v.Aux)!].Lower(this, args, v);
        // Scalar results (masks, extracted lanes) come as i32 or i64; the call's type may differ.
        if (v.Type != IrType.V128)
        {
            var from = LLVMTypeOf(r) == _i32 ? IrType.I32 : IrType.I64;
            r = Resize(r, from, v.Type);
        }
        Define(v, r);
        return true;
    }

    // ================= vector building blocks =================

    private nint VecType(int bits) => LLVMVectorType(LLVMIntTypeInContext(_ctx, (uint)bits), (uint)(128 / bits));
    private nint AsLanes(nint bytes, int bits) => bits == 8 ? bytes : LLVMBuildBitCast(_b, bytes, VecType(bits), "");
    private nint AsBytes(nint lanes) => LLVMBuildBitCast(_b, lanes, _v128, "");

    private nint Splat(int bits, ulong value, int lanes = 0)
    {
        lanes = lanes == 0 ? 128 / bits : lanes;
        nint type = LLVMIntTypeInContext(_ctx, (uint)bits);
        var elems = new nint[lanes];
        for (int i = 0; i < lanes; i++) elems[i] = LLVMConstInt(type, value, 0);
        fixed (nint* e = elems) return LLVMConstVector(e, (uint)lanes);
    }

    /// <summary>Lanes picked from a:b by constant indices (0… from a, then b's).</summary>
    private nint Shuffle(nint a, nint b, ReadOnlySpan<int> picks)
    {
        var elems = new nint[picks.Length];
        for (int i = 0; i < picks.Length; i++) elems[i] = LLVMConstInt(_i32, (ulong)picks[i], 0);
        fixed (nint* e = elems) return LLVMBuildShuffleVector(_b, a, b, LLVMConstVector(e, (uint)elems.Length), "");
    }

    /// <summary>op on lanes of <paramref name="bits"/>, back to bytes.</summary>
    private nint Lanewise(nint a, nint b, int bits, Func<nint, nint, nint, string, nint> op) =>
        AsBytes(op(_b, AsLanes(a, bits), AsLanes(b, bits), ""));

    private nint Compare(nint a, nint b, int bits, LlvmIntPredicate p) =>
        AsBytes(LLVMBuildSExt(_b, LLVMBuildICmp(_b, p, AsLanes(a, bits), AsLanes(b, bits), ""), VecType(bits), ""));

    private nint MinMax(nint a, nint b, int bits, LlvmIntPredicate p)
    {
        nint x = AsLanes(a, bits), y = AsLanes(b, bits);
        return AsBytes(LLVMBuildSelect(_b, LLVMBuildICmp(_b, p, x, y, ""), x, y, ""));
    }

    private nint Saturating(string intrinsic, nint a, nint b, int bits) =>
        AsBytes(Intrinsic(intrinsic, VecType(bits), AsLanes(a, bits), AsLanes(b, bits)));

    /// <summary>Per-lane shift by a 64-bit count: counts of the width or more give zero, or sign fill for arithmetic shifts.</summary>
    private nint ShiftLanes(nint a, nint count, int bits, int kind)
    {
        nint lanes = AsLanes(a, bits);
        nint over = LLVMBuildICmp(_b, LlvmIntPredicate.Ugt, count, I64((ulong)bits - 1), "");
        nint n = LLVMBuildSelect(_b, over, I64(kind == 2 ? (ulong)bits - 1 : 0), count, "");
        nint elem = LLVMIntTypeInContext(_ctx, (uint)bits);
        nint scalar = bits == 64 ? n : LLVMBuildTrunc(_b, n, elem, "");
        nint one = LLVMBuildInsertElement(_b, LLVMGetPoison(VecType(bits)), scalar, I32(0), "");
        nint splat = Shuffle(one, one, new int[128 / bits]);
        nint shifted = kind switch
        {
            0 => LLVMBuildShl(_b, lanes, splat, ""),
            1 => LLVMBuildLShr(_b, lanes, splat, ""),
            _ => LLVMBuildAShr(_b, lanes, splat, ""),
        };
        if (kind != 2) shifted = LLVMBuildSelect(_b, over, LLVMConstNull(VecType(bits)), shifted, "");
        return AsBytes(shifted);
    }

    private nint Unpack(nint a, nint b, int bits, bool high)
    {
        int n = 128 / bits;
        var picks = new int[n];
        for (int i = 0; i < n / 2; i++)
        {
            picks[2 * i] = (high ? n / 2 : 0) + i;
            picks[2 * i + 1] = n + (high ? n / 2 : 0) + i;
        }
        return AsBytes(Shuffle(AsLanes(a, bits), AsLanes(b, bits), picks));
    }

    /// <summary>Saturates two vectors of <paramref name="bits"/>-bit signed lanes to [lo, hi] and packs them to half-width lanes, a's first.</summary>
    private nint Pack(nint a, nint b, int bits, long lo, long hi)
    {
        nint Clamp(nint x)
        {
            nint lanes = AsLanes(x, bits);
            lanes = Intrinsic("llvm.smin", VecType(bits), lanes, Splat(bits, (ulong)hi));
            lanes = Intrinsic("llvm.smax", VecType(bits), lanes, Splat(bits, (ulong)lo));
            return LLVMBuildTrunc(_b, lanes, LLVMVectorType(LLVMIntTypeInContext(_ctx, (uint)bits / 2), (uint)(128 / bits)), "");
        }
        var picks = new int[256 / bits];
        for (int i = 0; i < picks.Length; i++) picks[i] = i;
        return AsBytes(Shuffle(Clamp(a), Clamp(b), picks));
    }

    /// <summary>High halves of the products of signed or unsigned 16-bit lanes.</summary>
    private nint MulHigh16(nint a, nint b, bool signed)
    {
        nint wide = LLVMVectorType(_i32, 8);
        nint x = signed ? LLVMBuildSExt(_b, AsLanes(a, 16), wide, "") : LLVMBuildZExt(_b, AsLanes(a, 16), wide, "");
        nint y = signed ? LLVMBuildSExt(_b, AsLanes(b, 16), wide, "") : LLVMBuildZExt(_b, AsLanes(b, 16), wide, "");
        nint p = LLVMBuildLShr(_b, LLVMBuildMul(_b, x, y, ""), Splat(32, 16, 8), "");
        return AsBytes(LLVMBuildTrunc(_b, p, VecType(16), ""));
    }

    /// <summary>Rounded unsigned average of lanes: (a + b + 1) >> 1 without overflow.</summary>
    private nint Average(nint a, nint b, int bits)
    {
        int n = 128 / bits;
        nint wide = LLVMVectorType(LLVMIntTypeInContext(_ctx, (uint)bits * 2), (uint)n);
        nint x = LLVMBuildZExt(_b, AsLanes(a, bits), wide, ""), y = LLVMBuildZExt(_b, AsLanes(b, bits), wide, "");
        nint s = LLVMBuildAdd(_b, LLVMBuildAdd(_b, x, y, ""), Splat(bits * 2, 1, n), "");
        return AsBytes(LLVMBuildTrunc(_b, LLVMBuildLShr(_b, s, Splat(bits * 2, 1, n), ""), VecType(bits), ""));
    }

    /// <summary>The sign bits of the lanes as an integer (PMOVMSKB, MOVMSKPS/PD), zero-extended to 32 bits.</summary>
    private nint SignMask(nint a, int bits)
    {
        int n = 128 / bits;
        nint negative = LLVMBuildICmp(_b, LlvmIntPredicate.Slt, AsLanes(a, bits), LLVMConstNull(VecType(bits)), "");
        return LLVMBuildZExt(_b, LLVMBuildBitCast(_b, negative, LLVMIntTypeInContext(_ctx, (uint)n), ""), _i32, "");
    }

    private static int Imm(IrValue call, int arg) => (int)(call.Args[arg].Imm & 0xFF);

    private nint IntrinsicFixed(string name, nint a, nint b)
    {
        if (!_functions.TryGetValue(name, out var f))
        {
            uint id = LLVMLookupIntrinsicID(name, (nuint)name.Length);
            if (id == 0) throw new NotSupportedException($"no LLVM intrinsic {name}");
            f = (LLVMGetIntrinsicDeclaration(_module, id, null, 0), LLVMIntrinsicGetType(_ctx, id, null, 0));
            _functions[name] = f;
        }
        nint* args = stackalloc nint[2] { a, b };
        return LLVMBuildCall2(_b, f.Type, f.Fn, args, 2, "");
    }

    // ================= the table =================

    private static Dictionary<string, (int[], SimdLowering)> BuildSimdTable()
    {
        var t = new Dictionary<string, (int[], SimdLowering)>();
        void Add(string name, SimdLowering f, params int[] constArgs) => t[name] = (constArgs, f);

        Add(nameof(SimdIntOps.And), (b, a, _) => LLVMBuildAnd(b._b, a[0], a[1], ""));
        Add(nameof(SimdIntOps.Or), (b, a, _) => LLVMBuildOr(b._b, a[0], a[1], ""));
        Add(nameof(SimdIntOps.Xor), (b, a, _) => LLVMBuildXor(b._b, a[0], a[1], ""));
        Add(nameof(SimdIntOps.AndNot), (b, a, _) => LLVMBuildAnd(b._b, LLVMBuildNot(b._b, a[0], ""), a[1], "")); // ~a & b

        foreach (var (suffix, bits) in (ReadOnlySpan<(string, int)>)[("b", 8), ("w", 16), ("d", 32), ("q", 64)])
        {
            int w = bits;
            Add("Padd" + suffix, (b, a, _) => b.Lanewise(a[0], a[1], w, LLVMBuildAdd));
            Add("Psub" + suffix, (b, a, _) => b.Lanewise(a[0], a[1], w, LLVMBuildSub));
            Add("Pcmpeq" + suffix, (b, a, _) => b.Compare(a[0], a[1], w, LlvmIntPredicate.Eq));
            Add("Pcmpgt" + suffix, (b, a, _) => b.Compare(a[0], a[1], w, LlvmIntPredicate.Sgt));
        }
        foreach (var (suffix, bits) in (ReadOnlySpan<(string, int)>)[("b", 8), ("w", 16)])
        {
            int w = bits;
            Add("Padds" + suffix, (b, a, _) => b.Saturating("llvm.sadd.sat", a[0], a[1], w));
            Add("Paddus" + suffix, (b, a, _) => b.Saturating("llvm.uadd.sat", a[0], a[1], w));
            Add("Psubs" + suffix, (b, a, _) => b.Saturating("llvm.ssub.sat", a[0], a[1], w));
            Add("Psubus" + suffix, (b, a, _) => b.Saturating("llvm.usub.sat", a[0], a[1], w));
            Add("Pavg" + suffix, (b, a, _) => b.Average(a[0], a[1], w));
        }
        Add(nameof(SimdIntOps.Pmullw), (b, a, _) => b.Lanewise(a[0], a[1], 16, LLVMBuildMul));
        Add(nameof(SimdIntOps.Pmulld), (b, a, _) => b.Lanewise(a[0], a[1], 32, LLVMBuildMul));
        Add(nameof(SimdIntOps.Pmulhw), (b, a, _) => b.MulHigh16(a[0], a[1], signed: true));
        Add(nameof(SimdIntOps.Pmulhuw), (b, a, _) => b.MulHigh16(a[0], a[1], signed: false));
        Add(nameof(SimdIntOps.Pmuludq), (b, a, _) =>
        {
            nint low = b.Splat(64, 0xFFFF_FFFF);
            return b.AsBytes(LLVMBuildMul(b._b, LLVMBuildAnd(b._b, b.AsLanes(a[0], 64), low, ""), LLVMBuildAnd(b._b, b.AsLanes(a[1], 64), low, ""), ""));
        });
        Add(nameof(SimdIntOps.Pmuldq), (b, a, _) =>
        {
            nint SignedLow(nint x) => LLVMBuildAShr(b._b, LLVMBuildShl(b._b, b.AsLanes(x, 64), b.Splat(64, 32), ""), b.Splat(64, 32), "");
            return b.AsBytes(LLVMBuildMul(b._b, SignedLow(a[0]), SignedLow(a[1]), ""));
        });

        foreach (var (name, bits, pred) in (ReadOnlySpan<(string, int, LlvmIntPredicate)>)[
            ("Pminub", 8, LlvmIntPredicate.Ult), ("Pmaxub", 8, LlvmIntPredicate.Ugt), ("Pminsb", 8, LlvmIntPredicate.Slt), ("Pmaxsb", 8, LlvmIntPredicate.Sgt),
            ("Pminuw", 16, LlvmIntPredicate.Ult), ("Pmaxuw", 16, LlvmIntPredicate.Ugt), ("Pminsw", 16, LlvmIntPredicate.Slt), ("Pmaxsw", 16, LlvmIntPredicate.Sgt),
            ("Pminud", 32, LlvmIntPredicate.Ult), ("Pmaxud", 32, LlvmIntPredicate.Ugt), ("Pminsd", 32, LlvmIntPredicate.Slt), ("Pmaxsd", 32, LlvmIntPredicate.Sgt)])
        {
            int w = bits;
            var p = pred;
            Add(name, (b, a, _) => b.MinMax(a[0], a[1], w, p));
        }

        foreach (var (name, bits, kind) in (ReadOnlySpan<(string, int, int)>)[
            ("Psllw", 16, 0), ("Pslld", 32, 0), ("Psllq", 64, 0), ("Psrlw", 16, 1), ("Psrld", 32, 1), ("Psrlq", 64, 1), ("Psraw", 16, 2), ("Psrad", 32, 2)])
        {
            int w = bits, k = kind;
            Add(name, (b, a, _) => b.ShiftLanes(a[0], a[1], w, k));
        }
        Add(nameof(SimdIntOps.Pslldq), (b, a, v) =>
        {
            int n = Imm(v, 1);
            var picks = new int[16];
            for (int i = 0; i < 16; i++) picks[i] = i - n >= 0 ? i - n : 16;
            return b.Shuffle(a[0], LLVMConstNull(b._v128), picks);
        }, 1);
        Add(nameof(SimdIntOps.Psrldq), (b, a, v) =>
        {
            int n = Imm(v, 1);
            var picks = new int[16];
            for (int i = 0; i < 16; i++) picks[i] = i + n < 16 ? i + n : 16;
            return b.Shuffle(a[0], LLVMConstNull(b._v128), picks);
        }, 1);
        Add(nameof(SimdIntOps.Palignr), (b, a, v) =>
        {
            // Bytes n… of dst:src (src low); beyond the 32 bytes, zeros.
            int n = Imm(v, 2);
            var picks = new int[16];
            if (n >= 16)
            {
                for (int i = 0; i < 16; i++) picks[i] = i + n - 16 < 16 ? i + n - 16 : 16;
                return b.Shuffle(a[0], LLVMConstNull(b._v128), picks);
            }
            for (int i = 0; i < 16; i++) picks[i] = i + n;
            return b.Shuffle(a[1], a[0], picks);
        }, 2);

        Add(nameof(SimdIntOps.Pshufd), (b, a, v) =>
        {
            int m = Imm(v, 1);
            nint x = b.AsLanes(a[0], 32);
            return b.AsBytes(b.Shuffle(x, x, [m & 3, (m >> 2) & 3, (m >> 4) & 3, m >> 6]));
        }, 1);
        Add(nameof(SimdIntOps.Pshuflw), (b, a, v) =>
        {
            int m = Imm(v, 1);
            nint x = b.AsLanes(a[0], 16);
            return b.AsBytes(b.Shuffle(x, x, [m & 3, (m >> 2) & 3, (m >> 4) & 3, m >> 6, 4, 5, 6, 7]));
        }, 1);
        Add(nameof(SimdIntOps.Pshufhw), (b, a, v) =>
        {
            int m = Imm(v, 1);
            nint x = b.AsLanes(a[0], 16);
            return b.AsBytes(b.Shuffle(x, x, [0, 1, 2, 3, 4 + (m & 3), 4 + ((m >> 2) & 3), 4 + ((m >> 4) & 3), 4 + (m >> 6)]));
        }, 1);
        Add(nameof(SimdIntOps.Shufps), (b, a, v) =>
        {
            int m = Imm(v, 2);
            return b.AsBytes(b.Shuffle(b.AsLanes(a[0], 32), b.AsLanes(a[1], 32), [m & 3, (m >> 2) & 3, 4 + ((m >> 4) & 3), 4 + (m >> 6)]));
        }, 2);
        Add(nameof(SimdIntOps.Shufpd), (b, a, v) =>
        {
            int m = Imm(v, 2);
            return b.AsBytes(b.Shuffle(b.AsLanes(a[0], 64), b.AsLanes(a[1], 64), [m & 1, 2 + ((m >> 1) & 1)]));
        }, 2);

        foreach (var (suffix, bits) in (ReadOnlySpan<(string, int)>)[("bw", 8), ("wd", 16), ("dq", 32), ("qdq", 64)])
        {
            int w = bits;
            Add("Punpckl" + suffix, (b, a, _) => b.Unpack(a[0], a[1], w, high: false));
            Add("Punpckh" + suffix, (b, a, _) => b.Unpack(a[0], a[1], w, high: true));
        }
        Add(nameof(SimdIntOps.Packsswb), (b, a, _) => b.Pack(a[0], a[1], 16, sbyte.MinValue, sbyte.MaxValue));
        Add(nameof(SimdIntOps.Packuswb), (b, a, _) => b.Pack(a[0], a[1], 16, 0, byte.MaxValue));
        Add(nameof(SimdIntOps.Packssdw), (b, a, _) => b.Pack(a[0], a[1], 32, short.MinValue, short.MaxValue));
        Add(nameof(SimdIntOps.Packusdw), (b, a, _) => b.Pack(a[0], a[1], 32, 0, ushort.MaxValue));

        Add(nameof(SimdIntOps.Pmovmskb), (b, a, _) => b.SignMask(a[0], 8));
        Add(nameof(SimdIntOps.Movmskps), (b, a, _) => b.SignMask(a[0], 32));
        Add(nameof(SimdIntOps.Movmskpd), (b, a, _) => b.SignMask(a[0], 64));

        Add(nameof(SimdIntOps.Insert), (b, a, v) =>
        {
            int size = Imm(v, 2), bits = size * 8, lanes = 16 / size;
            nint elem = LLVMIntTypeInContext(b._ctx, (uint)bits);
            nint x = bits == 64 ? a[1] : LLVMBuildTrunc(b._b, a[1], elem, "");
            return b.AsBytes(LLVMBuildInsertElement(b._b, b.AsLanes(a[0], bits), x, b.I32(Imm(v, 3) & (lanes - 1)), ""));
        }, 2, 3);
        Add(nameof(SimdIntOps.Extract), (b, a, v) =>
        {
            int size = Imm(v, 1), bits = size * 8, lanes = 16 / size;
            nint x = LLVMBuildExtractElement(b._b, b.AsLanes(a[0], bits), b.I32(Imm(v, 2) & (lanes - 1)), "");
            return bits == 64 ? x : LLVMBuildZExt(b._b, x, b._i64, "");
        }, 1, 2);

        // PSHUFB has no generic IR form; the host's own instruction when it has one (as the helper uses).
        if (System.Runtime.Intrinsics.X86.Ssse3.IsSupported)
            Add(nameof(SimdIntOps.Pshufb), (b, a, _) => b.IntrinsicFixed("llvm.x86.ssse3.pshuf.b.128", a[0], a[1]));
        return t;
    }
}
