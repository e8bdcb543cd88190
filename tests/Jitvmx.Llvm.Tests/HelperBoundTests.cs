// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>Which hot regions the background tier leaves to the IL tier.</summary>
public class HelperBoundTests
{
    private sealed class Bytes(byte[] code, ulong at) : ICodeSource
    {
        public int FetchCode(ulong address, Span<byte> buffer)
        {
            if (address < at || address >= at + (ulong)code.Length) return 0;
            int off = (int)(address - at), n = Math.Min(buffer.Length, code.Length - off);
            code.AsSpan(off, n).CopyTo(buffer);
            return n;
        }
    }

    private static IrRegion Lift(Action<Assembler> emit)
    {
        var a = new Assembler(64);
        emit(a);
        a.hlt();
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), 0x1000);
        var ir = Translator.Translate(new Bytes(ms.ToArray(), 0x1000), 0x1000, RegionLimits.Default, out _)!;
        Passes.Run(ir);
        return ir;
    }

    [Fact]
    public void IntegerCodeGoesToLlvm() =>
        Assert.False(LlvmTier.HelperBound(Lift(a =>
        {
            for (int i = 0; i < 8; i++)
            {
                a.add(rax, __qword_ptr[rdi + i * 8]);
                a.imul(rax, rax, 31);
                a.xor(rdx, rax);
            }
        })));

    [Fact]
    public void SseCodeLlvmLowersNativelyGoesToLlvm() =>
        Assert.False(LlvmTier.HelperBound(Lift(a =>
        {
            for (int i = 0; i < 8; i++)
            {
                a.movdqu(xmm1, __xmmword_ptr[rdi + i * 16]);
                a.pcmpeqb(xmm1, xmm0);
                a.pmovmskb(eax, xmm1);
                a.or(edx, eax);
                a.mulsd(xmm2, xmm3);
            }
        })));

    [Fact]
    public void HelperHeavyCodeStaysInIl() =>
        Assert.True(LlvmTier.HelperBound(Lift(a =>
        {
            for (int i = 0; i < 8; i++)
            {
                a.movdqu(xmm1, __xmmword_ptr[rdi + i * 16]);
                a.psadbw(xmm1, xmm0);
                a.crc32(eax, __dword_ptr[rdi + i * 4]);
                a.or(edx, eax);
            }
        })));
}
