// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux.Tests;

/// <summary>
/// Programs without a C library (native/linux-nolibc): integer instructions only, so they run on
/// today's engine and test the loader, the initial stack, the system calls and the signals.
/// </summary>
public class NoLibcTests
{
    private static readonly Dictionary<string, string> Env = new() { ["JVT_ONE"] = "1", ["JVT_TWO"] = "two words" };

    [Theory]
    [InlineData("linux-nolibc", new string[0])]
    [InlineData("linux-nolibc", new[] { "42", "second arg", "" })]
    [InlineData("linux-nolibc", new[] { "255" })]
    [InlineData("linux-nolibc-pie", new[] { "3", "pie" })]
    public void InitialStateAndExitStatus(string dir, string[] args) =>
        GuestRunner.Compare(GuestRunner.Program(dir, "hello"), args, env: Env);

    [Fact]
    public void AddressSpaceFilesTimeIdentity()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        var native = GuestRunner.Native(GuestRunner.Program("linux-nolibc", "memory"), [a.Path], null, null);
        var jit = GuestRunner.Jitvmx([GuestRunner.Program("linux-nolibc", "memory"), b.Path]);
        Assert.Equal(0, native.Status);
        Assert.Equal(native.Stdout, jit.Stdout);
        Assert.Equal(native.Stderr, jit.Stderr);
        Assert.Equal(native.Status, jit.Status);
        Assert.DoesNotContain("failed", jit.Stdout);
    }

    [Theory]
    [InlineData("segv", 139)]
    [InlineData("ill", 132)]
    [InlineData("fpe", 136)]
    [InlineData("abort", 134)]
    [InlineData("exec-stack", 139)]
    [InlineData("write-text", 139)]
    [InlineData("ignored", 3)]
    public void Deaths(string how, int status)
    {
        var r = GuestRunner.Compare(GuestRunner.Program("linux-nolibc", "die"), [how]);
        Assert.Equal(status, r.Status);
    }

    [Fact]
    public void StraceAndStats()
    {
        var r = GuestRunner.Jitvmx(["--strace", "--stats", GuestRunner.Program("linux-nolibc", "hello"), "5"]);
        Assert.Equal(5, r.Status);
        Assert.Contains("write(1, \"hello from a program without lib\"..., 34) = 34\n", r.Stderr);
        Assert.Contains("exit_group(5) = ?\n+++ exited with 5 +++\n", r.Stderr);
        Assert.Contains("guest instructions executed", r.Stderr);
        Assert.Matches(@"syscalls by name:\n\s+write\s+\d+", r.Stderr);
        Assert.Matches(@"Syscall\s+\d+", r.Stderr);
    }

    [Fact]
    public void StraceShowsErrors()
    {
        using var d = new TempDir();
        var r = GuestRunner.Jitvmx(["--strace", GuestRunner.Program("linux-nolibc", "memory"), d.Path]);
        Assert.Equal(0, r.Status);
        Assert.Contains("openat(AT_FDCWD, \"missing\", 0x0, 00) = -1 ENOENT (", r.Stderr);
        Assert.Contains("syscall_1000(", r.Stderr);
        Assert.Contains(") = -1 ENOSYS (", r.Stderr);
        Assert.Matches(@"mmap\(0x0, 1048576, 0x3, 0x22, -1, 0\) = 0x[0-9a-f]+\n", r.Stderr);
    }

    [Theory]
    [InlineData("il", null)]
    [InlineData("llvm", null)]
    [InlineData("auto", null)]
    public void Tiers(string tier, string? note)
    {
        var r = GuestRunner.Jitvmx(["--tier", tier, "--stats", GuestRunner.Program("linux-nolibc", "hello"), "9"]);
        Assert.Equal(9, r.Status);
        Assert.Contains($"tier {tier}: regions translated", r.Stderr);
        if (note is null) Assert.DoesNotContain("jitvmx: note:", r.Stderr);
        else Assert.Contains(note, r.Stderr);
    }
}
