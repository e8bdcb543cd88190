// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Differential;

public class StringTests
{
    private const ulong Base = HostOracle.DataBase;

    private enum Op { Movs, Stos, Lods, Scas, Cmps }

    private static readonly int[] Sizes = [1, 2, 4, 8];

    private static void Emit(Assembler a, Op op, int size, string prefix = "")
    {
        var asm = prefix switch { "rep" => a.rep, "repe" => a.repe, "repne" => a.repne, _ => a };
        switch (op, size)
        {
            case (Op.Movs, 1): asm.movsb(); break;
            case (Op.Movs, 2): asm.movsw(); break;
            case (Op.Movs, 4): asm.movsd(); break;
            case (Op.Movs, 8): asm.movsq(); break;
            case (Op.Stos, 1): asm.stosb(); break;
            case (Op.Stos, 2): asm.stosw(); break;
            case (Op.Stos, 4): asm.stosd(); break;
            case (Op.Stos, 8): asm.stosq(); break;
            case (Op.Lods, 1): asm.lodsb(); break;
            case (Op.Lods, 2): asm.lodsw(); break;
            case (Op.Lods, 4): asm.lodsd(); break;
            case (Op.Lods, 8): asm.lodsq(); break;
            case (Op.Scas, 1): asm.scasb(); break;
            case (Op.Scas, 2): asm.scasw(); break;
            case (Op.Scas, 4): asm.scasd(); break;
            case (Op.Scas, 8): asm.scasq(); break;
            case (Op.Cmps, 1): asm.cmpsb(); break;
            case (Op.Cmps, 2): asm.cmpsw(); break;
            case (Op.Cmps, 4): asm.cmpsd(); break;
            default: asm.cmpsq(); break;
        }
    }

    /// <summary>A case with random registers and memory, RSI/RDI/RCX as given and DF chosen.</summary>
    private static OracleCase Case(Random rng, Action<Assembler> emit, ulong rsi, ulong rdi, ulong rcx, bool df, byte[]? memory = null)
    {
        var g = new ulong[16];
        for (int r = 0; r < 16; r++) g[r] = DiffHarness.Interesting(rng);
        g[(int)Gpr.Rsp] = Base + 0x800;
        g[(int)Gpr.Rsi] = rsi;
        g[(int)Gpr.Rdi] = rdi;
        g[(int)Gpr.Rcx] = rcx;
        if (memory is null)
        {
            memory = new byte[HostOracle.MemorySize];
            rng.NextBytes(memory);
        }
        ulong flags = ((ulong)rng.Next() & OracleFlags.Status) | (df ? OracleFlags.DF : 0);
        return OracleCase.FromAssembler(emit, g, flags, memory);
    }

