// SPDX-License-Identifier: MIT
using System.Text;
using Iced.Intel;
using Jitvmx.Tests.Oracle;

namespace Jitvmx.Tests.Differential;

/// <summary>What Jitvmx did with a case, in the oracle's terms.</summary>
public sealed record JitvmxResult(int Signal, ulong RipOffset, ulong[] Gprs, ulong Rflags, byte[] Memory, VmExit Exit);

/// <summary>
/// Rewrites, in a copy of one result's registers and data window, state that the host processor may
/// legitimately produce otherwise than Jitvmx (see <see cref="HostQuirks"/>), so that both behaviours
/// compare equal. <see cref="DiffHarness.Compare"/> applies it to the host's result and to Jitvmx's alike.
/// </summary>
public delegate void ResultNormalizer(OracleCase c, ulong[] gprs, byte[] memory);

/// <summary>
/// Runs oracle cases on the host CPU and under Jitvmx from the same initial state and compares
/// every GPR, the status flags and DF (minus the bits the SDM leaves undefined), the data window,
/// and how the run ended (completion, or the same fault at the same instruction).
/// </summary>
public static class DiffHarness
{
    /// <summary>Guest instruction budget per case; running out counts as a timeout.</summary>
    public const ulong Budget = 5_000_000;

    /// <summary>Runs a case under Jitvmx: code at CodeBase (RX, followed by HLT), data window at DataBase (RW), every exception exiting.</summary>
    /// <param name="setup">Changes to the initial vCPU state a family needs (e.g. CR4.OSXSAVE), applied last.</param>
    public static JitvmxResult RunJitvmx(OracleCase c, Action<VirtualCpu>? setup = null)
    {
        using var vm = new VirtualMachine(TierOptions());
        var fallbacks = AttachTier(vm, c.Code);
        vm.MapMemory(HostOracle.DataBase, HostOracle.MemorySize, MemoryPermissions.ReadWrite);
        vm.MapMemory(HostOracle.CodeBase, 0x11000, MemoryPermissions.ReadExecute);
        vm.WritePhysical(HostOracle.DataBase, c.Memory);
        var code = new byte[c.Code.Length + 1];
        c.Code.CopyTo(code, 0);
        code[^1] = 0xF4; // HLT marks the end
        vm.WritePhysical(HostOracle.CodeBase, code);
        var cpu = vm.CreateCpu();
        for (int i = 0; i < 16; i++) cpu.State[(GuestRegister)i] = c.Gprs[i];
        cpu.State.Rflags = (c.Rflags & OracleFlags.Input) | OracleFlags.Reserved1 | OracleFlags.IF;
        cpu.State.Rip = HostOracle.CodeBase;
        // User mode, as the oracle's code runs.
        cpu.State.Cs.Selector = 0x33;
        cpu.State.Ss.Selector = 0x2B;
        cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;
        cpu.Controls.HltExiting = true;
        setup?.Invoke(cpu);
        var exit = cpu.Run(Budget);
        if (fallbacks.Count > 0) Assert.Fail($"the {Tier} tier did not compile a region: {fallbacks[0]}");
        var gprs = new ulong[16];
        for (int i = 0; i < 16; i++) gprs[i] = cpu.State[(GuestRegister)i];
        var mem = new byte[HostOracle.MemorySize];
        vm.ReadPhysical(HostOracle.DataBase, mem);
        ulong off = cpu.State.Rip - HostOracle.CodeBase;
        int signal = exit.Reason switch
        {
            ExitReason.Hlt when off == (ulong)c.Code.Length => OracleSignal.None,
            // The end marker: HLT at CPL 3 is #GP (the CPL check comes before the HLT exit).
            ExitReason.ExceptionOrNmi when exit.Vector == ExceptionVector.GP && off == (ulong)c.Code.Length => OracleSignal.None,
            ExitReason.ExceptionOrNmi => exit.Vector switch
            {
                ExceptionVector.DE or ExceptionVector.XM or ExceptionVector.MF => OracleSignal.Sigfpe,
                ExceptionVector.UD => OracleSignal.Sigill,
                ExceptionVector.BP or ExceptionVector.DB => OracleSignal.Sigtrap,
                ExceptionVector.AC => OracleSignal.Sigbus,
                _ => OracleSignal.Sigsegv,
            },
            ExitReason.EptViolation => OracleSignal.Sigsegv,
            ExitReason.InstructionBudget => OracleSignal.Sigalrm,
            _ => -1,
        };
        // Traps report the address after the instruction, as the host's signal does.
        if (exit.Reason == ExitReason.ExceptionOrNmi && exit.InterruptionType == InterruptionType.SoftwareException)
            off += (ulong)exit.InstructionLength;
        return new JitvmxResult(signal, off, gprs, cpu.State.Rflags, mem, exit);
    }

