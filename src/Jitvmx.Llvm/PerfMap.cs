// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Text;

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
internal static unsafe class PerfMap
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

    /// <summary>st_size of function <paramref name="symbol"/> in an ELF64 little-endian object; null when not found.</summary>
    internal static ulong? SymbolSize(ReadOnlySpan<byte> elf, string symbol)
    {
        if (elf.Length < 64 || elf[0] != 0x7F || elf[1] != (byte)'E' || elf[4] != 2 || elf[5] != 1) return null;
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(elf[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3A..]), shnum = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3C..]);
        byte[] name = Encoding.UTF8.GetBytes(symbol);
        for (int i = 0; i < shnum; i++)
        {
            var sh = elf.Slice(checked((int)shoff + i * shentsize), shentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != 2) continue; // SHT_SYMTAB
            ulong off = BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]), size = BinaryPrimitives.ReadUInt64LittleEndian(sh[0x20..]);
            ulong entsize = BinaryPrimitives.ReadUInt64LittleEndian(sh[0x38..]);
            var strtab = elf.Slice(checked((int)shoff + (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]) * shentsize), shentsize);
            var strings = elf.Slice((int)BinaryPrimitives.ReadUInt64LittleEndian(strtab[0x18..]), (int)BinaryPrimitives.ReadUInt64LittleEndian(strtab[0x20..]));
            for (ulong s = 0; entsize > 0 && s + entsize <= size; s += entsize)
            {
                var sym = elf.Slice((int)(off + s), (int)entsize);
                if ((sym[4] & 0xF) != 2) continue; // STT_FUNC (the FILE symbol has the same name)
                var rest = strings[(int)BinaryPrimitives.ReadUInt32LittleEndian(sym)..];
                int end = rest.IndexOf((byte)0);
                if (end >= 0 && rest[..end].SequenceEqual(name)) return BinaryPrimitives.ReadUInt64LittleEndian(sym[0x10..]);
            }
        }
        return null;
    }
}
