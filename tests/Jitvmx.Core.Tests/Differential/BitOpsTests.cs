// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Differential;

/// <summary>Differential tests of BT BTS BTR BTC, BSF BSR, TZCNT LZCNT POPCNT and BSWAP.</summary>
public sealed class BitOpsTests
{
    private const ulong Data = HostOracle.DataBase;

    /// <summary>BT leaves ZF alone; OF, SF, AF and PF are undefined.</summary>
    private const ulong BtUndefined = F.OF | F.SF | F.AF | F.PF;

    /// <summary>A register value whose low <paramref name="w"/> bits are <paramref name="low"/> and whose upper bits are garbage.</summary>
    private static ulong WithGarbage(Random rng, int w, long low) =>
        w == 64 ? (ulong)low : ((ulong)rng.NextInt64() << w) | ((ulong)low & ((1UL << w) - 1));

    [Theory]
    [InlineData("Bt")]
    [InlineData("Bts")]
    [InlineData("Btr")]
    [InlineData("Btc")]
    public void BitTest(string op)
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        var mem = CaseSet.RandomMemory(rng);
        foreach (int w in (int[])[16, 32, 64])
        {
            var regCode = Enum.Parse<Code>($"{op}_rm{w}_r{w}");
            var immCode = Enum.Parse<Code>($"{op}_rm{w}_imm8");
            for (int k = 0; k < 20; k++)
            {
                // Register destination, register offset (taken modulo the width; garbage above it).
                var gprs = CaseSet.RandomGprs(rng);
                var dst = CaseSet.PickReg(rng, w, allowHigh8: false);
                var off = CaseSet.PickReg(rng, w, allowHigh8: false);
                set.Add(CaseSet.Of([Instruction.Create(regCode, dst, off)], gprs, CaseSet.RandomFlags(rng), mem), BtUndefined);

                // Immediate offset, any byte (masked to the width), register and memory destinations.
                gprs = CaseSet.RandomGprs(rng);
                gprs[(int)Gpr.Rbx] = Data;
                int imm = rng.Next(2) == 0 ? rng.Next(256) : (int)(DiffHarness.Interesting(rng) & 0xFF);
                var target = k % 2 == 0 ? Instruction.Create(immCode, CaseSet.PickReg(rng, w, allowHigh8: false), imm)
                    : Instruction.Create(immCode, new MemoryOperand(Register.RBX, rng.Next(0, 4096 - w / 8)), imm);
                set.Add(CaseSet.Of([target], gprs, CaseSet.RandomFlags(rng), mem), BtUndefined);

                // Memory destination, register offset: signed, addressing beyond the operand (either side).
                gprs = CaseSet.RandomGprs(rng);
                gprs[(int)Gpr.Rbx] = Data + 0x800;
                int disp = rng.Next(-0x40, 0x40);
                long bits = rng.Next(3) == 0 ? rng.Next(-64, 64) : rng.Next(-0x3E00, 0x3E00);
                gprs[(int)Gpr.Rcx] = WithGarbage(rng, w, bits);
                var insn = Instruction.Create(regCode, new MemoryOperand(Register.RBX, disp), Register.CX + (w / 32) * 16);
                if (k % 5 == 4 && op != "Bt") insn.HasLockPrefix = true;
                set.Add(CaseSet.Of([insn], gprs, CaseSet.RandomFlags(rng), mem), BtUndefined);
            }
            // A bit offset that reaches an unmapped page faults, with no state changed.
            foreach (long bits in (long[])[0x7FFF, -0x8000, 0x7FFF_FFFF, -0x8000_0000])
            {
                if (w == 16 && Math.Abs(bits) > 0x8000) continue;
                var gprs = CaseSet.RandomGprs(rng);
                gprs[(int)Gpr.Rbx] = Data;
                gprs[(int)Gpr.Rcx] = WithGarbage(rng, w, bits);
                var insn = Instruction.Create(regCode, new MemoryOperand(Register.RBX), Register.CX + (w / 32) * 16);
                set.Add(CaseSet.Of([insn], gprs, F.Status, mem), BtUndefined);
            }
        }
        // The access is operand-sized at EA + (w / 8) * floor(offset / w): these straddle the window's
        // edges (a fault) or just fit.
        foreach (var (w, disp, bits) in (ReadOnlySpan<(int, int, long)>)
            [(32, -3, 24), (32, -4, 32), (16, -2, 16), (16, -1, 15), (32, 0xFFA, 16), (32, 0xFFD, 0), (64, 0xFF8, 63), (64, 0xFF9, 0), (64, 0xFF0, 64)])
        {
            var gprs = CaseSet.RandomGprs(rng);
            gprs[(int)Gpr.Rbx] = Data;
            gprs[(int)Gpr.Rcx] = WithGarbage(rng, w, bits);
            var insn = Instruction.Create(Enum.Parse<Code>($"{op}_rm{w}_r{w}"), new MemoryOperand(Register.RBX, disp), Register.CX + (w / 32) * 16);
            set.Add(CaseSet.Of([insn], gprs, F.Status, mem), BtUndefined);
        }
        set.Check(op, seed);
    }

    [Theory]
    [InlineData("Bsf")]
    [InlineData("Bsr")]
    [InlineData("Tzcnt")]
    [InlineData("Lzcnt")]
    [InlineData("Popcnt")]
    public void CountAndScan(string op)
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        var mem = CaseSet.RandomMemory(rng);
        ulong undef = op switch
        {
            "Bsf" or "Bsr" => F.CF | F.OF | F.SF | F.AF | F.PF,
            "Tzcnt" or "Lzcnt" => F.OF | F.SF | F.AF | F.PF,
            _ => 0,
        };
        foreach (int w in (int[])[16, 32, 64])
        {
            var code = Enum.Parse<Code>($"{op}_r{w}_rm{w}");
            for (int k = 0; k < 40; k++)
            {
                var gprs = CaseSet.RandomGprs(rng);
                gprs[(int)Gpr.Rbx] = Data;
                var dst = CaseSet.PickReg(rng, w, allowHigh8: false);
                Instruction insn;
                if (k % 4 == 3)
                {
                    int disp = rng.Next(0, 4096 - w / 8);
                    if (k % 8 == 7) mem.AsSpan(disp, w / 8).Clear();
                    insn = Instruction.Create(code, dst, new MemoryOperand(Register.RBX, disp));
                }
                else
                {
                    var src = CaseSet.PickReg(rng, w, allowHigh8: false);
                    // A zero source (low w bits only, garbage above), a single bit, or random.
                    int n = (int)(src - (w == 16 ? Register.AX : w == 32 ? Register.EAX : Register.RAX));
                    gprs[n] = (k % 4) switch
                    {
                        0 => WithGarbage(rng, w, 0),
                        1 => WithGarbage(rng, w, 1L << rng.Next(w)),
                        _ => gprs[n],
                    };
                    insn = Instruction.Create(code, dst, src);
                }
                set.Add(CaseSet.Of([insn], gprs, CaseSet.RandomFlags(rng), (byte[])mem.Clone()), undef);
            }
        }
        set.Check(op, seed);
    }

    /// <summary>BSF/BSR with a zero source leave the destination alone, upper half of a 32-bit one included.</summary>
    [Fact]
    public void ScanOfZeroKeepsTheDestination()
    {
        var set = new CaseSet();
        // Only ZF is defined for BSF/BSR (Intel clears PF here, AMD keeps CF/PF/SF); TZCNT and
        // LZCNT define CF and ZF; POPCNT defines all six.
        const ulong scanUndef = F.CF | F.OF | F.SF | F.AF | F.PF, countUndef = F.OF | F.SF | F.AF | F.PF;
        (Action<Assembler> Form, ulong Undef)[] forms =
        [
            (a => a.bsf(eax, ecx), scanUndef), (a => a.bsr(eax, ecx), scanUndef), (a => a.bsf(ax, cx), scanUndef),
            (a => a.bsr(rax, rcx), scanUndef), (a => a.bsf(eax, __dword_ptr[rbx]), scanUndef),
            (a => a.tzcnt(eax, ecx), countUndef), (a => a.lzcnt(ax, cx), countUndef), (a => a.popcnt(eax, ecx), 0),
        ];
        foreach (var (form, undef) in forms)
            foreach (ulong rflags in (ulong[])[0, F.Status])
                set.Add(OracleCase.FromAssembler(form, rflags: rflags)
                    .With(Gpr.Rax, 0xDEAD_BEEF_8765_4321).With(Gpr.Rcx, 0xFFFF_FFFF_0000_0000).With(Gpr.Rbx, Data), undef);
        set.Check("zero source");
    }

    /// <summary>LOCK is allowed on BTS/BTR/BTC with a memory destination only; elsewhere (BT, registers, shifts) it is #UD.</summary>
    [Fact]
    public void LockPrefix()
    {
        var set = new CaseSet();
        Instruction[] forms =
        [
            Instruction.Create(Code.Bts_rm32_r32, new MemoryOperand(Register.RBX, 8), Register.ECX),
            Instruction.Create(Code.Btc_rm64_imm8, new MemoryOperand(Register.RBX, 16), 45),
            Instruction.Create(Code.Btr_rm16_r16, new MemoryOperand(Register.RBX, 0x40), Register.CX),
            Instruction.Create(Code.Bt_rm32_r32, new MemoryOperand(Register.RBX, 8), Register.ECX),
            Instruction.Create(Code.Bts_rm32_r32, Register.EAX, Register.ECX),
            Instruction.Create(Code.Shl_rm32_1, new MemoryOperand(Register.RBX, 8), 1),
            Instruction.Create(Code.Rcr_rm8_CL, new MemoryOperand(Register.RBX, 8), Register.CL),
        ];
        foreach (var insn in forms)
        {
            var locked = insn;
            locked.HasLockPrefix = true;
            var gprs = new ulong[16];
            gprs[(int)Gpr.Rbx] = Data;
            gprs[(int)Gpr.Rcx] = 0x123;
            gprs[(int)Gpr.Rax] = 0xFFFF_0000_FFFF_0000;
            set.Add(CaseSet.Of([locked], gprs, F.CF | F.ZF, CaseSet.RandomMemory(new Random(7))), BtUndefined);
        }
        set.Check("lock");
    }

    [Fact]
    public void Bswap()
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        for (int k = 0; k < 32; k++)
        {
            int w = k % 2 == 0 ? 32 : 64;
            var reg = CaseSet.PickReg(rng, w, allowHigh8: false);
            var insn = Instruction.Create(w == 32 ? Code.Bswap_r32 : Code.Bswap_r64, reg);
            set.Add(CaseSet.Of([insn], CaseSet.RandomGprs(rng), CaseSet.RandomFlags(rng), new byte[HostOracle.MemorySize]), 0);
        }
        set.Check("bswap", seed);
    }

    /// <summary>BT sets CF only, so a JB/JC after it reads the bit and the other conditions see the incoming flags.</summary>
    [Fact]
    public void ConditionsAfterBitOps()
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        Action<Assembler>[] ops =
        [
            a => a.bt(rax, rcx), a => a.bts(eax, 5), a => a.btr(__qword_ptr[rbx], rcx), a => a.btc(ax, cx),
            a => a.bsf(rdx, rax), a => a.tzcnt(edx, eax), a => a.popcnt(rdx, rax), a => a.lzcnt(rdx, rax),
        ];
        (Action<Assembler, Label> Emit, ulong Reads)[] jumps =
        [
            ((a, l) => a.jb(l), F.CF), ((a, l) => a.jae(l), F.CF), ((a, l) => a.je(l), F.ZF), ((a, l) => a.jbe(l), F.CF | F.ZF),
            ((a, l) => a.js(l), F.SF), ((a, l) => a.jl(l), F.SF | F.OF), ((a, l) => a.jp(l), F.PF),
        ];
        for (int k = 0; k < 100; k++)
        {
            int which = rng.Next(ops.Length);
            // Which flags each op leaves defined: BT* CF and ZF (kept), BSF ZF, TZCNT/LZCNT CF and ZF, POPCNT all.
            ulong defined = which switch { < 4 => F.CF | F.ZF, 4 => F.ZF, 5 or 7 => F.CF | F.ZF, _ => F.Status };
            var jump = jumps[rng.Next(jumps.Length)];
            while ((jump.Reads & ~defined) != 0) jump = jumps[rng.Next(jumps.Length)];
            var gprs = CaseSet.RandomGprs(rng);
            gprs[(int)Gpr.Rbx] = Data + 0x800;
            gprs[(int)Gpr.Rcx] &= 0x3FF;
            if (k % 3 == 0) gprs[(int)Gpr.Rax] = 0;
            var c = OracleCase.FromAssembler(a =>
            {
                var taken = a.CreateLabel();
                ops[which](a);
                jump.Emit(a, taken);
                a.mov(edi, 1);
                a.Label(ref taken);
                a.nop();
            }, gprs, CaseSet.RandomFlags(rng), CaseSet.RandomMemory(rng));
            set.Add(c, F.Status & ~defined);
        }
        set.Check("bit op + jcc", seed);
    }
}
