// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Jitvmx.Backend;

namespace Jitvmx.Tests.Engine;

/// <summary>The interpreter's ahead-of-time helper adapters: one for every helper, and the same results as the DynamicMethod thunks they replace.</summary>
public unsafe class HelperAdapterTests
{
    /// <summary>Every helper: the table's and those the instruction families register.</summary>
    private static List<MethodInfo> AllHelpers()
    {
        RuntimeHelpers.RunClassConstructor(typeof(Jitvmx.Lifting.EmitterTable).TypeHandle);
        var all = new List<MethodInfo>();
        foreach (var id in Enum.GetValues<HelperId>())
            if (Helpers.Method(id) is { } m) all.Add(m);
        for (int i = 0; i < Helpers.RegisteredCount; i++) all.Add(Helpers.Method(Helpers.FirstRegistered + i)!);
        return all;
    }

    [Fact]
    public void EveryHelperHasAnAdapter()
    {
        var helpers = AllHelpers();
        Assert.True(helpers.Count > 100, $"only {helpers.Count} helpers found");
        var missing = helpers.Where(m => HelperAdapter.Shape(m) is not { } s || !HelperAdapter.Shapes.Contains(s))
            .Select(m => $"{m.DeclaringType?.Name}.{m.Name} ({HelperAdapter.Shape(m) ?? "unsupported types"})").ToList();
        Assert.True(missing.Count == 0, "add these shapes to HelperAdapter: " + string.Join(", ", missing));
    }

    [Fact]
    public void AdaptersGiveTheDynamicThunksResults()
    {
        // Pure helpers only: they ignore the context, so both can run on random operands. Integers
        // carry garbage above their parameter's width, which both must cut away alike.
        var rng = new Random(20261130);
        int compared = 0;
        var args = stackalloc ulong[8];
        var vargs = stackalloc Vector128<byte>[8];
        foreach (var m in AllHelpers())
        {
            if (!IsPure(m)) continue;
            var adapter = HelperAdapter.TryCreate(m);
            Assert.NotNull(adapter);
            var dynamic = HelperThunks.CreateDynamic(m);
            for (int trial = 0; trial < 20; trial++)
            {
                for (int i = 0; i < 8; i++)
                {
                    args[i] = trial switch { 0 => 0, 1 => ulong.MaxValue, 2 => 0x80, 3 => 0x8000_0000, _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 63) };
                    vargs[i] = Vector128.Create((ulong)rng.NextInt64(), (ulong)rng.NextInt64()).AsByte();
                }
                var r1 = Vector128.Create(0xAAAAAAAAAAAAAAAAUL).AsByte();
                var r2 = r1;
                var e1 = Call(adapter!, args, vargs, &r1);
                var e2 = Call(dynamic, args, vargs, &r2);
                Assert.True(e1?.GetType() == e2?.GetType(), $"{m.Name}: {e1?.GetType().Name ?? "no exception"} against {e2?.GetType().Name ?? "no exception"}");
                Assert.True(r1 == r2, $"{m.Name} trial {trial}: adapter {r1} thunk {r2}");
                compared++;
            }
        }
        Assert.True(compared > 1000, $"{compared} comparisons");
    }

    private static bool IsPure(MethodInfo m)
    {
        if (m.GetCustomAttribute<HelperAttribute>() is { } a) return a.Pure;
        for (int i = 0; i < Helpers.RegisteredCount; i++)
            if (Helpers.Method(Helpers.FirstRegistered + i) == m) return Helpers.IsPure(Helpers.FirstRegistered + i);
        return false;
    }

    private static Exception? Call(HelperThunk t, ulong* args, Vector128<byte>* vargs, Vector128<byte>* result)
    {
        try
        {
            t(null, args, vargs, result);
            return null;
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            return e;
        }
    }
}
