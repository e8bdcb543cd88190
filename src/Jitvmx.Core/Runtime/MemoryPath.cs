// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.Intrinsics;

namespace Jitvmx.Runtime;

/// <summary>
/// The slow path of guest memory access, called by translated code when the inline TLB check
/// misses: translates the address, checks permissions, fills the TLB, performs the access, or
/// records the exit (EPT violation) and tells the region to stop with RIP at the instruction.
/// </summary>
internal static unsafe class MemoryPath
{
    public static readonly MethodInfo LoadMethod = typeof(MemoryPath).GetMethod(nameof(Load))!;
    public static readonly MethodInfo StoreMethod = typeof(MemoryPath).GetMethod(nameof(Store))!;
    public static readonly MethodInfo Load128Method = typeof(MemoryPath).GetMethod(nameof(Load128))!;
    public static readonly MethodInfo Store128Method = typeof(MemoryPath).GetMethod(nameof(Store128))!;

    /// <summary>Loads 16 bytes (as two 8-byte accesses, both checked first).</summary>
    public static System.Runtime.Intrinsics.Vector128<byte> Load128(CpuContext* ctx, ulong address, ulong rip, int giveBack)
    {
        var cpu = VirtualCpu.FromContext(ctx);
        ulong lo = cpu.SlowLoad(address, 8, rip, giveBack);
        if (ctx->Pending != 0) return default;
        ulong hi = cpu.SlowLoad(address + 8, 8, rip, giveBack);
        return System.Runtime.Intrinsics.Vector128.Create(lo, hi).AsByte();
    }

    /// <summary>Stores 16 bytes; nothing is written unless all 16 bytes are writable.</summary>
    public static void Store128(CpuContext* ctx, ulong address, System.Runtime.Intrinsics.Vector128<byte> value, ulong rip, int giveBack)
    {
        var cpu = VirtualCpu.FromContext(ctx);
        var q = value.AsUInt64();
        if (!cpu.CheckWritable(address, 16, q.GetElement(0), rip, giveBack)) return;
        cpu.SlowStore(address, 8, q.GetElement(0), rip, giveBack);
        if (ctx->Pending != 0) return;
        cpu.SlowStore(address + 8, 8, q.GetElement(1), rip, giveBack);
    }

    /// <summary>Loads <paramref name="size"/> bytes (1, 2, 4, 8); on a fault returns 0 with ctx->Pending set.</summary>
    public static ulong Load(CpuContext* ctx, ulong address, int size, ulong rip, int giveBack)
    {
        var cpu = VirtualCpu.FromContext(ctx);
        return cpu.SlowLoad(address, size, rip, giveBack);
    }

    /// <summary>Stores the low <paramref name="size"/> bytes of <paramref name="value"/>; on a fault or restart sets ctx->Pending.</summary>
    public static void Store(CpuContext* ctx, ulong address, int size, ulong value, ulong rip, int giveBack)
    {
        var cpu = VirtualCpu.FromContext(ctx);
        cpu.SlowStore(address, size, value, rip, giveBack);
    }
}
