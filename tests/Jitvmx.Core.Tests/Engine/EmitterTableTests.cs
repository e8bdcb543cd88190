// SPDX-License-Identifier: MIT
using System.Reflection;
using Jitvmx.Lifting;

namespace Jitvmx.Tests.Engine;

/// <summary>The lifter's family list, written out for start-up time, against the families the assembly defines.</summary>
public class EmitterTableTests
{
    [Fact]
    public void EveryInstructionFamilyIsRegistered()
    {
        var defined = typeof(EmitterTable).Assembly.GetTypes()
            .Where(t => t.GetCustomAttribute<InstructionFamilyAttribute>() is not null)
            .Select(t => t.FullName!).OrderBy(n => n).ToList();
        var listed = EmitterTable.Families.Select(f => f.Method.DeclaringType!.FullName!).OrderBy(n => n).ToList();
        Assert.True(defined.Count > 10, $"{defined.Count} families found");
        Assert.Equal(defined, listed);
    }
}
