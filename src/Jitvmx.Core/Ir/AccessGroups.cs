// SPDX-License-Identifier: MIT
using System.Text;

namespace Jitvmx.Ir;

/// <summary>
/// Memory accesses at constant offsets from one base (a structure's fields, an unrolled loop's
/// loads, a prologue's pushes, neighbouring elements of an indexed array), whose bytes all lie
/// within <see cref="Low"/>..<see cref="High"/> of it. When that span is on one page, one
/// software-TLB check covers every access of the group.
/// </summary>
public sealed class AccessGroup
{
    /// <summary>The base, as a canonical expression over register reads (<c>"const"</c> for absolute addresses).</summary>
    public required string Base { get; init; }
    /// <summary>The group's first access, which checks for all: it runs before every other.</summary>
    public required IrValue First { get; init; }
    /// <summary>The lowest offset any access of the group starts at.</summary>
    public long Low { get; internal set; }
    /// <summary>The highest offset any access of the group touches (its last byte).</summary>
    public long High { get; internal set; }
    /// <summary>Whether some access of the group reads.</summary>
    public bool Loads { get; internal set; }
    /// <summary>Whether some access of the group writes.</summary>
    public bool Stores { get; internal set; }
    /// <summary>How many accesses the group has.</summary>
    public int Count { get; internal set; }
}

/// <summary>Finds <see cref="AccessGroup"/>s, for backends to check the TLB once per group.</summary>
public static class AccessGroups
{
    /// <summary>Widest span of a group: wider spans cross a page boundary too often to pay off.</summary>
    public const int MaxSpan = 512;

    /// <summary>
    /// The groups of two or more accesses in <paramref name="region"/>, keyed by access node with the
    /// node's offset from the group's base. A group starts at its first access and may go on into
    /// blocks that only that block's code reaches (a block with one predecessor: past a guest
    /// instruction's alignment or fault check), so the first access's check runs before every other.
    /// Addresses are split into a sum of terms and a constant; accesses whose terms are the same
    /// expression over the same register values share a base. Reads of a guest register are one
    /// value while nothing writes the register, and after a write they are the value written (so
    /// <c>add rsi, 64</c> moves the offsets of later accesses through rsi rather than the base).
    /// A group ends at any call of a helper that is not pure: such a helper may change
    /// translations (a control-register write) and registers.
    /// </summary>
    public static Dictionary<IrValue, (AccessGroup Group, long Offset)> Find(IrRegion region)
    {
        var result = new Dictionary<IrValue, (AccessGroup, long)>();
        var preds = new Dictionary<IrBlock, int>();
        var pred = new Dictionary<IrBlock, IrBlock>();
        foreach (var b in region.Blocks)
            foreach (var s in b.Successors)
            {
                preds[s] = preds.GetValueOrDefault(s) + 1;
                pred[s] = b;
            }
        var entry = region.Blocks[0];
        bool Continues(IrBlock from, IrBlock to) => to != entry && to != from && preds.GetValueOrDefault(to) == 1;

        var stack = new Stack<(IrBlock Block, Chain State)>();
        foreach (var b in region.Blocks)
        {
            if (pred.TryGetValue(b, out var p) && Continues(p, b)) continue;
            stack.Push((b, new Chain()));
            while (stack.TryPop(out var item))
            {
                Scan(item.Block, item.State, result);
                foreach (var s in item.Block.Successors.Distinct())
                    if (Continues(item.Block, s)) stack.Push((s, item.State.Copy()));
            }
        }
        foreach (var (node, (g, _)) in result.ToArray())
            if (g.Count < 2) result.Remove(node);
        return result;
    }

    // What one path through a chain knows: its open groups by base, the value each register was
    // last given (SetReg), which register reads stand for such a value, and for the other reads the
    // number of impure calls before them (reads between two such calls are one value).
    private sealed class Chain
    {
        public Dictionary<string, AccessGroup> Open = [];
        public IrValue?[] Holds = new IrValue?[16];
        public Dictionary<IrValue, IrValue> Alias = [];
        public Dictionary<IrValue, int> ReadAt = [];
        public int Calls;

