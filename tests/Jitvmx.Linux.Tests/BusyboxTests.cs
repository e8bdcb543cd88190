// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux.Tests;

/// <summary>
/// Debian's busybox-static (installed by the build) under Jitvmx: every applet's stdout, stderr
/// and status must be identical to the native run, on inputs prepared in a fresh directory.
/// </summary>
public class BusyboxTests
{
    private static string Busybox
    {
        get
        {
            foreach (var p in new[] { "/bin/busybox", "/usr/bin/busybox" })
                if (File.Exists(p)) return p;
            throw new InvalidOperationException("busybox is not installed: ./build.sh installs Debian's busybox-static (apt-get install busybox-static)");
        }
    }

    private static void Prepare(string dir)
    {
        File.WriteAllLines(Path.Combine(dir, "nums.txt"), Enumerable.Range(1, 3000).Select(i => ((i * 7919) % 3001).ToString()));
        File.WriteAllText(Path.Combine(dir, "words.txt"), "pear\napple\nfig\napple\nkiwi\npear\npear\nbanana\n");
        File.WriteAllText(Path.Combine(dir, "kv.txt"), "x 3\ny 4\nx 5\nz -2.5\ny 1e3\n");
        Directory.CreateDirectory(Path.Combine(dir, "tree", "sub", "deep"));
        File.WriteAllText(Path.Combine(dir, "tree", "a.txt"), "a");
        File.WriteAllText(Path.Combine(dir, "tree", "sub", "b.txt"), "bb");
        File.WriteAllText(Path.Combine(dir, "tree", "sub", "deep", "c.txt"), "ccc");
    }

    public static TheoryData<string[], string?> Applets() => new()
    {
        { ["sha256sum", "nums.txt", "words.txt"], null },
        { ["md5sum", "nums.txt"], null },
        { ["sort", "-n", "nums.txt"], null },
        { ["sort", "-r", "-u", "words.txt"], null },
        { ["uniq", "-c", "words.txt"], null },
        { ["wc", "nums.txt", "words.txt"], null },
        { ["awk", "{ s[$1] += $2; n++ } END { for (k in s) printf \"%s %.2f\\n\", k, s[k]; print n, NR / 2 }", "kv.txt"], null },
        { ["sed", "-e", "s/p\\(.\\)/<\\1>/g", "-e", "/fig/d", "words.txt"], null },
        { ["grep", "-E", "-n", "^(1[0-9]+5|2{2,}[0-9])$", "nums.txt"], null },
        { ["od", "-A", "x", "-t", "x1z", "words.txt"], null },
        { ["tr", "a-z", "A-Z"], "hello, world\nsecond line\n" },
        { ["cut", "-c", "2-3", "words.txt"], null },
        { ["seq", "1", "0.25", "3"], null },
        { ["seq", "-w", "8", "12"], null },
        { ["expr", "7", "*", "6", "+", "3"], null },
        { ["ls", "-1", "-R", "tree"], null },
        { ["cat", "words.txt", "kv.txt"], null },
        { ["head", "-n", "4", "nums.txt"], null },
        { ["tail", "-n", "3", "nums.txt"], null },
        { ["find", "tree", "-name", "*.txt"], null },
        { ["bzip2", "-c", "words.txt"], null },
    };

    [Theory]
    [MemberData(nameof(Applets))]
    public void AppletMatchesNative(string[] args, string? stdin)
    {
        using var a = new TempDir();
        using var b = new TempDir();
        Prepare(a.Path);
        Prepare(b.Path);
        var native = GuestRunner.Native(Busybox, args, stdin, cwd: a.Path);
        var jit = GuestRunner.Jitvmx([Busybox, .. args], stdin, cwd: b.Path);
        Assert.Equal(native, jit);
    }

    [Fact]
    public void GzipRoundTripMatchesNative()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        Prepare(a.Path);
        Prepare(b.Path);
        Assert.Equal(0, GuestRunner.Native(Busybox, ["gzip", "-9", "nums.txt"], cwd: a.Path).Status);
        Assert.Equal(0, GuestRunner.Jitvmx([Busybox, "gzip", "-9", "nums.txt"], cwd: b.Path).Status);
        // The compressed files are byte for byte the same, and decompress to the original.
        Assert.Equal(File.ReadAllBytes(Path.Combine(a.Path, "nums.txt.gz")), File.ReadAllBytes(Path.Combine(b.Path, "nums.txt.gz")));
        var back = GuestRunner.Jitvmx([Busybox, "gunzip", "-c", "nums.txt.gz"], cwd: b.Path);
        Assert.Equal(0, back.Status);
        Assert.Equal(GuestRunner.Native(Busybox, ["gunzip", "-c", "nums.txt.gz"], cwd: a.Path).Stdout, back.Stdout);
    }
}
