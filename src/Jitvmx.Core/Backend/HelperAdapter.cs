// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.Intrinsics;
using Jitvmx.Runtime;
using V = System.Runtime.Intrinsics.Vector128<byte>;

namespace Jitvmx.Backend;

/// <summary>
/// Calls a runtime helper for the interpreter through a function pointer of the helper's shape,
/// in code compiled ahead of time: making a DynamicMethod per helper cost each run's start-up a host
/// JIT compilation (about 0.3 ms) for every helper its first regions call. The shape names the
/// parameters in order (P: the <c>CpuContext*</c>, G: an integer, V: a <c>Vector128&lt;byte&gt;</c>)
/// and the result (v: none). A helper of a shape not listed here gets a DynamicMethod thunk as
/// before; a test checks that every helper has an adapter.
/// </summary>
/// <remarks>
/// Integers are passed as 64 bits already narrowed to the parameter's type (zero- or sign-extended
/// as the type's own value), so that the callee finds the value its type holds whichever side of the
/// call normalizes small integers; a narrow result is narrowed the same way as the DynamicMethod
/// thunk's <c>conv.u8</c> does.
/// </remarks>
internal sealed unsafe class HelperAdapter
{
    /// <summary>The shapes with an adapter, by index.</summary>
    internal static readonly string[] Shapes =
    [
        "V->G", "V->V", "GG->G", "GG->V", "VG->G", "VG->V", "VV->G", "VV->V",
        "GGG->G", "VGG->G", "VVG->V", "VVV->V", "VGGG->V", "VVGG->V", "VVVG->V", "VVGGGG->G",
        "P->G", "P->v", "PG->G", "PG->v", "PGG->G", "PGG->v", "PGGG->G", "PGGG->v",
        "PGVV->V", "PGGGG->G", "PGGGG->v", "PGVVG->V", "PGGGGGG->v",
    ];

    private readonly nint _fn;
    private readonly int _shape;
    private readonly TypeCode[] _params;
    private readonly TypeCode _result;

    private HelperAdapter(nint fn, int shape, TypeCode[] parameters, TypeCode result)
    {
        _fn = fn;
        _shape = shape;
        _params = parameters;
        _result = result;
    }

    /// <summary>The shape of <paramref name="m"/> (see the class summary); null when a parameter or the result is of another type.</summary>
    internal static string? Shape(MethodInfo m)
    {
        var sb = new System.Text.StringBuilder();
        var ps = m.GetParameters();
        for (int i = 0; i < ps.Length; i++)
        {
            var t = ps[i].ParameterType;
            if (i == 0 && t == typeof(CpuContext*)) sb.Append('P');
            else if (t == typeof(V)) sb.Append('V');
            else if (Integer(t)) sb.Append('G');
            else return null;
        }
        var r = m.ReturnType;
        sb.Append("->").Append(r == typeof(void) ? 'v' : r == typeof(V) ? 'V' : Integer(r) ? 'G' : '?');
        return sb[^1] == '?' ? null : sb.ToString();
    }

    private static bool Integer(Type t) => Type.GetTypeCode(t) is TypeCode.UInt64 or TypeCode.Int64 or TypeCode.UInt32 or TypeCode.Int32
        or TypeCode.UInt16 or TypeCode.Int16 or TypeCode.Byte or TypeCode.SByte or TypeCode.Boolean && !t.IsEnum;

    /// <summary>A thunk calling <paramref name="m"/> through an adapter; null when its shape has none.</summary>
    public static HelperThunk? TryCreate(MethodInfo m)
    {
        if (Shape(m) is not { } shape || Array.IndexOf(Shapes, shape) is not (>= 0 and var index)) return null;
        var ps = m.GetParameters();
        int first = shape[0] == 'P' ? 1 : 0;
        var codes = new TypeCode[ps.Length - first];
        for (int i = 0; i < codes.Length; i++) codes[i] = Type.GetTypeCode(ps[first + i].ParameterType);
        return new HelperAdapter(m.MethodHandle.GetFunctionPointer(), index, codes, Type.GetTypeCode(m.ReturnType)).Invoke;
    }

    /// <summary>Integer argument <paramref name="j"/>, narrowed to its parameter's type.</summary>
    private ulong G(ulong* args, int j)
    {
        ulong v = args[j];
        return _params[j] switch
        {
            TypeCode.UInt32 or TypeCode.Int32 => (uint)v,
            TypeCode.UInt16 => (ushort)v,
            TypeCode.Int16 => (ulong)(long)(short)v,
            TypeCode.Byte or TypeCode.Boolean => (byte)v,
            TypeCode.SByte => (ulong)(long)(sbyte)v,
            _ => v,
        };
    }

    /// <summary>An integer result as the thunk's <c>conv.u8</c> of the type's stack value gives it.</summary>
    private ulong Result(ulong raw) => _result switch
    {
        TypeCode.UInt32 or TypeCode.Int32 => (uint)raw,
        TypeCode.UInt16 => (ushort)raw,
        TypeCode.Int16 => (uint)(int)(short)raw,
        TypeCode.Byte or TypeCode.Boolean => (byte)raw,
        TypeCode.SByte => (uint)(int)(sbyte)raw,
        _ => raw,
    };

