// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// FIP, FDP and FOP in the XSAVE legacy region (64-bit format with REX.W, 32-bit pointers with zero
/// FCS/FDS without), and back through XRSTOR; control instructions leave them alone. The host
/// comparison of the same fields for FNSTENV and FXSAVE is in the x87 differential tests.
/// </summary>
public class X87PointerTests
{
    private const ulong Data = GuestBuilder.RamBase + 0x2000, Area = GuestBuilder.RamBase + 0x4000, Area2 = GuestBuilder.RamBase + 0x5000;

    [Fact]
    public void XsaveStoresAndXrstorLoadsThePointers()
    {
        using var g = new GuestBuilder(a =>
        {
            a.mov(rbx, Data);
            a.mov(eax, 3);
            a.xor(edx, edx);
            a.fninit();
            a.db(0x48, 0xDD, 0x44, 0x03, 0x08); // rex.w fld qword [rbx+rax+8]
            a.fnstcw(__word_ptr[rbx]);             // control: no update
            a.fnclex();
            a.xsave64(__[rbx + (int)(Area - Data)]);
            a.xsave(__[rbx + (int)(Area2 - Data)]);
            a.fninit();                             // clears the pointers
            a.xrstor64(__[rbx + (int)(Area - Data)]);
            a.fnstenv(__[rbx + 0x100]);
            a.hlt();
        });
        ref var s = ref g.Cpu.State;
        s.Cr4 |= CpuidModel.Cr4OsXsave;
        s.Xcr0 = 3;
        g.Cpu.Controls.HltExiting = true;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run(1000).Reason);
        ulong fip = GuestBuilder.CodeBase + (ulong)Offset(g.Code, 0x48, 0xDD, 0x44, 0x03, 0x08);
        ulong fdp = Data + 3 + 8;
        var area = Read(g, Area, 24);
        Assert.Equal(0x544, BitConverter.ToUInt16(area, 6)); // DD 44: FOP 101_0100_0100
        Assert.Equal(fip, BitConverter.ToUInt64(area, 8));
        Assert.Equal(fdp, BitConverter.ToUInt64(area, 16));
        var area2 = Read(g, Area2, 24);
        Assert.Equal(fip & 0xFFFF_FFFF, BitConverter.ToUInt64(area2, 8));  // FIP[31:0], FCS 0
        Assert.Equal(fdp & 0xFFFF_FFFF, BitConverter.ToUInt64(area2, 16)); // FDP[31:0], FDS 0
        var env = Read(g, Data + 0x100, 28);
        Assert.Equal((uint)fip, BitConverter.ToUInt32(env, 12));
        Assert.Equal(0x544u << 16, BitConverter.ToUInt32(env, 16));
        Assert.Equal((uint)fdp, BitConverter.ToUInt32(env, 20));
    }

    private static byte[] Read(GuestBuilder g, ulong gpa, int n)
    {
        var b = new byte[n];
        g.Vm.ReadPhysical(gpa, b);
        return b;
    }

    private static int Offset(byte[] code, params byte[] pattern) => code.AsSpan().IndexOf(pattern);
}
