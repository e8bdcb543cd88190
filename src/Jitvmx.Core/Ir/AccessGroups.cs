// SPDX-License-Identifier: MIT
namespace Jitvmx.Ir;

/// <summary>
/// Memory accesses of one block through the same base value at constant offsets (a structure's
/// fields, an unrolled loop's loads, a prologue's pushes), whose bytes all lie within
/// <see cref="Low"/>..<see cref="High"/> of <see cref="Root"/>. When that span is on one page,
/// one software-TLB check covers every access of the group.
/// </summary>
public sealed class AccessGroup
{
    /// <summary>The base every access adds a constant to.</summary>
    public required IrValue Root { get; init; }
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
    private static readonly object s_constants = new();

    /// <summary>Widest span of a group: wider spans cross a page boundary too often to pay off.</summary>
    public const int MaxSpan = 512;

    /// <summary>
    /// The groups of two or more accesses in <paramref name="region"/>, keyed by access node with the
    /// node's offset from the group's root. A group starts at its first access and may go on into blocks that only that block's code reaches (a block with one
    /// predecessor: past a guest instruction's alignment or fault check), so the first access's
    /// check runs before every other. Reads of a guest register in different blocks are one base
    /// while nothing writes the register, and after a write they are the value written (so
    /// <c>add rsi, 64</c> moves the offsets of later accesses through rsi rather than the base). A group ends at any call of a
    /// helper that is not pure: such a helper may change translations (a control-register write),
    /// so a check made before it does not vouch for accesses after it.
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

    // What one path through a chain knows: its open groups by root key, the value each register was
    // last given (SetReg), which register reads stand for such a value, and for the other reads the
    // number of impure calls before them (reads between two such calls are one value).
    private sealed class Chain
    {
        public Dictionary<object, AccessGroup> Open = [];
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
                    // The helper may change translations and registers.
                    chain.Open.Clear();
                    Array.Clear(chain.Holds);
                    chain.Calls++;
                    continue;
                case IrOp.Load or IrOp.Store:
                    break;
                default:
                    continue;
            }
            var (root, offset) = Decompose(v.Args[0], chain.Alias);
            // Constant addresses (globals, a stack known at translation time) all share one base: zero.
            object key = root.Op == IrOp.Const ? s_constants : chain.ReadAt.TryGetValue(root, out int calls) ? (root.Aux, calls) : root;
            if (root.Op == IrOp.Const) offset += (long)root.Imm;
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
                g = new AccessGroup { Root = root, First = v, Low = offset, High = offset + size - 1 };
                chain.Open[key] = g;
            }
            g.Count++;
            if (v.Op == IrOp.Load) g.Loads = true;
            else g.Stores = true;
            result[v] = (g, offset);
        }
    }

    /// <summary>Splits an address into a base and a constant offset: through adds and subtracts of constants.</summary>
    /// <param name="address">The address.</param>
    /// <param name="alias">Register reads known to stand for an earlier value, followed through.</param>
    public static (IrValue Root, long Offset) Decompose(IrValue address, IReadOnlyDictionary<IrValue, IrValue>? alias = null)
    {
        long offset = 0;
        for (int depth = 0; depth < 64; depth++)
        {
            if (alias is not null && alias.TryGetValue(address, out var known))
            {
                address = known;
            }
            else if (address.Op == IrOp.Add && IrBuilder.IsConst(address.Args[1], out ulong c) && Small(c))
            {
                offset += (long)c;
                address = address.Args[0];
            }
            else if (address.Op == IrOp.Add && IrBuilder.IsConst(address.Args[0], out c) && Small(c))
            {
                offset += (long)c;
                address = address.Args[1];
            }
            else if (address.Op == IrOp.Sub && IrBuilder.IsConst(address.Args[1], out c) && Small(c))
            {
                offset -= (long)c;
                address = address.Args[0];
            }
            else
            {
                break;
            }
        }
        return (address, offset);
    }

    // Displacements: offsets stay far from overflow however many are summed.
    private static bool Small(ulong c) => (long)c is > -(1L << 32) and < 1L << 32;
}
