// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Numerics;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.Intrinsics;
using Jitvmx.Ir;
using Jitvmx.Runtime;

namespace Jitvmx.Backend;

/// <summary>Compiled region code: returns a successor slot (≥ 0), or <see cref="RegionCode.Indirect"/>/<see cref="RegionCode.Stop"/>.</summary>
internal unsafe delegate int RegionFunction(CpuContext* ctx);

/// <summary>Special results of region code.</summary>
internal static class RegionCode
{
    /// <summary>Continue at the RIP in the guest state.</summary>
    public const int Indirect = -1;
    /// <summary>Stopped: the dispatcher looks at what is pending (an exit, a restart, the budget).</summary>
    public const int Stop = -2;
    /// <summary>
    /// Nothing was done, and RIP is where the code was entered: the code cannot run in the guest's
    /// current state (LLVM code with an SSE exception unmasked), so the dispatcher runs the
    /// instruction at RIP on its own and carries on.
    /// </summary>
    public const int Step = -3;
}

/// <summary>The result of compiling a region.</summary>
internal sealed class CompiledRegion(RegionFunction function, ulong[] successors)
{
    public RegionFunction Function { get; } = function;
    /// <summary>Guest RIP of each direct-exit slot.</summary>
    public ulong[] SuccessorRips { get; } = successors;
    /// <summary>Native entry point (i32 fn(CpuContext*)), for chaining; 0 for managed code.</summary>
    public nint NativeEntry { get; init; }
    /// <summary>Whether the code is native (LLVM's) rather than IL or the interpreter's.</summary>
    public bool IsNative => NativeEntry != 0;
    /// <summary>Native code's link cells, one per successor slot: a non-null cell makes the slot's exit jump straight to that code.</summary>
    public unsafe nint* Links { get; init; }
    /// <summary>Where native code reads the cookie it reports in <see cref="Runtime.CpuContext.ExitCookie"/>.</summary>
    public unsafe int* CookieCell { get; init; }
    /// <summary>
    /// Budget the code needs at entry to run its first stretch (0: just the entry block's charge).
    /// Code that checks the budget only at its entry and loop heads needs all it can retire before the
    /// next check; with less it stops at once, so the dispatcher steps instead.
    /// </summary>
    public int EntryCharge { get; init; }
}

/// <summary>
/// Compiles an IR region to one DynamicMethod. Guest registers and flags live in IL locals (loaded
/// at entry, spilled at exits), so the JIT keeps them in host registers across the region's loops.
/// Every guest memory access is an inline software-TLB check with a call to the slow path on a miss.
/// </summary>
internal sealed unsafe class IlBackend
{
    private static readonly MethodInfo s_rotl32 = typeof(BitOperations).GetMethod(nameof(BitOperations.RotateLeft), [typeof(uint), typeof(int)])!;
    private static readonly MethodInfo s_rotl64 = typeof(BitOperations).GetMethod(nameof(BitOperations.RotateLeft), [typeof(ulong), typeof(int)])!;
    private static readonly MethodInfo s_rotr32 = typeof(BitOperations).GetMethod(nameof(BitOperations.RotateRight), [typeof(uint), typeof(int)])!;
    private static readonly MethodInfo s_rotr64 = typeof(BitOperations).GetMethod(nameof(BitOperations.RotateRight), [typeof(ulong), typeof(int)])!;
    private static readonly MethodInfo s_pop32 = typeof(BitOperations).GetMethod(nameof(BitOperations.PopCount), [typeof(uint)])!;
    private static readonly MethodInfo s_pop64 = typeof(BitOperations).GetMethod(nameof(BitOperations.PopCount), [typeof(ulong)])!;
    private static readonly MethodInfo s_tz32 = typeof(BitOperations).GetMethod(nameof(BitOperations.TrailingZeroCount), [typeof(uint)])!;
    private static readonly MethodInfo s_tz64 = typeof(BitOperations).GetMethod(nameof(BitOperations.TrailingZeroCount), [typeof(ulong)])!;
    private static readonly MethodInfo s_lz32 = typeof(BitOperations).GetMethod(nameof(BitOperations.LeadingZeroCount), [typeof(uint)])!;
    private static readonly MethodInfo s_lz64 = typeof(BitOperations).GetMethod(nameof(BitOperations.LeadingZeroCount), [typeof(ulong)])!;
    private static readonly MethodInfo s_bswap16 = typeof(BinaryPrimitives).GetMethod(nameof(BinaryPrimitives.ReverseEndianness), [typeof(ushort)])!;
    private static readonly MethodInfo s_bswap32 = typeof(BinaryPrimitives).GetMethod(nameof(BinaryPrimitives.ReverseEndianness), [typeof(uint)])!;
    private static readonly MethodInfo s_bswap64 = typeof(BinaryPrimitives).GetMethod(nameof(BinaryPrimitives.ReverseEndianness), [typeof(ulong)])!;
    private static readonly MethodInfo s_umulhi = typeof(IlBackend).GetMethod(nameof(UMulHi), BindingFlags.Static | BindingFlags.NonPublic)!;
    private static readonly MethodInfo s_smulhi = typeof(IlBackend).GetMethod(nameof(SMulHi), BindingFlags.Static | BindingFlags.NonPublic)!;

    private static readonly int[] s_flagBits = [0, 2, 4, 6, 7, 11, 10]; // RFLAGS bit of each Flag: CF PF AF ZF SF OF DF
    private const ulong StatusAndDf = (ulong)(RFlags.Status | RFlags.DF);

    private readonly IrRegion _region;
    private readonly ILGenerator _il;
    private readonly DynamicMethod _method;
    private readonly LocalBuilder?[] _gpr = new LocalBuilder?[16];
    private readonly bool[] _gprWritten = new bool[16];
    private readonly LocalBuilder?[] _xmm = new LocalBuilder?[16];
    private readonly bool[] _xmmWritten = new bool[16];
    private readonly LocalBuilder?[] _flag = new LocalBuilder?[7];
    private readonly bool[] _flagWritten = new bool[7];
    private readonly Dictionary<IrValue, LocalBuilder> _values = [];
    private readonly Dictionary<IrBlock, Label> _labels = [];
    private readonly List<ulong> _successors = [];
    private LocalBuilder _remaining = null!, _code = null!, _entry = null!, _addr = null!;
    private Label _spill, _fault;

