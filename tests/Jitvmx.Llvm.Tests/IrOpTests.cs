// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using Jitvmx.Ir;
using System.Runtime.CompilerServices;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm.Tests;

/// <summary>Every integer IR op, lowered by both backends from the same hand-built region, on the same inputs.</summary>
public unsafe class IrOpTests
{
    private const ulong Ram = 0x100000;

    private static readonly IrOp[] s_binary =
        [IrOp.Add, IrOp.Sub, IrOp.Mul, IrOp.And, IrOp.Or, IrOp.Xor, IrOp.UMulHi, IrOp.SMulHi,
         IrOp.Eq, IrOp.Ne, IrOp.Ult, IrOp.Ule, IrOp.Slt, IrOp.Sle];
    private static readonly IrOp[] s_shift = [IrOp.Shl, IrOp.LShr, IrOp.AShr, IrOp.Rotl, IrOp.Rotr];
    private static readonly IrOp[] s_unary = [IrOp.Not, IrOp.Neg, IrOp.Parity, IrOp.Popcnt, IrOp.Ctz, IrOp.Clz];

    /// <summary>Stores every op's result, zero-extended, to consecutive quadwords at RDX.</summary>
    internal static IrRegion AllOpsRegion() => AllOps();

    private static IrRegion AllOps()
    {
        var region = new IrRegion { EntryRip = 0x1000 };
        var b = new IrBuilder(region);
        b.SetBlock(region.NewBlock());
        var a64 = b.GetReg(0);
        var b64 = b.GetReg(1);
        var @out = b.GetReg(2);
        int slot = 0;
        void Out(IrValue v) => b.Store(b.Add(@out, b.I64((ulong)(slot++ * 8))), b.ZExt(v, IrType.I64));
        foreach (var t in new[] { IrType.I1, IrType.I8, IrType.I16, IrType.I32, IrType.I64 })
        {
            var x = b.Trunc(a64, t);
            var y = b.Trunc(b64, t);
            if (t == IrType.I1)
            {
                foreach (var op in new[] { IrOp.And, IrOp.Or, IrOp.Xor, IrOp.Eq, IrOp.Ne, IrOp.Ult, IrOp.Slt }) Out(b.Binary(op, x, y));
                Out(b.Not(x));
                Out(b.SExt(x, IrType.I64));
                Out(b.Select(x, a64, b64));
                continue;
            }
            foreach (var op in s_binary) Out(b.Binary(op, x, y));
            var count = b.And(y, b.Const(t, (ulong)t.Bits() - 1));
            foreach (var op in s_shift) Out(b.Binary(op, x, count));
            foreach (var op in s_unary) Out(b.Unary(op, x));
            if (t != IrType.I8) Out(b.Unary(IrOp.Bswap, x));
            Out(b.SExt(x, IrType.I64));
            Out(b.Trunc(x, IrType.I8));
            Out(b.Select(b.Ult(x, y), x, y));
            // Division with the lifter's guarantees: divisor non-zero, no signed overflow.
            var zero = b.Const(t, 0);
            var d = b.Select(b.Eq(y, zero), b.Const(t, 3), y);
            var n = b.Select(b.Eq(x, b.Const(t, t.SignBit())), b.Const(t, 7), x);
            foreach (var op in new[] { IrOp.UDiv, IrOp.URem, IrOp.SDiv, IrOp.SRem }) Out(b.Binary(op, op is IrOp.UDiv or IrOp.URem ? x : n, d));
        }
        b.SetFlag(Flag.CF, b.Ult(a64, b64));
        b.SetFlag(Flag.ZF, b.Eq(a64, b64));
        b.SetFlag(Flag.SF, b.SignOf(a64));
        b.SetFlag(Flag.OF, b.Slt(a64, b64));
        b.SetFlag(Flag.PF, b.Unary(IrOp.Parity, a64));
        b.SetFlag(Flag.AF, b.BitOf(b64, 4));
        b.SetFlag(Flag.DF, b.BitOf(a64, 10));
        b.SetReg(3, b.Add(a64, b64));
        b.ExitDirect(0x2000);
        return region;
    }

