// SPDX-License-Identifier: MIT
using System.Reflection;
using Iced.Intel;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// The entry point of this assembly run as a program (<c>dotnet Jitvmx.Llvm.Tests.dll emit-region PROGRAM FILE</c>):
/// the process that compiles a region in <see cref="CrossProcessTests"/>. It builds the guest, registers
/// a few helpers of its own first (so its helper numbers are not the test process's), compiles the
/// entry region to a region object file, prints the helper numbers it used, and exits.
/// </summary>
public static class ChildProcess
{
    /// <summary>Guest programs the child can build, by name.</summary>
    internal static readonly Dictionary<string, Action<Assembler>> Programs = new()
    {
        ["crc"] = CrossProcessTests.CrcProgram,
        ["loadstore"] = ProgramTests.LoadStoreLoop,
    };

    public static int Main(string[] args)
    {
        if (args is not ["emit-region", var name, var file] || !Programs.TryGetValue(name, out var program))
        {
            Console.Error.WriteLine("usage: Jitvmx.Llvm.Tests emit-region crc|loadstore FILE");
            return 2;
        }
        foreach (var m in typeof(ChildProcess).GetMethods(BindingFlags.Static | BindingFlags.NonPublic).Where(m => m.Name.StartsWith("Unused", StringComparison.Ordinal)))
            Helpers.Register(m, pure: true);
        using var g = new TestGuest(program);
        var obj = RegionObject.Compile(g.Cpu, TestGuest.CodeBase, LlvmOptLevel.O2);
        File.WriteAllBytes(file, obj.ToBytes());
        foreach (var h in obj.Helpers)
            Console.WriteLine($"helper {h.Symbol} {(Helpers.TryResolveSymbol(h.Symbol, h.Pure, out int id, out string? why) ? id : why)}");
        return 0;
    }

    // Registered before anything else in the child, so registration numbers differ from the test process's.
    private static ulong Unused1(ulong a) => a;
    private static ulong Unused2(ulong a) => a + 1;
    private static ulong Unused3(ulong a) => a + 2;
}