    private static readonly object s_closedOver = new();

    private IlBackend(IrRegion region)
    {
        _region = region;
        // A leading object parameter that a closed delegate binds: calling a closed delegate is a
        // plain call, while an open static one goes through the runtime's shuffle thunk.
        _method = new DynamicMethod($"region_{region.EntryRip:x}", typeof(int), [typeof(object), typeof(CpuContext*)], typeof(IlBackend).Module, skipVisibility: true);
        _il = _method.GetILGenerator();
    }

    /// <summary>Compiles <paramref name="region"/> (after <see cref="Passes.Run"/>).</summary>
    public static CompiledRegion Compile(IrRegion region)
    {
        var b = new IlBackend(region);
        b.Emit();
        var fn = (RegionFunction)b._method.CreateDelegate(typeof(RegionFunction), s_closedOver);
        return new CompiledRegion(fn, b._successors.ToArray());
    }

    private static readonly MethodInfo s_vecFromScalar = typeof(IlBackend).GetMethod(nameof(VecFromScalar), BindingFlags.Static | BindingFlags.NonPublic)!;
    private static readonly MethodInfo s_vecLow64 = typeof(IlBackend).GetMethod(nameof(VecLow64), BindingFlags.Static | BindingFlags.NonPublic)!;

    private static Vector128<byte> VecFromScalar(ulong v) => Vector128.CreateScalar(v).AsByte();
    private static ulong VecLow64(Vector128<byte> v) => v.AsUInt64().ToScalar();

    private static ulong UMulHi(ulong a, ulong b) => Math.BigMul(a, b, out _);
    private static ulong SMulHi(long a, long b) => (ulong)Math.BigMul(a, b, out _);

    private static bool IsWide(IrType t) => t == IrType.I64;

    private static Type LocalType(IrType t) => t switch
    {
        IrType.I64 => typeof(ulong),
        IrType.V128 => typeof(Vector128<byte>),
        _ => typeof(uint),
    };

    // ================= structure =================

