// SPDX-License-Identifier: MIT
using System.Runtime.Intrinsics;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// The SDM's CR0.MP/EM/TS, CR4.OSFXSR and CR4.OSXSAVE checks: #NM and #UD exits through the
/// exception bitmap, delivery through the IDT (a lazy-FPU #NM handler that runs CLTS and retries),
/// and translations that follow a change of mode.
/// </summary>
public class X87SseEnableTests
{
    private const ulong Mp = 1 << 1, Em = 1 << 2, Ts = 1 << 3, OsFxsr = 1 << 9, OsXsave = 1 << 18;
    private const ulong Area = GuestBuilder.RamBase + 0x1000;

    public static TheoryData<string, ulong, ulong, int> Cases() => new()
    {
        // name, CR0 bits set, CR4 bits cleared, expected vector (-1: runs to HLT)
        { "fld1", Ts, 0, ExceptionVector.NM },
        { "fld1", Em, 0, ExceptionVector.NM },
        { "fld1", 0, OsFxsr, -1 },
        { "fnstsw", Ts, 0, ExceptionVector.NM },
        { "fisttp", Em, 0, ExceptionVector.NM },
        { "fwait", Ts, 0, -1 },
        { "fwait", Mp | Ts, 0, ExceptionVector.NM },
        { "fwait", Mp | Em, 0, -1 },
        { "paddb mm", Ts, 0, ExceptionVector.NM },
        { "paddb mm", Em, 0, ExceptionVector.UD },
        { "paddb mm", Em | Ts, 0, ExceptionVector.UD },
        { "paddb mm", 0, OsFxsr, -1 },
        { "emms", Ts, 0, ExceptionVector.NM },
        { "emms", Em, 0, ExceptionVector.UD },
        { "addps", Ts, 0, ExceptionVector.NM },
        { "addps", Em, 0, ExceptionVector.UD },
        { "addps", 0, OsFxsr, ExceptionVector.UD },
        { "addps", Ts, OsFxsr, ExceptionVector.UD },
        { "addps", Mp, 0, -1 },
        { "pcmpistri", Ts, 0, ExceptionVector.NM },
        { "aesenc", 0, OsFxsr, ExceptionVector.UD },
        { "cvtpi2ps", Em, 0, ExceptionVector.UD },
        { "ldmxcsr", 0, OsFxsr, ExceptionVector.UD },
        { "stmxcsr", Ts, 0, ExceptionVector.NM },
        { "crc32", Em | Ts, OsFxsr, -1 },
        { "popcnt", Em | Ts, OsFxsr, -1 },
        { "fxsave", Ts, 0, ExceptionVector.NM },
        { "fxsave", Em, 0, ExceptionVector.NM },
        { "fxsave", 0, OsFxsr, -1 },
        { "xsave", Ts, 0, ExceptionVector.NM },
        { "xsave", 0, OsXsave, ExceptionVector.UD },
        { "xsave", Em, OsFxsr, -1 },
        { "xrstor", Ts, 0, ExceptionVector.NM },
        { "xsetbv", 0, OsXsave, ExceptionVector.UD },
    };

    private static void Emit(Assembler a, string name)
    {
        a.mov(rbx, Area);
        switch (name)
        {
            case "fld1": a.fld1(); break;
            case "fnstsw": a.fnstsw(ax); break;
            case "fisttp": a.fisttp(__dword_ptr[rbx]); break;
            case "fwait": a.wait(); break;
            case "paddb mm": a.paddb(mm0, mm1); break;
            case "emms": a.emms(); break;
            case "addps": a.addps(xmm0, xmm1); break;
            case "pcmpistri": a.pcmpistri(xmm0, xmm1, 0); break;
            case "aesenc": a.aesenc(xmm0, xmm1); break;
            case "cvtpi2ps": a.cvtpi2ps(xmm0, mm1); break;
            case "ldmxcsr": a.ldmxcsr(__dword_ptr[rbx]); break;
            case "stmxcsr": a.stmxcsr(__dword_ptr[rbx]); break;
            case "crc32": a.crc32(eax, ecx); break;
            case "popcnt": a.popcnt(eax, ecx); break;
            case "fxsave": a.fxsave(__[rbx]); break;
            case "xsave": a.xor(edx, edx); a.mov(eax, 3); a.xsave(__[rbx]); break;
            case "xrstor": a.xor(edx, edx); a.xor(eax, eax); a.xrstor(__[rbx]); break;
            case "xsetbv": a.xor(ecx, ecx); a.xor(edx, edx); a.mov(eax, 3); a.xsetbv(); break;
        }
        a.hlt();
    }

