// SPDX-License-Identifier: MIT
namespace Jitvmx.Llvm.Tests;

/// <summary>Random bytes as guest code: the LLVM tier must end every program exactly as the IL tier does.</summary>
public class RandomCodeTests
{
    private sealed record Result(List<(ExitReason, ulong)> Exits, GuestState State, ulong Retired, byte[] Ram, ulong[] Rips);

    private static Result Run(int seed, LlvmOptLevel? level, ulong[]? rips)
    {
        var rng = new Random(seed);
        using var vm = new VirtualMachine();
        var code = new byte[4096];
        rng.NextBytes(code);
        vm.MapMemory(0x1000, 0x1000, MemoryPermissions.All);
        vm.WritePhysical(0x1000, code);
        vm.MapMemory(0x100000, 0x10000, MemoryPermissions.ReadWrite);
        var cpu = vm.CreateCpu();
        for (int r = 0; r < 16; r++) cpu.State[(GuestRegister)r] = rng.Next(4) switch
        {
            0 => 0x100000 + (ulong)rng.Next(0x10000),
            1 => (ulong)rng.NextInt64(),
            2 => 0,
            _ => (ulong)rng.Next(64),
        };
        cpu.State.Rsp = 0x108000;
        cpu.State.Rip = 0x1000 + (ulong)rng.Next(4000);
        cpu.State.Idtr = new DescriptorTableRegister { Base = 0x100000, Limit = 0xFFF };
        cpu.Controls.ExceptionBitmap = (uint)rng.Next();
        // Host time and randomness would make the two runs differ: those instructions exit.
        cpu.Controls.RdtscExiting = cpu.Controls.RdrandExiting = cpu.Controls.RdseedExiting = true;
        if (level is LlvmOptLevel l)
            foreach (ulong rip in rips ?? []) Tiers.Install(vm, cpu, rip, l);
        var exits = new List<(ExitReason, ulong)>();
        for (int n = 0; n < 50; n++)
        {
            var exit = cpu.Run(20_000);
            exits.Add((exit.Reason, exit.Rip));
            if (exit.InstructionLength > 0 && exit.Reason is not ExitReason.ExceptionOrNmi)
            {
                cpu.SkipInstruction();
                continue;
            }
            break;
        }
        return new Result(exits, cpu.State, cpu.InstructionsRetired, vm.GetSpan(0x100000, 0x10000).ToArray(), [.. Tiers.Regions(vm).Keys]);
    }

    [Theory]
    [InlineData(2000, LlvmOptLevel.O0)]
    [InlineData(2001, LlvmOptLevel.O1)]
    [InlineData(2002, LlvmOptLevel.O2)]
    [InlineData(2003, LlvmOptLevel.O2)]
    public void RandomProgramsEndAsUnderTheIlTier(int seedBase, LlvmOptLevel level)
    {
        int compared = 0;
        for (int k = 0; k < 60; k++)
        {
            int seed = seedBase * 1000 + k;
            var il = Run(seed, null, null);
            var ll = Run(seed, level, il.Rips);
            string where = $"seed {seed}";
            Assert.True(il.Exits.SequenceEqual(ll.Exits), $"{where}: exits IL [{string.Join(", ", il.Exits)}] LLVM [{string.Join(", ", ll.Exits)}]");
            Assert.True(il.Retired == ll.Retired, $"{where}: retired {il.Retired} vs {ll.Retired}");
            unsafe
            {
                var a = il.State;
                var b = ll.State;
                for (int r = 0; r < 16; r++)
                    Assert.True(((ulong*)&a)[r] == ((ulong*)&b)[r], $"{where}: GPR {r}: IL 0x{((ulong*)&a)[r]:x} LLVM 0x{((ulong*)&b)[r]:x}");
            }
            Assert.True(il.State.Rip == ll.State.Rip, $"{where}: RIP");
            Assert.True(il.State.Rflags == ll.State.Rflags, $"{where}: RFLAGS IL 0x{il.State.Rflags:x} LLVM 0x{ll.State.Rflags:x}");
            Assert.True(il.Ram.AsSpan().SequenceEqual(ll.Ram), $"{where}: RAM");
            compared += il.Rips.Length;
        }
        Assert.True(compared > 50, $"only {compared} regions"); // random code mostly faults within its first region
    }
}
