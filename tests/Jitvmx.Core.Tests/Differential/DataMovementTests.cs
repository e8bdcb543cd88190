// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

/// <summary>Random operands for the data-movement tests: RSI points into the data window, RSP at its middle.</summary>
file static class Gen
{
    public const ulong Window = HostOracle.DataBase + 0x100;

    private static readonly Register[] Legacy8 = [Register.AL, Register.CL, Register.DL, Register.BL, Register.AH, Register.CH, Register.DH, Register.BH];
    private static readonly Register[] Rex8 = [Register.AL, Register.CL, Register.DL, Register.BL, Register.DIL, Register.BPL, Register.R8L, Register.R13L];
    private static readonly Register[] Full =
        [Register.RAX, Register.RCX, Register.RDX, Register.RBX, Register.RBP, Register.RDI, Register.R8, Register.R9, Register.R13, Register.R15];

    private static readonly Register[] NoRex = [Register.RAX, Register.RCX, Register.RDX, Register.RBX, Register.RBP, Register.RDI];

    /// <summary>A register of <paramref name="bits"/> bits; <paramref name="legacy"/> keeps to encodings without REX (AH–BH possible for 8 bits; the default for 8 bits, not for wider ones).</summary>
    public static Register Reg(Random rng, int bits, bool? legacy = null)
    {
        if (bits == 8) return legacy ?? true ? Legacy8[rng.Next(Legacy8.Length)] : Rex8[rng.Next(Rex8.Length)];
        var set = legacy ?? false ? NoRex : Full;
        var r = set[rng.Next(set.Length)];
        return bits switch { 16 => r - Register.RAX + Register.AX, 32 => r - Register.RAX + Register.EAX, _ => r };
    }

    /// <summary>Makes <paramref name="r"/> equal to the accumulator of its size, keeping the register's other bits.</summary>
    public static OracleCase Equalize(OracleCase c, Register r)
    {
        var full = (Gpr)(r.GetFullRegister() - Register.RAX);
        ulong acc = c.Gprs[0], old = c.Gprs[(int)full];
        if (r is Register.AH or Register.CH or Register.DH or Register.BH)
            return c.With(full, (old & ~0xFF00UL) | ((acc & 0xFF) << 8));
        ulong mask = r.GetSize() == 8 ? ulong.MaxValue : (1UL << (8 * r.GetSize())) - 1;
        return c.With(full, (old & ~mask) | (acc & mask));
    }

    public static MemoryOperand Mem(Random rng) => rng.Next(6) switch
    {
        0 => new MemoryOperand(Register.ESI, rng.Next(0x40)),
        1 => new MemoryOperand(Register.RIP, (long)(Window + (ulong)rng.Next(0x40))),
        _ => new MemoryOperand(Register.RSI, rng.Next(0x40)),
    };

    public static ulong[] Gprs(Random rng)
    {
        var g = new ulong[16];
        for (int r = 0; r < 16; r++) g[r] = DiffHarness.Interesting(rng);
        g[(int)Gpr.Rsi] = Window;
        g[(int)Gpr.Rsp] = HostOracle.DataBase + 0x800;
        return g;
    }

    public static byte[] Memory(Random rng)
    {
        var m = new byte[HostOracle.MemorySize];
        rng.NextBytes(m);
        return m;
    }

    public static ulong Flags(Random rng) => (ulong)rng.Next() & OracleFlags.Status;

    public static OracleCase Case(Random rng, Action<Assembler> emit) => OracleCase.FromAssembler(emit, Gprs(rng), Flags(rng), Memory(rng));

    public static OracleCase Case(Random rng, params Instruction[] insns) => Case(rng, a => { foreach (var i in insns) a.AddInstruction(i); });

    public static int Bits(int size) => size switch { 8 => 8, 16 => 16, 32 => 32, _ => 64 };
}

public class DataMovementTests
{
    private static readonly string[] Conditions = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"];

    private static Code C(string name) => Enum.Parse<Code>(name);