    /// <summary>
    /// The tier cases run under, from JITVMX_TEST_TIER: <c>il</c> (unset: the default), <c>interp</c> (the
    /// interpreter tier alone, never promoting), or <c>llvm</c>, where
    /// every region (single-instruction ones excepted, as in <c>--tier llvm</c>) is compiled by LLVM at the
    /// level JITVMX_TEST_LLVM_LEVEL names: O0, O1, O2 (unset: O2), or <c>mixed</c>, which CI uses because
    /// O2 for every case costs minutes: O2 for one case in 8 (chosen by a hash of its code, so always the
    /// same ones) and O0 for the others, so every case checks the lowering and some check it optimised.
    /// </summary>
    public static string Tier { get; } = Environment.GetEnvironmentVariable("JITVMX_TEST_TIER") is { Length: > 0 } t ? t : "il";

    private static readonly string s_llvmLevel = Environment.GetEnvironmentVariable("JITVMX_TEST_LLVM_LEVEL") is { Length: > 0 } l ? l : "O2";

    private static Llvm.LlvmOptLevel LlvmLevel(ReadOnlySpan<byte> code)
    {
        if (!s_llvmLevel.Equals("mixed", StringComparison.OrdinalIgnoreCase)) return Enum.Parse<Llvm.LlvmOptLevel>(s_llvmLevel, ignoreCase: true);
        uint h = 2166136261; // FNV-1a
        foreach (byte b in code) h = (h ^ b) * 16777619;
        return h % 8 == 0 ? Llvm.LlvmOptLevel.O2 : Llvm.LlvmOptLevel.O0;
    }

    /// <summary>
    /// Attaches <see cref="Tier"/> to <paramref name="vm"/>, which runs <paramref name="code"/>. Returns the list the LLVM tier adds a region to
    /// when it cannot compile it, so a case fails instead of silently running on the IL tier; a missing
    /// libLLVM fails too (never a skip).
    /// </summary>
    public static List<string> AttachTier(VirtualMachine vm, ReadOnlySpan<byte> code)
    {
        var fallbacks = new List<string>();
        switch (Tier)
        {
            case "il" or "interp":
                break;
            case "llvm":
                if (!Llvm.LlvmTier.TryAttach(vm, LlvmLevel(code), out string? whyNot,
                        (region, reason) => { lock (fallbacks) fallbacks.Add($"0x{region.EntryRip:x}: {reason}"); }))
                    Assert.Fail($"JITVMX_TEST_TIER=llvm: {whyNot}");
                break;
            default:
                throw new InvalidOperationException($"JITVMX_TEST_TIER={Tier}: use il, interp or llvm");
        }
        return fallbacks;
    }

    /// <summary>Options of a VM for <see cref="Tier"/> (the interpreter is chosen when the VM is created).</summary>
    public static VirtualMachineOptions TierOptions() =>
        new() { InterpreterTierUp = Tier == "interp" ? long.MaxValue : 0 };

    /// <summary>
    /// Compares every case; fails with a report of the first mismatches. <paramref name="undefinedFlags"/>
    /// lists status flags the SDM leaves undefined for the instructions under test; <paramref name="normalize"/>
    /// removes host-dependent differences (see <see cref="ResultNormalizer"/>).
    /// </summary>
    public static void Check(IReadOnlyList<OracleCase> cases, ulong undefinedFlags = 0, string label = "", int? seed = null,
        Func<OracleCase, ulong>? undefinedFlagsPerCase = null, ResultNormalizer? normalize = null)
    {
        var native = HostOracle.Run(cases);
        var report = new StringBuilder();
        int failures = 0;
        for (int i = 0; i < cases.Count; i++)
        {
            var c = cases[i];
            var n = native[i];
            var j = RunJitvmx(c);
            ulong undef = undefinedFlags | (undefinedFlagsPerCase?.Invoke(c) ?? 0);
            string? diff = Compare(n, j, undef, c, normalize);
            // The host's own result is not always repeatable: on AMD processors the kernel saves a
            // preempted task's x87 state without FIP, FDP and FOP (they are kept only with an
            // exception pending), so an oracle run switched out between an x87 instruction and its
            // FNSTENV reads zeros. A mismatch counts only if fresh host runs confirm it.
            for (int retry = 0; diff is not null && retry < 3; retry++)
                if (Compare(HostOracle.Run(c), j, undef, c, normalize) is null) diff = null;
            if (diff is null) continue;
            if (++failures > 5) continue;
            report.AppendLine($"case {i}{(label.Length > 0 ? $" ({label})" : "")}: {diff}");
            report.AppendLine("  code: " + Disassemble(c.Code));
            report.AppendLine("  in:   " + FormatRegs(c.Gprs) + $" rflags={c.Rflags:x}");
            report.AppendLine($"  jitvmx exit: {j.Exit}");
        }
        if (failures > 0)
            Assert.Fail($"{failures} of {cases.Count} cases differ from the host CPU{(seed is int s ? $" (seed {s})" : "")}:\n{report}");
    }

