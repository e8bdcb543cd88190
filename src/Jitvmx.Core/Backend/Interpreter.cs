// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Numerics;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Jitvmx.Ir;
using Jitvmx.Runtime;

namespace Jitvmx.Backend;

/// <summary>
/// The first tier: runs a region's IR from a flat instruction array instead of compiling it.
/// Preparing a region costs microseconds where the host JIT costs about a millisecond, and most
/// regions of a program run a handful of times (start-up, error paths, libc initialisation), so
/// they never pay for compilation. Regions that turn out hot are promoted to the IL tier by the
/// dispatcher. The semantics are those of <see cref="IlBackend"/>, node for node; guest registers
/// and flags are read and written in the context directly, which the IL tier's spills at every
/// exit make equivalent.
/// </summary>
internal sealed unsafe partial class Interpreter
{
    private enum Code : byte
    {
        Charge, RepResume, GetReg, SetReg, GetFlag, SetFlag, GetState, SetState, GetStop, GetXmm, SetXmm,
        Add, Sub, Mul, UDiv, URem, SDiv, SRem, And, Or, Xor, Shl, LShr, AShr, Rotl, Rotr, Not, Neg,
        ZExt, SExt, Trunc, VecFromScalar, VecLow, Eq, Ne, Ult, Ule, Slt, Sle, Select, SelectVec,
        Parity, Popcnt, Ctz, Clz, Bswap, UMulHi, SMulHi, Load, LoadVec, Store, StoreVec, Call,
        Jump, Branch, ExitDirect, ExitIndirect, ExitHelper,
    }

    /// <summary>One operation. Scalar operands index the scalar slots (constants live after the values), vector operands the vector slots.</summary>
    private struct Insn
    {
        public Code Op;
        /// <summary>Bits of the result type (or of the operand type for comparisons and stores).</summary>
        public byte Bits;
        /// <summary>Bits of the first operand (extensions and signed comparisons).</summary>
        public byte SrcBits;
        public int D, A, B, C;
        public int Aux;
        public ulong Imm;
        public ulong Mask;
    }

    private readonly Insn[] _code;
    private readonly ulong[] _consts;
    private readonly int _scalars;
    private readonly int _vectors;
    private readonly int[] _callArgs;
    private readonly bool[] _callArgIsVector;
    private readonly HelperThunk[] _thunks;
    /// <summary>Helper number behind each thunk (for <see cref="Write"/>: numbers of registered helpers differ between processes).</summary>
    private readonly int[] _thunkHelpers;
    private readonly int _maxArgs;
    private readonly ulong[] _successors;

    /// <summary>Guest instructions one call may run before it leaves at a loop header, so that a hot loop returns to the dispatcher (and gets promoted) instead of being interpreted to its end.</summary>
    internal const long LoopBudget = 1 << 14;

    /// <summary>
    /// Set when a call left at a loop header because of <see cref="LoopBudget"/>: the region is hot
    /// even if it retired few instructions (a REP string instruction retires once per 2 MB memset).
    /// </summary>
    public bool LeftHotLoop;

    private static readonly int[] s_flagBits = [0, 2, 4, 6, 7, 11, 10];

    private Interpreter(Insn[] code, ulong[] consts, int scalars, int vectors, int[] callArgs, bool[] callArgIsVector, HelperThunk[] thunks, int[] thunkHelpers, int maxArgs, ulong[] successors)
    {
        _thunkHelpers = thunkHelpers;
        _successors = successors;
        _callArgIsVector = callArgIsVector;
        _code = code;
        _consts = consts;
        _scalars = scalars;
        _vectors = vectors;
        _callArgs = callArgs;
        _thunks = thunks;
        _maxArgs = maxArgs;
    }

    /// <summary>Prepares <paramref name="region"/> (after <see cref="Passes.Run"/>) for interpretation; null when it uses something the interpreter cannot call.</summary>
    public static CompiledRegion? TryPrepare(IrRegion region) => TryPrepare(region, out _);

    /// <summary>As <see cref="TryPrepare(IrRegion)"/>, also returning the prepared code itself (for <see cref="Write"/>).</summary>
    public static CompiledRegion? TryPrepare(IrRegion region, out Interpreter? prepared)
    {
        prepared = null;
        var b = new Builder();
        if (!b.Build(region)) return null;
        prepared = new Interpreter(b.Count == b.Code.Length ? b.Code : b.Code.AsSpan(0, b.Count).ToArray(), [.. b.Consts], b.Scalars, b.Vectors,
            [.. b.CallArgs], [.. b.CallArgIsVector], [.. b.Thunks], [.. b.ThunkHelpers], b.MaxArgs, [.. b.Successors]);
        return prepared.Compiled();
    }