    [Fact]
    public void SingleIterations()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var op in Enum.GetValues<Op>())
            foreach (int size in Sizes)
                for (int k = 0; k < 6; k++)
                {
                    bool df = k % 2 == 1;
                    ulong rsi = Base + 0x100 + (ulong)rng.Next(0x300), rdi = Base + 0x600 + (ulong)rng.Next(0x300);
                    // Equal elements now and then, so SCAS/CMPS see ZF = 1.
                    var c = Case(rng, a => Emit(a, op, size), rsi, rdi, (ulong)rng.NextInt64(), df);
                    if (k == 2) Array.Copy(c.Memory, (int)(rsi - Base), c.Memory, (int)(rdi - Base), size);
                    if (k == 4) c = c.With(Gpr.Rax, BitConverter.ToUInt64(c.Memory, (int)(rdi - Base)));
                    cases.Add(c);
                }
        // Flags of a single SCAS/CMPS feed conditions directly.
        for (int k = 0; k < 16; k++)
        {
            cases.Add(Case(rng, a => { a.cmpsq(); a.setb(al); a.setl(ah); a.setbe(dl); a.setg(dh); }, Base + 0x100, Base + 0x108, 0, false));
            cases.Add(Case(rng, a => { a.scasb(); a.setae(bl); a.setle(bh); a.sete(cl); a.seto(ch); }, Base, Base + 0x200 + (ulong)k, 0, false));
        }
        DiffHarness.Check(cases, label: "string single", seed: seed);
    }

    [Fact]
    public void RepMovsAndStos()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        foreach (var op in new[] { Op.Movs, Op.Stos, Op.Lods })
            foreach (int size in Sizes)
                foreach (int count in new[] { 0, 1, 2, 3, 17, -1 })
                    for (int dir = 0; dir < 2; dir++)
                    {
                        bool df = dir == 1;
                        int n = count >= 0 ? count : 1 + rng.Next(0x300 / size);
                        ulong span = (ulong)(n * size);
                        // Forward: pointers at the low end; backward: at the high end of their areas.
                        ulong rsi = df ? Base + 0x100 + span : Base + 0x100;
                        ulong rdi = df ? Base + 0x500 + span : Base + 0x500;
                        cases.Add(Case(rng, a => Emit(a, op, size, "rep"), rsi, rdi, (ulong)n, df));
                    }
        // Overlapping copies, both directions: the element-by-element semantics show.
        foreach (int delta in new[] { 1, 3, 8, -1, -5, -8 })
            for (int dir = 0; dir < 2; dir++)
            {
                bool df = dir == 1;
                int n = 100 + rng.Next(200);
                ulong rsi = Base + 0x600;
                ulong rdi = (ulong)((long)rsi + delta);
                cases.Add(Case(rng, a => a.rep.movsb(), rsi, rdi, (ulong)n, df));
                cases.Add(Case(rng, a => a.rep.movsd(), rsi, rdi, (ulong)(n / 4), df));
            }
        // RCX = 0 with garbage elsewhere: nothing happens, flags included.
        cases.Add(Case(rng, a => a.rep.movsq(), 0xDEAD_0000_0000, 0xBEEF_0000_0000, 0, false));
        cases.Add(Case(rng, a => a.repe.cmpsb(), 0xDEAD_0000_0000, 0xBEEF_0000_0000, 0, false));
        // A REP instruction followed by more code in the same block.
        cases.Add(Case(rng, a => { a.rep.stosb(); a.mov(rax, rcx); a.rep.movsb(); a.lodsb(); }, Base + 0x100, Base + 0x200, 40, false));
        DiffHarness.Check(cases, label: "rep movs/stos/lods", seed: seed);
    }

    [Fact]
    public void RepScasAndCmps()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        // strlen: REPNE SCASB for a zero byte, with a large count or one that runs out first.
        for (int k = 0; k < 24; k++)
        {
            var mem = new byte[HostOracle.MemorySize];
            rng.NextBytes(mem);
            int len = rng.Next(300);
            for (int p = 0; p < len; p++) mem[0x200 + p] |= 1;
            mem[0x200 + len] = 0;
            ulong rcx = k % 3 == 0 ? (ulong)rng.Next(len + 2) : ulong.MaxValue;
            cases.Add(Case(rng, a => { a.repne.scasb(); a.setz(dl); }, 0, Base + 0x200, rcx, false, mem).With(Gpr.Rax, 0xFFFF_FF00UL));
            // Backwards from the end of the same string.
            cases.Add(Case(rng, a => a.repne.scasb(), 0, Base + 0x200 + (ulong)len + 0x100, ulong.MaxValue, true, mem).With(Gpr.Rax, 0));
        }
        foreach (int size in Sizes)
            for (int k = 0; k < 8; k++)
            {
                // Equal runs with one mismatch (REPE) or one match (REPNE), or none within the count.
                var mem = new byte[HostOracle.MemorySize];
                rng.NextBytes(mem);
                int n = 1 + rng.Next(0x200 / size);
                Array.Copy(mem, 0x100, mem, 0x500, n * size);
                int at = rng.Next(n + 1);
                if (at < n) mem[0x500 + at * size + rng.Next(size)] ^= (byte)(1 << rng.Next(8));
                bool df = k % 4 == 3;
                ulong off = df ? (ulong)((n - 1) * size) : 0;
                cases.Add(Case(rng, a => { Emit(a, Op.Cmps, size, "repe"); a.setb(dl); }, Base + 0x100 + off, Base + 0x500 + off, (ulong)n, df, mem));
                cases.Add(Case(rng, a => Emit(a, Op.Cmps, size, "repne"), Base + 0x100 + off, Base + 0x500 + off, (ulong)n, df, mem));
                // SCAS against a fill value in RAX.
                var fill = (byte[])mem.Clone();
                ulong v = BitConverter.ToUInt64(fill, 0x300);
                for (int p = 0; p < n; p++) Array.Copy(BitConverter.GetBytes(v), 0, fill, 0x500 + p * size, size);
                if (at < n) fill[0x500 + at * size] ^= 0x80;
                cases.Add(Case(rng, a => Emit(a, Op.Scas, size, "repe"), 0, Base + 0x500 + off, (ulong)n, df, fill).With(Gpr.Rax, v));
                cases.Add(Case(rng, a => Emit(a, Op.Scas, size, "repne"), 0, Base + 0x500 + off, (ulong)n, df, mem).With(Gpr.Rax, v));
            }
        DiffHarness.Check(cases, label: "rep scas/cmps", seed: seed);
    }

    [Fact]
    public void FaultsLeaveCompletedIterations()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        var repCompares = new HashSet<OracleCase>(ReferenceEqualityComparer.Instance);
        const ulong End = Base + HostOracle.MemorySize;
        foreach (int size in Sizes)
        {
            ulong n = (ulong)(0x200 / size);
            // Destination runs off the end / below the start of the window.
            cases.Add(Case(rng, a => Emit(a, Op.Movs, size, "rep"), Base + 0x100, End - 0x80, n, false));
            cases.Add(Case(rng, a => Emit(a, Op.Movs, size, "rep"), Base + 0x800, Base + 0x40, n, true));
            cases.Add(Case(rng, a => Emit(a, Op.Stos, size, "rep"), 0, End - 0x100, n, false));
            // Source runs off.
            cases.Add(Case(rng, a => Emit(a, Op.Movs, size, "rep"), End - 0x40, Base + 0x100, n, false));
            cases.Add(Case(rng, a => Emit(a, Op.Lods, size, "rep"), Base + 0x20, 0, n, true));
            // Comparisons that never terminate inside the window.
            var zeros = new byte[HostOracle.MemorySize];
            cases.Add(Case(rng, a => Emit(a, Op.Scas, size, "repe"), 0, End - 0x100, ulong.MaxValue, false, zeros).With(Gpr.Rax, 0));
            cases.Add(Case(rng, a => Emit(a, Op.Cmps, size, "repe"), Base + 0x100, End - 0x100, ulong.MaxValue, false, zeros));
            repCompares.UnionWith(cases[^2..]);
            // An element that straddles the end of the window.
            if (size > 1) cases.Add(Case(rng, a => Emit(a, Op.Stos, size, "rep"), 0, End - (ulong)size - 1, 4, false));
            // Faulting on the first element: nothing changes.
            cases.Add(Case(rng, a => Emit(a, Op.Movs, size), End, Base, 0, false));
            cases.Add(Case(rng, a => Emit(a, Op.Cmps, size), Base, End + 8, 0, false));
        }
        // A REPE CMPS/SCAS that faults after completed iterations leaves the last iteration's flags (AMD, Jitvmx)
        // or restores those from before the instruction (Intel): see HostQuirks.RepCmpsScasFaultRestoresFlags.
        DiffHarness.Check(cases, label: "string faults", seed: seed,
            undefinedFlagsPerCase: c => HostQuirks.RepCmpsScasFaultRestoresFlags && repCompares.Contains(c) ? OracleFlags.Status : 0);
    }

    [Fact]
    public void AddressSizeOverride()
    {
        var rng = DiffHarness.Rng(out int seed);
        var cases = new List<OracleCase>();
        const ulong Garbage = 0xA5A5_0000_0000_0000;
        var zeroCount = new HashSet<OracleCase>(ReferenceEqualityComparer.Instance);
        for (int k = 0; k < 6; k++)
        {
            bool df = k % 2 == 1;
            ulong rsi = Garbage + Base + 0x300, rdi = Garbage + Base + 0x700;
            ulong rcx = 0xFFFF_FFFF_0000_0000 | (ulong)rng.Next(0x100);
            cases.Add(Case(rng, a => a.db(0x67, 0xF3, 0xA4), rsi, rdi, rcx, df));             // rep movsb [edi], [esi]
            cases.Add(Case(rng, a => a.db(0x67, 0xF3, 0x48, 0xAB), rsi, rdi, rcx >> 4, df));  // rep stosq [edi]
            cases.Add(Case(rng, a => a.db(0x67, 0xF2, 0xAE), rsi, rdi, rcx, df));             // repne scasb [edi]
            cases.Add(Case(rng, a => a.db(0x67, 0xF3, 0xA6), rsi, rdi, rcx, df));             // repe cmpsb
            cases.Add(Case(rng, a => a.db(0x67, 0xAD), rsi, rdi, rcx, df));                   // lodsd [esi]
            cases.Add(Case(rng, a => a.db(0x67, 0xF3, 0xA4), rsi, rdi, 0xFFFF_FFFF_0000_0000, df)); // ECX = 0
            zeroCount.Add(cases[^1]);
        }
        // With ECX = 0, Intel processors still write ECX, ESI and EDI (clearing the upper halves) and AMD ones do not:
        // on the former only the low halves are compared (HostQuirks.A32RepWithZeroCountWritesRegisters).
        DiffHarness.Check(cases, label: "string addr32", seed: seed,
            normalize: (c, gprs, _) => { if (zeroCount.Contains(c)) HostQuirks.NormalizeA32RepWithZeroCount(gprs); });
    }

    [Fact]
    public void SourceSegmentOverride()
    {
        // Not differential: the host's FS base is its own. fs: applies to the source only.
        using var g = new Engine.GuestBuilder(a =>
        {
            a.db(0xF3, 0x64, 0xA4); // rep movsb es:[rdi], fs:[rsi]
            a.db(0x64, 0xAC);       // lodsb al, fs:[rsi]
            a.hlt();
        });
        var src = new byte[32];
        for (int k = 0; k < src.Length; k++) src[k] = (byte)(k + 1);
        g.Vm.WritePhysical(Engine.GuestBuilder.RamBase + 0x1000, src);
        g.Cpu.State.Fs.Base = Engine.GuestBuilder.RamBase + 0x1000;
        g.Cpu.State.Rsi = 0;
        g.Cpu.State.Rdi = Engine.GuestBuilder.RamBase + 0x2000;
        g.Cpu.State.Rcx = 16;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        var dst = new byte[16];
        g.Vm.ReadPhysical(Engine.GuestBuilder.RamBase + 0x2000, dst);
        Assert.Equal(src[..16], dst);
        Assert.Equal(17UL, g.Cpu.State.Rsi);
        Assert.Equal(17UL, g.Cpu.State.Rax & 0xFF);
    }

    [Fact]
    public void ExitRequestsInterruptRepAtAnIterationBoundary()
    {
        const ulong ram = 0x100000, size = 16 << 20;
        using var vm = new VirtualMachine(DiffHarness.TierOptions());
        vm.MapMemory(0x1000, 0x1000, MemoryPermissions.ReadExecute);
        vm.MapMemory(ram, size, MemoryPermissions.ReadWrite);
        vm.WritePhysical(0x1000, OracleCase.Assemble(a => { a.rep.stosb(); a.hlt(); })); // position-independent
        var cpu = vm.CreateCpu();
        cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;
        cpu.Controls.HltExiting = true;
        bool done = false;
        var requester = new Thread(() =>
        {
            while (!Volatile.Read(ref done))
            {
                Thread.Sleep(1);
                cpu.RequestExit();
            }
        });
        requester.Start();
        int midway = 0;
        try
        {
            // A loaded machine may finish a pass before the requester runs: retry a few times.
            for (int attempt = 0; attempt < 5 && midway == 0; attempt++)
            {
                cpu.State.Rip = 0x1000;
                cpu.State.Rdi = ram;
                cpu.State.Rcx = size;
                cpu.State.Rax = 0x5A + (ulong)attempt;
                while (true)
                {
                    var exit = cpu.Run();
                    if (exit.Reason != ExitReason.ExitRequested)
                    {
                        Assert.Equal(ExitReason.Hlt, exit.Reason);
                        break;
                    }
                    // Stopped at the REP instruction (or past it when done), with its registers consistent.
                    Assert.True(cpu.State.Rip == 0x1000 || cpu.State.Rcx == 0, $"rip 0x{cpu.State.Rip:x}, rcx 0x{cpu.State.Rcx:x}");
                    Assert.Equal(size, cpu.State.Rcx + (cpu.State.Rdi - ram));
                    if (cpu.State.Rcx != 0 && cpu.State.Rcx != size) midway++;
                }
                Assert.Equal(0UL, cpu.State.Rcx);
                Assert.Equal(ram + size, cpu.State.Rdi);
                var probe = new byte[2];
                vm.ReadPhysical(ram, probe.AsSpan(0, 1));
                vm.ReadPhysical(ram + size - 1, probe.AsSpan(1));
                Assert.Equal((byte)cpu.State.Rax, probe[0]);
                Assert.Equal((byte)cpu.State.Rax, probe[1]);
            }
        }
        finally
        {
            Volatile.Write(ref done, true);
            requester.Join();
        }
        Assert.True(midway > 0, "no exit request landed inside the REP loop");
    }
}
