// SPDX-License-Identifier: MIT
using Jitvmx.Ir;

namespace Jitvmx.Tests.Ir;

public class IrBuilderTests
{
    private static IrBuilder NewBuilder()
    {
        var region = new IrRegion();
        var b = new IrBuilder(region);
        b.SetBlock(region.NewBlock());
        return b;
    }

    [Fact]
    public void ConstantsFoldThroughIntegerConversions()
    {
        var b = NewBuilder();
        var v = b.SExt(b.Const(IrType.I8, 0x80), IrType.I64);
        Assert.Equal(IrOp.Const, v.Op);
        Assert.Equal(0xFFFFFFFFFFFFFF80UL, v.Imm);
    }

    [Fact]
    public void ConversionOfAConstantToV128StaysAnOperation()
    {
        // Found by a glibc start-up path: MOVQ xmm0, rax after "mov rax, imm" folded into a V128 constant.
        var b = NewBuilder();
        var v = b.ZExt(b.I64(0x4ab2e0), IrType.V128);
        Assert.Equal(IrOp.ZExt, v.Op);
        Assert.Equal(IrType.V128, v.Type);
        Assert.Throws<InvalidOperationException>(() => b.Const(IrType.V128, 1));
    }

    [Fact]
    public void ReadAfterWriteInTheSameBlockIsForwarded()
    {
        var b = NewBuilder();
        var x = b.Add(b.GetReg(0), b.I64(1));
        b.SetReg(3, x);
        Assert.Same(x, b.GetReg(3));
    }
}
