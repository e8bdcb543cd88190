// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux.Tests;

/// <summary>Inputs jitvmx run refuses, each with one line on stderr and a non-zero status.</summary>
public class BadInputTests
{
    private static void Refused(RunResult r, string message)
    {
        Assert.NotEqual(0, r.Status);
        Assert.Equal("", r.Stdout);
        string first = r.Stderr.Split('\n')[0];
        Assert.StartsWith("jitvmx: ", first);
        Assert.Contains(message, first);
    }

    private static string Write(TempDir d, string name, byte[] bytes)
    {
        string path = Path.Combine(d.Path, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] ElfHeader(byte cls, ushort machine, ushort type = 2)
    {
        var h = new byte[64];
        h[0] = 0x7F; h[1] = (byte)'E'; h[2] = (byte)'L'; h[3] = (byte)'F';
        h[4] = cls; h[5] = 1; h[6] = 1;
        BitConverter.TryWriteBytes(h.AsSpan(16), type);
        BitConverter.TryWriteBytes(h.AsSpan(18), machine);
        return h;
    }

    [Fact]
    public void MissingFile() => Refused(GuestRunner.Jitvmx(["/nonexistent/program"]), "/nonexistent/program: no such file");

    [Fact]
    public void NotElf()
    {
        using var d = new TempDir();
        Refused(GuestRunner.Jitvmx([Write(d, "script.sh", "#!/bin/sh\necho hi\n"u8.ToArray())]), "not an ELF file");
        Refused(GuestRunner.Jitvmx([Write(d, "empty", [])]), "not an ELF file");
    }

    [Fact]
    public void Elf32()
    {
        using var d = new TempDir();
        Refused(GuestRunner.Jitvmx([Write(d, "i386", ElfHeader(1, 3))]), "32-bit ELF executables are not supported");
    }

    [Fact]
    public void NotX86()
    {
        using var d = new TempDir();
        Refused(GuestRunner.Jitvmx([Write(d, "arm64", ElfHeader(2, 183))]), "not an x86-64 ELF (e_machine 183)");
    }

    [Fact]
    public void NotExecutable()
    {
        using var d = new TempDir();
        Refused(GuestRunner.Jitvmx([Write(d, "object.o", ElfHeader(2, 62, type: 1))]), "not an executable (ELF type 1)");
    }

    [Fact]
    public void DynamicallyLinked()
    {
        // The test host itself (dotnet) is a dynamically linked x86-64 program.
        string dotnet = Environment.ProcessPath!;
        Refused(GuestRunner.Jitvmx([dotnet]), "dynamically linked programs are not supported yet: PT_INTERP /");
    }

    [Fact]
    public void Directory() => Refused(GuestRunner.Jitvmx([Path.GetTempPath()]), "is a directory");

    [Fact]
    public void Usage()
    {
        Refused(GuestRunner.Jitvmx([]), "no program given");
        Refused(GuestRunner.Jitvmx(["--bogus", "x"]), "unknown option '--bogus'");
        Refused(GuestRunner.Jitvmx(["--tier", "jit", "x"]), "unknown tier 'jit'");
    }
}
