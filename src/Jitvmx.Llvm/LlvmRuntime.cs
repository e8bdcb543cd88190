// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm;

/// <summary>
/// Entry points that LLVM-compiled regions call: the memory slow path and runtime helpers, as
/// <c>[UnmanagedCallersOnly]</c> trampolines over the same C# code the IL tier calls. Their
/// addresses are linked in by name (<see cref="Symbols"/>). An exception cannot unwind through
/// native frames: a trampoline catches it, and <see cref="LlvmRegionThunk"/> rethrows it when
/// the region returns (a Jitvmx bug path: the IL tier would have thrown too).
/// </summary>
internal static unsafe class LlvmRuntime
{
    public const string LoadSymbol = "jitvmx_load";
    public const string StoreSymbol = "jitvmx_store";
    public const string Load128Symbol = "jitvmx_load128";
    public const string Store128Symbol = "jitvmx_store128";
    public const string CallHelperSymbol = "jitvmx_call_helper";

    /// <summary>Bytes per argument slot in the buffer passed to <see cref="CallHelper"/> (a vector fits).</summary>
    public const int SlotSize = 16;

    [ThreadStatic] private static ExceptionDispatchInfo? t_pending;

    /// <summary>The trampolines by symbol name.</summary>
    public static (string Name, nint Address)[] Symbols() =>
    [
        (LoadSymbol, (nint)(delegate* unmanaged<CpuContext*, ulong, int, ulong, int, ulong>)&Load),
        (StoreSymbol, (nint)(delegate* unmanaged<CpuContext*, ulong, int, ulong, ulong, int, void>)&Store),
        (Load128Symbol, (nint)(delegate* unmanaged<CpuContext*, ulong, ulong, int, Vector128<byte>*, void>)&Load128),
        (Store128Symbol, (nint)(delegate* unmanaged<CpuContext*, ulong, Vector128<byte>*, ulong, int, void>)&Store128),
        (CallHelperSymbol, (nint)(delegate* unmanaged<int, CpuContext*, byte*, byte*, void>)&CallHelper),
    ];

    /// <summary>Rethrows an exception a trampoline caught on this thread, if any.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ThrowPending()
    {
        if (t_pending is { } e)
        {
            t_pending = null;
            e.Throw();
        }
    }

    private static void Fail(Exception e, CpuContext* ctx)
    {
        t_pending ??= ExceptionDispatchInfo.Capture(e);
        ctx->Pending = 1; // stops the region at its next memory-path check
    }

    [UnmanagedCallersOnly]
    private static ulong Load(CpuContext* ctx, ulong address, int size, ulong rip, int giveBack)
    {
        try { return MemoryPath.Load(ctx, address, size, rip, giveBack); }
        catch (Exception e) { Fail(e, ctx); return 0; }
    }

    [UnmanagedCallersOnly]
    private static void Store(CpuContext* ctx, ulong address, int size, ulong value, ulong rip, int giveBack)
    {
        try { MemoryPath.Store(ctx, address, size, value, rip, giveBack); }
        catch (Exception e) { Fail(e, ctx); }
    }

    [UnmanagedCallersOnly]
    private static void Load128(CpuContext* ctx, ulong address, ulong rip, int giveBack, Vector128<byte>* result)
    {
        try { *result = MemoryPath.Load128(ctx, address, rip, giveBack); }
        catch (Exception e) { Fail(e, ctx); }
    }

    [UnmanagedCallersOnly]
    private static void Store128(CpuContext* ctx, ulong address, Vector128<byte>* value, ulong rip, int giveBack)
    {
        try { MemoryPath.Store128(ctx, address, *value, rip, giveBack); }
        catch (Exception e) { Fail(e, ctx); }
    }

    /// <summary>
    /// Calls helper <paramref name="id"/> with arguments read from 16-byte slots (integers
    /// zero-extended to 64 bits, vectors as 16 bytes) and writes its result to <paramref name="result"/>
    /// (integers zero-extended to 64 bits, as the IL tier converts them).
    /// </summary>
    [UnmanagedCallersOnly]
    private static void CallHelper(int id, CpuContext* ctx, byte* args, byte* result)
    {
        try { Invoker(id)(ctx, args, result); }
        catch (Exception e)
        {
            Fail(e, ctx);
            *(ulong*)result = Helpers.Stop;
        }
    }

    private delegate void HelperInvoker(CpuContext* ctx, byte* args, byte* result);

    // Indexed by helper number (enum and registered alike); replaced, never changed in place, when it
    // grows, so the call path reads it without the lock.
    private static HelperInvoker?[] s_invokers = new HelperInvoker?[Helpers.FirstRegistered + 256];
    private static readonly Lock s_lock = new();

    private static HelperInvoker Invoker(int id)
    {
        var table = Volatile.Read(ref s_invokers);
        if ((uint)id < (uint)table.Length && table[id] is { } f) return f;
        lock (s_lock)
        {
            table = s_invokers;
            if (id >= table.Length)
            {
                var grown = new HelperInvoker?[id + 256];
                table.CopyTo(grown, 0);
                table = grown;
            }
            var r = table[id] ??= BuildInvoker(id);
            Volatile.Write(ref s_invokers, table);
            return r;
        }
    }

