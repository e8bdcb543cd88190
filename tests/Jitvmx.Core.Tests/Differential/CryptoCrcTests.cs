// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Lifting;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace Jitvmx.Tests.Differential;

/// <summary>
/// Differential tests of SSE4.2 CRC32 (every source size, register incl. AH..BH and memory forms, r32 and r64
/// destinations with garbage upper bits), PCLMULQDQ (all selector immediates) and the AES-NI instructions.
/// </summary>
public sealed class CryptoCrcTests
{
    [Fact]
    public void SimdForms() => SimdCases.RunAll(SimdCases.Encodings(Mnemonic.Pclmulqdq, Mnemonic.Aesenc, Mnemonic.Aesenclast,
        Mnemonic.Aesdec, Mnemonic.Aesdeclast, Mnemonic.Aesimc, Mnemonic.Aeskeygenassist), 24);

    [Fact]
    public void PclmulSelectors()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int imm in (int[])[0x00, 0x01, 0x10, 0x11, 0xEE, 0xFF])
            for (int k = 0; k < 4; k++)
                cases.Add(SimdCases.Case([Instruction.Create(Code.Pclmulqdq_xmm_xmmm128_imm8, SimdCases.Xmm(rng), SimdCases.Xmm(rng), imm)],
                    SimdCases.Gprs(rng), SimdCases.Memory(rng, false), rng));
        DiffHarness.Check(cases, seed: seed);
    }

    /// <summary>The portable AES fallback agrees with the host's AES-NI.</summary>
    [Fact]
    public void AesFallback()
    {
        if (!System.Runtime.Intrinsics.X86.Aes.IsSupported) return;
        var rng = new Random(7);
        var bytes = new byte[32];
        for (int k = 0; k < 200; k++)
        {
            rng.NextBytes(bytes);
            var s = System.Runtime.Intrinsics.Vector128.Create(bytes.AsSpan(0, 16));
            var key = System.Runtime.Intrinsics.Vector128.Create(bytes.AsSpan(16, 16));
            Assert.Equal(X86Aes.Encrypt(s, key), AesSoft.Round(s, key, true, true));
            Assert.Equal(X86Aes.EncryptLast(s, key), AesSoft.Round(s, key, true, false));
            Assert.Equal(X86Aes.Decrypt(s, key), AesSoft.Round(s, key, false, true));
            Assert.Equal(X86Aes.DecryptLast(s, key), AesSoft.Round(s, key, false, false));
            Assert.Equal(X86Aes.InverseMixColumns(s), AesSoft.InvMixColumns(s));
            Assert.Equal(X86Aes.KeygenAssist(s, 0), AesSoft.KeygenAssist(s));
        }
    }

    private static readonly Register[] s_r8 = [Register.AL, Register.CL, Register.DL, Register.AH, Register.CH, Register.DH, Register.BH, Register.SIL, Register.R9L, Register.R15L];

    [Fact]
    public void Crc32()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        ulong[] edges = [0, 1, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0x7F, 0x80, 0xFFFF_FFFF_0000_0000, 0x1234_5678_9ABC_DEF0];
        foreach (var code in (Code[])[Code.Crc32_r32_rm8, Code.Crc32_r64_rm8, Code.Crc32_r32_rm16, Code.Crc32_r32_rm32, Code.Crc32_r64_rm64])
            for (int k = 0; k < 24; k++)
            {
                bool wide = code is Code.Crc32_r64_rm8 or Code.Crc32_r64_rm64;
                var dst = (wide ? Register.RAX : Register.EAX) + Pick(rng);
                Instruction insn;
                if (k % 3 == 0)
                    insn = Instruction.Create(code, dst, __[rbx + 0x100 + rng.Next(8)].ToMemoryOperand(64));
                else
                {
                    Register src = code switch
                    {
                        Code.Crc32_r32_rm8 => s_r8[rng.Next(s_r8.Length)],
                        Code.Crc32_r64_rm8 => s_r8[rng.Next(s_r8.Length)] is var r && r is >= Register.AH and <= Register.BH ? Register.DL : r,
                        Code.Crc32_r32_rm16 => Register.AX + Pick(rng),
                        Code.Crc32_r32_rm32 => Register.EAX + Pick(rng),
                        _ => Register.RAX + Pick(rng),
                    };
                    if (code == Code.Crc32_r32_rm8 && src is >= Register.SPL && dst >= Register.R8D)
                        dst = Register.EAX;
                    if (code == Code.Crc32_r32_rm8 && src is >= Register.AH and <= Register.BH && dst >= Register.R8D)
                        dst = Register.ECX;
                    insn = Instruction.Create(code, dst, src);
                }
                var g = SimdCases.Gprs(rng);
                for (int r = 0; r < 16; r++) if (r != (int)Gpr.Rbx && r != (int)Gpr.Rsp && rng.Next(3) == 0) g[r] = edges[rng.Next(edges.Length)];
                var code2 = OracleCase.Assemble(a => { a.AddInstruction(insn); a.AddInstruction(insn); });
                cases.Add(new OracleCase(code2, g, CaseSet.RandomFlags(rng), SimdCases.Memory(rng, false)));
            }
        DiffHarness.Check(cases, seed: seed);
    }

    /// <summary>A GPR index other than RSP and RBX.</summary>
    private static int Pick(Random rng)
    {
        int n;
        do n = rng.Next(16); while (n is (int)Gpr.Rsp or (int)Gpr.Rbx);
        return n;
    }
}
