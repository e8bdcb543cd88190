// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Diagnostics;
using Xunit.Abstractions;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Region objects: compiled in one process (<see cref="ChildProcess"/>), loaded and run in this one
/// by a fresh VM that translates nothing, with the same result as the IL tier; and refused, with a
/// clear error, when the guest code changed or the file is damaged.
/// </summary>
public sealed class CrossProcessTests(ITestOutputHelper output) : IDisposable
{
    private const ulong Ram = TestGuest.RamBase;
    private readonly string _dir = Directory.CreateTempSubdirectory("jitvmx-obj-").FullName;

    /// <summary>
    /// One region (the loop and the HLT after it) calling registered helpers (CRC32 byte and qword,
    /// PMOVMSKB) and an enum helper (DIV r64 of a 128-bit dividend), with loads and stores.
    /// </summary>
    internal static void CrcProgram(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rbx, Ram);
        a.mov(ecx, 200);
        a.xor(eax, eax);
        a.mov(r8, 0x0123456789ABCDEF);
        a.xor(r9d, r9d);
        a.Label(ref loop);
        a.movzx(edx, __byte_ptr[rbx + rcx]);
        a.crc32(eax, dl);
        a.crc32(r8, __qword_ptr[rbx + rcx * 8]);
        a.movdqu(xmm0, __xmmword_ptr[rbx + rcx * 4]);
        a.psadbw(xmm0, xmm1); // stays a helper call (PMOVMSKB is lowered natively)
        a.pmovmskb(edx, xmm0);
        a.add(r9, rdx);
        a.mov(__qword_ptr[rbx + rcx * 8 + 0x2000], r8);
        a.dec(ecx);
        a.jnz(loop);
        a.mov(r10, r8);
        a.mov(edx, 7); // a 128-bit dividend: a zeroed RDX would divide inline, without the helper
        a.mov(rax, r9);
        a.mov(r11, 12345);
        a.div(r11);
        a.hlt();
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Runs the child process to compile <paramref name="program"/>'s entry region; returns the file and the helper numbers the child used.</summary>
    private (string File, Dictionary<string, string> ChildIds) CompileInChild(string program)
    {
        string file = Path.Combine(_dir, program + ".jvo");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { typeof(ChildProcess).Assembly.Location, "emit-region", program, file }) psi.ArgumentList.Add(arg);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("the compiling process did not finish in 5 minutes");
        }
        Assert.True(p.ExitCode == 0, $"the compiling process exited with {p.ExitCode}:\n{stderr.Result}{stdout.Result}");
        var ids = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')).Where(f => f is ["helper", _, _]).ToDictionary(f => f[1], f => f[2]);
        return (file, ids);
    }

    [Fact]
    public void RegionCompiledInAnotherProcessRunsHereWithoutTranslating()
    {
        var (file, childIds) = CompileInChild("crc");
        var obj = RegionObject.ReadFile(file);
        Assert.Equal(TestGuest.CodeBase, obj.EntryRip);
        Assert.Empty(obj.SuccessorRips); // the loop and the HLT are all inside
        // The object imports helpers by name; the child numbered them its own way (it registered others first).
        string[] expected = ["Jitvmx.Lifting.CryptoOps.Crc8", "Jitvmx.Lifting.CryptoOps.Crc64", "Jitvmx.Lifting.SimdIntOps.Psadbw", "Jitvmx.Helpers.UDiv128Quotient"];
        foreach (string name in expected)
        {
            Assert.Contains(obj.Helpers, h => h.Symbol == Helpers.SymbolPrefix + name);
            Assert.True(int.TryParse(childIds[Helpers.SymbolPrefix + name], out _), childIds[Helpers.SymbolPrefix + name]);
        }
        foreach (var h in obj.Helpers)
        {
            Assert.True(Helpers.TryResolveSymbol(h.Symbol, h.Pure, out int id, out string? why), why);
            output.WriteLine($"{h.Symbol}: number {childIds[h.Symbol]} in the compiling process, {id} here");
        }

        var il = Tiers.Run(CrcProgram, g => g.Cpu.Run());
        var loaded = Tiers.Run(CrcProgram, g =>
        {
            obj.Install(g.Cpu);
            var exit = g.Cpu.Run();
            Assert.Equal(0, g.Vm.Statistics.RegionsTranslated);
            Assert.Equal(1, g.Vm.Statistics.RegionsLoaded);
            return exit;
        });
        Assert.Equal(ExitReason.Hlt, il.Exit.Reason);
        Assert.Equal(0, loaded.IlRegions);
        Tiers.Same(il, loaded);
    }

    [Fact]
    public void ChangedGuestCodeIsRefused()
    {
        var (file, _) = CompileInChild("loadstore");
        var obj = RegionObject.ReadFile(file);
        using var g = new TestGuest(ProgramTests.LoadStoreLoop);
        // imul rax, rax, 3 becomes imul rax, rax, 5: same length, other semantics.
        int at = g.Code.AsSpan().IndexOf(new byte[] { 0x48, 0x6B, 0xC0, 0x03 });
        Assert.True(at >= 0);
        g.Vm.WritePhysical(TestGuest.CodeBase + (ulong)at + 3, [5]);
        var e = Assert.Throws<RegionObjectException>(() => obj.Install(g.Cpu));
        Assert.Contains("differs from the code it was compiled from", e.Message);
        Assert.Equal(0, g.Vm.Statistics.RegionsLoaded);

        // Code that is no longer executable is refused too.
        using var gone = new TestGuest(ProgramTests.LoadStoreLoop);
        gone.Vm.Protect(gone.Vm.Physical.Find(TestGuest.CodeBase)!, MemoryPermissions.Read);
        e = Assert.Throws<RegionObjectException>(() => obj.Install(gone.Cpu));
        Assert.Contains("no longer mapped executable", e.Message);
    }

    [Fact]
    public void DamagedFilesAreRefusedWithTheReason()
    {
        using var g = new TestGuest(ProgramTests.LoadStoreLoop);
        byte[] good = RegionObject.Compile(g.Cpu, TestGuest.CodeBase, LlvmOptLevel.O0).ToBytes();
        Assert.Equal(good, RegionObject.Read(good).ToBytes());

        string Refused(byte[] file) => Assert.Throws<RegionObjectException>(() => RegionObject.Read(file)).Message;

        Assert.Equal("not a Jitvmx region object (bad magic)", Refused([0x7F, (byte)'E', (byte)'L', (byte)'F', .. good[4..]]));
        Assert.Equal("not a Jitvmx region object (bad magic)", Refused([]));
        Assert.StartsWith("truncated region object", Refused(good[..30]));
        Assert.StartsWith("truncated region object", Refused(good[..^1]));
        Assert.StartsWith("corrupt region object", Refused([.. good, 0]));

        byte[] newer = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(newer.AsSpan(8), RegionObject.FormatVersion + 1);
        Assert.Equal($"region object format version {RegionObject.FormatVersion + 1}; this build reads version {RegionObject.FormatVersion}", Refused(newer));

        // A flipped bit anywhere after the header: in the metadata, in the code.
        foreach (int at in new[] { 60, good.Length / 2, good.Length - 1 })
        {
            byte[] bad = (byte[])good.Clone();
            bad[at] ^= 0x10;
            Assert.Equal("corrupt region object: checksum mismatch", Refused(bad));
        }
    }
}