    /// <summary>A compiled region that runs this code.</summary>
    public CompiledRegion Compiled() => new(Run, _successors);

    // ================= preparation =================

    // The builder keeps to arrays and collections of reference or primitive types: generic
    // collections of Jitvmx's own structs cannot be compiled ahead of time and would be
    // JIT-compiled at start-up, the cost this tier exists to avoid.
    private sealed class Builder
    {
        public Insn[] Code = [];
        public int Count;
        public readonly List<ulong> Consts = [];
        public readonly List<int> CallArgs = [];
        public readonly List<bool> CallArgIsVector = [];
        public readonly List<HelperThunk> Thunks = [];
        public readonly List<int> ThunkHelpers = [];
        public readonly List<ulong> Successors = [];
        public int Scalars, Vectors, MaxArgs;
        private int[] _slot = [];
        private readonly Dictionary<ulong, int> _constSlot = [];
        private readonly List<int> _fixupInsn = [];
        private readonly List<IrBlock> _fixupTarget = [];
        private int[] _blockStart = [];
        private readonly Dictionary<int, int> _thunkIndex = [];

        public bool Build(IrRegion region)
        {
            // Slots: every value gets its own (regions are small and slots live on the stack).
            _slot = new int[region.ValueIdLimit];
            int ops = 0;
            foreach (var blk in region.Blocks)
            {
                if (blk.ChargedInsns > 0 || (blk.IsLoopHeader && blk.ResumeInsn is not null)) ops++;
                foreach (var v in blk.Nodes)
                {
                    if (v.Dead || v.Op == IrOp.Const) continue;
                    ops++;
                    if (v.Type != IrType.Void) _slot[v.Id] = v.Type == IrType.V128 ? Vectors++ : Scalars++;
                }
            }
            Code = new Insn[ops];
            int maxBlock = 0;
            foreach (var blk in region.Blocks) maxBlock = Math.Max(maxBlock, blk.Id);
            // Passes may have removed blocks: numbers are not dense.
            _blockStart = new int[maxBlock + 1];
            foreach (var blk in region.Blocks)
            {
                _blockStart[blk.Id] = Count;
                if (blk.ChargedInsns == 0 && blk.IsLoopHeader && blk.ResumeInsn is { } resume)
                    Code[Count++] = new Insn { Op = Interpreter.Code.RepResume, Imm = resume.Rip, Aux = resume.GiveBack };
                else if (blk.ChargedInsns > 0)
                    Code[Count++] = new Insn { Op = Interpreter.Code.Charge, Imm = blk.GuestAddress, Aux = blk.ChargedInsns, B = blk.IsLoopHeader ? 1 : 0 };
                foreach (var v in blk.Nodes)
                {
                    if (v.Dead || v.Op == IrOp.Const) continue;
                    if (!Emit(v)) return false;
                }
            }
            // Branch targets, recorded as (instruction, then-block) and (instruction, else-block) pairs.
            for (int f = 0; f < _fixupInsn.Count; f++)
            {
                int i = _fixupInsn[f];
                int at = _blockStart[_fixupTarget[f].Id];
                if (f + 1 < _fixupInsn.Count && _fixupInsn[f + 1] == i && Code[i].Op == Interpreter.Code.Branch)
                {
                    Code[i].B = at;
                    Code[i].C = _blockStart[_fixupTarget[++f].Id];
                }
                else Code[i].B = at;
            }
            return true;
        }

        /// <summary>Scalar slot of an operand: a value's own, or a constant's (after all values).</summary>
        private int S(IrValue v)
        {
            if (v.Op == IrOp.Const)
            {
                ulong c = v.Imm & v.Type.Mask();
                if (!_constSlot.TryGetValue(c, out int k))
                {
                    k = Consts.Count;
                    Consts.Add(c);
                    _constSlot[c] = k;
                }
                return -1 - k;
            }
            return _slot[v.Id];
        }

        private int Dst(IrValue v) => _slot[v.Id];

        private static byte Bits(IrType t) => (byte)(t == IrType.V128 ? 128 : t.Bits());

        private void Add(Code op, IrValue v, int a = 0, int b = 0, int c = 0, byte srcBits = 0, int aux = 0, ulong imm = 0)
        {
            Code[Count++] = new Insn
            {
                Op = op, Bits = Bits(v.Type), SrcBits = srcBits, D = v.Type == IrType.Void ? 0 : Dst(v), A = a, B = b, C = c,
                Aux = aux, Imm = imm, Mask = v.Type is IrType.Void or IrType.V128 ? ulong.MaxValue : v.Type.Mask(),
            };
        }