        public Chain Copy() => new()
        {
            Open = new(Open), Holds = (IrValue?[])Holds.Clone(), Alias = new(Alias), ReadAt = new(ReadAt), Calls = Calls,
        };
    }

    private static void Scan(IrBlock block, Chain chain, Dictionary<IrValue, (AccessGroup, long)> result)
    {
        foreach (var v in block.Nodes)
        {
            switch (v.Op)
            {
                case IrOp.GetReg:
                    if (chain.Holds[v.Aux] is { } known) chain.Alias[v] = known;
                    else chain.ReadAt[v] = chain.Calls;
                    continue;
                case IrOp.SetReg:
                    chain.Holds[v.Aux] = v.Args[0];
                    continue;
                case IrOp.Call when !v.IsPure:
                    chain.Open.Clear();
                    Array.Clear(chain.Holds);
                    chain.Calls++;
                    continue;
                case IrOp.Load or IrOp.Store:
                    break;
                default:
                    continue;
            }
            var (key, offset) = Split(v.Args[0], chain);
            var type = v.Op == IrOp.Load ? v.Type : v.Args[1].Type;
            long size = type == IrType.I1 ? 1 : type.Bits() / 8;
            if (chain.Open.TryGetValue(key, out var g))
            {
                long low = Math.Min(g.Low, offset), high = Math.Max(g.High, offset + size - 1);
                if ((ulong)(high - low) >= MaxSpan)
                {
                    // Too far from the open group: it starts a new one.
                    g = null;
                }
                else
                {
                    g.Low = low;
                    g.High = high;
                }
            }
            if (g is null)
            {
                g = new AccessGroup { Base = key, First = v, Low = offset, High = offset + size - 1 };
                chain.Open[key] = g;
            }
            g.Count++;
            if (v.Op == IrOp.Load) g.Loads = true;
            else g.Stores = true;
            result[v] = (g, offset);
        }
    }

    // An address as base + offset: the sum's non-constant terms, canonically ordered, and its constants.
    private static (string Key, long Offset) Split(IrValue address, Chain chain)
    {
        var terms = new List<string>();
        long offset = 0;
        void Walk(IrValue v, int depth)
        {
            while (chain.Alias.TryGetValue(v, out var known)) v = known;
            if (depth < 8 && v.Op == IrOp.Add)
            {
                Walk(v.Args[0], depth + 1);
                Walk(v.Args[1], depth + 1);
            }
            else if (depth < 8 && v.Op == IrOp.Sub && IrBuilder.IsConst(v.Args[1], out ulong c))
            {
                Walk(v.Args[0], depth + 1);
                offset = unchecked(offset - (long)c);
            }
            else if (IrBuilder.IsConst(v, out c))
            {
                offset = unchecked(offset + (long)c);
            }
            else
            {
                terms.Add(Key(v, chain, 0));
            }
        }
        Walk(address, 0);
        if (terms.Count == 0) return ("const", offset);
        terms.Sort(StringComparer.Ordinal);
        return (string.Join(" + ", terms), offset);
    }

    // A pure expression over register values, written out so that equal keys mean equal values;
    // anything else (a load, state, a read from outside the chain) stands for itself.
    private static string Key(IrValue v, Chain chain, int depth)
    {
        while (chain.Alias.TryGetValue(v, out var known)) v = known;
        if (IrBuilder.IsConst(v, out ulong c)) return $"{c:x}";
        if (v.Op == IrOp.GetReg && chain.ReadAt.TryGetValue(v, out int calls)) return $"{(GuestRegister)v.Aux}@{calls}";
        bool expression = v.Op is IrOp.Add or IrOp.Sub or IrOp.Mul or IrOp.Shl or IrOp.LShr or IrOp.AShr or IrOp.And or IrOp.Or
            or IrOp.Xor or IrOp.ZExt or IrOp.SExt or IrOp.Trunc;
        if (!expression || depth >= 6) return $"v{v.Id}";
        var sb = new StringBuilder();
        sb.Append(v.Op).Append('.').Append(v.Type).Append('(');
        for (int i = 0; i < v.Args.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(Key(v.Args[i], chain, depth + 1));
        }
        return sb.Append(')').ToString();
    }
}
