// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;

namespace Jitvmx.Lifting;

/// <summary>Accumulator sign extensions: CBW CWDE CDQE (in place) and CWD CDQ CQO (into rDX). No flags.</summary>
// Not called Convert: that would hide System.Convert from every file in this namespace.
[InstructionFamily]
internal static class Conversions
{
    public static void RegisterFamily(EmitterTable t)
    {
        t.Add(Mnemonic.Cbw, Cbw);
        t.Add(Mnemonic.Cwde, Cwde);
        t.Add(Mnemonic.Cdqe, Cdqe);
        t.Add(Mnemonic.Cwd, Cwd);
        t.Add(Mnemonic.Cdq, Cdq);
        t.Add(Mnemonic.Cqo, Cqo);
    }

    private static void Cbw(Lifter l, in Instruction i) => Widen(l, Register.AL, Register.AX);
    private static void Cwde(Lifter l, in Instruction i) => Widen(l, Register.AX, Register.EAX);
    private static void Cdqe(Lifter l, in Instruction i) => Widen(l, Register.EAX, Register.RAX);
    private static void Cwd(Lifter l, in Instruction i) => SignInto(l, Register.AX, Register.DX);
    private static void Cdq(Lifter l, in Instruction i) => SignInto(l, Register.EAX, Register.EDX);
    private static void Cqo(Lifter l, in Instruction i) => SignInto(l, Register.RAX, Register.RDX);

    private static void Widen(Lifter l, Register from, Register to) =>
        l.WriteReg(to, l.B.SExt(l.ReadReg(from), Lifter.RegType(to)));

    /// <summary>Fills <paramref name="to"/> with copies of the sign bit of <paramref name="from"/>.</summary>
    private static void SignInto(Lifter l, Register from, Register to)
    {
        var v = l.ReadReg(from);
        l.WriteReg(to, l.B.AShr(v, l.B.Const(v.Type, (ulong)v.Type.Bits() - 1)));
    }
}
