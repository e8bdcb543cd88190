// SPDX-License-Identifier: MIT
using System.Security.Cryptography;
using System.Text;

namespace Jitvmx.Llvm;

/// <summary>
/// Object code of LLVM compilations kept on disk and reused by later processes, so that a program run
/// again does not wait for LLVM to compile its hot code again (optimisation and code generation are
/// 90 % of a compilation, and on two cores the guest runs slower code meanwhile).
/// <para>
/// The key is a SHA-256 over the lowered LLVM IR (before optimisation, with the function's name taken
/// out), the optimisation level, how reads are checked, the host CPU and its features, LLVM's version
/// and the build of this assembly: the same IR through the same compiler gives the same object, so a hit
/// needs no further check of the guest. Lowering still runs on a hit (1–10 ms of a 30–300 ms compilation).
/// The function's name is unique per process; the stored object has a placeholder of the same length in
/// its place, which a hit replaces with the new name. Each file ends with a SHA-256 of what precedes it,
/// and one that is short or does not match is deleted and compiled afresh.
/// </para>
/// <para>
/// The directory is <c>JITVMX_CACHE_DIR</c>, else <c>$XDG_CACHE_HOME/jitvmx/llvm</c>, else
/// <c>~/.cache/jitvmx/llvm</c>; <c>JITVMX_CACHE=0</c> turns the cache off. Files are written under a
/// temporary name and renamed, so processes sharing the directory never read half a file. A hit marks
/// its file as used; a process's first store, and every 1024th after it, trims the directory to
/// <see cref="TrimTo"/> bytes, least recently used first, when it holds more than <see cref="MaxBytes"/>.
/// </para>
/// </summary>
internal static class CodeCache
{
    /// <summary>The directory in use, or null when the cache is off or cannot be created.</summary>
    public static string? Directory { get; set; } = DefaultDirectory();

    private static long s_hits, s_stores;
    private static int s_storing;

    // A process checks the directory's size at its first store and at every TrimEvery-th after it.
    private const int TrimEvery = 1024;

    /// <summary>Bytes of objects above which the directory is trimmed.</summary>
    public const long MaxBytes = 256L << 20;

    /// <summary>What trimming leaves.</summary>
    public const long TrimTo = 192L << 20;

    /// <summary>Compilations taken from the cache in this process.</summary>
    public static long Hits => Interlocked.Read(ref s_hits);

    /// <summary>Objects written to the cache by this process.</summary>
    public static long Stores => Interlocked.Read(ref s_stores);

    private static string? DefaultDirectory()
    {
        if (Environment.GetEnvironmentVariable("JITVMX_CACHE") == "0") return null;
        string? dir = Environment.GetEnvironmentVariable("JITVMX_CACHE_DIR");
        if (string.IsNullOrEmpty(dir))
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string? home = Environment.GetEnvironmentVariable("HOME");
            if (!string.IsNullOrEmpty(xdg)) dir = Path.Combine(xdg, "jitvmx", "llvm");
            else if (!string.IsNullOrEmpty(home)) dir = Path.Combine(home, ".cache", "jitvmx", "llvm");
            else return null;
        }
        return dir;
    }

    // Changes with every build of this assembly: lowering, pass pipelines and code-generation options all live here.
    private static readonly string s_build = typeof(CodeCache).Assembly.ManifestModule.ModuleVersionId.ToString();

    /// <summary>
    /// The key of compiling <paramref name="irText"/> (the lowered module, printed) whose function is
    /// <paramref name="name"/>, with the settings that shape the object.
    /// </summary>
    public static string Key(string irText, string name, string settings)
    {
        var jit = LlvmJit.Instance;
        var text = new StringBuilder();
        text.Append("jitvmx-llvm-object 1\n").Append(s_build).Append('\n').Append(jit.Version).Append('\n').Append(jit.Triple).Append('\n')
            .Append(jit.HostCpu).Append('\n').Append(jit.HostFeatures).Append('\n').Append(settings).Append('\n')
            .Append(irText.Replace(name, Placeholder(name), StringComparison.Ordinal));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>What stands for <paramref name="name"/> in a stored object: as long, and not a name a process gives.</summary>
    private static string Placeholder(string name) => name.Length > 8 ? name[..^8] + "cachedxx" : throw new ArgumentException("name too short", nameof(name));

    /// <summary>The stored object for <paramref name="key"/>, its function renamed to <paramref name="name"/>; null when there is none (or it was damaged).</summary>
    public static byte[]? TryLoad(string key, string name)
    {
        if (Directory is not { } dir) return null;
        string path = Path.Combine(dir, key + ".o");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        const int Tail = 32;
        if (bytes.Length <= Tail || !SHA256.HashData(bytes.AsSpan(0, bytes.Length - Tail)).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - Tail)))
        {
            TryDelete(path);
            return null;
        }
        byte[] obj = bytes[..^Tail];
        if (Rename(obj, Placeholder(name), name) == 0)
        {
            TryDelete(path);
            return null;
        }
        Interlocked.Increment(ref s_hits);
        try { File.SetLastWriteTimeUtc(path, DateTime.UtcNow); } // used: trimmed last
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return obj;
    }

    /// <summary>Stores <paramref name="obj"/> (whose function is <paramref name="name"/>) under <paramref name="key"/>; failures only cost the next process a compilation.</summary>
    public static void Store(string key, string name, ReadOnlySpan<byte> obj)
    {
        if (Directory is not { } dir) return;
        byte[] bytes = new byte[obj.Length + 32];
        obj.CopyTo(bytes);
        if (Rename(bytes.AsSpan(0, obj.Length), name, Placeholder(name)) == 0) return;
        SHA256.HashData(bytes.AsSpan(0, obj.Length), bytes.AsSpan(obj.Length));
        string path = Path.Combine(dir, key + ".o");
        string temp = $"{path}.{Environment.ProcessId}.{Environment.CurrentManagedThreadId}.tmp";
        try
        {
            System.IO.Directory.CreateDirectory(dir);
            if ((Interlocked.Increment(ref s_storing) & (TrimEvery - 1)) == 1) Trim(dir, MaxBytes, TrimTo);
            File.WriteAllBytes(temp, bytes);
            File.Move(temp, path, overwrite: true);
            Interlocked.Increment(ref s_stores);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
        }
    }

    /// <summary>Deletes the least recently used objects in <paramref name="dir"/> down to <paramref name="to"/> bytes when it holds more than <paramref name="max"/>.</summary>
    internal static void Trim(string dir, long max, long to)
    {
        var files = new DirectoryInfo(dir).GetFiles("*.o");
        long total = files.Sum(f => f.Length);
        if (total <= max) return;
        foreach (var f in files.OrderBy(f => f.LastWriteTimeUtc))
        {
            if (total <= to) break;
            long length = f.Length;
            try
            {
                f.Delete();
                total -= length;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>Replaces every occurrence of <paramref name="from"/> in <paramref name="obj"/> by <paramref name="to"/> (as long); returns how many.</summary>
    internal static int Rename(Span<byte> obj, string from, string to)
    {
        byte[] a = Encoding.ASCII.GetBytes(from), b = Encoding.ASCII.GetBytes(to);
        if (a.Length != b.Length) throw new ArgumentException("names differ in length");
        int count = 0;
        for (int at = 0; ;)
        {
            int i = obj[at..].IndexOf(a);
            if (i < 0) return count;
            b.CopyTo(obj[(at + i)..]);
            at += i + a.Length;
            count++;
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
