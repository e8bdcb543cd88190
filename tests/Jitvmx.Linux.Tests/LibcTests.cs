// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux.Tests;

/// <summary>
/// The C library programs of native/linux, built with glibc (native/build/linux) and musl
/// (native/build/linux-musl), natively and under Jitvmx: same stdout, stderr and status.
/// </summary>
public class LibcTests
{
    public static TheoryData<string, string, string[]> Programs()
    {
        var d = new TheoryData<string, string, string[]>();
        foreach (var libc in new[] { "linux", "linux-musl" })
        {
            d.Add(libc, "hello", []);
            d.Add(libc, "args", ["one", "two words", "", "-x"]);
            d.Add(libc, "exitcode", ["0"]);
            d.Add(libc, "exitcode", ["1"]);
            d.Add(libc, "exitcode", ["42"]);
            d.Add(libc, "exitcode", ["255"]);
            d.Add(libc, "exitcode", ["7", "no-flush"]);
            d.Add(libc, "heap", []);
            d.Add(libc, "sort", []);
            d.Add(libc, "strings", []);
            d.Add(libc, "timecheck", []);
            d.Add(libc, "jump", []);
            d.Add(libc, "random", []);
            d.Add(libc, "madvise", []);
            d.Add(libc, "floats", []);
            d.Add(libc, "fpmath", []);
            d.Add(libc, "fpmath", ["2.5e-3"]);
            d.Add(libc, "fpmath", ["1234.5678"]);
            d.Add(libc, "die_segv", []);
            d.Add(libc, "die_ill", []);
            d.Add(libc, "die_fpe", []);
            d.Add(libc, "die_abort", []);
            foreach (string mode in new[] { "none", "unmapped", "prot_none", "edge", "high", "huge" })
                d.Add(libc, "read_fault", [mode]);
            foreach (string mode in new[] { "none", "readonly", "unmapped", "edge", "high", "huge", "code" })
                d.Add(libc, "write_fault", [mode]);
        }
        return d;
    }

    [Theory]
    [MemberData(nameof(Programs))]
    public void SameOutputAsNative(string libc, string program, string[] args) =>
        GuestRunner.Compare(GuestRunner.Program(libc, program), args, env: new Dictionary<string, string> { ["JVT_ONE"] = "1" });

    [Theory]
    [InlineData("linux")]
    [InlineData("linux-musl")]
    public void ScanfFromStdin(string libc) =>
        GuestRunner.Compare(GuestRunner.Program(libc, "sum_stdin"), [], stdin: string.Join(' ', Enumerable.Range(-50, 400)) + "\n");

    [Theory]
    [InlineData("linux")]
    [InlineData("linux-musl")]
    public void FilesAndDirectories(string libc)
    {
        using var a = new TempDir();
        using var b = new TempDir();
        string program = GuestRunner.Program(libc, "files");
        var native = GuestRunner.Native(program, [a.Path], null, null);
        var jit = GuestRunner.Jitvmx([program, b.Path]);
        Assert.Equal(native, jit);
    }
}
