// SPDX-License-Identifier: MIT
using System.Text;
using Iced.Intel;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// LLVM's code cache (<see cref="CodeCache"/>): a second compilation of the same IR takes the stored
/// object, renamed for this compilation, and runs as the compiled code does; damaged files are dropped.
/// In the background tier's collection: it points the process's cache elsewhere while it runs, and the
/// tier-profile tests count loads from the cache.
/// </summary>
[Collection(BackgroundTier.Collection)]
public sealed class CodeCacheTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "jitvmx-code-cache-" + Guid.NewGuid().ToString("N"));
    private readonly string? _was = CodeCache.Directory;

    public CodeCacheTests() => CodeCache.Directory = _dir;

    public void Dispose()
    {
        CodeCache.Directory = _was;
        try { Directory.Delete(_dir, recursive: true); }
        catch (DirectoryNotFoundException) { }
    }

    private static void Loop(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rsi, TestGuest.RamBase);
        a.mov(ecx, 200);
        a.xor(eax, eax);
        a.Label(ref loop);
        a.add(rax, __qword_ptr[rsi + rcx * 8]);
        a.imul(rax, rax, 3);
        a.mov(__qword_ptr[rsi + rcx * 8 + 0x2000], rax);
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
    }

    [Fact]
    public void TheSecondCompilationOfTheSameRegionTakesTheStoredObjectAndRunsTheSame()
    {
        using (var g = new TestGuest(Loop))
        {
            var ir = Translator.Translate(g.Cpu, TestGuest.CodeBase, RegionLimits.Default, out _)!;
            Passes.Run(ir);
            Assert.True(LlvmBackend.TryCompile(ir, LlvmOptLevel.O2, out _, out string? reason, out var first), reason);
            Assert.False(first.Cached);
            Assert.NotEmpty(Directory.GetFiles(_dir, "*.o"));
            Assert.True(LlvmBackend.TryCompile(ir, LlvmOptLevel.O2, out _, out reason, out var second), reason);
            Assert.True(second.Cached);
            // Another level is other code.
            Assert.True(LlvmBackend.TryCompile(ir, LlvmOptLevel.O1, out _, out reason, out var other), reason);
            Assert.False(other.Cached);
        }
        // Compiled and stored, then installed from the stored object: both end as the IL tier does.
        var (_, compiled) = Tiers.Compare(Loop, g => g.Cpu.Run());
        long hits = CodeCache.Hits;
        var (_, loaded) = Tiers.Compare(Loop, g => g.Cpu.Run());
        Assert.True(CodeCache.Hits > hits);
        Assert.Equal(ExitReason.Hlt, loaded.Exit.Reason);
        Tiers.Same(compiled, loaded);
    }

    [Fact]
    public void AStoredObjectIsRenamedAndADamagedOneIsDropped()
    {
        string oldName = "region_1000_0000002a", newName = "region_1000_000000ff";
        byte[] obj = Encoding.ASCII.GetBytes($"\u007fELF....{oldName}....{oldName}_links....");
        string key = CodeCache.Key("define i32 @" + oldName + "(ptr %0)", oldName, "O2");
        // Another name for the same IR is the same key.
        Assert.Equal(key, CodeCache.Key("define i32 @" + newName + "(ptr %0)", newName, "O2"));
        Assert.NotEqual(key, CodeCache.Key("define i32 @" + newName + "(ptr %0)", newName, "O1"));

        CodeCache.Store(key, oldName, obj);
        byte[]? back = CodeCache.TryLoad(key, newName);
        Assert.NotNull(back);
        Assert.Equal($"\u007fELF....{newName}....{newName}_links....", Encoding.ASCII.GetString(back));

        string path = Path.Combine(_dir, key + ".o");
        byte[] file = File.ReadAllBytes(path);
        file[10] ^= 1;
        File.WriteAllBytes(path, file);
        Assert.Null(CodeCache.TryLoad(key, newName));
        Assert.False(File.Exists(path));

        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Null(CodeCache.TryLoad(key, newName));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void TrimmingDropsTheLeastRecentlyUsedFirst()
    {
        // Its own directory: tests running meanwhile may store in the cache's.
        string dir = Path.Combine(_dir, "trim");
        Directory.CreateDirectory(dir);
        var now = DateTime.UtcNow;
        for (int i = 0; i < 4; i++)
        {
            string path = Path.Combine(dir, $"{i}.o");
            File.WriteAllBytes(path, new byte[1000]);
            File.SetLastWriteTimeUtc(path, now.AddMinutes(i == 1 ? 10 : -i)); // 1 was used last, 3 least
        }
        CodeCache.Trim(dir, max: 5000, to: 3000);
        Assert.Equal(4, Directory.GetFiles(dir, "*.o").Length); // under the limit: nothing goes
        CodeCache.Trim(dir, max: 3500, to: 2000);
        Assert.Equal(["0.o", "1.o"], Directory.GetFiles(dir, "*.o").Select(Path.GetFileName).Order());
    }

    [Fact]
    public void WithoutADirectoryNothingIsStoredOrFound()
    {
        CodeCache.Directory = null;
        CodeCache.Store("00", "region_1000_00000001", Encoding.ASCII.GetBytes("region_1000_00000001"));
        Assert.Null(CodeCache.TryLoad("00", "region_1000_00000001"));
        Assert.False(Directory.Exists(_dir));
    }
}
