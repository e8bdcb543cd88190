// SPDX-License-Identifier: MIT
namespace Jitvmx.Ir;

/// <summary>Region-level optimisation passes run between the lifter and every backend.</summary>
public static class Passes
{
    /// <summary>Runs the standard pipeline.</summary>
    public static void Run(IrRegion region)
    {
        RemoveUnreachable(region);
        MarkLoopHeaders(region);
        EliminateDeadFlags(region);
        EliminateDeadCode(region);
    }

    /// <summary>Drops blocks not reachable from the entry and renumbers the rest.</summary>
    public static void RemoveUnreachable(IrRegion region)
    {
        var seen = new HashSet<IrBlock>();
        var stack = new Stack<IrBlock>();
        stack.Push(region.Blocks[0]);
        while (stack.TryPop(out var b))
        {
            if (!seen.Add(b)) continue;
            foreach (var s in b.Successors) stack.Push(s);
        }
        region.Blocks.RemoveAll(b => !seen.Contains(b));
        for (int i = 0; i < region.Blocks.Count; i++) region.Blocks[i].Id = i;
    }

    /// <summary>Marks targets of back-edges (found by depth-first search) as loop headers.</summary>
    public static void MarkLoopHeaders(IrRegion region)
    {
        var state = new Dictionary<IrBlock, int>(); // 1 on stack, 2 done
        var stack = new Stack<(IrBlock Block, IEnumerator<IrBlock> Succ)>();
        var entry = region.Blocks[0];
        state[entry] = 1;
        stack.Push((entry, entry.Successors.GetEnumerator()));
        while (stack.Count > 0)
        {
            var (b, it) = stack.Peek();
            if (it.MoveNext())
            {
                var s = it.Current;
                if (!state.TryGetValue(s, out int st))
                {
                    state[s] = 1;
                    stack.Push((s, s.Successors.GetEnumerator()));
                }
                else if (st == 1)
                {
                    s.IsLoopHeader = true;
                }
            }
            else
            {
                state[b] = 2;
                stack.Pop();
            }
        }
    }

    private const int AllFlags = (1 << 7) - 1;

    /// <summary>
    /// Deletes flag writes that no later read can observe: backward liveness over the region's
    /// blocks, with every flag live where control leaves the region (exits, helpers that see state).
    /// </summary>
    public static void EliminateDeadFlags(IrRegion region)
    {
        int n = region.Blocks.Count;
        var liveIn = new int[n];
        bool changed = true;
        while (changed)
        {
            changed = false;
            for (int i = n - 1; i >= 0; i--)
            {
                int live = Transfer(region.Blocks[i], LiveOut(region.Blocks[i], liveIn), mark: false);
                if (live != liveIn[i])
                {
                    liveIn[i] = live;
                    changed = true;
                }
            }
        }
        foreach (var b in region.Blocks) Transfer(b, LiveOut(b, liveIn), mark: true);
    }

    private static int LiveOut(IrBlock b, int[] liveIn)
    {
        var t = b.Terminator;
        if (t is null) return AllFlags;
        return t.Op switch
        {
            IrOp.Jump => liveIn[t.Target!.Id],
            IrOp.Branch => liveIn[t.Target!.Id] | liveIn[t.Else!.Id],
            _ => AllFlags,
        };
    }

    private static int Transfer(IrBlock b, int live, bool mark)
    {
        for (int i = b.Nodes.Count - 1; i >= 0; i--)
        {
            var v = b.Nodes[i];
            switch (v.Op)
            {
                case IrOp.SetFlag:
                    int bit = 1 << v.Aux;
                    if ((live & bit) == 0)
                    {
                        if (mark) v.Dead = true;
                    }
                    live &= ~bit;
                    break;
                case IrOp.GetFlag:
                    live |= 1 << v.Aux;
                    break;
                case IrOp.Call when !Helpers.IsPure(v.Aux):
                case IrOp.ExitHelper or IrOp.ExitDirect or IrOp.ExitIndirect:
                    live = AllFlags;
                    break;
                case IrOp.Load or IrOp.Store:
                    // A fault leaves the region with the flags as they are.
                    live = AllFlags;
                    break;
            }
        }
        return live;
    }

    /// <summary>Counts uses and marks unused pure nodes dead, to a fixed point.</summary>
    public static void EliminateDeadCode(IrRegion region)
    {
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (var b in region.Blocks)
                foreach (var v in b.Nodes) v.Uses = 0;
            foreach (var b in region.Blocks)
                foreach (var v in b.Nodes)
                    if (!v.Dead)
                        foreach (var a in v.Args) a.Uses++;
            foreach (var b in region.Blocks)
                foreach (var v in b.Nodes)
                    if (!v.Dead && v.Uses == 0 && v.IsPure && v.Type != IrType.Void)
                    {
                        v.Dead = true;
                        changed = true;
                    }
        }
        foreach (var b in region.Blocks) b.Nodes.RemoveAll(v => v.Dead);
    }
}
