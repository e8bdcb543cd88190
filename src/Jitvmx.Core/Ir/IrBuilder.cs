// SPDX-License-Identifier: MIT
using System.Numerics;

namespace Jitvmx.Ir;

/// <summary>
/// Appends nodes to the current block of a region. Folds constants, and forwards a guest register
/// or flag written earlier in the same block to later reads of it, so that "cmp; jcc" becomes one
/// compare of the original operands and the flag work it replaced is left to the dead-flag pass.
/// </summary>
public sealed class IrBuilder
{
    private readonly IrRegion _region;
    private readonly IrValue?[] _regCache = new IrValue?[16];
    private readonly IrValue?[] _flagCache = new IrValue?[7];
    private readonly IrValue?[] _xmmCache = new IrValue?[16];
    private readonly Dictionary<(IrType, ulong), IrValue> _consts = [];

    /// <summary>Creates a builder over <paramref name="region"/>.</summary>
    public IrBuilder(IrRegion region) => _region = region;

    /// <summary>The region being built.</summary>
    public IrRegion Region => _region;

    /// <summary>The block nodes are appended to.</summary>
    public IrBlock Block { get; private set; } = null!;

    /// <summary>Guest instruction new nodes belong to.</summary>
    public GuestInsn? Insn { get; set; }

    /// <summary>Whether the current block already ended.</summary>
    public bool Terminated => Block.Terminator is not null;

    /// <summary>Continues appending at <paramref name="block"/>; forgets what was known about registers.</summary>
    public void SetBlock(IrBlock block)
    {
        Block = block;
        Array.Clear(_regCache);
        Array.Clear(_flagCache);
        Array.Clear(_xmmCache);
        _consts.Clear();
    }

    /// <summary>Creates a new block (not yet current).</summary>
    public IrBlock NewBlock() => _region.NewBlock();

    private IrValue Add(IrOp op, IrType type, params IrValue[] args)
    {
        if (Terminated) throw new InvalidOperationException($"block b{Block.Id} already ended");
        var v = new IrValue { Id = _region.NextId(), Op = op, Type = type, Args = args, Insn = Insn };
        Block.Nodes.Add(v);
        return v;
    }

    // ---- constants ----

    /// <summary>Constant of type <paramref name="t"/> (truncated to its width).</summary>
    public IrValue Const(IrType t, ulong value)
    {
        if (t == IrType.V128) throw new InvalidOperationException("V128 constants are built with ZExt of an I64 (or a helper)");
        value &= t.Mask();
        if (_consts.TryGetValue((t, value), out var c)) return c;
        c = Add(IrOp.Const, t);
        c.Imm = value;
        _consts[(t, value)] = c;
        return c;
    }

    /// <summary>I64 constant.</summary>
    public IrValue I64(ulong v) => Const(IrType.I64, v);
    /// <summary>I32 constant.</summary>
    public IrValue I32(ulong v) => Const(IrType.I32, v);
    /// <summary>I8 constant.</summary>
    public IrValue I8(ulong v) => Const(IrType.I8, v);
    /// <summary>I1 constant.</summary>
    public IrValue Bool(bool v) => Const(IrType.I1, v ? 1UL : 0UL);
    /// <summary>Whether <paramref name="v"/> is a constant (and its value).</summary>
    public static bool IsConst(IrValue v, out ulong value)
    {
        value = v.Imm;
        return v.Op == IrOp.Const;
    }

    // ---- guest state ----

    /// <summary>Reads a 64-bit GPR.</summary>
    public IrValue GetReg(int reg) => _regCache[reg] ??= AddAux(IrOp.GetReg, IrType.I64, reg);

    /// <summary>Writes a 64-bit GPR.</summary>
    public void SetReg(int reg, IrValue value)
    {
        Check(value, IrType.I64);
        AddAux(IrOp.SetReg, IrType.Void, reg, value);
        _regCache[reg] = value;
    }

    /// <summary>Reads a status flag (I1).</summary>
    public IrValue GetFlag(Flag f) => _flagCache[(int)f] ??= AddAux(IrOp.GetFlag, IrType.I1, (int)f);