        private bool Emit(IrValue v)
        {
            var a = v.Args;
            switch (v.Op)
            {
                case IrOp.GetReg: Add(Interpreter.Code.GetReg, v, aux: StateOffsets.Gpr(v.Aux)); return true;
                case IrOp.SetReg: Add(Interpreter.Code.SetReg, v, S(a[0]), aux: StateOffsets.Gpr(v.Aux)); return true;
                case IrOp.GetFlag: Add(Interpreter.Code.GetFlag, v, aux: s_flagBits[v.Aux]); return true;
                case IrOp.SetFlag: Add(Interpreter.Code.SetFlag, v, S(a[0]), aux: s_flagBits[v.Aux]); return true;
                case IrOp.GetXmm: Add(Interpreter.Code.GetXmm, v, aux: StateOffsets.XmmReg(v.Aux)); return true;
                case IrOp.SetXmm: Add(Interpreter.Code.SetXmm, v, _slot[a[0].Id], aux: StateOffsets.XmmReg(v.Aux)); return true;
                case IrOp.GetState when v.Aux == StateOffsets.StopRequested: Add(Interpreter.Code.GetStop, v); return true;
                case IrOp.GetState:
                    if (v.Type == IrType.V128) return false;
                    Add(Interpreter.Code.GetState, v, aux: v.Aux, srcBits: (byte)Math.Max(8, v.Type.Bits()));
                    return true;
                case IrOp.SetState:
                    if (a[0].Type == IrType.V128) return false;
                    Add(Interpreter.Code.SetState, v, S(a[0]), aux: v.Aux, srcBits: (byte)Math.Max(8, a[0].Type.Bits()));
                    return true;
                case IrOp.Add: Bin(Interpreter.Code.Add, v); return true;
                case IrOp.Sub: Bin(Interpreter.Code.Sub, v); return true;
                case IrOp.Mul: Bin(Interpreter.Code.Mul, v); return true;
                case IrOp.UDiv: Bin(Interpreter.Code.UDiv, v); return true;
                case IrOp.URem: Bin(Interpreter.Code.URem, v); return true;
                case IrOp.SDiv: Bin(Interpreter.Code.SDiv, v); return true;
                case IrOp.SRem: Bin(Interpreter.Code.SRem, v); return true;
                case IrOp.And: Bin(Interpreter.Code.And, v); return true;
                case IrOp.Or: Bin(Interpreter.Code.Or, v); return true;
                case IrOp.Xor: Bin(Interpreter.Code.Xor, v); return true;
                case IrOp.Shl: Bin(Interpreter.Code.Shl, v); return true;
                case IrOp.LShr: Bin(Interpreter.Code.LShr, v); return true;
                case IrOp.AShr: Bin(Interpreter.Code.AShr, v); return true;
                case IrOp.Rotl: Bin(Interpreter.Code.Rotl, v); return true;
                case IrOp.Rotr: Bin(Interpreter.Code.Rotr, v); return true;
                case IrOp.UMulHi: Bin(Interpreter.Code.UMulHi, v); return true;
                case IrOp.SMulHi: Bin(Interpreter.Code.SMulHi, v); return true;
                case IrOp.Not: Add(Interpreter.Code.Not, v, S(a[0])); return true;
                case IrOp.Neg: Add(Interpreter.Code.Neg, v, S(a[0])); return true;
                case IrOp.ZExt when v.Type == IrType.V128: Add(Interpreter.Code.VecFromScalar, v, S(a[0])); return true;
                case IrOp.Trunc when a[0].Type == IrType.V128: Add(Interpreter.Code.VecLow, v, _slot[a[0].Id]); return true;
                case IrOp.ZExt or IrOp.SExt or IrOp.Trunc:
                    if (a[0].Type == IrType.V128 || v.Type == IrType.V128) return false;
                    Add(v.Op == IrOp.SExt ? Interpreter.Code.SExt : v.Op == IrOp.ZExt ? Interpreter.Code.ZExt : Interpreter.Code.Trunc,
                        v, S(a[0]), srcBits: Bits(a[0].Type));
                    return true;
                case IrOp.Eq: Cmp(Interpreter.Code.Eq, v); return true;
                case IrOp.Ne: Cmp(Interpreter.Code.Ne, v); return true;
                case IrOp.Ult: Cmp(Interpreter.Code.Ult, v); return true;
                case IrOp.Ule: Cmp(Interpreter.Code.Ule, v); return true;
                case IrOp.Slt: Cmp(Interpreter.Code.Slt, v); return true;
                case IrOp.Sle: Cmp(Interpreter.Code.Sle, v); return true;
                case IrOp.Select when v.Type == IrType.V128: Add(Interpreter.Code.SelectVec, v, S(a[0]), _slot[a[1].Id], _slot[a[2].Id]); return true;
                case IrOp.Select: Add(Interpreter.Code.Select, v, S(a[0]), S(a[1]), S(a[2])); return true;
                case IrOp.Parity: Add(Interpreter.Code.Parity, v, S(a[0])); return true;
                case IrOp.Popcnt: Add(Interpreter.Code.Popcnt, v, S(a[0])); return true;
                case IrOp.Ctz: Add(Interpreter.Code.Ctz, v, S(a[0])); return true;
                case IrOp.Clz: Add(Interpreter.Code.Clz, v, S(a[0])); return true;
                case IrOp.Bswap: Add(Interpreter.Code.Bswap, v, S(a[0])); return true;
                case IrOp.Load:
                    Add(v.Type == IrType.V128 ? Interpreter.Code.LoadVec : Interpreter.Code.Load, v, S(a[0]),
                        aux: v.Insn?.GiveBack ?? 0, imm: v.Insn?.Rip ?? 0);
                    return true;
                case IrOp.Store when a[1].Type == IrType.V128:
                    Add(Interpreter.Code.StoreVec, v, S(a[0]), _slot[a[1].Id], aux: v.Insn?.GiveBack ?? 0, imm: v.Insn?.Rip ?? 0);
                    return true;
                case IrOp.Store:
                    Add(Interpreter.Code.Store, v, S(a[0]), S(a[1]), srcBits: Bits(a[1].Type), aux: v.Insn?.GiveBack ?? 0, imm: v.Insn?.Rip ?? 0);
                    return true;
                case IrOp.Call or IrOp.ExitHelper:
                    return EmitCall(v);
                case IrOp.Jump:
                    _fixupInsn.Add(Count);
                    _fixupTarget.Add(v.Target!);
                    Add(Interpreter.Code.Jump, v);
                    return true;
                case IrOp.Branch:
                    _fixupInsn.Add(Count);
                    _fixupTarget.Add(v.Target!);
                    _fixupInsn.Add(Count);
                    _fixupTarget.Add(v.Else!);
                    Add(Interpreter.Code.Branch, v, S(a[0]));
                    return true;
                case IrOp.ExitDirect:
                    Add(Interpreter.Code.ExitDirect, v, aux: Successors.Count, imm: v.Imm);
                    Successors.Add(v.Imm);
                    return true;
                case IrOp.ExitIndirect:
                    Add(Interpreter.Code.ExitIndirect, v, S(a[0]));
                    return true;
                default:
                    return false;
            }
        }

