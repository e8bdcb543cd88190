// SPDX-License-Identifier: MIT
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// REP STOS and REP MOVS over many pages, where they run in bulk on host memory: the bytes and
/// registers of the element-by-element definition, overlapping copies included, and a copy that
/// runs into an unmapped page stops there with the completed part done.
/// </summary>
public class StringBulkTests
{
    private const ulong Src = GuestBuilder.RamBase, Dst = GuestBuilder.RamBase + 0x40000;

    public static TheoryData<long> Tiers => new() { 0, long.MaxValue };

    private static byte[] Ram(GuestBuilder g)
    {
        var ram = new byte[GuestBuilder.RamSize];
        g.Vm.ReadPhysical(GuestBuilder.RamBase, ram);
        return ram;
    }

    [Theory]
    [MemberData(nameof(Tiers))]
    public void FillAndCopyAcrossPages(long interpreter)
    {
        using var g = new GuestBuilder(a =>
        {
            // A byte pattern over 9 pages and a bit, then copies of it: aligned, misaligned, and
            // forward onto itself 3 bytes on (which repeats the first 3 bytes).
            a.mov(rdi, Src + 5); a.mov(ecx, 9 * 4096 + 123); a.mov(eax, 0x5A); a.rep.stosb();
            a.mov(rdi, Src + 0x10000 + 3); a.mov(ecx, 3000); a.mov(rax, 0x1122334455667788); a.rep.stosq();
            a.mov(rsi, Src + 0x10000); a.mov(rdi, Dst + 1); a.mov(ecx, 3001 * 8 / 4); a.rep.movsd();
            a.mov(rsi, Src + 0x10000 + 3); a.mov(rdi, Src + 0x10000 + 6); a.mov(ecx, 5000); a.rep.movsb();
            a.hlt();
        }, options: new VirtualMachineOptions { InterpreterTierUp = interpreter });
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        var ram = Ram(g);

        var expected = new byte[GuestBuilder.RamSize];
        for (int k = 0; k < 9 * 4096 + 123; k++) expected[5 + k] = 0x5A;
        for (int k = 0; k < 3000; k++) BitConverter.GetBytes(0x1122334455667788UL).CopyTo(expected, 0x10000 + 3 + k * 8);
        for (int k = 0; k < 3001 * 8; k++) expected[0x40000 + 1 + k] = expected[0x10000 + k];
        for (int k = 0; k < 5000; k++) expected[0x10000 + 6 + k] = expected[0x10000 + 3 + k];
        Assert.Equal(expected, ram);
        Assert.Equal(0UL, g.Cpu.State.Rcx);
        Assert.Equal(Src + 0x10000 + 3 + 5000, g.Cpu.State.Rsi);
        Assert.Equal(Src + 0x10000 + 6 + 5000, g.Cpu.State.Rdi);
    }

    [Theory]
    [MemberData(nameof(Tiers))]
    public void AFillIntoAnUnmappedPageStopsThere(long interpreter)
    {
        // RAM ends at RamBase + RamSize: a fill from 2.5 pages below it faults at the end.
        ulong start = GuestBuilder.RamBase + GuestBuilder.RamSize - 0x2800;
        using var g = new GuestBuilder(a =>
        {
            a.mov(rdi, start); a.mov(ecx, 0x4000); a.mov(eax, 0xC3); a.rep.stosb();
            a.hlt();
        }, options: new VirtualMachineOptions { InterpreterTierUp = interpreter });
        var exit = g.Cpu.Run();
        Assert.NotEqual(ExitReason.Hlt, exit.Reason);
        Assert.Equal(GuestBuilder.RamBase + GuestBuilder.RamSize, g.Cpu.State.Rdi);
        Assert.Equal(0x4000UL - 0x2800, g.Cpu.State.Rcx);
        var ram = Ram(g);
        Assert.All(ram[(int)(start - GuestBuilder.RamBase)..], b => Assert.Equal(0xC3, b));
    }
}