    private static GuestBuilder Guest(string name, ulong cr0Set, ulong cr4Clear)
    {
        var g = new GuestBuilder(a => Emit(a, name));
        ref var s = ref g.Cpu.State;
        s.Cr0 |= cr0Set;
        s.Cr4 = (s.Cr4 | OsXsave) & ~cr4Clear;
        s.Xcr0 = 3;
        s.Mxcsr = 0x1F80;
        g.Vm.WritePhysical(Area, BitConverter.GetBytes(0x1F80u));
        return g;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ExitsWithTheVectorTheSdmGives(string name, ulong cr0Set, ulong cr4Clear, int vector)
    {
        using var g = Guest(name, cr0Set, cr4Clear);
        g.Cpu.Controls.HltExiting = true;
        var exit = g.Cpu.Run(1000);
        if (vector < 0)
        {
            Assert.True(exit.Reason is ExitReason.Hlt or ExitReason.Xsetbv, $"{name}: {exit}");
            return;
        }
        Assert.Equal(ExitReason.ExceptionOrNmi, exit.Reason);
        Assert.Equal(vector, exit.Vector);
        // A fault: RIP at the instruction (after the MOV RBX and any operand set-up).
        Assert.Equal(g.Code.Length - 1 - Length(name), (long)(g.Cpu.State.Rip - GuestBuilder.CodeBase));
    }

    private static int Length(string name)
    {
        var a = new Assembler(64);
        Emit(a, name);
        using var full = new MemoryStream();
        a.Assemble(new StreamCodeWriter(full), 0);
        var d = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(full.ToArray()));
        var lengths = new List<int>();
        while (d.IP < (ulong)full.Length) { d.Decode(out var i); lengths.Add(i.Length); }
        return lengths[^2]; // the instruction before HLT
    }

    /// <summary>A region translated with SSE enabled is not reused once CR0.TS is set, and is translated again once it is clear.</summary>
    [Fact]
    public void TranslationsFollowTheMode()
    {
        using var g = Guest("addps", 0, 0);
        g.Cpu.Controls.HltExiting = true;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        g.Cpu.State.Rip = GuestBuilder.CodeBase;
        g.Cpu.State.Cr0 |= Ts;
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.ExceptionOrNmi, exit.Reason);
        Assert.Equal(ExceptionVector.NM, exit.Vector);
        g.Cpu.State.Rip = GuestBuilder.CodeBase;
        g.Cpu.State.Cr0 &= ~Ts;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
    }

    /// <summary>
    /// The lazy-FPU pattern: with CR0.TS set, the first SSE instruction takes #NM through the IDT; the
    /// handler clears TS with CLTS and returns to it, and it then runs (in the same region's code path).
    /// </summary>
    [Fact]
    public void NmHandlerClearsTsAndTheInstructionRuns()
    {
        const ulong Idt = GuestBuilder.RamBase + 0x8000;
        using var g = new GuestBuilder(a =>
        {
            var handler = a.CreateLabel();
            var start = a.CreateLabel();
            a.jmp(start);
            a.Label(ref handler);
            a.clts();
            a.inc(rbx);
            a.pop(rax);          // return RIP: the faulting ADDPS
            a.add(rsp, 32);      // CS, RFLAGS, RSP, SS
            a.jmp(rax);
            a.Label(ref start);
            a.addps(xmm0, xmm1);
            a.addps(xmm0, xmm1);
            a.hlt();
        });
        ulong target = GuestBuilder.CodeBase + 2; // after the short JMP
        g.WriteInterruptGate(Idt, ExceptionVector.NM, target);
        ref var s = ref g.Cpu.State;
        s.Idtr = new DescriptorTableRegister { Base = Idt, Limit = 256 * 16 - 1 };
        s.Cr0 |= Ts;
        s.Xmm[0] = Vector128.Create(1f, 2f, 3f, 4f).AsByte();
        s.Xmm[1] = Vector128.Create(10f, 20f, 30f, 40f).AsByte();
        g.Cpu.Controls.ExceptionBitmap = 0;
        g.Cpu.Controls.HltExiting = true;
        var exit = g.Cpu.Run(10_000);
        Assert.Equal(ExitReason.Hlt, exit.Reason);
        Assert.Equal(1UL, s.Rbx); // one #NM, then TS stays clear
        Assert.Equal(0UL, s.Cr0 & Ts);
        Assert.Equal(Vector128.Create(21f, 42f, 63f, 84f).AsByte(), s.Xmm[0]);
    }
}