    private static ulong[] Inputs(Random rng)
    {
        var list = new List<ulong> { 0, 1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
            0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue, ulong.MaxValue - 1 };
        for (int i = 0; i < 16; i++) list.Add((ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40));
        return [.. list];
    }

    private static (int Code, byte[] Out, GuestState State) RunOnce(TestGuest g, RegionFunction fn, ulong a, ulong b, ulong rflags, bool flushTlb)
    {
        g.Vm.GetSpan(Ram, 8 * 512).Clear();
        if (flushTlb) g.Cpu.FlushTlb();
        g.Cpu.Reset();
        g.Cpu.State.Rax = a;
        g.Cpu.State.Rcx = b;
        g.Cpu.State.Rdx = Ram;
        g.Cpu.State.Rflags = rflags;
        int code = fn(g.Cpu.Context);
        return (code, g.Vm.GetSpan(Ram, 8 * 512).ToArray(), g.Cpu.State);
    }

    [Theory]
    [InlineData(LlvmOptLevel.O0)]
    [InlineData(LlvmOptLevel.O2)]
    public void EveryIntegerOpMatchesTheIlBackend(LlvmOptLevel level)
    {
        var il = IlBackend.Compile(Prepared(AllOps()));
        Assert.True(LlvmBackend.TryCompile(Prepared(AllOps()), level, out var llvm, out var reason), reason);
        Assert.Equal(il.SuccessorRips, llvm!.SuccessorRips);
        var rng = new Random(1234);
        var inputs = Inputs(rng);
        using var g = new TestGuest(_ => { });
        int n = 0;
        foreach (ulong a in inputs)
            foreach (ulong b in inputs)
            {
                ulong rflags = 2 | (a & 0xCD5);
                bool flush = n++ % 3 == 0; // both the TLB slow path and the inline hit
                var x = RunOnce(g, il.Function, a, b, rflags, flush);
                var y = RunOnce(g, llvm.Function, a, b, rflags, flush);
                Assert.Contains(x.Out, v => v != 0);
                Assert.Equal(x.Code, y.Code);
                Assert.Equal(x.State.Rflags, y.State.Rflags);
                Assert.Equal(x.State.Rip, y.State.Rip);
                Assert.Equal(x.State.Rbx, y.State.Rbx);
                for (int i = 0; i < x.Out.Length; i += 8)
                    if (BitConverter.ToUInt64(x.Out, i) != BitConverter.ToUInt64(y.Out, i))
                        Assert.Fail($"slot {i / 8}: a=0x{a:x} b=0x{b:x}: IL 0x{BitConverter.ToUInt64(x.Out, i):x}, LLVM 0x{BitConverter.ToUInt64(y.Out, i):x}");
            }
    }

    internal static IrRegion Prepared(IrRegion r)
    {
        Passes.Run(r);
        return r;
    }
}

public class ConcurrencyTests
{
    [Fact]
    public void RegionsCompileOnSeveralThreadsAtOnce()
    {
        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            var level = (LlvmOptLevel)(i % 3);
            Assert.True(LlvmBackend.TryCompile(IrOpTests.Prepared(IrOpTests.AllOpsRegion()), level, out var c, out var reason), reason);
            Assert.NotNull(c);
        });
    }
}

public unsafe class VectorAndHelperTests
{
    private const ulong Ram = 0x100000;

