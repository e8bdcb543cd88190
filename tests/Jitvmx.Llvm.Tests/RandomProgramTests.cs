// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Random valid instruction mixes (ALU, flags consumers, shifts, multiply/divide, bit operations,
/// memory operands, forward branches) in a counted loop: the LLVM tier must agree with the IL tier
/// on every register, flag, memory byte and the way the program ends.
/// </summary>
public class RandomProgramTests
{
    private static readonly AssemblerRegister64[] s_r64 = [rax, rcx, rdx, rbx, rsi, rdi, r8, r9, r10, r11, r12, r13, r14];
    private static readonly AssemblerRegister32[] s_r32 = [eax, ecx, edx, ebx, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d];
    private static readonly AssemblerRegister16[] s_r16 = [ax, cx, dx, bx, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w];
    private static readonly AssemblerRegister8[] s_r8 = [al, cl, dl, bl, ah, ch, dh, bh];

    private static void Emit(Assembler a, Random rng, int count)
    {
        T Pick<T>(T[] xs) => xs[rng.Next(xs.Length)];
        AssemblerMemoryOperand Q() => __qword_ptr[rbp + rng.Next(0, 0x7F) * 8];
        AssemblerMemoryOperand D() => __dword_ptr[rbp + rng.Next(0, 0x1FF) * 4];
        AssemblerMemoryOperand B() => __byte_ptr[rbp + rng.Next(0, 0x7FF)];
        for (int i = 0; i < count; i++)
        {
            var x = Pick(s_r64); var y = Pick(s_r64);
            var x32 = Pick(s_r32); var y32 = Pick(s_r32);
            var x16 = Pick(s_r16); var y16 = Pick(s_r16);
            var x8 = Pick(s_r8); var y8 = Pick(s_r8);
            int imm = rng.Next(4) == 0 ? rng.Next() : rng.Next(-200, 200);
            switch (rng.Next(36))
            {
                case 0: a.add(x, y); break;
                case 1: a.sub(x32, y32); break;
                case 2: a.adc(x, Q()); break;
                case 3: a.sbb(Q(), y); break;
                case 4: a.and(x16, y16); break;
                case 5: a.or(x8, y8); break;
                case 6: a.xor(D(), imm); break;
                case 7: a.cmp(x, imm); break;
                case 8: a.test(x32, y32); break;
                case 9: a.inc(x16); break;
                case 10: a.dec(B()); break;
                case 11: a.neg(x32); break;
                case 12: a.not(x); break;
                case 13: a.shl(x, (byte)rng.Next(64)); break;
                case 14: a.shr(x32, cl); break;
                case 15: a.sar(x8, cl); break;
                case 16: a.rol(x16, (byte)rng.Next(32)); break;
                case 17: a.ror(x, cl); break;
                case 18: a.rcl(x32, 1); break;
                case 19: a.rcr(x8, (byte)rng.Next(9)); break;
                case 20: a.imul(x, y); break;
                case 21: a.imul(x32, y32, imm); break;
                case 22: a.mul(y32); break;
                case 23: a.bsf(x, y); break;
                case 24: a.bsr(x32, D()); break;
                case 25: a.popcnt(x16, y16); break;
                case 26: a.lzcnt(x, y); break;
                case 27: a.tzcnt(x32, y32); break;
                case 28: a.bswap(x); break;
                case 29: a.bt(x, (byte)rng.Next(64)); break;
                case 30: a.btc(x32, y32); break;
                case 31: a.shld(x, y, (byte)rng.Next(64)); break;
                case 32: a.shrd(x16, y16, cl); break;
                case 33:
                    switch (rng.Next(6))
                    {
                        case 0: a.seta(x8); break;
                        case 1: a.setl(B()); break;
                        case 2: a.cmovle(x, y); break;
                        case 3: a.cmovp(x32, D()); break;
                        case 4: a.sets(x8); break;
                        default: a.cmovo(x16, y16); break;
                    }
                    break;
                case 34:
                    switch (rng.Next(7))
                    {
                        case 0: a.mov(Q(), x); break;
                        case 1: a.movzx(x32, B()); break;
                        case 2: a.movsx(x, y16); break;
                        case 3: a.xadd(Q(), y); break;
                        case 4: a.xchg(x32, y32); break;
                        case 5: a.cmpxchg(Q(), y); break;
                        default: a.lea(x, __[y + x * 4 + imm]); break;
                    }
                    break;
                default:
                {
                    // A forward branch over a few instructions, on a random condition.
                    var skip = a.CreateLabel();
                    switch (rng.Next(6))
                    {
                        case 0: a.jb(skip); break;
                        case 1: a.jle(skip); break;
                        case 2: a.jo(skip); break;
                        case 3: a.jnp(skip); break;
                        case 4: a.js(skip); break;
                        default: a.jne(skip); break;
                    }
                    Emit(a, rng, rng.Next(1, 4));
                    a.Label(ref skip);
                    a.nop(); // a label needs its own instruction
                    break;
                }
            }
        }
    }

    private static Action<Assembler> Program(int seed) => a =>
    {
        var rng = new Random(seed);
        var loop = a.CreateLabel();
        a.mov(rbp, TestGuest.RamBase + 0x1000);
        a.mov(r15d, 3);
        a.Label(ref loop);
        Emit(a, rng, 40);
        if (rng.Next(4) == 0)
        {
            // An occasional division: #DE (divisor 0 or overflow) must exit at the same instruction.
            a.mov(rdx, rcx);
            a.div(rbx);
        }
        a.dec(r15d);
        a.jnz(loop);
        a.hlt();
    };

    private static void Setup(TestGuest g, int seed)
    {
        var rng = new Random(~seed);
        for (int r = 0; r < 16; r++)
            if (r is not 4 and not 5) g.Cpu.State[(GuestRegister)r] = rng.Next(3) switch { 0 => (ulong)rng.NextInt64(), 1 => (ulong)rng.Next(64), _ => 0x8000000000000000UL >> rng.Next(64) };
        g.Cpu.State.Rflags = 2 | ((ulong)rng.Next() & 0x8D5);
    }

    [Theory]
    [InlineData(0, LlvmOptLevel.O0)]
    [InlineData(1, LlvmOptLevel.O1)]
    [InlineData(2, LlvmOptLevel.O2)]
    public void RandomInstructionMixesMatchTheIlTier(int part, LlvmOptLevel level)
    {
        var endings = new Dictionary<ExitReason, int>();
        for (int k = 0; k < 15; k++)
        {
            int seed = 5000 + part * 100 + k;
            try
            {
                var (il, _) = Tiers.Compare(Program(seed), g => g.Cpu.Run(), g => Setup(g, seed), level);
                endings[il.Exit.Reason] = endings.GetValueOrDefault(il.Exit.Reason) + 1;
                Assert.True(il.Retired > 40, $"only {il.Retired} instructions ran");
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed}: {e.Message}");
            }
        }
        // Most programs run all three iterations; the rest stop at a #DE.
        Assert.True(endings.GetValueOrDefault(ExitReason.Hlt) >= 8, string.Join(", ", endings));
    }
}