    /// <summary>Null when the results agree (after <paramref name="normalize"/>, if given, with case <paramref name="c"/>).</summary>
    public static string? Compare(OracleResult n, JitvmxResult j, ulong undefinedFlags, OracleCase? c = null, ResultNormalizer? normalize = null)
    {
        if (normalize is not null)
        {
            ArgumentNullException.ThrowIfNull(c);
            n = n with { Gprs = (ulong[])n.Gprs.Clone(), Memory = (byte[])n.Memory.Clone() };
            j = j with { Gprs = (ulong[])j.Gprs.Clone(), Memory = (byte[])j.Memory.Clone() };
            normalize(c, n.Gprs, n.Memory);
            normalize(c, j.Gprs, j.Memory);
        }
        var sb = new StringBuilder();
        if (n.Signal != j.Signal) sb.Append($"ended with signal {j.Signal}, host {n.Signal}; ");
        if (n.RipOffset != j.RipOffset) sb.Append($"rip +0x{j.RipOffset:x}, host +0x{n.RipOffset:x}; ");
        for (int r = 0; r < 16; r++)
            if (n.Gprs[r] != j.Gprs[r]) sb.Append($"{(Gpr)r}=0x{j.Gprs[r]:x} host 0x{n.Gprs[r]:x}; ");
        ulong mask = OracleFlags.Input & ~undefinedFlags;
        if ((n.Rflags & mask) != (j.Rflags & mask))
            sb.Append($"flags {FlagString(j.Rflags & mask)} host {FlagString(n.Rflags & mask)}; ");
        for (int k = 0; k < n.Memory.Length; k++)
        {
            if (n.Memory[k] != j.Memory[k])
            {
                sb.Append($"memory differs first at +0x{k:x} (0x{j.Memory[k]:x2}, host 0x{n.Memory[k]:x2}); ");
                break;
            }
        }
        return sb.Length == 0 ? null : sb.ToString();
    }

    private static string FlagString(ulong f)
    {
        var sb = new StringBuilder();
        if ((f & OracleFlags.CF) != 0) sb.Append("C");
        if ((f & OracleFlags.PF) != 0) sb.Append("P");
        if ((f & OracleFlags.AF) != 0) sb.Append("A");
        if ((f & OracleFlags.ZF) != 0) sb.Append("Z");
        if ((f & OracleFlags.SF) != 0) sb.Append("S");
        if ((f & OracleFlags.DF) != 0) sb.Append("D");
        if ((f & OracleFlags.OF) != 0) sb.Append("O");
        return sb.Length == 0 ? "-" : sb.ToString();
    }

    private static string FormatRegs(ulong[] g)
    {
        var sb = new StringBuilder();
        for (int r = 0; r < 16; r++)
            if (g[r] != 0) sb.Append($"{(Gpr)r}=0x{g[r]:x} ");
        return sb.ToString();
    }

    /// <summary>Iced disassembly of a code buffer, for reports.</summary>
    public static string Disassemble(byte[] code)
    {
        var d = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(code), HostOracle.CodeBase);
        var f = new NasmFormatter();
        var o = new StringOutput();
        var sb = new StringBuilder();
        while (d.IP < HostOracle.CodeBase + (ulong)code.Length)
        {
            d.Decode(out var insn);
            f.Format(insn, o);
            sb.Append(o.ToStringAndReset()).Append("; ");
        }
        return sb.ToString();
    }

    /// <summary>Seed used when JITVMX_SEED is not set, so every run (CI included) checks the same cases.</summary>
    public const int DefaultSeed = 20261128;

    /// <summary>
    /// A seeded random source whose seed is printed on failure. JITVMX_SEED=&lt;n&gt; reproduces a run,
    /// JITVMX_SEED=random explores new cases; unset, the fixed <see cref="DefaultSeed"/> is used.
    /// </summary>
    public static Random Rng(out int seed)
    {
        string? env = Environment.GetEnvironmentVariable("JITVMX_SEED");
        seed = env switch
        {
            null or "" => DefaultSeed,
            "random" => Random.Shared.Next(),
            _ => int.Parse(env),
        };
        return new Random(seed);
    }

    /// <summary>Interesting 64-bit values: the edges that break translators, then random ones.</summary>
    public static ulong Interesting(Random rng)
    {
        ReadOnlySpan<ulong> edges =
        [
            0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
            0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFE, 63, 64, 31, 32, 15, 16, 7, 8,
        ];
        return rng.Next(3) == 0 ? edges[rng.Next(edges.Length)] : (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 33);
    }
}