    [Fact]
    public void MovAllForms()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int bits in new[] { 8, 16, 32, 64 })
        {
            string s = bits.ToString();
            for (int k = 0; k < 6; k++)
            {
                var a = Gen.Reg(rng, bits);
                var b = bits == 8 ? Gen.Reg(rng, 8) : Gen.Reg(rng, bits);
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Mov_rm{s}_r{s}"), a, b)));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Mov_rm{s}_r{s}"), Gen.Mem(rng), b)));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Mov_r{s}_rm{s}"), a, Gen.Mem(rng))));
            }
        }
        cases.Add(Gen.Case(rng, a => a.mov(rax, 0x123456789ABCDEF0)));
        cases.Add(Gen.Case(rng, a => a.mov(eax, 0xFFFFFFFF)));
        cases.Add(Gen.Case(rng, a => a.mov(ah, 0x80)));
        cases.Add(Gen.Case(rng, a => a.mov(__qword_ptr[rsi + 8], -2)));
        cases.Add(Gen.Case(rng, a => a.mov(__word_ptr[rsi + 3], 0x8001)));
        cases.Add(Gen.Case(rng, a => a.mov(rax, __qword_ptr[Gen.Window + 16]))); // moffs
        DiffHarness.Check(cases, label: "mov", seed: seed);
    }

    [Fact]
    public void MovzxMovsxMovsxd()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        (string Name, int Dst, int Src)[] forms =
        [
            ("Movzx_r16_rm8", 16, 8), ("Movzx_r32_rm8", 32, 8), ("Movzx_r64_rm8", 64, 8), ("Movzx_r16_rm16", 16, 16),
            ("Movzx_r32_rm16", 32, 16), ("Movzx_r64_rm16", 64, 16), ("Movsx_r16_rm8", 16, 8), ("Movsx_r32_rm8", 32, 8),
            ("Movsx_r64_rm8", 64, 8), ("Movsx_r16_rm16", 16, 16), ("Movsx_r32_rm16", 32, 16), ("Movsx_r64_rm16", 64, 16),
            ("Movsxd_r16_rm16", 16, 16), ("Movsxd_r32_rm32", 32, 32), ("Movsxd_r64_rm32", 64, 32),
        ];
        foreach (var (name, dst, src) in forms)
        {
            for (int k = 0; k < 6; k++)
            {
                bool legacy = k % 2 == 0 && dst != 64; // AH..BH sources need encodings without REX
                var d = Gen.Reg(rng, dst, legacy);
                var s = Gen.Reg(rng, src, legacy);
                cases.Add(Gen.Case(rng, Instruction.Create(C(name), d, s)));
                cases.Add(Gen.Case(rng, Instruction.Create(C(name), d, Gen.Mem(rng))));
            }
        }
        DiffHarness.Check(cases, label: "movzx/movsx", seed: seed);
    }

    [Fact]
    public void Lea()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 8; k++)
        {
            cases.Add(Gen.Case(rng, a => a.lea(rax, __[rbx + rcx * 4 + 0x12345])));
            cases.Add(Gen.Case(rng, a => a.lea(r9, __[rdx + r13 * 8 - 0x80])));
            cases.Add(Gen.Case(rng, a => a.lea(eax, __[rbx + rcx * 2 + 7])));
            cases.Add(Gen.Case(rng, a => a.lea(ax, __[rbx + rcx - 1])));
            cases.Add(Gen.Case(rng, a => a.lea(rax, __[ebx + ecx * 8 + 0x7FFFFFFF]))); // address-size override
            cases.Add(Gen.Case(rng, a => a.lea(eax, __[ebx - 0x10])));
            cases.Add(Gen.Case(rng, a => a.lea(cx, __[ebp + edi])));
            cases.Add(Gen.Case(rng, a => a.lea(rax, __.fs[rbx + 8]))); // the segment contributes nothing
            cases.Add(Gen.Case(rng, a => a.lea(rax, __[rcx * 4])));
        }
        cases.Add(Gen.Case(rng, a => a.lea(rdx, __[Gen.Window + 0x20]))); // rip-relative
        cases.Add(Gen.Case(rng, a => a.lea(rsp, __[rsp + 8])));
        cases.Add(OracleCase.FromAssembler(a => a.db(0x67, 0x8D, 0x04, 0x25, 0xF0, 0xFF, 0xFF, 0xFF), Gen.Gprs(rng))); // lea eax, [abs32] with 67h
        cases.Add(OracleCase.FromAssembler(a => a.db(0x67, 0x48, 0x8D, 0x05, 0x00, 0x00, 0x00, 0x80), Gen.Gprs(rng))); // lea rax, [eip+disp]
        DiffHarness.Check(cases, label: "lea", seed: seed);
    }

    [Fact]
    public void XlatAndMovnti()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 16; k++)
        {
            cases.Add(Gen.Case(rng, a => a.xlatb()).With(Gpr.Rbx, Gen.Window + (ulong)rng.Next(0x100)));
            // 67h: EBX + AL wraps at 4 GiB; RBX's upper half is ignored.
            cases.Add(Gen.Case(rng, a => a.db(0x67, 0xD7)).With(Gpr.Rbx, 0xABCD_0000_0000_0000 | (Gen.Window + (ulong)rng.Next(0x100))));
            cases.Add(Gen.Case(rng, a => a.movnti(__dword_ptr[rsi + 4], ecx)));
            cases.Add(Gen.Case(rng, a => a.movnti(__qword_ptr[rsi + 16], r9)));
        }
        DiffHarness.Check(cases, label: "xlat/movnti", seed: seed);
    }

    [Fact]
    public void Xchg()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int bits in new[] { 8, 16, 32, 64 })
        {
            string s = bits.ToString();
            for (int k = 0; k < 8; k++)
            {
                var a = Gen.Reg(rng, bits);
                var b = Gen.Reg(rng, bits);
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Xchg_rm{s}_r{s}"), a, b)));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Xchg_rm{s}_r{s}"), a, a)));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Xchg_rm{s}_r{s}"), Gen.Mem(rng), b)));
            }
        }
        cases.Add(Gen.Case(rng, a => a.db(0x87, 0xC0))); // xchg eax, eax: zero-extends RAX
        cases.Add(Gen.Case(rng, a => a.db(0x41, 0x90))); // xchg r8d, eax
        cases.Add(Gen.Case(rng, a => a.db(0x49, 0x90))); // xchg r8, rax
        cases.Add(Gen.Case(rng, a => a.db(0x66, 0x93))); // xchg bx, ax
        cases.Add(Gen.Case(rng, a => a.db(0x90)));       // nop, not xchg eax, eax
        cases.Add(Gen.Case(rng, a => a.xchg(ah, al)));
        DiffHarness.Check(cases, label: "xchg", seed: seed);
    }

    [Fact]
    public void Xadd()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int bits in new[] { 8, 16, 32, 64 })
        {
            string s = bits.ToString();
            for (int k = 0; k < 10; k++)
            {
                var a = Gen.Reg(rng, bits);
                var b = Gen.Reg(rng, bits);
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Xadd_rm{s}_r{s}"), a, b)));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Xadd_rm{s}_r{s}"), a, a)));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Xadd_rm{s}_r{s}"), Gen.Mem(rng), b)));
            }
        }
        // Flag consumers right after XADD.
        for (int k = 0; k < 10; k++)
        {
            cases.Add(Gen.Case(rng, a => { a.xadd(rax, rbx); a.setb(cl); a.seto(dl); a.setle(r8b); }));
            cases.Add(Gen.Case(rng, a => { a.@lock.xadd(__dword_ptr[rsi + 4], ecx); a.seta(al); a.sets(bl); }));
        }
        DiffHarness.Check(cases, label: "xadd", seed: seed);
    }

    [Fact]
    public void Cmpxchg()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int bits in new[] { 8, 16, 32, 64 })
        {
            string s = bits.ToString();
            for (int k = 0; k < 12; k++)
            {
                var a = Gen.Reg(rng, bits);
                var b = Gen.Reg(rng, bits);
                var mem = new MemoryOperand(Register.RSI, 8);
                // Half the cases make the accumulator equal to the destination.
                bool equal = k % 2 == 0;
                var regCase = Gen.Case(rng, Instruction.Create(C($"Cmpxchg_rm{s}_r{s}"), a, b));
                if (equal) regCase = Gen.Equalize(regCase, a);
                cases.Add(regCase);
                var memCase = Gen.Case(rng, Instruction.Create(C($"Cmpxchg_rm{s}_r{s}"), mem, b));
                if (equal) Array.Copy(BitConverter.GetBytes(memCase.Gprs[0]), 0, memCase.Memory, 0x108, bits / 8);
                cases.Add(memCase);
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Cmpxchg_rm{s}_r{s}"), a, a)));
            }
        }
        for (int k = 0; k < 8; k++)
        {
            cases.Add(Gen.Case(rng, a => { a.cmpxchg(ecx, edx); a.setne(bl); a.setb(r8b); }));
            cases.Add(Gen.Case(rng, a => { a.mov(rcx, rax); a.cmpxchg(ecx, edx); a.sete(bl); })); // success: RAX keeps its upper half
            cases.Add(Gen.Case(rng, a => { a.mov(eax, __dword_ptr[rsi]); a.@lock.cmpxchg(__dword_ptr[rsi], edx); a.setz(bl); }));
            cases.Add(Gen.Case(rng, a => a.cmpxchg(ecx, eax)));
            cases.Add(Gen.Case(rng, a => a.cmpxchg(eax, ecx)));
        }
        DiffHarness.Check(cases, label: "cmpxchg", seed: seed);
    }

    [Fact]
    public void Cmpxchg8bAnd16b()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        for (int k = 0; k < 24; k++)
        {
            bool equal = k % 2 == 0;
            var c8 = Gen.Case(rng, a => { a.@lock.cmpxchg8b(__qword_ptr[rsi + 0x18]); a.setz(r8b); });
            if (equal) c8 = c8.With(Gpr.Rax, BitConverter.ToUInt32(c8.Memory, 0x118) | (c8.Gprs[0] & ~0xFFFFFFFFUL))
                .With(Gpr.Rdx, BitConverter.ToUInt32(c8.Memory, 0x11C) | (c8.Gprs[2] & ~0xFFFFFFFFUL));
            cases.Add(c8);
            var c16 = Gen.Case(rng, a => { a.@lock.cmpxchg16b(__xmmword_ptr[rsi + 0x20]); a.setz(r8b); });
            if (equal)
            {
                c16 = c16.With(Gpr.Rax, BitConverter.ToUInt64(c16.Memory, 0x120)).With(Gpr.Rdx, BitConverter.ToUInt64(c16.Memory, 0x128));
                if (k % 4 == 0) c16.Memory[0x12F] ^= 1; // only the high half differs
            }
            cases.Add(c16);
        }
        // Misaligned CMPXCHG16B is #GP, nothing changes.
        cases.Add(Gen.Case(rng, a => a.cmpxchg16b(__xmmword_ptr[rsi + 0x28])));
        cases.Add(Gen.Case(rng, a => a.cmpxchg16b(__xmmword_ptr[rsi + 0x21])));
        DiffHarness.Check(cases, label: "cmpxchg8b/16b", seed: seed);
    }

    [Fact]
    public void Movbe()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (int bits in new[] { 16, 32, 64 })
        {
            string s = bits.ToString();
            for (int k = 0; k < 8; k++)
            {
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Movbe_r{s}_m{s}"), Gen.Reg(rng, bits), Gen.Mem(rng))));
                cases.Add(Gen.Case(rng, Instruction.Create(C($"Movbe_m{s}_r{s}"), Gen.Mem(rng), Gen.Reg(rng, bits))));
            }
        }
        DiffHarness.Check(cases, label: "movbe", seed: seed);
    }

    [Fact]
    public void Setcc()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var cc in Conditions)
        {
            var set = C($"Set{cc}_rm8");
            for (int k = 0; k < 4; k++)
            {
                // After CMPXCHG (a remembered SUB producer: RAX − RBX), from incoming flags, into memory and into AH.
                cases.Add(Gen.Case(rng, a => { a.cmpxchg(rbx, rcx); a.AddInstruction(Instruction.Create(set, Register.CL)); }));
                cases.Add(Gen.Case(rng, a => { a.cmpxchg(dl, bl); a.AddInstruction(Instruction.Create(set, Register.AH)); }));
                cases.Add(Gen.Case(rng, Instruction.Create(set, Register.R9L)));
                cases.Add(Gen.Case(rng, Instruction.Create(set, Gen.Mem(rng))));
            }
            // Equal operands and signed edges.
            Action<Assembler> cmpEbx = a => { a.cmpxchg(ebx, ecx); a.AddInstruction(Instruction.Create(set, Register.CL)); };
            cases.Add(Gen.Case(rng, a => { a.cmpxchg(rax, rcx); a.AddInstruction(Instruction.Create(set, Register.CL)); }));
            cases.Add(Gen.Case(rng, cmpEbx).With(Gpr.Rax, 0x80000000).With(Gpr.Rbx, 1));
            cases.Add(Gen.Case(rng, cmpEbx).With(Gpr.Rax, 0x7FFFFFFF).With(Gpr.Rbx, 0xFFFFFFFF));
            cases.Add(Gen.Case(rng, cmpEbx).With(Gpr.Rax, 0xFFFF_FFFF_0000_0005).With(Gpr.Rbx, 5));
        }
        DiffHarness.Check(cases, label: "setcc", seed: seed);
    }

    [Fact]
    public void Cmovcc()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var cc in Conditions)
        {
            foreach (int bits in new[] { 16, 32, 64 })
            {
                var code = C($"Cmov{cc}_r{bits}_rm{bits}");
                var d = Gen.Reg(rng, bits);
                var s = Gen.Reg(rng, bits);
                // Incoming flags: the condition is true or false at random; a false 32-bit CMOV still zero-extends.
                cases.Add(Gen.Case(rng, Instruction.Create(code, d, s)));
                cases.Add(Gen.Case(rng, Instruction.Create(code, d, Gen.Mem(rng))));
                cases.Add(Gen.Case(rng, a => { a.cmpxchg(r8, r9); a.AddInstruction(Instruction.Create(code, d, s)); }));
            }
        }
        // The memory operand is read even when the condition is false: an unmapped source faults.
        cases.Add(Gen.Case(rng, a => a.cmovne(rbx, __qword_ptr[rsi + 0x1000])) with { Rflags = OracleFlags.ZF });
        cases.Add(Gen.Case(rng, a => a.cmove(ebx, __dword_ptr[rsi - 0x200])) with { Rflags = 0 });
        DiffHarness.Check(cases, label: "cmovcc", seed: seed);
    }
}
