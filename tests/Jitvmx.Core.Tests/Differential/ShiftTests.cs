// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Differential;

/// <summary>Differential tests of SHL/SAL SHR SAR ROL ROR RCL RCR SHLD SHRD.</summary>
public sealed class ShiftTests
{
    private const ulong Data = HostOracle.DataBase;

    /// <summary>Counts that break translators: 0, 1, the width edges, the 5/6-bit mask edges, the RCL/RCR moduli.</summary>
    private static int PickCount(Random rng, int width)
    {
        ReadOnlySpan<int> edges = [0, 1, 2, width - 1, width, width + 1, 9, 16, 17, 18, 31, 32, 33, 63, 64, 65, 0x7F, 0x80, 0xFF];
        return rng.Next(3) == 0 ? rng.Next(256) : edges[rng.Next(edges.Length)];
    }

    private static string CodeName(string op, int w, string form) => op is "Shld" or "Shrd" ? $"{op}_rm{w}_r{w}_{form}" : $"{op}_rm{w}_{form}";

    [Theory]
    [InlineData("Shl")]
    [InlineData("Sal")]
    [InlineData("Shr")]
    [InlineData("Sar")]
    [InlineData("Rol")]
    [InlineData("Ror")]
    [InlineData("Rcl")]
    [InlineData("Rcr")]
    public void ShiftAndRotate(string op)
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        var mem = CaseSet.RandomMemory(rng);
        bool rotate = op is "Rol" or "Ror" or "Rcl" or "Rcr";
        foreach (int w in (int[])[8, 16, 32, 64])
        {
            foreach (string form in (string[])["1", "imm8", "CL"])
            {
                int n = form == "1" ? 12 : 24;
                for (int k = 0; k < n; k++)
                {
                    var code = Enum.Parse<Code>(CodeName(op, w, form));
                    int count = form == "1" ? 1 : PickCount(rng, w);
                    var gprs = CaseSet.RandomGprs(rng);
                    bool memDest = k % 4 == 3;
                    Instruction insn;
                    if (memDest)
                    {
                        var m = new MemoryOperand(Register.RBX, rng.Next(0, 4000));
                        insn = form == "CL" ? Instruction.Create(code, m, Register.CL) : Instruction.Create(code, m, count);
                    }
                    else
                    {
                        // CL itself is a fine destination when the count is in CL (the old CL is the count).
                        var dst = CaseSet.PickReg(rng, w, allowHigh8: true);
                        insn = form == "CL" ? Instruction.Create(code, dst, Register.CL) : Instruction.Create(code, dst, count);
                    }
                    gprs[(int)Gpr.Rbx] = Data;
                    if (form == "CL") gprs[(int)Gpr.Rcx] = (gprs[(int)Gpr.Rcx] & ~0xFFUL) | (uint)count;
                    int masked = count & (w == 64 ? 63 : 31);
                    ulong undef = 0;
                    if (masked != 0)
                    {
                        if (masked != 1) undef |= F.OF;
                        if (!rotate) undef |= F.AF;
                        // The SDM leaves CF undefined for SHL/SHR by the width or more (8/16-bit operands).
                        if (op is "Shl" or "Sal" or "Shr" && masked >= w) undef |= F.CF;
                    }
                    set.Add(CaseSet.Of([insn], gprs, CaseSet.RandomFlags(rng), mem), undef);
                }
            }
        }
        // Partial registers: AH..BH (no REX) and the REX byte registers.
        foreach (var r in (Register[])[Register.AH, Register.CH, Register.BH, Register.SPL, Register.SIL, Register.R15L])
        {
            int count = PickCount(rng, 8);
            var gprs = CaseSet.RandomGprs(rng);
            gprs[(int)Gpr.Rsp] = 0x1234_5678_9ABC_DEF0; // SPL is the low byte of RSP; nothing here touches the stack
            int masked = count & 31;
            ulong undef = masked == 0 ? 0 : (masked != 1 ? F.OF : 0) | (rotate ? 0 : F.AF) | (op is "Shl" or "Sal" or "Shr" && masked >= 8 ? F.CF : 0);
            set.Add(CaseSet.Of([Instruction.Create(Enum.Parse<Code>(CodeName(op, 8, "imm8")), r, count)], gprs, CaseSet.RandomFlags(rng), mem), undef);
        }
        set.Check(op, seed);
    }

    [Theory]
    [InlineData("Shld")]
    [InlineData("Shrd")]
    public void DoubleShift(string op)
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        var mem = CaseSet.RandomMemory(rng);
        foreach (int w in (int[])[16, 32, 64])
        {
            foreach (string form in (string[])["imm8", "CL"])
            {
                for (int k = 0; k < 40; k++)
                {
                    int count = PickCount(rng, w);
                    int masked = count & (w == 64 ? 63 : 31);
                    // A 16-bit shift by more than 16 has an undefined result.
                    if (masked > w) continue;
                    var code = Enum.Parse<Code>(CodeName(op, w, form));
                    var gprs = CaseSet.RandomGprs(rng);
                    gprs[(int)Gpr.Rbx] = Data;
                    if (form == "CL") gprs[(int)Gpr.Rcx] = (gprs[(int)Gpr.Rcx] & ~0xFFUL) | (uint)count;
                    var src = CaseSet.PickReg(rng, w, allowHigh8: false);
                    Instruction insn;
                    if (k % 4 == 3)
                    {
                        var m = new MemoryOperand(Register.RBX, rng.Next(0, 4000));
                        insn = form == "CL" ? Instruction.Create(code, m, src, Register.CL) : Instruction.Create(code, m, src, count);
                    }
                    else
                    {
                        // dst == src happens too: a rotate.
                        var dst = k % 7 == 0 ? src : CaseSet.PickReg(rng, w, allowHigh8: false);
                        insn = form == "CL" ? Instruction.Create(code, dst, src, Register.CL) : Instruction.Create(code, dst, src, count);
                    }
                    ulong undef = masked == 0 ? 0 : F.AF | (masked != 1 ? F.OF : 0);
                    set.Add(CaseSet.Of([insn], gprs, CaseSet.RandomFlags(rng), mem), undef);
                }
            }
        }
        set.Check(op, seed);
    }

    /// <summary>
    /// Flag consumers after shifts: a shift by CL = 0 keeps the incoming flags, a nonzero one replaces
    /// them; a second rotate through carry consumes the first one's CF.
    /// </summary>
    [Fact]
    public void ConditionsAfterShifts()
    {
        var rng = DiffHarness.Rng(out int seed);
        var set = new CaseSet();
        Action<Assembler>[] shifts =
        [
            a => a.shl(rdx, cl), a => a.shr(edx, cl), a => a.sar(dx, cl), a => a.rol(rdx, cl), a => a.rcr(dl, cl),
            a => a.shld(rdx, rsi, cl), a => a.shrd(edx, esi, cl), a => a.rcl(edx, cl), a => a.ror(dx, cl),
        ];
        // (emit, reads OF): a JO/JL/JG after a count above 1 would branch on an undefined flag.
        (Action<Assembler, Label> Emit, bool UsesOf)[] jumps =
        [
            ((a, l) => a.jb(l), false), ((a, l) => a.je(l), false), ((a, l) => a.jl(l), true), ((a, l) => a.jo(l), true),
            ((a, l) => a.jbe(l), false), ((a, l) => a.jg(l), true), ((a, l) => a.js(l), false), ((a, l) => a.jp(l), false),
        ];
        for (int k = 0; k < 150; k++)
        {
            var shift = shifts[rng.Next(shifts.Length)];
            ulong count = rng.Next(3) == 0 ? 1UL : rng.Next(2) == 0 ? 0 : (ulong)rng.Next(64);
            bool chain = k % 4 == 0;
            var jump = jumps[rng.Next(jumps.Length)];
            while (jump.UsesOf && count > 1) jump = jumps[rng.Next(jumps.Length)];
            var c = OracleCase.FromAssembler(a =>
            {
                var taken = a.CreateLabel();
                shift(a);
                if (chain) a.rcl(rbx, 1);
                jump.Emit(a, taken);
                a.mov(edi, 1);
                a.Label(ref taken);
                a.nop();
            }, CaseSet.RandomGprs(rng), CaseSet.RandomFlags(rng));
            c = c.With(Gpr.Rcx, count);
            set.Add(c, count is 0 or 1 ? F.AF : F.AF | F.OF);
        }
        set.Check("shift + jcc", seed);
    }

    /// <summary>A shift writes its destination even when the count is 0: a read-only page faults, with state untouched.</summary>
    [Fact]
    public void WriteToReadOnlyMemoryFaultsEvenForCountZero()
    {
        var set = new CaseSet();
        Action<Assembler>[] forms =
        [
            a => a.shl(__byte_ptr[rsi], cl), a => a.rcl(__dword_ptr[rsi + 4], cl), a => a.shrd(__qword_ptr[rsi], rdx, cl),
            a => a.sar(__word_ptr[rsi], 1), a => a.rol(__qword_ptr[rsi], 3),
        ];
        foreach (var form in forms)
        {
            foreach (ulong count in (ulong[])[0, 1, 5])
            {
                var gprs = CaseSet.RandomGprs(new Random((int)count));
                gprs[(int)Gpr.Rsi] = HostOracle.CodeBase;
                gprs[(int)Gpr.Rcx] = count;
                set.Add(OracleCase.FromAssembler(form, gprs, F.CF | F.OF | F.AF), 0);
            }
        }
        set.Check("read-only destination");
    }

    [Fact]
    public void CountZeroZeroExtendsA32BitRegister()
    {
        var set = new CaseSet();
        // Rotates by a masked count above 1 that is a multiple of the width (plus 1 for RCL/RCR) leave OF undefined.
        (Action<Assembler> Form, ulong Undefined)[] forms =
        [
            (a => a.shl(eax, cl), 0), (a => a.shr(eax, 0), 0), (a => a.sar(eax, 32), 0), (a => a.rol(eax, cl), 0), (a => a.ror(eax, 0), 0),
            (a => a.rcl(eax, cl), 0), (a => a.rcr(eax, 0), 0), (a => a.shld(eax, edx, cl), 0), (a => a.shrd(eax, edx, 0), 0),
            (a => a.rcl(ax, cl), 0), (a => a.rcl(al, 9), F.OF), (a => a.rcr(ax, 17), F.OF), (a => a.rol(ax, 16), F.OF), (a => a.shl(rax, 64), 0),
        ];
        foreach (var (form, undefined) in forms)
            foreach (ulong rflags in (ulong[])[0, F.Status])
                set.Add(OracleCase.FromAssembler(form, rflags: rflags)
                    .With(Gpr.Rax, 0xDEAD_BEEF_8765_4321).With(Gpr.Rcx, 0xFF00).With(Gpr.Rdx, 0x1234_5678_9ABC_DEF0), undefined);
        set.Check("count 0");
    }
}

