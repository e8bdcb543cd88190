// SPDX-License-Identifier: MIT
using System.Reflection;
using Iced.Intel;

namespace Jitvmx.Lifting;

/// <summary>Marks a static class holding one instruction family; it must have <c>static void RegisterFamily(EmitterTable t)</c>.</summary>
[AttributeUsage(AttributeTargets.Class)]
internal sealed class InstructionFamilyAttribute : Attribute;

/// <summary>
/// Emitters indexed by Iced's <see cref="Code"/>. Families register by mnemonic (all encodings of
/// it share one emitter, operands are generic) or by specific codes where encodings differ.
/// </summary>
internal sealed class EmitterTable
{
    private readonly Emitter?[] _byCode = new Emitter?[Enum.GetValues<Code>().Length];
    private readonly Emitter?[] _byMnemonic = new Emitter?[Enum.GetValues<Mnemonic>().Length];

    public static EmitterTable Instance { get; } = Build();

    private static EmitterTable Build()
    {
        var t = new EmitterTable();
        foreach (var type in typeof(EmitterTable).Assembly.GetTypes())
        {
            if (type.GetCustomAttribute<InstructionFamilyAttribute>() is null) continue;
            var m = type.GetMethod("RegisterFamily", BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
                ?? throw new InvalidOperationException($"{type.Name} has no RegisterFamily(EmitterTable)");
            m.Invoke(null, [t]);
        }
        return t;
    }

    /// <summary>One emitter for every encoding of a mnemonic.</summary>
    public void Add(Mnemonic m, Emitter e)
    {
        if (_byMnemonic[(int)m] is not null) throw new InvalidOperationException($"mnemonic {m} registered twice");
        _byMnemonic[(int)m] = e;
    }

    /// <summary>One emitter for several mnemonics.</summary>
    public void Add(Emitter e, params Mnemonic[] ms)
    {
        foreach (var m in ms) Add(m, e);
    }

    /// <summary>An emitter for one encoding, taking precedence over the mnemonic's.</summary>
    public void Add(Code c, Emitter e)
    {
        if (_byCode[(int)c] is not null) throw new InvalidOperationException($"code {c} registered twice");
        _byCode[(int)c] = e;
    }

    /// <summary>The emitter for an instruction, or null (it raises #UD).</summary>
    public Emitter? Lookup(in Instruction insn) => _byCode[(int)insn.Code] ?? _byMnemonic[(int)insn.Mnemonic];
}