        private void Bin(Code op, IrValue v)
        {
            if (v.Type == IrType.V128) throw new NotSupportedException();
            Add(op, v, S(v.Args[0]), S(v.Args[1]), srcBits: Bits(v.Args[0].Type));
        }

        private void Cmp(Code op, IrValue v) => Add(op, v, S(v.Args[0]), S(v.Args[1]), srcBits: Bits(v.Args[0].Type));

        private bool EmitCall(IrValue v)
        {
            var m = Helpers.Method(v.Aux);
            if (m is null) return false;
            if (!_thunkIndex.TryGetValue(v.Aux, out int t))
            {
                var thunk = HelperThunks.Get(v.Aux, m);
                if (thunk is null) return false;
                t = Thunks.Count;
                Thunks.Add(thunk);
                ThunkHelpers.Add(v.Aux);
                _thunkIndex[v.Aux] = t;
            }
            int start = CallArgs.Count;
            foreach (var arg in v.Args)
            {
                bool isVector = arg.Type == IrType.V128;
                CallArgs.Add(isVector ? _slot[arg.Id] : S(arg));
                CallArgIsVector.Add(isVector);
            }
            MaxArgs = Math.Max(MaxArgs, v.Args.Length);
            bool exit = v.Op == IrOp.ExitHelper;
            Add(exit ? Interpreter.Code.ExitHelper : Interpreter.Code.Call, v, start, v.Args.Length, t,
                aux: exit ? v.Insn?.GiveBack ?? 0 : 0);
            return true;
        }
    }

    // ================= execution =================

