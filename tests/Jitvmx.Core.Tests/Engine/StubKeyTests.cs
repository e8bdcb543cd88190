// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// SSE instructions whose helpers run the host instruction name it by a packed key, not by the host
/// stub's address: the IR, and the LLVM code cache's key and object code made from it, must be the
/// same in every process.
/// </summary>
public class StubKeyTests
{
    [Fact]
    public void TheHelperGetsTheKeyOfTheInstructionNotAnAddress()
    {
        var asm = new Assembler(64);
        asm.comisd(xmm2, xmm5);
        asm.hlt();
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), GuestBuilder.CodeBase);
        byte[] code = ms.ToArray();
        var ir = Translator.Translate(new CodeBytes(code), GuestBuilder.CodeBase, RegionLimits.Default, out _)!;
        ulong key = SimdOps.StubKey(Code.Comisd_xmm_xmmm64, Register.XMM0, Register.XMM1, -1, SimdOps.StubOutput.Flags);
        var consts = ir.Blocks.SelectMany(b => b.Nodes).SelectMany(v => v.Args).Where(a => a.Op == IrOp.Const).Select(a => a.Imm).ToHashSet();
        Assert.Contains(key, consts);
        // No host address of a stub anywhere in the region.
        nint stub = SimdOps.StubFor(key);
        Assert.NotEqual(0, stub);
        Assert.DoesNotContain((ulong)stub, consts);
        Assert.Equal(stub, SimdOps.StubFor(key));
    }

    [Theory]
    [InlineData(Code.Addsd_xmm_xmmm64, -1, 0)]
    [InlineData(Code.Cmpps_xmm_xmmm128_imm8, 255, 0)]
    [InlineData(Code.Mulss_xmm_xmmm32, -1, 0)]
    public void AKeyNamesOneStub(Code code, int imm, int kind)
    {
        var output = (SimdOps.StubOutput)kind;
        ulong key = SimdOps.StubKey(code, Register.XMM0, Register.XMM1, imm, output);
        Assert.Equal(SimdOps.Stub(code, Register.XMM0, Register.XMM1, imm, output), SimdOps.StubFor(key));
        Assert.NotEqual(key, SimdOps.StubKey(code, Register.XMM0, Register.XMM1, imm + 1, output));
        Assert.NotEqual(key, SimdOps.StubKey(code, Register.XMM0, Register.XMM2, imm, output));
    }
}
