// SPDX-License-Identifier: MIT
namespace Jitvmx.Tests.Engine;

/// <summary>Random bytes as guest code must end in guest exceptions or exits: never a host crash or hang.</summary>
public class RandomCodeTests
{
    public static TheoryData<int> Seeds()
    {
        var d = new TheoryData<int>();
        for (int i = 0; i < 8; i++) d.Add(1000 + i);
        return d;
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void RandomBytesEndInExitsOrExceptions(int seedBase)
    {
        long retired = 0, translated = 0;
        for (int k = 0; k < 150; k++)
        {
            int seed = seedBase * 1000 + k;
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
            cpu.Controls.ExceptionBitmap = (uint)rng.Next(); // some exceptions exit, the rest go through a garbage IDT
            try
            {
                // Handle up to 50 exits like a forgiving VMM: skip what can be skipped, stop at the rest.
                for (int exits = 0; exits < 50; exits++)
                {
                    var exit = cpu.Run(20_000);
                    if (exit.InstructionLength > 0 && exit.Reason is not ExitReason.ExceptionOrNmi)
                    {
                        cpu.SkipInstruction();
                        continue;
                    }
                    break;
                }
            }
            catch (Exception e)
            {
                Assert.Fail($"host exception for seed {seed}: {e}");
            }
            retired += (long)cpu.InstructionsRetired;
            translated += vm.Statistics.InstructionsTranslated;
            Assert.True(vm.Statistics.LifterErrors.Count == 0,
                $"lifter errors for seed {seed}:\n{string.Join("\n", vm.Statistics.LifterErrors)}");
        }
        // The programs must really run: random code averages several instructions before its first fault.
        Assert.True(translated > 150 * 3, $"only {translated} instructions translated, {retired} retired");
    }
}
