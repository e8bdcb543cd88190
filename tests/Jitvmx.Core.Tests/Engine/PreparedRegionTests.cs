// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// The interpreter's prepared regions kept in a file across runs: taken while the guest bytes are
/// the same, translated again when they are not, and a damaged or foreign file costs translations only.
/// </summary>
public sealed class PreparedRegionTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"jitvmx-prepared-{Guid.NewGuid():N}");
    private string File => Path.Combine(_dir, "program.regions");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    /// <summary>A loop with a call, memory, flags, a 128-by-64-bit division and SSE2 (helpers of both kinds), ending in HLT.</summary>
    private static void Program(Assembler a, int n, int constant = 7)
    {
        var loop = a.CreateLabel();
        var f = a.CreateLabel();
        var done = a.CreateLabel();
        var g = a.CreateLabel();
        var skip = a.CreateLabel();
        a.xor(eax, eax);
        a.mov(ecx, n);
        a.mov(rbx, GuestBuilder.RamBase);
        // Code only some runs reach: RAM at +24 chooses.
        a.cmp(__qword_ptr[rbx + 24], 0);
        a.je(skip);
        a.call(g);
        a.Label(ref skip);
        a.nop();
        a.Label(ref loop);
        a.mov(rdx, rcx);
        a.call(f);
        a.add(__qword_ptr[rbx], rdx);
        a.add(rax, rdx);
        a.mov(r8, rax);
        a.mov(r9, rdx);
        a.lea(r11, __[rcx + 4]);
        a.mov(edx, 3);       // RDX:RAX / R11: a quotient in range (RDX < R11)
        a.div(r11);
        a.add(__qword_ptr[rbx + 8], rax);
        a.mov(rax, r8);
        a.movq(xmm0, rax);
        a.movq(xmm1, r9);
        a.pcmpeqb(xmm0, xmm1);
        a.pmovmskb(r10d, xmm0);
        a.add(__qword_ptr[rbx + 16], r10);
        a.dec(ecx);
        a.jnz(loop);
        a.jmp(done);
        a.Label(ref g);
        a.add(__qword_ptr[rbx], 1000);
        a.ret();
        a.Label(ref f);
        a.imul(rdx, rdx);
        a.add(rdx, constant);
        a.ret();
        a.Label(ref done);
        a.hlt();
    }

    private (ulong Rax, byte[] Mem, ulong Retired, TranslationStatistics Stats) Run(string? file, int n = 300, int constant = 7, bool extra = false)
    {
        var options = new VirtualMachineOptions { InterpreterTierUp = long.MaxValue, PreparedRegions = file };
        using var g = new GuestBuilder(a => Program(a, n, constant), options: options);
        if (extra) g.Vm.WritePhysical(GuestBuilder.RamBase + 24, BitConverter.GetBytes(1UL));
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        var mem = new byte[24];
        g.Vm.ReadPhysical(GuestBuilder.RamBase, mem);
        return (g.Cpu.State.Rax, mem, g.Cpu.InstructionsRetired, g.Vm.Statistics);
    }

    private static void Same((ulong Rax, byte[] Mem, ulong Retired, TranslationStatistics Stats) a, (ulong Rax, byte[] Mem, ulong Retired, TranslationStatistics Stats) b)
    {
        Assert.Equal(a.Rax, b.Rax);
        Assert.Equal(a.Mem, b.Mem);
        Assert.Equal(a.Retired, b.Retired);
    }

    [Fact]
    public void ASecondRunTakesEveryRegionFromTheFile()
    {
        var plain = Run(null);
        var first = Run(File);
        Assert.True(System.IO.File.Exists(File));
        var second = Run(File);
        Same(plain, first);
        Same(plain, second);
        Assert.Equal(0, first.Stats.RegionsFromPreparedCache);
        Assert.True(second.Stats.RegionsInterpreted > 2);
        Assert.Equal(second.Stats.RegionsInterpreted, second.Stats.RegionsFromPreparedCache);
    }

    [Fact]
    public void ChangedCodeIsTranslatedAgain()
    {
        Run(File, constant: 7);
        var plain = Run(null, constant: 9);
        var changed = Run(File, constant: 9); // the callee's bytes differ; the caller's do not
        Same(plain, changed);
        Assert.True(changed.Stats.RegionsFromPreparedCache > 0);
        Assert.True(changed.Stats.RegionsFromPreparedCache < changed.Stats.RegionsInterpreted);
        // The changed region was recorded again: a third run takes everything from the file.
        var third = Run(File, constant: 9);
        Same(plain, third);
        Assert.Equal(third.Stats.RegionsInterpreted, third.Stats.RegionsFromPreparedCache);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("flipped")]
    [InlineData("other build")]
    [InlineData("garbage")]
    public void ADamagedOrForeignFileCostsTranslationsOnly(string damage)
    {
        var plain = Run(null);
        Run(File);
        var bytes = System.IO.File.ReadAllBytes(File);
        switch (damage)
        {
            case "truncated": bytes = bytes[..(bytes.Length * 2 / 3)]; break;
            case "flipped": bytes[bytes.Length / 2] ^= 0x40; break;
            case "other build": bytes[10] ^= 1; break; // in the build's module version
            case "garbage": Random.Shared.NextBytes(bytes); break;
        }
        System.IO.File.WriteAllBytes(File, bytes);
        var damaged = Run(File);
        Same(plain, damaged);
        Assert.True(damaged.Stats.RegionsFromPreparedCache < damaged.Stats.RegionsInterpreted);
        // The run wrote a whole file again: the next one takes everything.
        var next = Run(File);
        Same(plain, next);
        Assert.Equal(next.Stats.RegionsInterpreted, next.Stats.RegionsFromPreparedCache);
    }

    [Fact]
    public void RunsAppendTheirNewRegions()
    {
        Run(File);
        long size = new FileInfo(File).Length;
        // The same program taking a path the first run did not: its new regions are appended.
        var plainExtra = Run(null, extra: true);
        var extra = Run(File, extra: true);
        Same(plainExtra, extra);
        Assert.True(extra.Stats.RegionsFromPreparedCache > 0);
        Assert.True(extra.Stats.RegionsFromPreparedCache < extra.Stats.RegionsInterpreted);
        Assert.True(new FileInfo(File).Length > size);
        var again = Run(File);
        Same(Run(null), again);
        Assert.Equal(again.Stats.RegionsInterpreted, again.Stats.RegionsFromPreparedCache);
        var extraAgain = Run(File, extra: true);
        Same(plainExtra, extraAgain);
        Assert.Equal(extraAgain.Stats.RegionsInterpreted, extraAgain.Stats.RegionsFromPreparedCache);
    }

    [Fact]
    public void AFileWrittenUnderOtherSettingsIsDroppedWhenTheSettingsAreKnown()
    {
        Run(File);
        // The VM reads the file before the front end fixes the memory model; Bind decides.
        var same = Jitvmx.Runtime.PreparedRegionCache.Preload(File);
        var other = Jitvmx.Runtime.PreparedRegionCache.Preload(File);
        using var vm = new VirtualMachine();
        string settings = vm.Cache.PreparedSettingsForTests;
        Assert.True(same.Bind(settings).LoadedRecords > 2);
        Assert.Equal(0, other.Bind(settings + " and more").LoadedRecords);
    }

    [Fact]
    public void AnUnwritablePlaceLosesOnlyTheSpeedUp()
    {
        System.IO.Directory.CreateDirectory(_dir);
        string blocked = Path.Combine(_dir, "a-file-not-a-directory");
        System.IO.File.WriteAllText(blocked, "");
        var plain = Run(null);
        var r = Run(Path.Combine(blocked, "program.regions"));
        Same(plain, r);
    }
}