    [SkipLocalsInit]
    private int Run(CpuContext* ctx)
    {
        int nc = _consts.Length;
        ulong* s = stackalloc ulong[_scalars + nc + 1];
        // Constants sit below the values: operand -1 - k is constant k.
        ulong* k = s + nc;
        for (int i = 0; i < nc; i++) s[nc - 1 - i] = _consts[i];
        Vector128<byte>* vec = stackalloc Vector128<byte>[_vectors + 1];
        ulong* args = stackalloc ulong[_maxArgs + 1];
        Vector128<byte>* vargs = stackalloc Vector128<byte>[_maxArgs + 1];
        byte* st = (byte*)ctx;
        long remaining = ctx->Remaining;
        long executed = 0;
        int result;
        var code = _code;
        int pc = 0;
        while (true)
        {
            ref Insn n = ref code[pc++];
            switch (n.Op)
            {
                case Code.Charge:
                    if (n.B != 0 && (Volatile.Read(ref ctx->StopRequested) != 0 || executed >= LoopBudget))
                    {
                        if (executed >= LoopBudget) LeftHotLoop = true;
                        ctx->State.Rip = n.Imm;
                        result = RegionCode.Stop;
                        goto Spill;
                    }
                    remaining -= n.Aux;
                    if (remaining < 0)
                    {
                        remaining += n.Aux;
                        ctx->State.Rip = n.Imm;
                        result = RegionCode.Stop;
                        goto Spill;
                    }
                    executed += n.Aux;
                    break;
                case Code.RepResume:
                    if (Volatile.Read(ref ctx->StopRequested) != 0 || executed >= LoopBudget)
                    {
                        if (executed >= LoopBudget) LeftHotLoop = true;
                        remaining += n.Aux;
                        ctx->State.Rip = n.Imm;
                        result = RegionCode.Stop;
                        goto Spill;
                    }
                    // A REP iteration counts toward the loop budget like a guest instruction.
                    executed++;
                    break;
                case Code.GetReg: k[n.D] = *(ulong*)(st + n.Aux); break;
                case Code.SetReg: *(ulong*)(st + n.Aux) = k[n.A]; break;
                case Code.GetFlag: k[n.D] = (ctx->State.Rflags >> n.Aux) & 1; break;
                case Code.SetFlag:
                    ctx->State.Rflags = (ctx->State.Rflags & ~(1UL << n.Aux)) | ((k[n.A] & 1) << n.Aux);
                    break;
                case Code.GetStop: k[n.D] = (uint)Volatile.Read(ref ctx->StopRequested); break;
                case Code.GetState:
                    k[n.D] = n.SrcBits switch
                    {
                        8 => *(st + n.Aux),
                        16 => *(ushort*)(st + n.Aux),
                        32 => *(uint*)(st + n.Aux),
                        _ => *(ulong*)(st + n.Aux),
                    } & n.Mask;
                    break;
                case Code.SetState:
                    switch (n.SrcBits)
                    {
                        case 8: *(st + n.Aux) = (byte)k[n.A]; break;
                        case 16: *(ushort*)(st + n.Aux) = (ushort)k[n.A]; break;
                        case 32: *(uint*)(st + n.Aux) = (uint)k[n.A]; break;
                        default: *(ulong*)(st + n.Aux) = k[n.A]; break;
                    }
                    break;
                case Code.GetXmm: vec[n.D] = *(Vector128<byte>*)(st + n.Aux); break;
                case Code.SetXmm: *(Vector128<byte>*)(st + n.Aux) = vec[n.A]; break;
                case Code.Add: k[n.D] = (k[n.A] + k[n.B]) & n.Mask; break;
                case Code.Sub: k[n.D] = (k[n.A] - k[n.B]) & n.Mask; break;
                case Code.Mul: k[n.D] = (k[n.A] * k[n.B]) & n.Mask; break;
                case Code.UDiv: k[n.D] = k[n.A] / k[n.B]; break;
                case Code.URem: k[n.D] = k[n.A] % k[n.B]; break;
                case Code.SDiv: k[n.D] = (ulong)(Sx(k[n.A], n.Bits) / Sx(k[n.B], n.Bits)) & n.Mask; break;
                case Code.SRem: k[n.D] = (ulong)(Sx(k[n.A], n.Bits) % Sx(k[n.B], n.Bits)) & n.Mask; break;
                case Code.And: k[n.D] = k[n.A] & k[n.B]; break;
                case Code.Or: k[n.D] = k[n.A] | k[n.B]; break;
                case Code.Xor: k[n.D] = k[n.A] ^ k[n.B]; break;
                case Code.Shl: k[n.D] = (k[n.A] << (int)k[n.B]) & n.Mask; break;
                case Code.LShr: k[n.D] = k[n.A] >> (int)k[n.B]; break;
                case Code.AShr: k[n.D] = (ulong)(Sx(k[n.A], n.Bits) >> (int)k[n.B]) & n.Mask; break;
                case Code.Rotl: k[n.D] = Rotate(k[n.A], (int)k[n.B], n.Bits); break;
                case Code.Rotr: k[n.D] = Rotate(k[n.A], (n.Bits - (int)k[n.B]) & (n.Bits - 1), n.Bits); break;
                case Code.Not: k[n.D] = ~k[n.A] & n.Mask; break;
                case Code.Neg: k[n.D] = (0 - k[n.A]) & n.Mask; break;
                case Code.ZExt: k[n.D] = k[n.A]; break;
                case Code.SExt: k[n.D] = (ulong)Sx(k[n.A], n.SrcBits) & n.Mask; break;
                case Code.Trunc: k[n.D] = k[n.A] & n.Mask; break;
                case Code.VecFromScalar: vec[n.D] = Vector128.CreateScalar(k[n.A]).AsByte(); break;
                case Code.VecLow: k[n.D] = vec[n.A].AsUInt64().ToScalar() & n.Mask; break;
                case Code.Eq: k[n.D] = k[n.A] == k[n.B] ? 1UL : 0; break;
                case Code.Ne: k[n.D] = k[n.A] != k[n.B] ? 1UL : 0; break;
                case Code.Ult: k[n.D] = k[n.A] < k[n.B] ? 1UL : 0; break;
                case Code.Ule: k[n.D] = k[n.A] <= k[n.B] ? 1UL : 0; break;
                case Code.Slt: k[n.D] = Sx(k[n.A], n.SrcBits) < Sx(k[n.B], n.SrcBits) ? 1UL : 0; break;
                case Code.Sle: k[n.D] = Sx(k[n.A], n.SrcBits) <= Sx(k[n.B], n.SrcBits) ? 1UL : 0; break;
                case Code.Select: k[n.D] = k[n.A] != 0 ? k[n.B] : k[n.C]; break;
                case Code.SelectVec: vec[n.D] = k[n.A] != 0 ? vec[n.B] : vec[n.C]; break;
                case Code.Parity: k[n.D] = (ulong)((BitOperations.PopCount(k[n.A] & 0xFF) & 1) ^ 1); break;
                case Code.Popcnt: k[n.D] = (ulong)BitOperations.PopCount(k[n.A]); break;
                case Code.Ctz:
                    k[n.D] = n.Bits == 64 ? (ulong)BitOperations.TrailingZeroCount(k[n.A])
                        : (ulong)BitOperations.TrailingZeroCount(k[n.A] | (1UL << n.Bits));
                    break;
                case Code.Clz: k[n.D] = (ulong)(BitOperations.LeadingZeroCount(k[n.A]) - (64 - n.Bits)); break;
                case Code.Bswap:
                    k[n.D] = n.Bits switch
                    {
                        16 => BinaryPrimitives.ReverseEndianness((ushort)k[n.A]),
                        32 => BinaryPrimitives.ReverseEndianness((uint)k[n.A]),
                        _ => BinaryPrimitives.ReverseEndianness(k[n.A]),
                    };
                    break;
                case Code.UMulHi:
                    k[n.D] = n.Bits == 64 ? Math.BigMul(k[n.A], k[n.B], out _) : ((k[n.A] * k[n.B]) >> n.Bits) & n.Mask;
                    break;
                case Code.SMulHi:
                    k[n.D] = n.Bits == 64 ? (ulong)Math.BigMul((long)k[n.A], (long)k[n.B], out _)
                        : (ulong)((Sx(k[n.A], n.Bits) * Sx(k[n.B], n.Bits)) >> n.Bits) & n.Mask;
                    break;
                case Code.Load:
                {
                    ulong addr = k[n.A];
                    int size = n.Bits >> 3;
                    TlbEntry* e = ctx->Tlb + ((addr >> CpuContext.PageBits) & (CpuContext.TlbSize - 1));
                    if (e->ReadTag == ((addr + (ulong)(size - 1)) & CpuContext.PageMask))
                    {
                        byte* p = (byte*)(addr + (ulong)e->Addend);
                        k[n.D] = size switch
                        {
                            1 => *p,
                            2 => Unsafe.ReadUnaligned<ushort>(p),
                            4 => Unsafe.ReadUnaligned<uint>(p),
                            _ => Unsafe.ReadUnaligned<ulong>(p),
                        };
                        break;
                    }
                    ulong x = MemoryPath.Load(ctx, addr, size, n.Imm, n.Aux);
                    if (ctx->Pending != 0) goto Fault;
                    k[n.D] = x & n.Mask;
                    break;
                }
                case Code.LoadVec:
                {
                    ulong addr = k[n.A];
                    TlbEntry* e = ctx->Tlb + ((addr >> CpuContext.PageBits) & (CpuContext.TlbSize - 1));
                    if (e->ReadTag == ((addr + 15) & CpuContext.PageMask))
                    {
                        vec[n.D] = Unsafe.ReadUnaligned<Vector128<byte>>((byte*)(addr + (ulong)e->Addend));
                        break;
                    }
                    var x = MemoryPath.Load128(ctx, addr, n.Imm, n.Aux);
                    if (ctx->Pending != 0) goto Fault;
                    vec[n.D] = x;
                    break;
                }
                case Code.Store:
                {
                    ulong addr = k[n.A];
                    int size = n.SrcBits >> 3;
                    TlbEntry* e = ctx->Tlb + ((addr >> CpuContext.PageBits) & (CpuContext.TlbSize - 1));
                    if (e->WriteTag == ((addr + (ulong)(size - 1)) & CpuContext.PageMask))
                    {
                        byte* p = (byte*)(addr + (ulong)e->Addend);
                        switch (size)
                        {
                            case 1: *p = (byte)k[n.B]; break;
                            case 2: Unsafe.WriteUnaligned(p, (ushort)k[n.B]); break;
                            case 4: Unsafe.WriteUnaligned(p, (uint)k[n.B]); break;
                            default: Unsafe.WriteUnaligned(p, k[n.B]); break;
                        }
                        break;
                    }
                    MemoryPath.Store(ctx, addr, size, k[n.B], n.Imm, n.Aux);
                    if (ctx->Pending != 0) goto Fault;
                    break;
                }
                case Code.StoreVec:
                {
                    ulong addr = k[n.A];
                    TlbEntry* e = ctx->Tlb + ((addr >> CpuContext.PageBits) & (CpuContext.TlbSize - 1));
                    if (e->WriteTag == ((addr + 15) & CpuContext.PageMask))
                    {
                        Unsafe.WriteUnaligned((byte*)(addr + (ulong)e->Addend), vec[n.B]);
                        break;
                    }
                    MemoryPath.Store128(ctx, addr, vec[n.B], n.Imm, n.Aux);
                    if (ctx->Pending != 0) goto Fault;
                    break;
                }
                case Code.Call:
                {
                    Vector128<byte> r;
                    LoadArgs(n.A, n.B, k, vec, args, vargs);
                    _thunks[n.C](ctx, args, vargs, &r);
                    if (n.Bits == 128) vec[n.D] = r;
                    else if (n.Bits != 0) k[n.D] = r.AsUInt64().ToScalar() & n.Mask;
                    break;
                }
                case Code.Jump: pc = n.B; break;
                case Code.Branch: pc = k[n.A] != 0 ? n.B : n.C; break;
                case Code.ExitDirect:
                    ctx->State.Rip = n.Imm;
                    result = n.Aux;
                    goto Spill;
                case Code.ExitIndirect:
                    ctx->State.Rip = k[n.A];
                    result = RegionCode.Indirect;
                    goto Spill;
                case Code.ExitHelper:
                {
                    // The instruction has not retired: a helper that completes it takes one from the budget.
                    ctx->Remaining = remaining + n.Aux;
                    Vector128<byte> r;
                    LoadArgs(n.A, n.B, k, vec, args, vargs);
                    _thunks[n.C](ctx, args, vargs, &r);
                    return (int)r.AsUInt64().ToScalar();
                }
                default:
                    throw new InvalidOperationException($"interpreter: bad operation {n.Op}");
            }
        }

    Fault:
        // Memory fault or restart: the slow path set RIP and how many instructions to give back.
        remaining += ctx->GiveBack;
        result = RegionCode.Stop;
    Spill:
        ctx->Remaining = remaining;
        return result;
    }

