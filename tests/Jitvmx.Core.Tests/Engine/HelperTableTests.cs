// SPDX-License-Identifier: MIT
using System.Reflection;

namespace Jitvmx.Tests.Engine;

/// <summary>The helper table, declared in code for start-up time, against the helpers' attributes.</summary>
public class HelperTableTests
{
    [Fact]
    public void EveryHelperHasItsAttributesNumberAndPurity()
    {
        int pure = 0, impure = 0;
        var attributed = new List<(HelperId, string, bool)>();
        foreach (var m in typeof(Helpers).GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
        {
            var a = m.GetCustomAttribute<HelperAttribute>();
            if (a is null) continue;
            attributed.Add((a.Id, m.Name, a.Pure));
            Assert.Same(m, Helpers.Method(a.Id));
            Assert.Equal(a.Pure, Helpers.IsPure(a.Id));
            if (a.Pure) pure++; else impure++;
        }
        // Both kinds exist, so a purity read wrongly one way or the other shows.
        Assert.True(pure > 0 && impure > 0, $"{pure} pure and {impure} other helpers");
        // The declared list is the attributes, nothing more or less.
        Assert.Equal(attributed.OrderBy(h => h.Item1), Helpers.Declared.OrderBy(h => h.Id));
        Assert.Equal(Helpers.TableSize, Enum.GetValues<HelperId>().Length);
    }
}