    private void Emit()
    {
        ScanState();
        _remaining = _il.DeclareLocal(typeof(long));
        _code = _il.DeclareLocal(typeof(int));
        _entry = _il.DeclareLocal(typeof(byte*));
        _addr = _il.DeclareLocal(typeof(ulong));
        _spill = _il.DefineLabel();
        _fault = _il.DefineLabel();
        foreach (var b in _region.Blocks) _labels[b] = _il.DefineLabel();
        AnalyzeLiveness();

        // Prologue: guest registers and flags into locals.
        LoadState();
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.Remaining);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Stloc, _remaining);

        _groups = AccessGroups.Find(_region);
        _groupChecks.Clear();
        foreach (var b in _region.Blocks) EmitBlock(b);

        // Memory fault or restart: the slow path set RIP and how many instructions to give back.
        _il.MarkLabel(_fault);
        _il.Emit(OpCodes.Ldloc, _remaining);
        EmitCtxLoad(StateOffsets.GiveBack, OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, _remaining);
        _il.Emit(OpCodes.Ldc_I4, RegionCode.Stop);
        _il.Emit(OpCodes.Stloc, _code);

        _il.MarkLabel(_spill);
        SpillState();
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.Remaining);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldloc, _remaining);
        _il.Emit(OpCodes.Stind_I8);
        _il.Emit(OpCodes.Ldloc, _code);
        _il.Emit(OpCodes.Ret);
    }

    private void ScanState()
    {
        foreach (var b in _region.Blocks)
            foreach (var v in b.Nodes)
            {
                switch (v.Op)
                {
                    case IrOp.GetReg: _gpr[v.Aux] ??= _il.DeclareLocal(typeof(ulong)); break;
                    case IrOp.SetReg: _gpr[v.Aux] ??= _il.DeclareLocal(typeof(ulong)); _gprWritten[v.Aux] = true; break;
                    case IrOp.GetFlag: _flag[v.Aux] ??= _il.DeclareLocal(typeof(int)); break;
                    case IrOp.SetFlag: _flag[v.Aux] ??= _il.DeclareLocal(typeof(int)); _flagWritten[v.Aux] = true; break;
                    case IrOp.GetXmm: _xmm[v.Aux] ??= _il.DeclareLocal(typeof(Vector128<byte>)); break;
                    case IrOp.SetXmm: _xmm[v.Aux] ??= _il.DeclareLocal(typeof(Vector128<byte>)); _xmmWritten[v.Aux] = true; break;
                }
            }
    }

    private void EmitCtxLoad(int offset, OpCode ld)
    {
        _il.Emit(OpCodes.Ldarg_1);
        if (offset != 0)
        {
            _il.Emit(OpCodes.Ldc_I4, offset);
            _il.Emit(OpCodes.Add);
        }
        _il.Emit(ld);
    }

    /// <summary>Loads the stop flag with a volatile read: another thread sets it, and the JIT must not hoist it out of a loop.</summary>
    private void EmitVolatileStopLoad()
    {
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.StopRequested);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Volatile);
        _il.Emit(OpCodes.Ldind_I4);
    }

    private void LoadState()
    {
        for (int i = 0; i < 16; i++)
        {
            if (_gpr[i] is null) continue;
            EmitCtxLoad(StateOffsets.Gpr(i), OpCodes.Ldind_I8);
            _il.Emit(OpCodes.Stloc, _gpr[i]!);
        }
        for (int x = 0; x < 16; x++)
        {
            if (_xmm[x] is null) continue;
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, StateOffsets.XmmReg(x));
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldobj, typeof(Vector128<byte>));
            _il.Emit(OpCodes.Stloc, _xmm[x]!);
        }
        for (int f = 0; f < 7; f++)
        {
            if (_flag[f] is null) continue;
            EmitCtxLoad(StateOffsets.Rflags, OpCodes.Ldind_I8);
            _il.Emit(OpCodes.Ldc_I4, s_flagBits[f]);
            _il.Emit(OpCodes.Shr_Un);
            _il.Emit(OpCodes.Conv_U4);
            _il.Emit(OpCodes.Ldc_I4_1);
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Stloc, _flag[f]!);
        }
    }

    private void SpillState()
    {
        for (int i = 0; i < 16; i++)
        {
            if (!_gprWritten[i]) continue;
            _il.Emit(OpCodes.Ldarg_1);
            if (i != 0)
            {
                _il.Emit(OpCodes.Ldc_I4, StateOffsets.Gpr(i));
                _il.Emit(OpCodes.Add);
            }
            _il.Emit(OpCodes.Ldloc, _gpr[i]!);
            _il.Emit(OpCodes.Stind_I8);
        }
        for (int x = 0; x < 16; x++)
        {
            if (!_xmmWritten[x]) continue;
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, StateOffsets.XmmReg(x));
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldloc, _xmm[x]!);
            _il.Emit(OpCodes.Stobj, typeof(Vector128<byte>));
        }
        ulong mask = 0;
        for (int f = 0; f < 7; f++)
            if (_flagWritten[f]) mask |= 1UL << s_flagBits[f];
        if (mask == 0) return;
        // rflags = (rflags & ~mask) | Σ flag << bit
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.Rflags);
        _il.Emit(OpCodes.Add);
        EmitCtxLoad(StateOffsets.Rflags, OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Ldc_I8, (long)~mask);
        _il.Emit(OpCodes.And);
        for (int f = 0; f < 7; f++)
        {
            if (!_flagWritten[f]) continue;
            _il.Emit(OpCodes.Ldloc, _flag[f]!);
            _il.Emit(OpCodes.Conv_U8);
            _il.Emit(OpCodes.Ldc_I4, s_flagBits[f]);
            _il.Emit(OpCodes.Shl);
            _il.Emit(OpCodes.Or);
        }
        _il.Emit(OpCodes.Stind_I8);
    }

    private void EmitBlock(IrBlock b)
    {
        _il.MarkLabel(_labels[b]);
        if (b.ChargedInsns == 0 && b.IsLoopHeader && b.ResumeInsn is { } resume)
        {
            // A loop inside one instruction (REP): stop with RIP at the instruction, which has not retired.
            var go = _il.DefineLabel();
            EmitVolatileStopLoad();
            _il.Emit(OpCodes.Brfalse, go);
            _il.Emit(OpCodes.Ldloc, _remaining);
            _il.Emit(OpCodes.Ldc_I8, (long)resume.GiveBack);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Stloc, _remaining);
            SetRip(resume.Rip);
            _il.Emit(OpCodes.Ldc_I4, RegionCode.Stop);
            _il.Emit(OpCodes.Stloc, _code);
            _il.Emit(OpCodes.Br, _spill);
            _il.MarkLabel(go);
        }
        else if (b.ChargedInsns > 0)
        {
            // No stop-flag check at loop headers: the budget comes in slices (VirtualCpu), so the
            // check below returns to the dispatcher, which sees an exit request, within a slice.
            var ok = _il.DefineLabel();
            // if (remaining < n) stop before the block with RIP at its start; else remaining -= n.
            _il.Emit(OpCodes.Ldloc, _remaining);
            _il.Emit(OpCodes.Ldc_I8, (long)b.ChargedInsns);
            _il.Emit(OpCodes.Bge, ok);
            SetRip(b.GuestAddress);
            _il.Emit(OpCodes.Ldc_I4, RegionCode.Stop);
            _il.Emit(OpCodes.Stloc, _code);
            _il.Emit(OpCodes.Br, _spill);
            _il.MarkLabel(ok);
            _il.Emit(OpCodes.Ldloc, _remaining);
            _il.Emit(OpCodes.Ldc_I8, (long)b.ChargedInsns);
            _il.Emit(OpCodes.Sub);
            _il.Emit(OpCodes.Stloc, _remaining);
        }
        for (int i = 0; i < b.Nodes.Count; i++)
        {
            var v = b.Nodes[i];
            EmitNode(v);
            if (!IsInlined(v)) ReleaseDead(v, i);
        }
    }

    private void SetRip(ulong rip)
    {
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.Rip);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldc_I8, (long)rip);
        _il.Emit(OpCodes.Stind_I8);
    }

    // ================= values =================

    /// <summary>
    /// Whether a value is emitted as part of the expression that uses it instead of getting a local:
    /// single-use pure arithmetic on SSA values gives the same result wherever it is computed, and
    /// fewer locals make the JIT much faster.
    /// </summary>
    private static bool IsInlined(IrValue v) => v.Uses == 1 && v.Op switch
    {
        IrOp.Add or IrOp.Sub or IrOp.Mul or IrOp.And or IrOp.Or or IrOp.Xor or IrOp.Shl or IrOp.LShr or IrOp.AShr
            or IrOp.Not or IrOp.Neg or IrOp.ZExt or IrOp.SExt or IrOp.Trunc or IrOp.Eq or IrOp.Ne or IrOp.Ult or IrOp.Ule
            or IrOp.Slt or IrOp.Sle or IrOp.Parity or IrOp.Popcnt or IrOp.Ctz or IrOp.Clz or IrOp.Bswap
            or IrOp.UMulHi or IrOp.SMulHi => true,
        _ => false,
    };

    private IrValue? _inlineTarget;

    // IL locals are recycled: RyuJIT tracks a limited number of locals and leaves the rest in
    // memory, so one local per value would spill a large region's hot loop to the stack.
    private readonly Dictionary<Type, Stack<LocalBuilder>> _pool = [];
    private readonly Dictionary<IrValue, int> _lastUse = [];
    private readonly HashSet<IrValue> _crossBlock = [];

    private LocalBuilder Rent(Type t) =>
        _pool.TryGetValue(t, out var s) && s.TryPop(out var l) ? l : _il.DeclareLocal(t);

    private void Return(LocalBuilder l)
    {
        if (!_pool.TryGetValue(l.LocalType, out var s)) _pool[l.LocalType] = s = new Stack<LocalBuilder>();
        s.Push(l);
    }

    /// <summary>
    /// For every value: whether it is used outside its own block (it keeps its local), else the
    /// index of the node in its block that consumes it last (where its local can be recycled).
    /// A use inside an inlined expression happens where the expression is emitted.
    /// </summary>
    private void AnalyzeLiveness()
    {
        var home = new Dictionary<IrValue, IrBlock>();
        foreach (var b in _region.Blocks)
            foreach (var v in b.Nodes) home[v] = b;
        foreach (var b in _region.Blocks)
        {
            for (int i = 0; i < b.Nodes.Count; i++)
            {
                var u = b.Nodes[i];
                if (IsInlined(u)) continue;
                MarkUses(u, b, i, home);
            }
        }
    }

    private void MarkUses(IrValue u, IrBlock b, int index, Dictionary<IrValue, IrBlock> home)
    {
        foreach (var a in u.Args)
        {
            if (a.Op == IrOp.Const) continue;
            if (IsInlined(a))
            {
                MarkUses(a, b, index, home);
                continue;
            }
            if (!home.TryGetValue(a, out var hb) || hb != b) _crossBlock.Add(a);
            else _lastUse[a] = index;
        }
    }

    /// <summary>Recycles the locals of block-local values whose last use was node <paramref name="index"/>.</summary>
    private void ReleaseDead(IrValue u, int index)
    {
        foreach (var a in u.Args)
        {
            if (a.Op == IrOp.Const) continue;
            if (IsInlined(a))
            {
                ReleaseDead(a, index);
                continue;
            }
            if (!_crossBlock.Contains(a) && _lastUse.TryGetValue(a, out int last) && last == index
                && _values.Remove(a, out var local))
                Return(local);
        }
    }

    private void Push(IrValue v)
    {
        if (v.Op == IrOp.Const)
        {
            if (IsWide(v.Type)) _il.Emit(OpCodes.Ldc_I8, (long)v.Imm);
            else _il.Emit(OpCodes.Ldc_I4, (int)(uint)v.Imm);
            return;
        }
        if (IsInlined(v))
        {
            var saved = _inlineTarget;
            _inlineTarget = v;
            EmitNode(v, inline: true);
            _inlineTarget = saved;
            return;
        }
        if (!_values.TryGetValue(v, out var local))
            throw new InvalidOperationException($"IR value v{v.Id} used before its definition in region 0x{_region.EntryRip:x}");
        _il.Emit(OpCodes.Ldloc, local);
    }

    private void Define(IrValue v)
    {
        // An inlined value stays on the IL stack for its user.
        if (ReferenceEquals(v, _inlineTarget)) return;
        // The value is on the IL stack.
        var local = Rent(LocalType(v.Type));
        _values[v] = local;
        _il.Emit(OpCodes.Stloc, local);
    }

    /// <summary>Truncates the int32 on the stack to the canonical form of a sub-32-bit type.</summary>
    private void Canon(IrType t)
    {
        switch (t)
        {
            case IrType.I8: _il.Emit(OpCodes.Conv_U1); break;
            case IrType.I16: _il.Emit(OpCodes.Conv_U2); break;
            case IrType.I1: _il.Emit(OpCodes.Ldc_I4_1); _il.Emit(OpCodes.And); break;
        }
    }

    /// <summary>Pushes a value sign-extended to its stack width (int32 or int64).</summary>
    private void PushSigned(IrValue v)
    {
        Push(v);
        switch (v.Type)
        {
            case IrType.I8: _il.Emit(OpCodes.Conv_I1); break;
            case IrType.I16: _il.Emit(OpCodes.Conv_I2); break;
            case IrType.I1: _il.Emit(OpCodes.Neg); break;
        }
    }

    private void PushShiftCount(IrValue v)
    {
        Push(v);
        if (IsWide(v.Type)) _il.Emit(OpCodes.Conv_I4);
    }

    private void EmitNode(IrValue v, bool inline = false)
    {
        if (!inline && IsInlined(v)) return;
        var a = v.Args;
        switch (v.Op)
        {
            case IrOp.Const:
                return;
            case IrOp.GetReg:
                _il.Emit(OpCodes.Ldloc, _gpr[v.Aux]!);
                Define(v);
                return;
            case IrOp.SetReg:
                Push(a[0]);
                _il.Emit(OpCodes.Stloc, _gpr[v.Aux]!);
                return;
            case IrOp.GetFlag:
                _il.Emit(OpCodes.Ldloc, _flag[v.Aux]!);
                Define(v);
                return;
            case IrOp.SetFlag:
                Push(a[0]);
                _il.Emit(OpCodes.Stloc, _flag[v.Aux]!);
                return;
            case IrOp.GetXmm:
                _il.Emit(OpCodes.Ldloc, _xmm[v.Aux]!);
                Define(v);
                return;
            case IrOp.SetXmm:
                Push(a[0]);
                _il.Emit(OpCodes.Stloc, _xmm[v.Aux]!);
                return;
            case IrOp.GetState when v.Aux == StateOffsets.StopRequested:
                EmitVolatileStopLoad();
                Define(v);
                return;
            case IrOp.GetState:
                EmitCtxLoad(v.Aux, LoadOp(v.Type));
                Define(v);
                return;
            case IrOp.SetState:
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldc_I4, v.Aux);
                _il.Emit(OpCodes.Add);
                Push(a[0]);
                _il.Emit(StoreOp(a[0].Type));
                return;
            case IrOp.Add: Bin(v, OpCodes.Add); return;
            case IrOp.Sub: Bin(v, OpCodes.Sub); return;
            case IrOp.Mul: Bin(v, OpCodes.Mul); return;
            case IrOp.And: Bin(v, OpCodes.And); return;
            case IrOp.Or: Bin(v, OpCodes.Or); return;
            case IrOp.Xor: Bin(v, OpCodes.Xor); return;
            case IrOp.UDiv: Bin(v, OpCodes.Div_Un); return;
            case IrOp.URem: Bin(v, OpCodes.Rem_Un); return;
            case IrOp.SDiv or IrOp.SRem:
                PushSigned(a[0]);
                PushSigned(a[1]);
                _il.Emit(v.Op == IrOp.SDiv ? OpCodes.Div : OpCodes.Rem);
                Canon(v.Type);
                Define(v);
                return;
            case IrOp.Shl:
                Push(a[0]);
                PushShiftCount(a[1]);
                _il.Emit(OpCodes.Shl);
                Canon(v.Type);
                Define(v);
                return;
            case IrOp.LShr:
                Push(a[0]);
                PushShiftCount(a[1]);
                _il.Emit(OpCodes.Shr_Un);
                Define(v);
                return;
            case IrOp.AShr:
                PushSigned(a[0]);
                PushShiftCount(a[1]);
                _il.Emit(OpCodes.Shr);
                Canon(v.Type);
                Define(v);
                return;
            case IrOp.Rotl or IrOp.Rotr:
                EmitRotate(v);
                return;
            case IrOp.Not:
                Push(a[0]);
                if (v.Type == IrType.I1)
                {
                    _il.Emit(OpCodes.Ldc_I4_1);
                    _il.Emit(OpCodes.Xor);
                }
                else
                {
                    _il.Emit(OpCodes.Not);
                    Canon(v.Type);
                }
                Define(v);
                return;
            case IrOp.Neg:
                Push(a[0]);
                _il.Emit(OpCodes.Neg);
                Canon(v.Type);
                Define(v);
                return;
            case IrOp.UMulHi or IrOp.SMulHi:
                EmitMulHi(v);
                return;
            case IrOp.ZExt when v.Type == IrType.V128:
                Push(a[0]);
                if (!IsWide(a[0].Type)) _il.Emit(OpCodes.Conv_U8);
                _il.Emit(OpCodes.Call, s_vecFromScalar);
                Define(v);
                return;
            case IrOp.Trunc when a[0].Type == IrType.V128:
                Push(a[0]);
                _il.Emit(OpCodes.Call, s_vecLow64);
                if (!IsWide(v.Type)) { _il.Emit(OpCodes.Conv_U4); Canon(v.Type); }
                Define(v);
                return;
            case IrOp.ZExt:
                Push(a[0]);
                if (IsWide(v.Type) && !IsWide(a[0].Type)) _il.Emit(OpCodes.Conv_U8);
                Define(v);
                return;
            case IrOp.SExt:
                PushSigned(a[0]);
                if (IsWide(v.Type)) { if (!IsWide(a[0].Type)) _il.Emit(OpCodes.Conv_I8); }
                else Canon(v.Type);
                Define(v);
                return;
            case IrOp.Trunc:
                Push(a[0]);
                if (IsWide(a[0].Type)) _il.Emit(OpCodes.Conv_U4);
                Canon(v.Type);
                Define(v);
                return;
            case IrOp.Eq: Cmp(v, OpCodes.Ceq, signed: false, invert: false); return;
            case IrOp.Ne: Cmp(v, OpCodes.Ceq, signed: false, invert: true); return;
            case IrOp.Ult: Cmp(v, OpCodes.Clt_Un, signed: false, invert: false); return;
            case IrOp.Ule: Cmp(v, OpCodes.Cgt_Un, signed: false, invert: true); return;
            case IrOp.Slt: Cmp(v, OpCodes.Clt, signed: true, invert: false); return;
            case IrOp.Sle: Cmp(v, OpCodes.Cgt, signed: true, invert: true); return;
            case IrOp.Select when v.Type != IrType.V128:
            {
                // Branch-free: b ^ ((a ^ b) & -cond). Guest CMOVcc/SETcc conditions are often data
                // dependent and unpredictable, and the JIT does not reliably turn a branch into CMOV.
                bool wide = IsWide(v.Type);
                Push(a[2]);
                Push(a[1]);
                Push(a[2]);
                _il.Emit(OpCodes.Xor);
                Push(a[0]);
                if (wide) _il.Emit(OpCodes.Conv_U8);
                _il.Emit(OpCodes.Neg);
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Xor);
                Define(v);
                return;
            }
            case IrOp.Select:
            {
                var f = _il.DefineLabel();
                var end = _il.DefineLabel();
                var local = Rent(LocalType(v.Type));
                Push(a[0]);
                _il.Emit(OpCodes.Brfalse, f);
                Push(a[1]);
                _il.Emit(OpCodes.Stloc, local);
                _il.Emit(OpCodes.Br, end);
                _il.MarkLabel(f);
                Push(a[2]);
                _il.Emit(OpCodes.Stloc, local);
                _il.MarkLabel(end);
                _values[v] = local;
                return;
            }
            case IrOp.Parity:
                Push(a[0]);
                _il.Emit(OpCodes.Ldc_I4, 0xFF);
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Call, s_pop32);
                _il.Emit(OpCodes.Ldc_I4_1);
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Ldc_I4_1);
                _il.Emit(OpCodes.Xor);
                Define(v);
                return;
            case IrOp.Popcnt:
                Push(a[0]);
                _il.Emit(OpCodes.Call, IsWide(v.Type) ? s_pop64 : s_pop32);
                if (IsWide(v.Type)) _il.Emit(OpCodes.Conv_U8);
                Define(v);
                return;
            case IrOp.Ctz:
                Push(a[0]);
                if (v.Type is IrType.I8 or IrType.I16)
                {
                    _il.Emit(OpCodes.Ldc_I4, 1 << v.Type.Bits());
                    _il.Emit(OpCodes.Or);
                }
                _il.Emit(OpCodes.Call, IsWide(v.Type) ? s_tz64 : s_tz32);
                if (IsWide(v.Type)) _il.Emit(OpCodes.Conv_U8);
                Define(v);
                return;
            case IrOp.Clz:
                Push(a[0]);
                _il.Emit(OpCodes.Call, IsWide(v.Type) ? s_lz64 : s_lz32);
                if (v.Type is IrType.I8 or IrType.I16)
                {
                    _il.Emit(OpCodes.Ldc_I4, 32 - v.Type.Bits());
                    _il.Emit(OpCodes.Sub);
                }
                if (IsWide(v.Type)) _il.Emit(OpCodes.Conv_U8);
                Define(v);
                return;
            case IrOp.Bswap:
                Push(a[0]);
                _il.Emit(OpCodes.Call, v.Type switch { IrType.I16 => s_bswap16, IrType.I32 => s_bswap32, _ => s_bswap64 });
                Define(v);
                return;
            case IrOp.Load: EmitLoad(v); return;
            case IrOp.Store: EmitStore(v); return;
            case IrOp.Call: EmitCall(v); return;
            case IrOp.Jump:
                _il.Emit(OpCodes.Br, _labels[v.Target!]);
                return;
            case IrOp.Branch:
                Push(a[0]);
                _il.Emit(OpCodes.Brtrue, _labels[v.Target!]);
                _il.Emit(OpCodes.Br, _labels[v.Else!]);
                return;
            case IrOp.ExitDirect:
                SetRip(v.Imm);
                _il.Emit(OpCodes.Ldc_I4, _successors.Count);
                _successors.Add(v.Imm);
                _il.Emit(OpCodes.Stloc, _code);
                _il.Emit(OpCodes.Br, _spill);
                return;
            case IrOp.ExitIndirect:
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldc_I4, StateOffsets.Rip);
                _il.Emit(OpCodes.Add);
                Push(a[0]);
                _il.Emit(OpCodes.Stind_I8);
                // The branching instruction, for the dispatcher's per-site target profile.
                _il.Emit(OpCodes.Ldarg_1);
                _il.Emit(OpCodes.Ldc_I4, StateOffsets.IndirectSite);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldc_I8, (long)v.Imm);
                _il.Emit(OpCodes.Stind_I8);
                _il.Emit(OpCodes.Ldc_I4, RegionCode.Indirect);
                _il.Emit(OpCodes.Stloc, _code);
                _il.Emit(OpCodes.Br, _spill);
                return;
            case IrOp.ExitHelper:
                EmitExitHelper(v);
                return;
            default:
                throw new NotSupportedException($"IR op {v.Op} has no IL lowering");
        }
    }

    private void Bin(IrValue v, OpCode op)
    {
        Push(v.Args[0]);
        Push(v.Args[1]);
        _il.Emit(op);
        Canon(v.Type);
        Define(v);
    }

    private void Cmp(IrValue v, OpCode op, bool signed, bool invert)
    {
        if (signed)
        {
            PushSigned(v.Args[0]);
            PushSigned(v.Args[1]);
        }
        else
        {
            Push(v.Args[0]);
            Push(v.Args[1]);
        }
        _il.Emit(op);
        if (invert)
        {
            _il.Emit(OpCodes.Ldc_I4_1);
            _il.Emit(OpCodes.Xor);
        }
        Define(v);
    }

    private void EmitRotate(IrValue v)
    {
        var t = v.Type;
        bool left = v.Op == IrOp.Rotl;
        if (t is IrType.I32 or IrType.I64)
        {
            Push(v.Args[0]);
            PushShiftCount(v.Args[1]);
            _il.Emit(OpCodes.Call, (t == IrType.I64, left) switch
            {
                (true, true) => s_rotl64,
                (true, false) => s_rotr64,
                (false, true) => s_rotl32,
                _ => s_rotr32,
            });
            Define(v);
            return;
        }
        // 8/16-bit: ((a << n) | (a >> (w − n))) & mask, with n < w.
        int w = t.Bits();
        Push(v.Args[0]);
        PushShiftCount(v.Args[1]);
        if (!left)
        {
            // rotr(a, n) = rotl(a, (w − n) mod w)
            _il.Emit(OpCodes.Neg);
            _il.Emit(OpCodes.Ldc_I4, w - 1);
            _il.Emit(OpCodes.And);
        }
        var n = Rent(typeof(int));
        _il.Emit(OpCodes.Stloc, n);
        var x = Rent(typeof(uint));
        _il.Emit(OpCodes.Stloc, x);
        _il.Emit(OpCodes.Ldloc, x);
        _il.Emit(OpCodes.Ldloc, n);
        _il.Emit(OpCodes.Shl);
        _il.Emit(OpCodes.Ldloc, x);
        _il.Emit(OpCodes.Ldc_I4, w);
        _il.Emit(OpCodes.Ldloc, n);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Shr_Un);
        _il.Emit(OpCodes.Or);
        Canon(t);
        Return(n);
        Return(x);
        Define(v);
    }

    private void EmitMulHi(IrValue v)
    {
        var t = v.Type;
        bool signed = v.Op == IrOp.SMulHi;
        if (t == IrType.I64)
        {
            Push(v.Args[0]);
            Push(v.Args[1]);
            _il.Emit(OpCodes.Call, signed ? s_smulhi : s_umulhi);
            Define(v);
            return;
        }
        int w = t.Bits();
        if (signed) { PushSigned(v.Args[0]); _il.Emit(OpCodes.Conv_I8); PushSigned(v.Args[1]); _il.Emit(OpCodes.Conv_I8); }
        else { Push(v.Args[0]); _il.Emit(OpCodes.Conv_U8); Push(v.Args[1]); _il.Emit(OpCodes.Conv_U8); }
        _il.Emit(OpCodes.Mul);
        _il.Emit(OpCodes.Ldc_I4, w);
        _il.Emit(signed ? OpCodes.Shr : OpCodes.Shr_Un);
        _il.Emit(OpCodes.Conv_U4);
        Canon(t);
        Define(v);
    }

    private static OpCode LoadOp(IrType t) => t switch
    {
        IrType.I8 => OpCodes.Ldind_U1,
        IrType.I16 => OpCodes.Ldind_U2,
        IrType.I32 => OpCodes.Ldind_U4,
        IrType.I64 => OpCodes.Ldind_I8,
        IrType.I1 => OpCodes.Ldind_U1,
        _ => throw new NotSupportedException($"no IL load for {t}"),
    };

    private static OpCode StoreOp(IrType t) => t switch
    {
        IrType.I8 or IrType.I1 => OpCodes.Stind_I1,
        IrType.I16 => OpCodes.Stind_I2,
        IrType.I32 => OpCodes.Stind_I4,
        IrType.I64 => OpCodes.Stind_I8,
        _ => throw new NotSupportedException($"no IL store for {t}"),
    };

    // ================= memory path =================

    /// <summary>entry = tlb + ((addr &gt;&gt; 12) &amp; mask) * 32; then compares the tag at <paramref name="tagOffset"/> with the page of the last byte.</summary>
    private void EmitTlbCheck(IrValue address, int size, int tagOffset, Label slow)
    {
        Push(address);
        _il.Emit(OpCodes.Stloc, _addr);
        EmitTlbCheckOfAddr(size, tagOffset, slow);
    }

    // The address's part of the region's access groups, and the check locals of each group already reached.
    private Dictionary<IrValue, (AccessGroup Group, long Offset)> _groups = [];
    private readonly Dictionary<AccessGroup, (LocalBuilder Ok, LocalBuilder Addend)> _groupChecks = [];

    /// <summary>
    /// <see cref="EmitTlbCheck"/> for an access of an <see cref="AccessGroup"/>: the group's first access
    /// checks the group's whole span once; each access then adds the group's addend when that check
    /// passed, and checks alone when it did not. Leaves the host pointer on the stack, the address in _addr.
    /// </summary>
    private void EmitAccessCheck(IrValue v, int size, int tagOffset, Label slow)
    {
        if (!_groups.TryGetValue(v, out var member))
        {
            EmitTlbCheck(v.Args[0], size, tagOffset, slow);
            return;
        }
        var g = member.Group;
        Push(v.Args[0]);
        _il.Emit(OpCodes.Stloc, _addr);
        if (!_groupChecks.TryGetValue(g, out var check))
        {
            // Only the first access's check runs before every other (blocks may be emitted out of that order).
            if (v != g.First)
            {
                EmitTlbCheckOfAddr(size, tagOffset, slow);
                return;
            }
            check = (_il.DeclareLocal(typeof(int)), _il.DeclareLocal(typeof(long)));
            _groupChecks[g] = check;
            // entry of the span's first byte; page of its last byte
            EmitTlbEntry(g.Low - member.Offset);
            // diff = (readTag ^ page) | (writeTag ^ page), each where the group needs it
            _il.Emit(OpCodes.Ldc_I8, 0L);
            for (int offset = 0; offset <= 8; offset += 8)
            {
                if (!(offset == 0 ? g.Loads : g.Stores)) continue;
                _il.Emit(OpCodes.Ldloc, _entry);
                _il.Emit(OpCodes.Ldc_I4, offset);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldind_I8);
                _il.Emit(OpCodes.Ldloc, _addr);
                _il.Emit(OpCodes.Ldc_I8, g.High - member.Offset);
                _il.Emit(OpCodes.Add);
                _il.Emit(OpCodes.Ldc_I8, unchecked((long)CpuContext.PageMask));
                _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Xor);
                _il.Emit(OpCodes.Or);
            }
            _il.Emit(OpCodes.Ldc_I8, 0L);
            _il.Emit(OpCodes.Ceq);
            _il.Emit(OpCodes.Stloc, check.Ok);
            EmitAddend();
            _il.Emit(OpCodes.Stloc, check.Addend);
        }
        var alone = _il.DefineLabel();
        var have = _il.DefineLabel();
        _il.Emit(OpCodes.Ldloc, check.Ok);
        _il.Emit(OpCodes.Brfalse, alone);
        _il.Emit(OpCodes.Ldloc, _addr);
        _il.Emit(OpCodes.Ldloc, check.Addend);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Conv_U);
        _il.Emit(OpCodes.Br, have);
        _il.MarkLabel(alone);
        EmitTlbCheckOfAddr(size, tagOffset, slow);
        _il.MarkLabel(have);
    }

    /// <summary>_entry = the TLB entry of _addr + <paramref name="delta"/>.</summary>
    private void EmitTlbEntry(long delta)
    {
        // The TLB follows the context (StateOffsets.TlbInline): an offset from the context pointer.
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.TlbInline);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldloc, _addr);
        if (delta != 0)
        {
            _il.Emit(OpCodes.Ldc_I8, delta);
            _il.Emit(OpCodes.Add);
        }
        _il.Emit(OpCodes.Ldc_I4, CpuContext.PageBits);
        _il.Emit(OpCodes.Shr_Un);
        _il.Emit(OpCodes.Conv_U4);
        _il.Emit(OpCodes.Ldc_I4, CpuContext.TlbSize - 1);
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Ldc_I4_5);
        _il.Emit(OpCodes.Shl);
        _il.Emit(OpCodes.Conv_U);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, _entry);
    }

    /// <summary><see cref="EmitTlbCheck"/> of the address in _addr.</summary>
    private void EmitTlbCheckOfAddr(int size, int tagOffset, Label slow)
    {
        EmitTlbEntry(0);
        _il.Emit(OpCodes.Ldloc, _entry);
        if (tagOffset != 0)
        {
            _il.Emit(OpCodes.Ldc_I4, tagOffset);
            _il.Emit(OpCodes.Add);
        }
        _il.Emit(OpCodes.Ldind_I8);
        // A tag matches the page of the last byte only if the access stays in the entry's page.
        _il.Emit(OpCodes.Ldloc, _addr);
        if (size > 1)
        {
            _il.Emit(OpCodes.Ldc_I8, (long)(size - 1));
            _il.Emit(OpCodes.Add);
        }
        _il.Emit(OpCodes.Ldc_I8, unchecked((long)CpuContext.PageMask));
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Bne_Un, slow);
        // host = addr + addend
        EmitAddend();
        _il.Emit(OpCodes.Ldloc, _addr);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Conv_U);
    }

    /// <summary>
    /// Pushes the addend of the TLB entry in _entry, which hit: in a flat VM (<see cref="IrRegion.FlatMemory"/>)
    /// the VM's own from the context, which does not wait for the entry.
    /// </summary>
    private void EmitAddend()
    {
        if (_region.FlatMemory)
        {
            _il.Emit(OpCodes.Ldarg_1);
            _il.Emit(OpCodes.Ldc_I4, StateOffsets.FlatAddend);
        }
        else
        {
            _il.Emit(OpCodes.Ldloc, _entry);
            _il.Emit(OpCodes.Ldc_I4, 16);
        }
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I8);
    }

    private void EmitLoad(IrValue v)
    {
        int size = v.Type.Bits() / 8;
        bool vec = v.Type == IrType.V128;
        var slow = _il.DefineLabel();
        var done = _il.DefineLabel();
        var result = Rent(LocalType(v.Type));
        EmitAccessCheck(v, size, 0, slow);
        if (vec)
        {
            _il.Emit(OpCodes.Unaligned, (byte)1);
            _il.Emit(OpCodes.Ldobj, typeof(Vector128<byte>));
        }
        else
        {
            _il.Emit(LoadOp(v.Type));
        }
        _il.Emit(OpCodes.Stloc, result);
        _il.Emit(OpCodes.Br, done);

        _il.MarkLabel(slow);
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldloc, _addr);
        if (!vec) _il.Emit(OpCodes.Ldc_I4, size);
        _il.Emit(OpCodes.Ldc_I8, (long)(v.Insn?.Rip ?? 0));
        _il.Emit(OpCodes.Ldc_I4, v.Insn?.GiveBack ?? 0);
        _il.Emit(OpCodes.Call, vec ? MemoryPath.Load128Method : MemoryPath.LoadMethod);
        if (!IsWide(v.Type) && !vec) _il.Emit(OpCodes.Conv_U4);
        _il.Emit(OpCodes.Stloc, result);
        EmitCtxLoad(StateOffsets.Pending, OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brtrue, _fault);
        _il.MarkLabel(done);
        _values[v] = result;
    }

    private void EmitStore(IrValue v)
    {
        var value = v.Args[1];
        int size = value.Type.Bits() / 8;
        var slow = _il.DefineLabel();
        var done = _il.DefineLabel();
        bool vec = value.Type == IrType.V128;
        EmitAccessCheck(v, size, 8, slow);
        Push(value);
        if (vec)
        {
            _il.Emit(OpCodes.Unaligned, (byte)1);
            _il.Emit(OpCodes.Stobj, typeof(Vector128<byte>));
        }
        else
        {
            _il.Emit(StoreOp(value.Type));
        }
        _il.Emit(OpCodes.Br, done);

        _il.MarkLabel(slow);
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldloc, _addr);
        if (!vec) _il.Emit(OpCodes.Ldc_I4, size);
        Push(value);
        if (!IsWide(value.Type) && !vec) _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Ldc_I8, (long)(v.Insn?.Rip ?? 0));
        _il.Emit(OpCodes.Ldc_I4, v.Insn?.GiveBack ?? 0);
        _il.Emit(OpCodes.Call, vec ? MemoryPath.Store128Method : MemoryPath.StoreMethod);
        EmitCtxLoad(StateOffsets.Pending, OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brtrue, _fault);
        _il.MarkLabel(done);
    }

    // ================= helpers =================

    /// <summary>Pushes the context (if the helper takes it) and the arguments converted to the parameter types.</summary>
    private void PushHelperArgs(IrValue v, MethodInfo m)
    {
        var ps = m.GetParameters();
        int first = 0;
        if (ps.Length > 0 && ps[0].ParameterType == typeof(CpuContext*))
        {
            _il.Emit(OpCodes.Ldarg_1);
            first = 1;
        }
        if (ps.Length - first != v.Args.Length)
            throw new InvalidOperationException($"helper {m.Name} takes {ps.Length - first} arguments, IR passes {v.Args.Length}");
        for (int i = 0; i < v.Args.Length; i++)
        {
            var a = v.Args[i];
            var pt = ps[first + i].ParameterType;
            Push(a);
            if ((pt == typeof(ulong) || pt == typeof(long)) && !IsWide(a.Type)) _il.Emit(OpCodes.Conv_U8);
            else if ((pt == typeof(uint) || pt == typeof(int) || pt == typeof(ushort) || pt == typeof(byte) || pt == typeof(bool)) && IsWide(a.Type)) _il.Emit(OpCodes.Conv_U4);
        }
    }

    /// <summary>Converts a helper's return value on the stack to the IR result type.</summary>
    private void ConvertHelperResult(MethodInfo m, IrType t)
    {
        var rt = m.ReturnType;
        bool wideResult = rt == typeof(ulong) || rt == typeof(long);
        if (IsWide(t) && !wideResult && rt != typeof(Vector128<byte>)) _il.Emit(OpCodes.Conv_U8);
        else if (!IsWide(t) && t != IrType.V128)
        {
            if (wideResult) _il.Emit(OpCodes.Conv_U4);
            Canon(t);
        }
    }

    private void EmitCall(IrValue v)
    {
        int id = v.Aux;
        var m = Helpers.Method(id) ?? throw new NotSupportedException($"helper {Helpers.Name(id)} is not implemented");
        bool pure = Helpers.IsPure(id);
        if (!pure) SpillState();
        PushHelperArgs(v, m);
        _il.Emit(OpCodes.Call, m);
        if (v.Type == IrType.Void)
        {
            if (m.ReturnType != typeof(void)) _il.Emit(OpCodes.Pop);
            if (!pure) LoadState();
            return;
        }
        ConvertHelperResult(m, v.Type);
        var result = Rent(LocalType(v.Type));
        _il.Emit(OpCodes.Stloc, result);
        _values[v] = result;
        if (!pure) LoadState();
    }

    private void EmitExitHelper(IrValue v)
    {
        int id = v.Aux;
        var m = Helpers.Method(id) ?? throw new NotSupportedException($"helper {Helpers.Name(id)} is not implemented");
        SpillState();
        // The instruction has not retired: a helper that completes it takes one from the budget.
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Ldc_I4, StateOffsets.Remaining);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldloc, _remaining);
        _il.Emit(OpCodes.Ldc_I8, (long)(v.Insn?.GiveBack ?? 0));
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stind_I8);
        PushHelperArgs(v, m);
        _il.Emit(OpCodes.Call, m);
        _il.Emit(OpCodes.Conv_I4);
        _il.Emit(OpCodes.Ret);
    }
}
