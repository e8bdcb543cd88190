// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>LDMXCSR and STMXCSR (legacy encodings).</summary>
[InstructionFamily]
internal static class MxcsrInstructions
{
    /// <summary>MXCSR bits a guest may set (MXCSR_MASK reported by FXSAVE: DAZ supported); the rest are reserved.</summary>
    public const uint WritableMask = 0xFFFF;

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Ldmxcsr, Ldmxcsr);
        t.Add(Mnemonic.Stmxcsr, Stmxcsr);
    }

    /// <summary>Loads MXCSR; a reserved bit set is #GP(0). Setting a flag whose exception is unmasked raises nothing now (the next instruction that raises it does).</summary>
    private static void Ldmxcsr(Lifter l, in Instruction i)
    {
        var v = l.Load(I32, l.Address(i));
        l.RaiseExceptionIf(l.B.Ne(l.B.And(v, l.B.I32(~WritableMask)), l.B.I32(0)), ExceptionVector.GP);
        l.B.SetState(StateOffsets.Mxcsr, v);
    }

    private static void Stmxcsr(Lifter l, in Instruction i) => l.Store(l.Address(i), l.B.GetState(I32, StateOffsets.Mxcsr));
}