    /// <summary>XMM registers, 16-byte loads and stores (page-crossing too), vector/scalar moves, pure helpers and an exit helper.</summary>
    private static IrRegion Region(bool stopThroughHelper)
    {
        var region = new IrRegion { EntryRip = 0x1000 };
        var b = new IrBuilder(region);
        b.SetBlock(region.NewBlock());
        var rax = b.GetReg(0);
        var rcx = b.GetReg(1);
        var @out = b.GetReg(2);
        var x0 = b.GetXmm(0);
        b.Store(@out, x0);
        b.Store(b.Add(@out, b.I64(0xFF8)), b.GetXmm(3));            // crosses into the next page
        b.SetXmm(1, b.Load(IrType.V128, b.Add(@out, b.I64(0xFF4))));
        b.SetXmm(2, b.ZExt(rax, IrType.V128));
        b.SetReg(3, b.Trunc(x0, IrType.I64));
        b.SetReg(5, b.ZExt(b.Trunc(b.GetXmm(3), IrType.I16), IrType.I64));
        var hi = b.And(rcx, b.I64(0xFF));
        var d = b.Or(rcx, b.I64(0x100));
        b.SetReg(6, b.Call(HelperId.UDiv128Quotient, IrType.I64, hi, rax, d));
        b.SetReg(7, b.Call(HelperId.UDiv128Remainder, IrType.I64, hi, rax, d));
        b.SetReg(8, b.Call(HelperId.Pdep, IrType.I64, rax, rcx));
        b.SetReg(9, b.Call(HelperId.Pext, IrType.I64, rax, rcx));
        b.SetReg(10, b.Call(HelperId.SDiv128Faults, IrType.I64, rcx, rax, b.And(rax, b.I64(0xF))));
        if (stopThroughHelper) b.ExitHelper(HelperId.StopAt, b.I64(0x3333));
        else b.ExitIndirect(b.Add(rax, b.I64(4)));
        Passes.Run(region);
        return region;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MatchesTheIlBackend(bool stopThroughHelper)
    {
        var il = IlBackend.Compile(Region(stopThroughHelper));
        Assert.True(LlvmBackend.TryCompile(Region(stopThroughHelper), LlvmOptLevel.O2, out var llvm, out var reason), reason);
        using var g = new TestGuest(_ => { });
        var rng = new Random(99);
        for (int i = 0; i < 50; i++)
        {
            ulong a = (ulong)rng.NextInt64(), c = (ulong)rng.NextInt64();
            var xs = new ulong[8];
            for (int k = 0; k < xs.Length; k++) xs[k] = (ulong)rng.NextInt64();
            (int, GuestState, byte[]) Run(RegionFunction f)
            {
                g.Vm.GetSpan(Ram, 0x2000).Fill(0xCC);
                if (i % 2 == 0) g.Cpu.FlushTlb();
                g.Cpu.Reset();
                ref var s = ref g.Cpu.State;
                s.Rax = a; s.Rcx = c; s.Rdx = Ram;
                fixed (ulong* p = xs) Buffer.MemoryCopy(p, (byte*)Unsafe.AsPointer(ref s) + Jitvmx.StateOffsets.Xmm, 64, 64);
                int code = f(g.Cpu.Context);
                return (code, g.Cpu.State, g.Vm.GetSpan(Ram, 0x2000).ToArray());
            }
            var (c1, s1, m1) = Run(il.Function);
            var (c2, s2, m2) = Run(llvm!.Function);
            Assert.Equal(c1, c2);
            Assert.Equal(m1, m2);
            Assert.Equal(s1.Rip, s2.Rip);
            for (int r = 0; r < 16; r++) Assert.Equal(((ulong*)&s1)[r], ((ulong*)&s2)[r]);
            var x1 = new ReadOnlySpan<byte>((byte*)&s1 + Jitvmx.StateOffsets.Xmm, 256).ToArray();
            var x2 = new ReadOnlySpan<byte>((byte*)&s2 + Jitvmx.StateOffsets.Xmm, 256).ToArray();
            Assert.Equal(x1, x2);
        }
    }
}

public class FallbackTests
{
    [Fact]
    public void UnsupportedRegionFallsBackWithTheReason()
    {
        var region = new IrRegion { EntryRip = 0x1000 };
        var b = new IrBuilder(region);
        b.SetBlock(region.NewBlock());
        b.SetReg(0, b.Call(HelperId.Reserved, IrType.I64, b.GetReg(1)));
        b.ExitDirect(0x2000);
        Passes.Run(region);
        Assert.False(LlvmBackend.TryCompile(region, LlvmOptLevel.O1, out var compiled, out var reason));
        Assert.Null(compiled);
        Assert.Contains("not implemented", reason);
    }
}