    private void Invoke(CpuContext* ctx, ulong* args, V* vargs, V* result)
    {
        switch (_shape)
        {
            case 0: *result = Vector128.CreateScalar(Result(((delegate*<V, ulong>)_fn)(vargs[0]))).AsByte(); return; // V->G
            case 1: *result = ((delegate*<V, V>)_fn)(vargs[0]); return; // V->V
            case 2: *result = Vector128.CreateScalar(Result(((delegate*<ulong, ulong, ulong>)_fn)(G(args, 0), G(args, 1)))).AsByte(); return; // GG->G
            case 3: *result = ((delegate*<ulong, ulong, V>)_fn)(G(args, 0), G(args, 1)); return; // GG->V
            case 4: *result = Vector128.CreateScalar(Result(((delegate*<V, ulong, ulong>)_fn)(vargs[0], G(args, 1)))).AsByte(); return; // VG->G
            case 5: *result = ((delegate*<V, ulong, V>)_fn)(vargs[0], G(args, 1)); return; // VG->V
            case 6: *result = Vector128.CreateScalar(Result(((delegate*<V, V, ulong>)_fn)(vargs[0], vargs[1]))).AsByte(); return; // VV->G
            case 7: *result = ((delegate*<V, V, V>)_fn)(vargs[0], vargs[1]); return; // VV->V
            case 8: *result = Vector128.CreateScalar(Result(((delegate*<ulong, ulong, ulong, ulong>)_fn)(G(args, 0), G(args, 1), G(args, 2)))).AsByte(); return; // GGG->G
            case 9: *result = Vector128.CreateScalar(Result(((delegate*<V, ulong, ulong, ulong>)_fn)(vargs[0], G(args, 1), G(args, 2)))).AsByte(); return; // VGG->G
            case 10: *result = ((delegate*<V, V, ulong, V>)_fn)(vargs[0], vargs[1], G(args, 2)); return; // VVG->V
            case 11: *result = ((delegate*<V, V, V, V>)_fn)(vargs[0], vargs[1], vargs[2]); return; // VVV->V
            case 12: *result = ((delegate*<V, ulong, ulong, ulong, V>)_fn)(vargs[0], G(args, 1), G(args, 2), G(args, 3)); return; // VGGG->V
            case 13: *result = ((delegate*<V, V, ulong, ulong, V>)_fn)(vargs[0], vargs[1], G(args, 2), G(args, 3)); return; // VVGG->V
            case 14: *result = ((delegate*<V, V, V, ulong, V>)_fn)(vargs[0], vargs[1], vargs[2], G(args, 3)); return; // VVVG->V
            case 15: *result = Vector128.CreateScalar(Result(((delegate*<V, V, ulong, ulong, ulong, ulong, ulong>)_fn)(vargs[0], vargs[1], G(args, 2), G(args, 3), G(args, 4), G(args, 5)))).AsByte(); return; // VVGGGG->G
            case 16: *result = Vector128.CreateScalar(Result(((delegate*<CpuContext*, ulong>)_fn)(ctx))).AsByte(); return; // P->G
            case 17: ((delegate*<CpuContext*, void>)_fn)(ctx); return; // P->v
            case 18: *result = Vector128.CreateScalar(Result(((delegate*<CpuContext*, ulong, ulong>)_fn)(ctx, G(args, 0)))).AsByte(); return; // PG->G
            case 19: ((delegate*<CpuContext*, ulong, void>)_fn)(ctx, G(args, 0)); return; // PG->v
            case 20: *result = Vector128.CreateScalar(Result(((delegate*<CpuContext*, ulong, ulong, ulong>)_fn)(ctx, G(args, 0), G(args, 1)))).AsByte(); return; // PGG->G
            case 21: ((delegate*<CpuContext*, ulong, ulong, void>)_fn)(ctx, G(args, 0), G(args, 1)); return; // PGG->v
            case 22: *result = Vector128.CreateScalar(Result(((delegate*<CpuContext*, ulong, ulong, ulong, ulong>)_fn)(ctx, G(args, 0), G(args, 1), G(args, 2)))).AsByte(); return; // PGGG->G
            case 23: ((delegate*<CpuContext*, ulong, ulong, ulong, void>)_fn)(ctx, G(args, 0), G(args, 1), G(args, 2)); return; // PGGG->v
            case 24: *result = ((delegate*<CpuContext*, ulong, V, V, V>)_fn)(ctx, G(args, 0), vargs[1], vargs[2]); return; // PGVV->V
            case 25: *result = Vector128.CreateScalar(Result(((delegate*<CpuContext*, ulong, ulong, ulong, ulong, ulong>)_fn)(ctx, G(args, 0), G(args, 1), G(args, 2), G(args, 3)))).AsByte(); return; // PGGGG->G
            case 26: ((delegate*<CpuContext*, ulong, ulong, ulong, ulong, void>)_fn)(ctx, G(args, 0), G(args, 1), G(args, 2), G(args, 3)); return; // PGGGG->v
            case 27: *result = ((delegate*<CpuContext*, ulong, V, V, ulong, V>)_fn)(ctx, G(args, 0), vargs[1], vargs[2], G(args, 3)); return; // PGVVG->V
            case 28: ((delegate*<CpuContext*, ulong, ulong, ulong, ulong, ulong, ulong, void>)_fn)(ctx, G(args, 0), G(args, 1), G(args, 2), G(args, 3), G(args, 4), G(args, 5)); return; // PGGGGGG->v
            default: throw new InvalidOperationException($"no adapter {_shape}");
        }
    }
}
