// SPDX-License-Identifier: MIT
using System.Text;

namespace Jitvmx.Ir;

/// <summary>
/// Lazy status flags for a backend. Most flag writes are never read inside a region: they are
/// observable only where control leaves it (an exit, a fault on a memory access, a helper that
/// sees guest state). Instead of computing such a flag, a backend keeps the few values its
/// expression is built from (the instruction's operands and result: its <em>leaves</em>) and the
/// number of the instruction that wrote it (its <em>site</em>), and computes the flag only when
/// it is observed, by dispatching on the site to the expression's <em>kind</em>. In a loop the
/// leaves are values the loop computes anyway, so the flags cost nothing until the loop leaves.
/// This is QEMU's condition-code operation with the operations found from the IR instead of
/// named by the lifter.
/// </summary>
internal sealed class FlagDeferral
{
    /// <summary>Most leaves an instruction's flags may have (a backend keeps this many slots per flag).</summary>
    public const int MaxLeaves = 4;

    /// <summary>A deferred flag write.</summary>
    /// <param name="Id">The site: one number per guest instruction, shared by every flag it writes (1 and up; 0 means "the flag's value is stored").</param>
    /// <param name="Leaves">The instruction's leaves, in slot order.</param>
    /// <param name="Kind">Index into <see cref="Kinds"/> of the written flag.</param>
    /// <param name="Used">The slots this flag's expression reads (a flag may be written before the instruction computes another flag's leaves).</param>
    public sealed record Site(int Id, IrValue[] Leaves, int Kind, int[] Used);

    /// <summary>One expression shape of a flag: any site of the kind computes the flag from its leaves this way.</summary>
    /// <param name="Root">The expression of a representative site.</param>
    /// <param name="Leaves">That site's leaves (slot i holds Leaves[i]).</param>
    /// <param name="Used">The slots the expression reads.</param>
    /// <param name="Sites">Every site of this kind.</param>
    public sealed record Kind(IrValue Root, IrValue[] Leaves, int[] Used, List<int> Sites);

    private readonly Dictionary<IrValue, Site> _sites = [];
    private readonly HashSet<IrValue> _private = [];

    /// <summary>Kinds of each <see cref="Flag"/>.</summary>
    public List<Kind>[] Kinds { get; } = [[], [], [], [], [], [], []];

    /// <summary>Largest number of leaves of any site.</summary>
    public int LeafSlots { get; private set; }

    /// <summary>The deferred write <paramref name="setFlag"/> is, or null when the backend stores its value.</summary>
    public Site? SiteOf(IrValue setFlag) => _sites.GetValueOrDefault(setFlag);

    /// <summary>Whether <paramref name="v"/> is computed only for flags (a backend need not compute it elsewhere).</summary>
    public bool IsPrivate(IrValue v) => _private.Contains(v);

    /// <summary>Whether any flag write is deferred.</summary>
    public bool Any => _sites.Count > 0;

    /// <summary>Nodes a flag expression may be built from: cheap, pure and single-block.</summary>
    private static bool Recomputable(IrOp op) => op is IrOp.Add or IrOp.Sub or IrOp.Mul or IrOp.And or IrOp.Or or IrOp.Xor
        or IrOp.Shl or IrOp.LShr or IrOp.AShr or IrOp.Rotl or IrOp.Rotr or IrOp.Not or IrOp.Neg or IrOp.ZExt or IrOp.SExt
        or IrOp.Trunc or IrOp.Eq or IrOp.Ne or IrOp.Ult or IrOp.Ule or IrOp.Slt or IrOp.Sle or IrOp.Select or IrOp.Parity
        or IrOp.UMulHi or IrOp.SMulHi;

