// SPDX-License-Identifier: MIT
using ELFSharp.ELF;
using ELFSharp.ELF.Sections;

namespace Jitvmx.Llvm;

/// <summary>
/// JITVMX_PERF_MAP=1 (a profiling aid): names the code of every LLVM-compiled region for Linux
/// <c>perf</c>. Each region's address, size and symbol go to <c>/tmp/perf-PID.map</c>, where
/// <c>perf report</c> looks for the symbols of code it cannot find in a file, and its object to
/// <c>/tmp/jitvmx-perf-PID/SYMBOL.o</c>, so a hot address (offset from the symbol) can be found in
/// <c>objdump -d</c> of the object. With DOTNET_PerfMapEnabled set, the runtime writes that map
/// file itself (JIT-compiled methods and IL-tier regions), so the lines go to
/// <c>/tmp/jitvmx-perf-PID/perf.map</c> instead: append them to the runtime's file when the process
/// has ended, before <c>perf report</c>.
/// </summary>
internal static class PerfMap
{
    /// <summary>Whether JITVMX_PERF_MAP=1.</summary>
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("JITVMX_PERF_MAP") == "1";

    private static readonly Lock s_lock = new();
    private static readonly bool s_runtimeMap = Environment.GetEnvironmentVariable("DOTNET_PerfMapEnabled") is { Length: > 0 } v && v != "0";

    /// <summary>Records the code of <paramref name="symbol"/>, loaded at <paramref name="address"/> from <paramref name="obj"/> (an ELF object).</summary>
    public static void Record(string symbol, nint address, ReadOnlySpan<byte> obj)
    {
        try
        {
            ulong size = SymbolSize(obj, symbol) ?? 1;
            int pid = Environment.ProcessId;
            string dir = $"/tmp/jitvmx-perf-{pid}";
            lock (s_lock)
            {
                Directory.CreateDirectory(dir);
                File.WriteAllBytes(Path.Combine(dir, symbol + ".o"), obj.ToArray());
                File.AppendAllText(s_runtimeMap ? Path.Combine(dir, "perf.map") : $"/tmp/perf-{pid}.map", $"{address:x} {size:x} {symbol}\n");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"jitvmx: JITVMX_PERF_MAP: {e.Message}");
        }
    }

    /// <summary>Size of function <paramref name="symbol"/> in an ELF64 object (ELFSharp reads it); null when not found or not ELF.</summary>
    internal static ulong? SymbolSize(ReadOnlySpan<byte> obj, string symbol)
    {
        using var stream = new MemoryStream(obj.ToArray());
        if (!ELFReader.TryLoad(stream, shouldOwnStream: false, out IELF? elf)) return null;
        using (elf)
            return elf.GetSections<ISymbolTable>().SelectMany(t => t.Entries).OfType<SymbolEntry<ulong>>()
                // The FILE symbol has the function's name too.
                .FirstOrDefault(e => e.Type == SymbolType.Function && e.Name == symbol)?.Size;
    }
}