    /// <summary>Writes a status flag.</summary>
    public void SetFlag(Flag f, IrValue value)
    {
        Check(value, IrType.I1);
        AddAux(IrOp.SetFlag, IrType.Void, (int)f, value);
        _flagCache[(int)f] = value;
    }

    /// <summary>The value last written to a flag in this block, if known.</summary>
    public IrValue? KnownFlag(Flag f) => _flagCache[(int)f];

    /// <summary>Reads a guest-state field at a byte offset.</summary>
    public IrValue GetState(IrType t, int offset) => AddAux(IrOp.GetState, t, offset);

    /// <summary>Writes a guest-state field at a byte offset.</summary>
    public void SetState(int offset, IrValue value) => AddAux(IrOp.SetState, IrType.Void, offset, value);

    private IrValue AddAux(IrOp op, IrType t, int aux, params IrValue[] args)
    {
        var v = Add(op, t, args);
        v.Aux = aux;
        return v;
    }

    private static void Check(IrValue v, IrType t)
    {
        if (v.Type != t) throw new InvalidOperationException($"IR type mismatch: {v} is not {t}");
    }

    // ---- arithmetic ----

    /// <summary>Binary operation with constant folding.</summary>
    public IrValue Binary(IrOp op, IrValue a, IrValue b)
    {
        if (a.Type != b.Type) throw new InvalidOperationException($"IR type mismatch in {op}: {a.Type} vs {b.Type}");
        var t = a.Type;
        bool isCompare = op is IrOp.Eq or IrOp.Ne or IrOp.Ult or IrOp.Ule or IrOp.Slt or IrOp.Sle;
        var rt = isCompare ? IrType.I1 : t;
        if (IsConst(a, out ulong x) && IsConst(b, out ulong y) && Fold(op, t, x, y) is ulong r)
            return Const(rt, r);
        // Identities that lifters produce often.
        if (IsConst(b, out y))
        {
            if (y == 0 && op is IrOp.Add or IrOp.Sub or IrOp.Or or IrOp.Xor or IrOp.Shl or IrOp.LShr or IrOp.AShr or IrOp.Rotl or IrOp.Rotr) return a;
            if (y == t.Mask() && op == IrOp.And) return a;
            if (y == 0 && op == IrOp.And) return Const(t, 0);
        }
        return Add(op, rt, a, b);
    }

    private static ulong? Fold(IrOp op, IrType t, ulong x, ulong y)
    {
        int bits = t.Bits();
        ulong m = t.Mask();
        long sx = SignExtend(x, bits), sy = SignExtend(y, bits);
        return op switch
        {
            IrOp.Add => (x + y) & m,
            IrOp.Sub => (x - y) & m,
            IrOp.Mul => (x * y) & m,
            IrOp.And => x & y,
            IrOp.Or => x | y,
            IrOp.Xor => x ^ y,
            IrOp.Shl when y < (ulong)bits => (x << (int)y) & m,
            IrOp.LShr when y < (ulong)bits => x >> (int)y,
            IrOp.AShr when y < (ulong)bits => (ulong)(sx >> (int)y) & m,
            IrOp.Eq => x == y ? 1UL : 0,
            IrOp.Ne => x != y ? 1UL : 0,
            IrOp.Ult => x < y ? 1UL : 0,
            IrOp.Ule => x <= y ? 1UL : 0,
            IrOp.Slt => sx < sy ? 1UL : 0,
            IrOp.Sle => sx <= sy ? 1UL : 0,
            _ => null,
        };
    }

    /// <summary>Sign-extends the low <paramref name="bits"/> bits of <paramref name="v"/>.</summary>
    public static long SignExtend(ulong v, int bits) => bits >= 64 ? (long)v : ((long)(v << (64 - bits))) >> (64 - bits);

    /// <summary>Unary operation with constant folding.</summary>
    public IrValue Unary(IrOp op, IrValue a)
    {
        var t = a.Type;
        if (IsConst(a, out ulong x))
        {
            ulong m = t.Mask();
            ulong? r = op switch
            {
                IrOp.Not => ~x & m,
                IrOp.Neg => (0 - x) & m,
                IrOp.Parity => (BitOperations.PopCount(x & 0xFF) & 1) == 0 ? 1UL : 0,
                IrOp.Popcnt => (ulong)BitOperations.PopCount(x),
                _ => null,
            };
            if (r is ulong rv) return Const(op == IrOp.Parity ? IrType.I1 : t, rv);
        }
        return Add(op, op == IrOp.Parity ? IrType.I1 : t, a);
    }

