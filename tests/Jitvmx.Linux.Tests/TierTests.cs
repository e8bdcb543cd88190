// SPDX-License-Identifier: MIT
namespace Jitvmx.Linux.Tests;

/// <summary>
/// Whole programs under each single tier: the default (<c>auto</c>) runs most code in the
/// interpreter and only hot regions in the IL tier, so both are also run on their own, and
/// reads and writes that fault on the host under the LLVM tier alone.
/// </summary>
public class TierTests
{
    public static TheoryData<string, string, string[]> Programs()
    {
        var d = new TheoryData<string, string, string[]>();
        foreach (var tier in new[] { "interp", "il" })
        {
            d.Add(tier, "linux/hello", []);
            d.Add(tier, "linux/strings", []);
            d.Add(tier, "linux/sort", []);
            d.Add(tier, "linux/fpmath", ["2.5e-3"]);
            d.Add(tier, "linux-musl/heap", []);
            d.Add(tier, "linux-musl/floats", []);
            d.Add(tier, "linux/die_segv", []);
        }
        // LLVM code reads guest memory with plain loads and takes host faults to its slow path.
        foreach (string mode in new[] { "none", "unmapped", "prot_none", "edge", "high", "huge" })
            d.Add("llvm", "linux/read_fault", [mode]);
        // And writes with plain stores: host faults where the guest may not write and on pages holding code.
        foreach (string mode in new[] { "none", "readonly", "unmapped", "edge", "high", "huge", "code" })
            d.Add("llvm", "linux/write_fault", [mode]);
        return d;
    }

    [Theory]
    [MemberData(nameof(Programs))]
    public void SameOutputAsNative(string tier, string program, string[] args)
    {
        string[] parts = program.Split('/');
        string path = GuestRunner.Program(parts[0], parts[1]);
        var native = GuestRunner.Native(path, args);
        var jit = GuestRunner.Jitvmx(["--tier", tier, path, .. args]);
        string err = jit.Stderr;
        int at = err.LastIndexOf("jitvmx: guest terminated by ", StringComparison.Ordinal);
        if (at >= 0) err = err[..at];
        Assert.Equal(native.Stdout, jit.Stdout);
        Assert.Equal(native.Stderr, err);
        Assert.Equal(native.Status, jit.Status);
    }

    [Fact]
    public void BusyboxUnderTheInterpreterAlone()
    {
        using var dir = new TempDir();
        string input = Path.Combine(dir.Path, "in.txt");
        File.WriteAllText(input, string.Join('\n', Enumerable.Range(0, 3000).Select(i => $"line {i * 7919 % 3001} {i}")) + "\n");
        foreach (string[] cmd in new[] { new[] { "sha256sum", input }, ["sort", "-n", "-k2", input], ["wc", input] })
        {
            var native = GuestRunner.Native("/bin/busybox", cmd);
            var jit = GuestRunner.Jitvmx(["--tier", "interp", "/bin/busybox", .. cmd]);
            Assert.Equal(native, jit);
        }
    }
}
