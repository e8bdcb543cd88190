// SPDX-License-Identifier: MIT
using System.Text;

namespace Jitvmx.Ir;

/// <summary>Value types of the IR. Sub-32-bit integers are kept zero-extended by every backend.</summary>
public enum IrType : byte
{
    /// <summary>No value.</summary>
    Void,
    /// <summary>Boolean (0 or 1).</summary>
    I1,
    /// <summary>8-bit integer.</summary>
    I8,
    /// <summary>16-bit integer.</summary>
    I16,
    /// <summary>32-bit integer.</summary>
    I32,
    /// <summary>64-bit integer.</summary>
    I64,
    /// <summary>128-bit vector.</summary>
    V128,
}

/// <summary>IR operations. Integer ops take operands of the result type unless noted.</summary>
public enum IrOp : byte
{
    /// <summary>Constant <see cref="IrValue.Imm"/>.</summary>
    Const,
    /// <summary>Read guest GPR <see cref="IrValue.Aux"/> (I64).</summary>
    GetReg,
    /// <summary>Write guest GPR <see cref="IrValue.Aux"/> (arg I64).</summary>
    SetReg,
    /// <summary>Read status flag <see cref="IrValue.Aux"/> (a <see cref="Flag"/>; I1).</summary>
    GetFlag,
    /// <summary>Write status flag <see cref="IrValue.Aux"/> (arg I1).</summary>
    SetFlag,
    /// <summary>Read the guest-state field at byte offset <see cref="IrValue.Aux"/> (of the result type).</summary>
    GetState,
    /// <summary>Write the guest-state field at byte offset <see cref="IrValue.Aux"/>.</summary>
    SetState,
    /// <summary>a + b.</summary>
    Add,
    /// <summary>a − b.</summary>
    Sub,
    /// <summary>Low half of a × b.</summary>
    Mul,
    /// <summary>High half of the unsigned double-width product.</summary>
    UMulHi,
    /// <summary>High half of the signed double-width product.</summary>
    SMulHi,
    /// <summary>Unsigned a / b; the lifter guarantees b ≠ 0.</summary>
    UDiv,
    /// <summary>Unsigned a mod b; b ≠ 0.</summary>
    URem,
    /// <summary>Signed a / b; no overflow, b ≠ 0.</summary>
    SDiv,
    /// <summary>Signed a mod b; no overflow, b ≠ 0.</summary>
    SRem,
    /// <summary>a &amp; b.</summary>
    And,
    /// <summary>a | b.</summary>
    Or,
    /// <summary>a ^ b.</summary>
    Xor,
    /// <summary>a &lt;&lt; b; b &lt; width.</summary>
    Shl,
    /// <summary>Logical a &gt;&gt; b; b &lt; width.</summary>
    LShr,
    /// <summary>Arithmetic a &gt;&gt; b; b &lt; width.</summary>
    AShr,
    /// <summary>Rotate left; b &lt; width.</summary>
    Rotl,
    /// <summary>Rotate right; b &lt; width.</summary>
    Rotr,
    /// <summary>~a.</summary>
    Not,
    /// <summary>−a.</summary>
    Neg,
    /// <summary>Zero-extend to the result type.</summary>
    ZExt,
    /// <summary>Sign-extend to the result type.</summary>
    SExt,
    /// <summary>Truncate to the result type.</summary>
    Trunc,
    /// <summary>a == b (I1).</summary>
    Eq,
    /// <summary>a != b (I1).</summary>
    Ne,
    /// <summary>Unsigned a &lt; b (I1).</summary>
    Ult,
    /// <summary>Unsigned a ≤ b (I1).</summary>
    Ule,
    /// <summary>Signed a &lt; b (I1).</summary>
    Slt,
    /// <summary>Signed a ≤ b (I1).</summary>
    Sle,
    /// <summary>cond ? a : b.</summary>
    Select,
    /// <summary>1 when the low byte of a has an even number of set bits (x86 PF).</summary>
    Parity,
    /// <summary>Population count.</summary>
    Popcnt,
    /// <summary>Trailing zero count (width for 0).</summary>
    Ctz,
    /// <summary>Leading zero count (width for 0).</summary>
    Clz,
    /// <summary>Byte swap.</summary>
    Bswap,
    /// <summary>Read guest XMM register <see cref="IrValue.Aux"/> (V128).</summary>
    GetXmm,
    /// <summary>Write guest XMM register <see cref="IrValue.Aux"/> (arg V128).</summary>
    SetXmm,
    /// <summary>Guest memory load of the result type from guest-linear address arg0 (I64), through the memory path.</summary>
    Load,
    /// <summary>Guest memory store of arg1 at guest-linear address arg0, through the memory path.</summary>
    Store,
    /// <summary>Call of runtime helper <see cref="IrValue.Aux"/> (a <see cref="HelperId"/> or a registered helper number).</summary>
    Call,