/// <summary>Oracle cases with per-case undefined flags, and random operands for them.</summary>
internal sealed class CaseSet
{
    private readonly List<OracleCase> _cases = [];
    private readonly Dictionary<OracleCase, ulong> _undefined = new(ReferenceEqualityComparer.Instance);

    public int Count => _cases.Count;

    public void Add(OracleCase c, ulong undefinedFlags)
    {
        _cases.Add(c);
        _undefined[c] = undefinedFlags;
    }

    public void Check(string label, int? seed = null) =>
        DiffHarness.Check(_cases, label: label, seed: seed, undefinedFlagsPerCase: c => _undefined[c]);

    /// <summary>Random registers (edge values mostly), RSP at the middle of the data window.</summary>
    public static ulong[] RandomGprs(Random rng)
    {
        var g = new ulong[16];
        for (int i = 0; i < 16; i++) g[i] = DiffHarness.Interesting(rng);
        g[(int)Gpr.Rsp] = HostOracle.DataBase + 0x800;
        return g;
    }

    public static byte[] RandomMemory(Random rng)
    {
        var m = new byte[HostOracle.MemorySize];
        rng.NextBytes(m);
        return m;
    }

    /// <summary>A random subset of the status flags, sometimes DF too.</summary>
    public static ulong RandomFlags(Random rng) => (ulong)rng.NextInt64() & (rng.Next(8) == 0 ? F.Input : F.Status);

    /// <summary>A random GPR of <paramref name="width"/> bits other than RSP (and SPL).</summary>
    public static Register PickReg(Random rng, int width, bool allowHigh8)
    {
        if (width == 8 && allowHigh8 && rng.Next(4) == 0) return Register.AH + rng.Next(4);
        int n;
        do n = rng.Next(16); while (n == (int)Gpr.Rsp);
        return width switch
        {
            8 => n < 4 ? Register.AL + n : Register.AL + n + 4,
            16 => Register.AX + n,
            32 => Register.EAX + n,
            _ => Register.RAX + n,
        };
    }

    public static OracleCase Of(Instruction[] insns, ulong[] gprs, ulong rflags, byte[] memory) =>
        OracleCase.FromAssembler(a => { foreach (var i in insns) a.AddInstruction(i); }, gprs, rflags, memory);
}
