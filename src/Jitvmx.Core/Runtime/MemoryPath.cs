// SPDX-License-Identifier: MIT
using System.Reflection;

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
