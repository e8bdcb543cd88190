// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;

namespace Jitvmx.Lifting;

/// <summary>Data movement: MOV and friends.</summary>
[InstructionFamily]
internal static class DataMovement
{
    public static void RegisterFamily(EmitterTable t)
    {
        // MOV is registered by SystemInstructions (control/segment/debug forms) and delegates here.
    }

    /// <summary>MOV between GPRs, memory and immediates.</summary>
    public static void Mov(Lifter l, in Instruction i)
    {
        var v = l.ReadOp(i, 1, Lifter.OpType(i, 0));
        l.WriteOp(i, 0, v);
    }
}
