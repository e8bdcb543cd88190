// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Differential;

public sealed class MulDivTests
{
    // After MUL/IMUL only CF and OF are defined; after DIV/IDIV none is.
    private const ulong MulUndefined = F.SF | F.ZF | F.AF | F.PF;

    private static readonly ulong[] Edges =
    [
        0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
        0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue, ulong.MaxValue - 1,
    ];

    [Theory]
    [InlineData("Mul")]
    [InlineData("Imul")]
    public void MultiplyMatchesHost(string mnemonic)
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = CaseGen.AllForms(rng, mnemonic, 8, lockable: false);
        // Edge factors: both operands (or the operand and the accumulator) from the edges.
        foreach (var code in CaseGen.Codes(mnemonic))
            for (int k = 0; k < 10; k++)
            {
                var insn = CaseGen.Make(rng, code, mem: rng.Next(2) == 0);
                var c = CaseGen.Case(rng, insn);
                ulong x = Edges[rng.Next(Edges.Length)], y = Edges[rng.Next(Edges.Length)];
                if (insn.OpCount == 1) c.Gprs[(int)Gpr.Rax] = x;
                else if (insn.OpCount == 2) CaseGen.Set(c, insn, 0, x);
                // The explicit source goes last: it may be the accumulator or the destination itself.
                CaseGen.Set(c, insn, insn.OpCount == 1 ? 0 : 1, y);
                cases.Add(c);
            }
        DiffHarness.Check(cases, MulUndefined, mnemonic, seed);
    }

    [Theory]
    [InlineData("Div", false)]
    [InlineData("Idiv", true)]
    public void DivideMatchesHost(string mnemonic, bool signed)
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        var faulting = new HashSet<OracleCase>(ReferenceEqualityComparer.Instance);
        foreach (var code in CaseGen.Codes(mnemonic))
            foreach (bool mem in new[] { false, true })
                for (int k = 0; k < 24; k++)
                {
                    var insn = CaseGen.Make(rng, code, mem);
                    // A preceding instruction whose results (flags included) must survive a #DE.
                    var c = CaseGen.Case(rng, a => { a.add(rsi, 0); a.AddInstruction(insn); });
                    int w = insn.MemorySize != MemorySize.Unknown ? insn.MemorySize.GetSize() * 8 : insn.Op0Register.GetSize() * 8;
                    SetDivision(rng, c, insn, w, signed, k % 6);
                    if (DivFaults(c, insn, w, signed)) faulting.Add(c);
                    cases.Add(c);
                }
        if (signed)
        {
            // The dividends .NET itself cannot divide: INT_MIN / −1 at every width (and INT64_MIN in EDX:EAX).
            cases.Add(Fixed(a => a.idiv(bl), rax: 0xFFFF_FFFF_FFFF_FF80, rbx: 0xFF));
            cases.Add(Fixed(a => a.idiv(bx), rax: 0x0000, rdx: 0x8000, rbx: 0xFFFF));
            cases.Add(Fixed(a => a.idiv(ebx), rax: 0, rdx: 0x8000_0000, rbx: 0xFFFF_FFFF));
            cases.Add(Fixed(a => a.idiv(ebx), rax: 0x8000_0000, rdx: 0xFFFF_FFFF, rbx: 0xFFFF_FFFF));
            cases.Add(Fixed(a => a.idiv(rbx), rax: 0x8000_0000_0000_0000, rdx: ulong.MaxValue, rbx: ulong.MaxValue));
            cases.Add(Fixed(a => a.idiv(rbx), rax: 0, rdx: 0x8000_0000_0000_0000, rbx: ulong.MaxValue));
            // …and the extreme quotients that still fit.
            cases.Add(Fixed(a => a.idiv(ebx), rax: 0x8000_0001, rdx: 0xFFFF_FFFF, rbx: 0xFFFF_FFFF));
            cases.Add(Fixed(a => a.idiv(rbx), rax: 0x8000_0000_0000_0000, rdx: ulong.MaxValue, rbx: 1));
            cases.Add(Fixed(a => a.idiv(bl), rax: 0xFF80, rbx: 1));
        }
        else
        {
            cases.Add(Fixed(a => a.div(rbx), rax: ulong.MaxValue, rdx: 0xFFFF_FFFF_FFFF_FFFE, rbx: ulong.MaxValue));
            cases.Add(Fixed(a => a.div(rbx), rax: 0, rdx: 1, rbx: 1));
            cases.Add(Fixed(a => a.div(bh), rax: 0xFEFF, rbx: 0xFF00));
            cases.Add(Fixed(a => a.div(ah), rax: 0x0500, rbx: 0));
        }
        // 64-bit dividends in RDX:RAX (RDX only extends RAX, as after CQO or a zeroed RDX): what
        // compilers emit for 64-bit / and %, which the LLVM tier divides natively.
        for (int k = 0; k < 24; k++)
        {
            ulong lo = (ulong)rng.NextInt64() >> rng.Next(64) ^ (rng.Next(2) == 0 ? 0 : ulong.MaxValue);
            ulong rdx = signed ? (ulong)((long)lo >> 63) : 0;
            ulong d = (k % 8) switch
            {
                0 => 0,
                1 => ulong.MaxValue,
                2 => 1,
                _ => (ulong)rng.NextInt64() >> rng.Next(64) ^ (rng.Next(2) == 0 ? 0 : ulong.MaxValue),
            };
            var c = Fixed(signed ? a => a.idiv(rbx) : a => a.div(rbx), rax: lo, rdx: rdx, rbx: d);
            if (d == 0 || signed && lo == 1UL << 63 && d == ulong.MaxValue) faulting.Add(c);
            cases.Add(c);
        }
        if (signed)
        {
            cases.Add(Fixed(a => a.idiv(rbx), rax: unchecked((ulong)-7L), rdx: ulong.MaxValue, rbx: 2));
            cases.Add(Fixed(a => a.idiv(rbx), rax: 7, rdx: 0, rbx: unchecked((ulong)-2L)));
        }
        // Flags are undefined after a division, but a #DE must leave them as they were.
        DiffHarness.Check(cases, 0, mnemonic, seed, c => faulting.Contains(c) ? 0 : F.Status);
    }

    private static OracleCase Fixed(Action<Assembler> emit, ulong rax, ulong rbx, ulong rdx = 0) =>
        OracleCase.FromAssembler(emit, rflags: F.CF | F.ZF).With(Gpr.Rax, rax).With(Gpr.Rdx, rdx).With(Gpr.Rbx, rbx);

    /// <summary>
    /// Chooses dividend and divisor by <paramref name="kind"/>: 0–2 a quotient that fits (with a
    /// remainder), 3 divisor zero, 4 quotient overflow, 5 random. Bits above the operand size stay random.
    /// </summary>
    private static void SetDivision(Random rng, OracleCase c, in Instruction insn, int w, bool signed, int kind)
    {
        UInt128 mask = (UInt128.One << w) - 1;
        Int128 d = Value(rng, w, signed);
        if (d == 0 || kind == 3) d = kind == 3 ? 0 : 1;
        Int128 n;
        switch (kind)
        {
            case < 3:
            {
                Int128 q = Value(rng, w, signed);
                Int128 prod = q * d;
                Int128 r = (Int128)((UInt128)rng.NextInt64() % (UInt128)Int128.Abs(d));
                n = prod < 0 || (prod == 0 && signed && rng.Next(2) == 0) ? prod - r : prod + r;
                break;
            }
            case 4:
                n = signed && rng.Next(2) == 0 ? (Int128.One << (2 * w - 1)) * -1 : (Int128)(mask << w) | (Int128)mask;
                if (signed && rng.Next(2) == 0) d = -1;
                break;
            default:
                n = (Int128)(((UInt128)(ulong)rng.NextInt64() << 64 | (ulong)rng.NextInt64()) & (mask << w | mask));
                break;
        }
        var un = (UInt128)n;
        if (w == 8)
        {
            c.Gprs[(int)Gpr.Rax] = (c.Gprs[(int)Gpr.Rax] & ~0xFFFFUL) | (ulong)(un & 0xFFFF);
        }
        else
        {
            ulong wm = (ulong)mask;
            c.Gprs[(int)Gpr.Rax] = (c.Gprs[(int)Gpr.Rax] & ~wm) | ((ulong)un & wm);
            c.Gprs[(int)Gpr.Rdx] = (c.Gprs[(int)Gpr.Rdx] & ~wm) | ((ulong)(un >> w) & wm);
        }
        // Set last: the divisor may be part of the dividend (DIV AH, IDIV RDX), and then it wins.
        CaseGen.Set(c, insn, 0, (ulong)((UInt128)d & mask));
    }

    /// <summary>A random value of a size, signed or not: edges half the time.</summary>
    private static Int128 Value(Random rng, int w, bool signed)
    {
        ulong raw = rng.Next(2) == 0 ? Edges[rng.Next(Edges.Length)] : (ulong)rng.NextInt64() >> rng.Next(64);
        ulong m = w == 64 ? ulong.MaxValue : (1UL << w) - 1;
        raw &= m;
        return signed ? (long)(raw << (64 - w)) >> (64 - w) : raw;
    }

    /// <summary>Whether DIV/IDIV raises #DE on the case's final operands.</summary>
    private static bool DivFaults(OracleCase c, in Instruction insn, int w, bool signed)
    {
        ulong m = w == 64 ? ulong.MaxValue : (1UL << w) - 1;
        ulong dRaw = CaseGen.Get(c, insn, 0) & m;
        ulong rax = c.Gprs[(int)Gpr.Rax], rdx = c.Gprs[(int)Gpr.Rdx];
        UInt128 n = w == 8 ? rax & 0xFFFF : ((UInt128)(rdx & m) << w) | (rax & m);
        if (dRaw == 0) return true;
        if (!signed) return n / dRaw > m;
        Int128 sn = (Int128)(n << (128 - 2 * w)) >> (128 - 2 * w);
        Int128 sd = (long)(dRaw << (64 - w)) >> (64 - w);
        Int128 lim = Int128.One << (w - 1);
        if (sd == -1) return sn == Int128.MinValue || -sn >= lim;
        Int128 q = sn / sd;
        return q < -lim || q >= lim;
    }
}