    /// <summary>Terminator: continue at <see cref="IrValue.Target"/>.</summary>
    Jump,
    /// <summary>Terminator: arg0 (I1) ? <see cref="IrValue.Target"/> : <see cref="IrValue.Else"/>.</summary>
    Branch,
    /// <summary>Terminator: leave the region for guest RIP <see cref="IrValue.Imm"/>.</summary>
    ExitDirect,
    /// <summary>Terminator: leave the region for guest RIP arg0.</summary>
    ExitIndirect,
    /// <summary>Terminator: spill state and leave through helper <see cref="IrValue.Aux"/>, which decides what happens next.</summary>
    ExitHelper,
}

/// <summary>Status flags tracked individually in the IR.</summary>
public enum Flag : byte
{
    /// <summary>Carry.</summary>
    CF,
    /// <summary>Parity.</summary>
    PF,
    /// <summary>Auxiliary carry.</summary>
    AF,
    /// <summary>Zero.</summary>
    ZF,
    /// <summary>Sign.</summary>
    SF,
    /// <summary>Overflow.</summary>
    OF,
    /// <summary>Direction.</summary>
    DF,
}

/// <summary>A guest instruction that IR nodes belong to: where a fault inside it leaves RIP.</summary>
public sealed class GuestInsn
{
    /// <summary>Address of the instruction.</summary>
    public ulong Rip;
    /// <summary>Length in bytes.</summary>
    public int Length;
    /// <summary>Index of the instruction in its guest basic block.</summary>
    public int Index;
    /// <summary>The IR block that charges the instruction budget for the guest block.</summary>
    public IrBlock? Head;

    /// <summary>Instructions of the guest block not retired when this one faults (itself included).</summary>
    public int GiveBack => (Head?.ChargedInsns ?? 0) - Index;
}

/// <summary>An IR node: a value-producing operation, an effect, or a terminator.</summary>
public sealed class IrValue
{
    /// <summary>Number in its region (for printing and backend tables).</summary>
    public int Id;
    /// <summary>Operation.</summary>
    public IrOp Op;
    /// <summary>Result type (<see cref="IrType.Void"/> for effects and terminators).</summary>
    public IrType Type;
    /// <summary>Operands.</summary>
    public IrValue[] Args = [];
    /// <summary>Immediate (constants, exit RIPs).</summary>
    public ulong Imm;
    /// <summary>Register, flag, state offset or helper number.</summary>
    public int Aux;
    /// <summary>The guest instruction this node belongs to.</summary>
    public GuestInsn? Insn;
    /// <summary>Branch target.</summary>
    public IrBlock? Target;
    /// <summary>Branch fall-through target.</summary>
    public IrBlock? Else;
    /// <summary>Number of uses (filled by passes).</summary>
    public int Uses;
    /// <summary>Set by passes on nodes to drop.</summary>
    public bool Dead;

    /// <summary>Whether this node ends a block.</summary>
    public bool IsTerminator => Op >= IrOp.Jump;

    /// <summary>Whether removing an unused instance of this node changes nothing observable.</summary>
    public bool IsPure => Op switch
    {
        IrOp.SetReg or IrOp.SetFlag or IrOp.SetState or IrOp.SetXmm or IrOp.Store or IrOp.Load => false,
        IrOp.Call => Helpers.IsPure(Aux),
        _ => !IsTerminator,
    };

    /// <inheritdoc/>
    public override string ToString() => IrPrinter.Format(this);
}

/// <summary>A basic block of the IR.</summary>
public sealed class IrBlock
{
    /// <summary>Number in the region.</summary>
    public int Id;
    /// <summary>Body, terminator last.</summary>
    public readonly List<IrValue> Nodes = [];
    /// <summary>Guest address when the block starts a guest basic block; else 0.</summary>
    public ulong GuestAddress;
    /// <summary>Guest instructions charged to the budget on entry (non-zero only for guest block heads).</summary>
    public int ChargedInsns;
    /// <summary>Whether an edge from later in the region reaches this block (a loop header): it checks for exit requests.</summary>
    public bool IsLoopHeader;
    /// <summary>For a loop head inside one guest instruction (REP): the instruction to resume at when the loop is interrupted.</summary>
    public GuestInsn? ResumeInsn;

    /// <summary>The terminator, when the block is complete.</summary>
    public IrValue? Terminator => Nodes.Count > 0 && Nodes[^1].IsTerminator ? Nodes[^1] : null;

    /// <summary>Successor blocks inside the region.</summary>
    public IEnumerable<IrBlock> Successors
    {
        get
        {
            var t = Terminator;
            if (t?.Target is { } a) yield return a;
            if (t?.Else is { } b) yield return b;
        }
    }
}

/// <summary>A translation unit: guest blocks with internal branches, entered at <see cref="EntryRip"/>.</summary>
public sealed class IrRegion
{
    /// <summary>Guest RIP of the entry block.</summary>
    public ulong EntryRip;
    /// <summary>Blocks; the first is the entry.</summary>
    public readonly List<IrBlock> Blocks = [];
    /// <summary>Guest instructions lifted.</summary>
    public int GuestInstructionCount;
    /// <summary>Guest-linear ranges the region's code was read from.</summary>
    public readonly List<(ulong Start, ulong End)> GuestRanges = [];