    /// <summary>
    /// Finds the deferrable flag writes of <paramref name="region"/> (after <see cref="Passes.Run"/>).
    /// <paramref name="materializations"/> is how many places the backend will compute all flags at
    /// (exits share one; each helper that sees state adds one): a region whose dispatch code would
    /// grow past a bound keeps all flags stored.
    /// </summary>
    public static FlagDeferral Analyze(IrRegion region, int materializations)
    {
        var d = new FlagDeferral();
        var users = new Dictionary<IrValue, List<IrValue>>();
        var blockOf = new Dictionary<IrValue, IrBlock>();
        foreach (var b in region.Blocks)
            foreach (var v in b.Nodes)
            {
                blockOf[v] = b;
                foreach (var a in v.Args)
                {
                    if (!users.TryGetValue(a, out var list)) users[a] = list = [];
                    list.Add(v);
                }
            }
        // Private nodes: only flag writes (or other private nodes) of the same block use them.
        foreach (var b in region.Blocks)
            for (int i = b.Nodes.Count - 1; i >= 0; i--)
            {
                var v = b.Nodes[i];
                if (!Recomputable(v.Op) || v.Type is IrType.Void or IrType.V128 || HasVectorArg(v)) continue;
                if (!users.TryGetValue(v, out var us) || us.Count == 0) continue;
                bool onlyFlags = true;
                foreach (var u in us) onlyFlags &= blockOf[u] == b && (u.Op == IrOp.SetFlag || d._private.Contains(u));
                if (onlyFlags) d._private.Add(v);
            }

        // Group the writes by guest instruction; the instruction's leaves are the union of its flags'.
        var groups = new Dictionary<object, List<IrValue>>();
        foreach (var b in region.Blocks)
            foreach (var v in b.Nodes)
                if (v.Op == IrOp.SetFlag && v.Aux != (int)Flag.DF && d._private.Contains(v.Args[0]))
                {
                    object key = (object?)v.Insn ?? v;
                    if (!groups.TryGetValue(key, out var g)) groups[key] = g = [];
                    g.Add(v);
                }
        // Loops, not LINQ, in this file: its generic instantiations were JIT-compiled in front of the first hot region.
        Dictionary<string, int>[] kindIndex = [[], [], [], [], [], [], []];
        int nextSite = 1;
        var pending = new List<(IrValue Set, IrValue[] Leaves, string Key)>();
        foreach (var g in groups.Values)
        {
            // Every write of the instruction stores all its leaves, so they must all be at hand: one block.
            bool oneBlock = true;
            foreach (var s in g) oneBlock &= blockOf[s] == blockOf[g[0]];
            if (!oneBlock) continue;
            var leaves = new List<IrValue>();
            foreach (var s in g) d.CollectLeaves(s.Args[0], leaves);
            bool scalarLeaves = true;
            foreach (var l in leaves) scalarLeaves &= l.Type is not (IrType.V128 or IrType.Void);
            if (leaves.Count > MaxLeaves || !scalarLeaves) continue;
            var arr = leaves.ToArray();
            foreach (var s in g) pending.Add((s, arr, d.KeyOf(s.Args[0], arr)));
        }
        // Each dispatch computes every kind of every flag; bound that code.
        var distinct = new HashSet<string>();
        foreach (var p in pending) distinct.Add($"{p.Set.Aux}|{p.Key}");
        int kinds = distinct.Count;
        if ((long)kinds * Math.Max(1, materializations) > 2400) return new FlagDeferral();
        var siteOfGroup = new Dictionary<IrValue[], int>(ReferenceEqualityComparer.Instance);
        foreach (var (s, leaves, key) in pending)
        {
            if (!siteOfGroup.TryGetValue(leaves, out int id)) siteOfGroup[leaves] = id = nextSite++;
            var own = new List<IrValue>();
            d.CollectLeaves(s.Args[0], own);
            var used = new int[own.Count];
            for (int u = 0; u < used.Length; u++) used[u] = Array.IndexOf(leaves, own[u]);
            int f = s.Aux;
            if (!kindIndex[f].TryGetValue(key, out int k))
            {
                kindIndex[f][key] = k = d.Kinds[f].Count;
                d.Kinds[f].Add(new Kind(s.Args[0], leaves, used, []));
            }
            d.Kinds[f][k].Sites.Add(id);
            d._sites[s] = new Site(id, leaves, k, used);
            d.LeafSlots = Math.Max(d.LeafSlots, leaves.Length);
        }
        return d;
    }

    private static bool HasVectorArg(IrValue v)
    {
        foreach (var a in v.Args)
            if (a.Type == IrType.V128) return true;
        return false;
    }

    private void CollectLeaves(IrValue v, List<IrValue> leaves)
    {
        if (v.Op == IrOp.Const) return;
        if (_private.Contains(v))
        {
            foreach (var a in v.Args) CollectLeaves(a, leaves);
            return;
        }
        if (!leaves.Contains(v)) leaves.Add(v);
    }

    /// <summary>The expression's shape with leaves named by slot: equal keys compute the same function of the slots.</summary>
    private string KeyOf(IrValue root, IrValue[] leaves)
    {
        var sb = new StringBuilder();
        void Walk(IrValue v)
        {
            if (v.Op == IrOp.Const)
            {
                sb.Append('c').Append(v.Imm).Append(':').Append((int)v.Type);
                return;
            }
            if (!_private.Contains(v))
            {
                sb.Append('L').Append(Array.IndexOf(leaves, v)).Append(':').Append((int)v.Type);
                return;
            }
            sb.Append((int)v.Op).Append(':').Append((int)v.Type).Append(':').Append(v.Aux).Append('(');
            foreach (var a in v.Args)
            {
                Walk(a);
                sb.Append(',');
            }
            sb.Append(')');
        }
        Walk(root);
        return sb.ToString();
    }

    /// <summary>The private nodes of <paramref name="root"/>'s expression in an order where operands come first.</summary>
    public List<IrValue> Expression(IrValue root)
    {
        var order = new List<IrValue>();
        var seen = new HashSet<IrValue>();
        void Walk(IrValue v)
        {
            if (!_private.Contains(v) || !seen.Add(v)) return;
            foreach (var a in v.Args) Walk(a);
            order.Add(v);
        }
        Walk(root);
        return order;
    }
}