    private static readonly Type[] s_narrow = [typeof(uint), typeof(int), typeof(ushort), typeof(short), typeof(byte), typeof(sbyte), typeof(bool)];

    /// <summary>Whether the backend can call helper <paramref name="id"/> through <see cref="CallHelper"/>; else why not.</summary>
    public static string? Unsupported(int id, int argCount)
    {
        var m = Helpers.Method(id);
        if (m is null) return $"helper {Helpers.Name(id)} is not implemented";
        var ps = m.GetParameters();
        int first = ps.Length > 0 && ps[0].ParameterType == typeof(CpuContext*) ? 1 : 0;
        if (ps.Length - first != argCount) return $"helper {m.Name} takes {ps.Length - first} arguments, IR passes {argCount}";
        foreach (var p in ps.Skip(first))
            if (!IsSlotType(p.ParameterType)) return $"helper {m.Name}: parameter type {p.ParameterType.Name}";
        if (m.ReturnType != typeof(void) && !IsSlotType(m.ReturnType)) return $"helper {m.Name}: return type {m.ReturnType.Name}";
        return null;
    }

    private static bool IsSlotType(Type t) => t == typeof(ulong) || t == typeof(long) || t == typeof(Vector128<byte>) || s_narrow.Contains(t);

    /// <summary>Emits <c>(ctx, args, result) =&gt; *result = H(ctx?, (T0)args[0], …)</c> for the helper's natural signature.</summary>
    private static HelperInvoker BuildInvoker(int id)
    {
        var m = Helpers.Method(id) ?? throw new NotSupportedException($"helper {Helpers.Name(id)} is not implemented");
        var dm = new DynamicMethod($"invoke_{m.Name}", typeof(void), [typeof(CpuContext*), typeof(byte*), typeof(byte*)], typeof(Helpers).Module, skipVisibility: true);
        var il = dm.GetILGenerator();
        var ps = m.GetParameters();
        int first = 0;
        if (ps.Length > 0 && ps[0].ParameterType == typeof(CpuContext*))
        {
            il.Emit(OpCodes.Ldarg_0);
            first = 1;
        }
        for (int i = first; i < ps.Length; i++)
        {
            var t = ps[i].ParameterType;
            il.Emit(OpCodes.Ldarg_1);
            if (i > first)
            {
                il.Emit(OpCodes.Ldc_I4, (i - first) * SlotSize);
                il.Emit(OpCodes.Add);
            }
            if (t == typeof(Vector128<byte>)) il.Emit(OpCodes.Ldobj, t);
            else if (t == typeof(ulong) || t == typeof(long)) il.Emit(OpCodes.Ldind_I8);
            else if (t == typeof(uint) || t == typeof(int)) il.Emit(OpCodes.Ldind_U4);
            else if (t == typeof(short)) il.Emit(OpCodes.Ldind_I2);
            else if (t == typeof(ushort)) il.Emit(OpCodes.Ldind_U2);
            else if (t == typeof(sbyte)) il.Emit(OpCodes.Ldind_I1);
            else if (t == typeof(byte) || t == typeof(bool)) il.Emit(OpCodes.Ldind_U1);
            else throw new NotSupportedException($"helper {m.Name}: parameter type {t.Name}");
        }
        var rt = m.ReturnType;
        if (rt == typeof(void))
        {
            il.Emit(OpCodes.Call, m);
            il.Emit(OpCodes.Ret);
        }
        else
        {
            var local = il.DeclareLocal(rt);
            il.Emit(OpCodes.Call, m);
            il.Emit(OpCodes.Stloc, local);
            il.Emit(OpCodes.Ldarg_2);
            il.Emit(OpCodes.Ldloc, local);
            if (rt == typeof(Vector128<byte>)) il.Emit(OpCodes.Stobj, rt);
            else
            {
                // As the IL tier's conversion: narrower results are zero-extended from 32 bits.
                if (rt != typeof(ulong) && rt != typeof(long)) il.Emit(OpCodes.Conv_U8);
                il.Emit(OpCodes.Stind_I8);
            }
            il.Emit(OpCodes.Ret);
        }
        return (HelperInvoker)dm.CreateDelegate(typeof(HelperInvoker));
    }
}

/// <summary>Adapts an LLVM-compiled <c>i32 region(ptr ctx)</c> to the dispatcher's region delegate.</summary>
internal sealed unsafe class LlvmRegionThunk(nint function, nint tracker, ulong[] faultKeys)
{
    /// <summary>Native entry point.</summary>
    public nint Function { get; } = function;

    /// <summary>The JIT resource tracker holding the code (kept for the life of the region).</summary>
    public nint Tracker { get; } = tracker;

    /// <summary>Runs the region.</summary>
    public int Invoke(CpuContext* ctx)
    {
        int code = ((delegate* unmanaged<CpuContext*, int>)Function)(ctx);
        LlvmRuntime.ThrowPending();
        return code;
    }

    /// <summary>Frees the code. The caller guarantees no thread runs or will run it (the region was invalidated and dropped everywhere).</summary>
    public void Release()
    {
        HostFaults.Unregister(faultKeys);
        LlvmJit.Release(Tracker, removeCode: true);
    }
}