    /// <summary>
    /// <see cref="GuestRanges"/> (one per instruction) merged into contiguous ranges in address order:
    /// what a record of the code's bytes covers (prepared regions, region objects).
    /// </summary>
    public (ulong Start, ulong End)[] MergedGuestRanges()
    {
        // An insertion sort by start: a region has a few hundred instructions at most, and a generic
        // sort of these tuples would be JIT-compiled at start-up.
        var sorted = GuestRanges.ToArray();
        for (int i = 1; i < sorted.Length; i++)
        {
            var x = sorted[i];
            int j = i - 1;
            for (; j >= 0 && sorted[j].Start > x.Start; j--) sorted[j + 1] = sorted[j];
            sorted[j + 1] = x;
        }
        var merged = new List<(ulong Start, ulong End)>();
        foreach (var (s, e) in sorted)
        {
            if (merged.Count > 0 && s <= merged[^1].End)
            {
                if (e > merged[^1].End) merged[^1] = (merged[^1].Start, e);
            }
            else merged.Add((s, e));
        }
        return [.. merged];
    }
    /// <summary>Translated for a VM with <see cref="VirtualMachine.FlatAddend"/>: every TLB hit has that addend.</summary>
    public bool FlatMemory;
    /// <summary>Translated for a VM with <see cref="VirtualMachine.HostReadFaults"/>: reads may rely on host faults.</summary>
    public bool HostReadFaults;
    /// <summary>Translated for a VM with <see cref="VirtualMachine.HostWriteFaults"/>: writes may rely on host faults.</summary>
    public bool HostWriteFaults;
    private int _nextId;

    /// <summary>Adds a new empty block.</summary>
    public IrBlock NewBlock()
    {
        var b = new IrBlock { Id = Blocks.Count };
        Blocks.Add(b);
        return b;
    }

    internal int NextId() => _nextId++;

    /// <summary>Upper bound (exclusive) of the value numbers in the region, for tables indexed by <see cref="IrValue.Id"/>.</summary>
    internal int ValueIdLimit => _nextId;

    /// <summary>Textual form, for tests and debugging.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var b in Blocks)
        {
            sb.Append($"b{b.Id}:");
            if (b.GuestAddress != 0) sb.Append($" ; 0x{b.GuestAddress:x} charge {b.ChargedInsns}");
            if (b.IsLoopHeader) sb.Append(" loop");
            sb.AppendLine();
            foreach (var n in b.Nodes)
                if (!n.Dead) sb.Append("  ").AppendLine(IrPrinter.Format(n));
        }
        return sb.ToString();
    }
}

internal static class IrPrinter
{
    public static string Format(IrValue v)
    {
        var sb = new StringBuilder();
        if (v.Type != IrType.Void) sb.Append($"v{v.Id}:{v.Type.ToString().ToLowerInvariant()} = ");
        sb.Append(v.Op.ToString().ToLowerInvariant());
        switch (v.Op)
        {
            case IrOp.Const: sb.Append($" 0x{v.Imm:x}"); break;
            case IrOp.GetReg or IrOp.SetReg: sb.Append($" {(GuestRegister)v.Aux}"); break;
            case IrOp.GetFlag or IrOp.SetFlag: sb.Append($" {(Flag)v.Aux}"); break;
            case IrOp.GetState or IrOp.SetState: sb.Append($" +{v.Aux}"); break;
            case IrOp.Call or IrOp.ExitHelper: sb.Append($" {Helpers.Name(v.Aux)}"); break;
            case IrOp.GetXmm or IrOp.SetXmm: sb.Append($" xmm{v.Aux}"); break;
            case IrOp.ExitDirect: sb.Append($" 0x{v.Imm:x}"); break;
        }
        foreach (var a in v.Args) sb.Append($" v{a.Id}");
        if (v.Target is not null) sb.Append($" b{v.Target.Id}");
        if (v.Else is not null) sb.Append($" b{v.Else.Id}");
        return sb.ToString();
    }
}

/// <summary>Helpers over <see cref="IrType"/>.</summary>
public static class IrTypes
{
    /// <summary>Width in bits.</summary>
    public static int Bits(this IrType t) => t switch
    {
        IrType.I1 => 1, IrType.I8 => 8, IrType.I16 => 16, IrType.I32 => 32, IrType.I64 => 64, IrType.V128 => 128, _ => 0,
    };

    /// <summary>Integer type of <paramref name="bytes"/> bytes.</summary>
    public static IrType FromBytes(int bytes) => bytes switch
    {
        1 => IrType.I8, 2 => IrType.I16, 4 => IrType.I32, 8 => IrType.I64, 16 => IrType.V128,
        _ => throw new ArgumentOutOfRangeException(nameof(bytes)),
    };

    /// <summary>All-ones mask of the type's width.</summary>
    public static ulong Mask(this IrType t) => t.Bits() >= 64 ? ulong.MaxValue : (1UL << t.Bits()) - 1;

    /// <summary>Sign bit of the type.</summary>
    public static ulong SignBit(this IrType t) => 1UL << (t.Bits() - 1);
}
