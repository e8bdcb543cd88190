// SPDX-License-Identifier: MIT
using System.Runtime.Intrinsics;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// LLVM code that runs SSE arithmetic natively checks at entry that the guest masks every SSE
/// exception; when it does not, the code does nothing and the dispatcher steps the instruction.
/// </summary>
public class FpGuardTests
{
    private const uint ZeroDivideUnmasked = 0x1F80 & ~0x200u;

    // A loop dividing by zero: infinities while #Z is masked, #XM at the DIVSD once it is not.
    private static void Program(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(ecx, 4);
        a.Label(ref loop);
        a.divsd(xmm0, xmm1);
        a.addsd(xmm2, xmm0);
        a.add(rax, rcx);
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
    }

    private static void Operands(TestGuest g, uint mxcsr)
    {
        g.Cpu.State.Xmm[0] = Vector128.CreateScalar(1.0).AsByte();
        g.Cpu.State.Xmm[1] = Vector128<byte>.Zero;
        g.Cpu.State.Xmm[2] = Vector128.CreateScalar(2.0).AsByte();
        g.Cpu.State.Mxcsr = mxcsr;
    }

    [Fact]
    public void CodeEnteredWithAnExceptionUnmaskedStepsAndRaisesItWhereTheIlTierDoes()
    {
        var (il, ll) = Tiers.Compare(Program, g => g.Cpu.Run(), g => Operands(g, ZeroDivideUnmasked), LlvmOptLevel.O1, allLlvm: false);
        Assert.Equal(ExitReason.ExceptionOrNmi, ll.Exit.Reason);
        Assert.Equal(ExceptionVector.XM, ll.Exit.Vector);
        Assert.Equal(il.State.Mxcsr, ll.State.Mxcsr);
        Assert.Equal(il.State.Xmm[0], ll.State.Xmm[0]);
    }

    [Fact]
    public void CodeThatRanMaskedRaisesOnceTheGuestUnmasks()
    {
        VmExit TwoRuns(TestGuest g)
        {
            Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
            Assert.Equal(double.PositiveInfinity, g.Cpu.State.Xmm[0].AsDouble().ToScalar());
            g.Cpu.State.Rip = TestGuest.CodeBase;
            Operands(g, ZeroDivideUnmasked);
            return g.Cpu.Run();
        }
        var (il, ll) = Tiers.Compare(Program, TwoRuns, g => Operands(g, 0x1F80), LlvmOptLevel.O1, allLlvm: false);
        Assert.Equal(ExitReason.ExceptionOrNmi, ll.Exit.Reason);
        Assert.Equal(ExceptionVector.XM, ll.Exit.Vector);
        Assert.Equal(il.State.Mxcsr, ll.State.Mxcsr);
        // The region ran natively the first time, and stepped the second.
        Assert.True(ll.IlRegions < ll.Rips.Length);
    }
}