    /// <summary>Converts <paramref name="a"/> to type <paramref name="t"/>: zero-extends, truncates or returns it.</summary>
    public IrValue ZExt(IrValue a, IrType t) => Convert(IrOp.ZExt, a, t);

    /// <summary>Sign-extends (or truncates) <paramref name="a"/> to <paramref name="t"/>.</summary>
    public IrValue SExt(IrValue a, IrType t) => Convert(IrOp.SExt, a, t);

    /// <summary>Truncates <paramref name="a"/> to <paramref name="t"/>.</summary>
    public IrValue Trunc(IrValue a, IrType t) => Convert(IrOp.Trunc, a, t);

    private IrValue Convert(IrOp op, IrValue a, IrType t)
    {
        if (a.Type == t) return a;
        int from = a.Type.Bits(), to = t.Bits();
        if (to < from) op = IrOp.Trunc;
        else if (op == IrOp.Trunc) throw new InvalidOperationException($"cannot truncate {a.Type} to {t}");
        // Constants are integers of up to 64 bits: a conversion to or from V128 stays an operation.
        if (IsConst(a, out ulong x) && t != IrType.V128 && a.Type != IrType.V128)
            return Const(t, op == IrOp.SExt ? (ulong)SignExtend(x, from) : x);
        // A truncation of an extension is the original (or a smaller extension of it).
        if (op == IrOp.Trunc && a.Op is IrOp.ZExt or IrOp.SExt && a.Args[0].Type == t) return a.Args[0];
        return Add(op, t, a);
    }

    /// <summary>cond ? a : b.</summary>
    public IrValue Select(IrValue cond, IrValue a, IrValue b)
    {
        Check(cond, IrType.I1);
        if (IsConst(cond, out ulong c)) return c != 0 ? a : b;
        if (a == b) return a;
        return Add(IrOp.Select, a.Type, cond, a, b);
    }

    /// <summary>a + b.</summary>
    public IrValue Add(IrValue a, IrValue b) => Binary(IrOp.Add, a, b);
    /// <summary>a − b.</summary>
    public IrValue Sub(IrValue a, IrValue b) => Binary(IrOp.Sub, a, b);
    /// <summary>a &amp; b.</summary>
    public IrValue And(IrValue a, IrValue b) => Binary(IrOp.And, a, b);
    /// <summary>a | b.</summary>
    public IrValue Or(IrValue a, IrValue b) => Binary(IrOp.Or, a, b);
    /// <summary>a ^ b.</summary>
    public IrValue Xor(IrValue a, IrValue b) => Binary(IrOp.Xor, a, b);
    /// <summary>a &lt;&lt; b.</summary>
    public IrValue Shl(IrValue a, IrValue b) => Binary(IrOp.Shl, a, b);
    /// <summary>Logical a &gt;&gt; b.</summary>
    public IrValue LShr(IrValue a, IrValue b) => Binary(IrOp.LShr, a, b);
    /// <summary>Arithmetic a &gt;&gt; b.</summary>
    public IrValue AShr(IrValue a, IrValue b) => Binary(IrOp.AShr, a, b);
    /// <summary>a == b.</summary>
    public IrValue Eq(IrValue a, IrValue b) => Binary(IrOp.Eq, a, b);
    /// <summary>a != b.</summary>
    public IrValue Ne(IrValue a, IrValue b) => Binary(IrOp.Ne, a, b);
    /// <summary>Unsigned a &lt; b.</summary>
    public IrValue Ult(IrValue a, IrValue b) => Binary(IrOp.Ult, a, b);
    /// <summary>Signed a &lt; b.</summary>
    public IrValue Slt(IrValue a, IrValue b) => Binary(IrOp.Slt, a, b);
    /// <summary>~a.</summary>
    public IrValue Not(IrValue a) => Unary(IrOp.Not, a);
    /// <summary>Boolean not of an I1.</summary>
    public IrValue NotBool(IrValue a) => Xor(a, Bool(true));
    /// <summary>a == 0.</summary>
    public IrValue IsZero(IrValue a) => Eq(a, Const(a.Type, 0));
    /// <summary>Sign bit of a, as I1.</summary>
    public IrValue SignOf(IrValue a) => Slt(a, Const(a.Type, 0));
    /// <summary>Bit <paramref name="bit"/> of a, as I1.</summary>
    public IrValue BitOf(IrValue a, int bit) => Trunc(LShr(a, Const(a.Type, (ulong)bit)), IrType.I1);

