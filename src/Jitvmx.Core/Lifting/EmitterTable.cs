// SPDX-License-Identifier: MIT
using System.Runtime.CompilerServices;
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

    /// <summary>
    /// Every <see cref="InstructionFamilyAttribute"/> class's registration, named here rather than
    /// found by scanning the assembly's types and invoking each by reflection, which cost the first
    /// translation of every run milliseconds. A test checks that the list names every family.
    /// </summary>
    internal static readonly Action<EmitterTable>[] Families =
    [
        Alu.RegisterFamily, BitOps.RegisterFamily, Bmi.RegisterFamily, Control.RegisterFamily, Conversions.RegisterFamily,
        CryptoCrc.RegisterFamily, DataMovement.RegisterFamily, Mmx.RegisterFamily, MulDiv.RegisterFamily, MxcsrInstructions.RegisterFamily,
        Shifts.RegisterFamily, SseFloat.RegisterFamily, SseInteger.RegisterFamily, SseMove.RegisterFamily,
        Ssse3Sse41Integer.RegisterFamily, Stack.RegisterFamily, Strings.RegisterFamily, SystemInstructions.RegisterFamily,
        X87.RegisterFamily, Xsave.RegisterFamily,
    ];

    // After Families: static fields initialize in declaration order.
    public static EmitterTable Instance { get; } = Build();

    private static EmitterTable Build()
    {
        var t = new EmitterTable();
        foreach (var register in Families) register(t);
        return t;
    }

    /// <summary>
    /// A mnemonic with its name, taken from the expression that names it (<c>Named(Mnemonic.Paddb)</c>
    /// is <c>(Mnemonic.Paddb, "Paddb")</c>): families that register helpers by an instruction's name
    /// got the mnemonic from <c>Enum.Parse</c>, whose name table of 1,900 mnemonics cost start-up.
    /// </summary>
    internal static (Mnemonic Mnemonic, string Name) Named(Mnemonic m, [CallerArgumentExpression(nameof(m))] string expression = "") =>
        (m, expression[(expression.LastIndexOf('.') + 1)..]);

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
