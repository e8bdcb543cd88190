// SPDX-License-Identifier: MIT
using System.Reflection;

namespace Jitvmx.Tests.Engine;

/// <summary>The helper table, read from the attributes' metadata, against the attributes themselves.</summary>
public class HelperTableTests
{
    [Fact]
    public void EveryHelperHasItsAttributesNumberAndPurity()
    {
        int pure = 0, impure = 0;
        foreach (var m in typeof(Helpers).GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
        {
            var a = m.GetCustomAttribute<HelperAttribute>();
            if (a is null) continue;
            Assert.Same(m, Helpers.Method(a.Id));
            Assert.Equal(a.Pure, Helpers.IsPure(a.Id));
            if (a.Pure) pure++; else impure++;
        }
        // Both kinds exist, so a purity read wrongly one way or the other shows.
        Assert.True(pure > 0 && impure > 0, $"{pure} pure and {impure} other helpers");
    }
}