    // ---- memory ----

    /// <summary>Loads a value of type <paramref name="t"/> from guest-linear <paramref name="address"/>.</summary>
    public IrValue Load(IrType t, IrValue address)
    {
        Check(address, IrType.I64);
        return Add(IrOp.Load, t, address);
    }

    /// <summary>Stores <paramref name="value"/> at guest-linear <paramref name="address"/>.</summary>
    public void Store(IrValue address, IrValue value)
    {
        Check(address, IrType.I64);
        Add(IrOp.Store, IrType.Void, address, value);
    }

    // ---- helpers ----

    /// <summary>Calls a runtime helper. Helpers that touch guest state see it spilled and reloaded around the call.</summary>
    public IrValue Call(HelperId helper, IrType result, params IrValue[] args) => Call((int)helper, result, args);

    /// <summary>Calls a helper by number (an enum helper or one from <c>Helpers.Register</c>).</summary>
    public IrValue Call(int helper, IrType result, params IrValue[] args)
    {
        var v = AddAux(IrOp.Call, result, helper, args);
        if (!Helpers.IsPure(helper))
        {
            Array.Clear(_regCache);
            Array.Clear(_flagCache);
            Array.Clear(_xmmCache);
        }
        return v;
    }

    // ---- terminators ----

    /// <summary>Ends the block with a jump.</summary>
    public void Jump(IrBlock target)
    {
        var v = Add(IrOp.Jump, IrType.Void);
        v.Target = target;
    }

    /// <summary>Ends the block with a two-way branch.</summary>
    public void Branch(IrValue cond, IrBlock ifTrue, IrBlock ifFalse)
    {
        Check(cond, IrType.I1);
        if (IsConst(cond, out ulong c))
        {
            Jump(c != 0 ? ifTrue : ifFalse);
            return;
        }
        var v = Add(IrOp.Branch, IrType.Void, cond);
        v.Target = ifTrue;
        v.Else = ifFalse;
    }

    /// <summary>Ends the block leaving the region for a known guest RIP.</summary>
    public void ExitDirect(ulong rip)
    {
        var v = Add(IrOp.ExitDirect, IrType.Void);
        v.Imm = rip;
    }

    /// <summary>Ends the block leaving the region for a computed guest RIP; <paramref name="site"/> is the branching instruction's RIP (kept in <see cref="IrValue.Imm"/>, for profiling).</summary>
    public void ExitIndirect(IrValue rip, ulong site = 0)
    {
        Check(rip, IrType.I64);
        Add(IrOp.ExitIndirect, IrType.Void, rip).Imm = site;
    }

    /// <summary>Ends the block: spills guest state and leaves through a helper that decides what follows (an exit, an exception, or continuing at the RIP it set).</summary>
    public void ExitHelper(HelperId helper, params IrValue[] args) => ExitHelper((int)helper, args);

    /// <summary>Ends the block through a helper given by number.</summary>
    public void ExitHelper(int helper, params IrValue[] args) => AddAux(IrOp.ExitHelper, IrType.Void, helper, args);

    // ---- vector registers ----

    /// <summary>Reads XMM register <paramref name="index"/> (V128).</summary>
    public IrValue GetXmm(int index) => _xmmCache[index] ??= AddAux(IrOp.GetXmm, IrType.V128, index);

    /// <summary>Writes XMM register <paramref name="index"/>.</summary>
    public void SetXmm(int index, IrValue value)
    {
        Check(value, IrType.V128);
        AddAux(IrOp.SetXmm, IrType.Void, index, value);
        _xmmCache[index] = value;
    }
}