    private void LoadArgs(int start, int count, ulong* k, Vector128<byte>* vec, ulong* args, Vector128<byte>* vargs)
    {
        for (int i = 0; i < count; i++)
        {
            int a = _callArgs[start + i];
            if (_callArgIsVector[start + i]) vargs[i] = vec[a];
            else args[i] = k[a];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Sx(ulong x, int bits) => bits >= 64 ? (long)x : (long)(x << (64 - bits)) >> (64 - bits);

    private static ulong Rotate(ulong x, int n, int bits) => bits switch
    {
        64 => BitOperations.RotateLeft(x, n),
        32 => BitOperations.RotateLeft((uint)x, n),
        _ => ((x << n) | (x >> (bits - n))) & ((1UL << bits) - 1),
    };
}

/// <summary>Calls one runtime helper with operands taken from argument buffers and the result stored as 16 bytes.</summary>
internal unsafe delegate void HelperThunk(CpuContext* ctx, ulong* args, Vector128<byte>* vargs, Vector128<byte>* result);

/// <summary>
/// One adapter per helper, made on first use, so that the interpreter can call a helper of any
/// supported signature without reflection on each call: a <see cref="HelperAdapter"/> compiled
/// ahead of time for the shapes it lists, else a small DynamicMethod.
/// </summary>
internal static unsafe class HelperThunks
{
    private static readonly Dictionary<int, HelperThunk?> s_thunks = [];
    private static readonly Lock s_lock = new();

    /// <summary>The thunk for helper <paramref name="id"/>; null when a parameter or result type is not supported.</summary>
    public static HelperThunk? Get(int id, MethodInfo m)
    {
        lock (s_lock)
        {
            if (!s_thunks.TryGetValue(id, out var t)) s_thunks[id] = t = Create(m);
            return t;
        }
    }

    // One classification of helper signatures (HelperAdapter.Shape): null when a type is not supported.
    private static HelperThunk? Create(MethodInfo m) =>
        HelperAdapter.Shape(m) is null ? null : HelperAdapter.TryCreate(m) ?? CreateDynamic(m);

    /// <summary>A DynamicMethod thunk for <paramref name="m"/>, whose parameters and result the caller checked (also what tests compare the adapters with).</summary>
    internal static HelperThunk CreateDynamic(MethodInfo m)
    {
        var ps = m.GetParameters();
        var rt = m.ReturnType;
        int first = ps.Length > 0 && ps[0].ParameterType == typeof(CpuContext*) ? 1 : 0;

        var dm = new DynamicMethod($"thunk_{m.Name}", typeof(void),
            [typeof(CpuContext*), typeof(ulong*), typeof(Vector128<byte>*), typeof(Vector128<byte>*)], typeof(HelperThunks).Module, skipVisibility: true);
        var il = dm.GetILGenerator();
        il.Emit(OpCodes.Ldarg_3);
        if (first == 1) il.Emit(OpCodes.Ldarg_0);
        for (int i = first; i < ps.Length; i++)
        {
            var pt = ps[i].ParameterType;
            int j = i - first;
            if (pt == typeof(Vector128<byte>))
            {
                il.Emit(OpCodes.Ldarg_2);
                il.Emit(OpCodes.Ldc_I4, j * 16);
                il.Emit(OpCodes.Add);
                il.Emit(OpCodes.Ldobj, typeof(Vector128<byte>));
                continue;
            }
            il.Emit(OpCodes.Ldarg_1);
            il.Emit(OpCodes.Ldc_I4, j * 8);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldind_I8);
            // The IL tier converts the same way: 64-bit parameters take the value, narrower ones its low 32 bits.
            if (pt != typeof(ulong) && pt != typeof(long)) il.Emit(OpCodes.Conv_U4);
        }
        il.Emit(OpCodes.Call, m);
        if (rt == typeof(void))
        {
            il.Emit(OpCodes.Pop); // the result pointer
            il.Emit(OpCodes.Ret);
        }
        else if (rt == typeof(Vector128<byte>))
        {
            il.Emit(OpCodes.Stobj, typeof(Vector128<byte>));
            il.Emit(OpCodes.Ret);
        }
        else
        {
            // As the IL tier's ConvertHelperResult: a 32-bit-or-narrower result is zero-extended.
            if (rt != typeof(ulong) && rt != typeof(long)) il.Emit(OpCodes.Conv_U8);
            var tmp = il.DeclareLocal(typeof(ulong));
            il.Emit(OpCodes.Stloc, tmp);
            il.Emit(OpCodes.Dup);
            il.Emit(OpCodes.Ldloc, tmp);
            il.Emit(OpCodes.Stind_I8);
            // High half of the 16 bytes: zero.
            il.Emit(OpCodes.Ldc_I4_8);
            il.Emit(OpCodes.Add);
            il.Emit(OpCodes.Ldc_I8, 0L);
            il.Emit(OpCodes.Stind_I8);
            il.Emit(OpCodes.Ret);
        }
        return (HelperThunk)dm.CreateDelegate(typeof(HelperThunk));
    }
}
