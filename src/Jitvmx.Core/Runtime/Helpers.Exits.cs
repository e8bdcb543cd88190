// SPDX-License-Identifier: MIT
using Jitvmx.Runtime;

namespace Jitvmx;

// Exit helpers: guest state is spilled and precise (RIP at the instruction); each returns
// Continue after completing the instruction architecturally, or Stop after recording an exit.
public static unsafe partial class Helpers
{
    private static VirtualCpu Cpu(CpuContext* ctx) => VirtualCpu.FromContext(ctx);

    private static ulong Exit(CpuContext* ctx, ExitReason reason, ulong rip, ulong len, ulong qualification = 0, ulong linear = 0)
    {
        ctx->State.Rip = rip;
        Cpu(ctx).SetExit(new VmExit { Reason = reason, Rip = rip, InstructionLength = (int)len, Qualification = qualification, GuestLinearAddress = linear });
        return Stop;
    }

    private static ulong Done(CpuContext* ctx, ulong rip, ulong len)
    {
        ctx->State.Rip = rip + len;
        ctx->Remaining--;
        return Continue;
    }

    private static int Cpl(CpuContext* ctx) => ctx->State.Cs.Selector & 3;

    private static ulong Gp0(CpuContext* ctx, ulong rip, ulong len) => Cpu(ctx).RaiseFault(ExceptionVector.GP, 0, rip, len);

    private static ulong Ud(CpuContext* ctx, ulong rip, ulong len) => Cpu(ctx).RaiseFault(ExceptionVector.UD, null, rip, len);

    [Helper(HelperId.RaiseException)]
    internal static ulong RaiseException(CpuContext* ctx, ulong rip, ulong len, ulong vector, ulong errorCode) =>
        Cpu(ctx).RaiseFault((int)vector, ExceptionVector.HasErrorCode((int)vector) ? (uint)errorCode : null, rip, len);

    [Helper(HelperId.StopAt)]
    internal static ulong StopAt(CpuContext* ctx, ulong rip)
    {
        ctx->State.Rip = rip;
        return Stop;
    }

    [Helper(HelperId.Cpuid)]
    internal static ulong Cpuid(CpuContext* ctx, ulong rip, ulong len) => Exit(ctx, ExitReason.Cpuid, rip, len);

    [Helper(HelperId.Hlt)]
    internal static ulong Hlt(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        if (Cpu(ctx).Controls.HltExiting) return Exit(ctx, ExitReason.Hlt, rip, len);
        Done(ctx, rip, len);
        Cpu(ctx).SetExit(new VmExit { Reason = ExitReason.Halted, Rip = rip + len });
        return Stop;
    }

    /// <summary>I/O: <paramref name="qualification"/> in the SDM layout; <paramref name="value"/> is the OUT data (non-string).</summary>
    [Helper(HelperId.Io)]
    internal static ulong Io(CpuContext* ctx, ulong rip, ulong len, ulong qualification, ulong value)
    {
        var cpu = Cpu(ctx);
        ref var s = ref ctx->State;
        int size = ExitQualification.IoSize(qualification);
        ushort port = ExitQualification.IoPort(qualification);
        bool isIn = ExitQualification.IoIsIn(qualification);
        bool str = ExitQualification.IoIsString(qualification);
        bool rep = ExitQualification.IoIsRep(qualification);
        int iopl = (int)((s.Rflags >> 12) & 3);
        if (Cpl(ctx) > iopl) return Gp0(ctx, rip, len); // no TSS I/O permission bitmap in this model
        if (str && rep && s.Rcx == 0) return Done(ctx, rip, len);
        if (cpu.Controls.IoExits(port, size))
        {
            ulong linear = str ? (isIn ? s.Rdi : s.Rsi) : 0;
            return Exit(ctx, ExitReason.IoInstruction, rip, len, qualification, linear);
        }
        // Absent device: reads float high, writes vanish.
        ulong ones = size == 4 ? 0xFFFFFFFFUL : size == 2 ? 0xFFFFUL : 0xFFUL;
        if (!str)
        {
            if (isIn) s.Rax = size == 4 ? ones : (s.Rax & ~ones) | ones;
            return Done(ctx, rip, len);
        }
        ulong count = rep ? s.Rcx : 1;
        long step = (s.Rflags & (ulong)RFlags.DF) != 0 ? -size : size;
        Span<byte> buf = stackalloc byte[4];
        buf.Fill(0xFF);
        for (ulong i = 0; i < count; i++)
        {
            if (isIn)
            {
                if (!cpu.TryWriteLinear(s.Rdi, buf[..size])) return Gp0(ctx, rip, len);
                s.Rdi += (ulong)step;
            }
            else
            {
                if (!cpu.TryReadLinear(s.Rsi, buf[..size])) return Gp0(ctx, rip, len);
                s.Rsi += (ulong)step;
            }
            if (rep) s.Rcx--;
        }
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Rdmsr)]
    internal static ulong Rdmsr(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        uint msr = (uint)ctx->State.Rcx;
        var cpu = Cpu(ctx);
        if (cpu.Controls.MsrExits(msr, write: false)) return Exit(ctx, ExitReason.Rdmsr, rip, len);
        if (cpu.ReadMsr(msr) is not ulong v) return Gp0(ctx, rip, len);
        ctx->State.Rax = (uint)v;
        ctx->State.Rdx = v >> 32;
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Wrmsr)]
    internal static ulong Wrmsr(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        uint msr = (uint)ctx->State.Rcx;
        var cpu = Cpu(ctx);
        if (cpu.Controls.MsrExits(msr, write: true)) return Exit(ctx, ExitReason.Wrmsr, rip, len);
        ulong v = (ctx->State.Rdx << 32) | (uint)ctx->State.Rax;
        if (!cpu.WriteMsr(msr, v)) return Gp0(ctx, rip, len);
        return Done(ctx, rip, len);
    }

    /// <summary>MOV to/from CRn (qualification in the SDM layout; the GPR field names the operand register).</summary>
    [Helper(HelperId.CrAccess)]
    internal static ulong CrAccess(CpuContext* ctx, ulong rip, ulong len, ulong qualification)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        var cpu = Cpu(ctx);
        var c = cpu.Controls;
        ref var s = ref ctx->State;
        int cr = ExitQualification.CrNumber(qualification);
        var gpr = ExitQualification.CrGpr(qualification);
        var type = ExitQualification.CrAccess(qualification);
        if (type == ExitQualification.CrAccessType.MovToCr)
        {
            ulong v = s[gpr];
            bool exits = cr switch
            {
                0 => ((v ^ c.Cr0ReadShadow) & c.Cr0GuestHostMask) != 0,
                3 => c.Cr3LoadExiting,
                4 => ((v ^ c.Cr4ReadShadow) & c.Cr4GuestHostMask) != 0,
                8 => c.Cr8LoadExiting,
                _ => false,
            };
            if (exits) return Exit(ctx, ExitReason.ControlRegisterAccess, rip, len, qualification);
            switch (cr)
            {
                case 0: s.Cr0 = (v & ~c.Cr0GuestHostMask) | (s.Cr0 & c.Cr0GuestHostMask); break;
                case 2: s.Cr2 = v; break;
                case 3: s.Cr3 = v; break;
                case 4: s.Cr4 = (v & ~c.Cr4GuestHostMask) | (s.Cr4 & c.Cr4GuestHostMask); break;
                case 8: s.Cr8 = v & 15; break;
                default: return Ud(ctx, rip, len);
            }
            if (cr is 0 or 3 or 4) cpu.FlushTlb();
            return Done(ctx, rip, len);
        }
        if (type == ExitQualification.CrAccessType.MovFromCr)
        {
            if ((cr == 3 && c.Cr3StoreExiting) || (cr == 8 && c.Cr8StoreExiting))
                return Exit(ctx, ExitReason.ControlRegisterAccess, rip, len, qualification);
            ulong v;
            switch (cr)
            {
                case 0: v = (s.Cr0 & ~c.Cr0GuestHostMask) | (c.Cr0ReadShadow & c.Cr0GuestHostMask); break;
                case 2: v = s.Cr2; break;
                case 3: v = s.Cr3; break;
                case 4: v = (s.Cr4 & ~c.Cr4GuestHostMask) | (c.Cr4ReadShadow & c.Cr4GuestHostMask); break;
                case 8: v = s.Cr8; break;
                default: return Ud(ctx, rip, len);
            }
            s[gpr] = v;
            return Done(ctx, rip, len);
        }
        if (type == ExitQualification.CrAccessType.Clts)
        {
            if ((c.Cr0GuestHostMask & 8) != 0 && (c.Cr0ReadShadow & 8) != 0)
                return Exit(ctx, ExitReason.ControlRegisterAccess, rip, len, qualification);
            s.Cr0 &= ~8UL;
            return Done(ctx, rip, len);
        }
        return Ud(ctx, rip, len);
    }

    [Helper(HelperId.Invlpg)]
    internal static ulong Invlpg(CpuContext* ctx, ulong rip, ulong len, ulong linear)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        var cpu = Cpu(ctx);
        if (cpu.Controls.InvlpgExiting) return Exit(ctx, ExitReason.Invlpg, rip, len, linear, linear);
        cpu.FlushTlb();
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Rdtsc)]
    internal static ulong Rdtsc(CpuContext* ctx, ulong rip, ulong len)
    {
        if ((ctx->State.Cr4 & 4) != 0 && Cpl(ctx) != 0) return Gp0(ctx, rip, len); // CR4.TSD
        if (Cpu(ctx).Controls.RdtscExiting) return Exit(ctx, ExitReason.Rdtsc, rip, len);
        ulong t = ReadTsc(ctx);
        ctx->State.Rax = (uint)t;
        ctx->State.Rdx = t >> 32;
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Rdtscp)]
    internal static ulong Rdtscp(CpuContext* ctx, ulong rip, ulong len)
    {
        if ((ctx->State.Cr4 & 4) != 0 && Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        if (Cpu(ctx).Controls.RdtscExiting) return Exit(ctx, ExitReason.Rdtscp, rip, len);
        ulong t = ReadTsc(ctx);
        ctx->State.Rax = (uint)t;
        ctx->State.Rdx = t >> 32;
        ctx->State.Rcx = (uint)ctx->State.TscAux;
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Rdpmc)]
    internal static ulong Rdpmc(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpu(ctx).Controls.RdpmcExiting) return Exit(ctx, ExitReason.Rdpmc, rip, len);
        if ((ctx->State.Cr4 & 0x100) == 0 && Cpl(ctx) != 0) return Gp0(ctx, rip, len); // CR4.PCE
        ctx->State.Rax = 0;
        ctx->State.Rdx = 0;
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Vmcall)]
    internal static ulong Vmcall(CpuContext* ctx, ulong rip, ulong len) => Exit(ctx, ExitReason.Vmcall, rip, len);

    [Helper(HelperId.VmxInstruction)]
    internal static ulong VmxInstruction(CpuContext* ctx, ulong rip, ulong len, ulong reason) => Exit(ctx, (ExitReason)reason, rip, len);

    [Helper(HelperId.Pause)]
    internal static ulong Pause(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpu(ctx).Controls.PauseExiting) return Exit(ctx, ExitReason.Pause, rip, len);
        Thread.SpinWait(1);
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Xsetbv)]
    internal static ulong Xsetbv(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        return Exit(ctx, ExitReason.Xsetbv, rip, len);
    }

    [Helper(HelperId.Xgetbv)]
    internal static ulong Xgetbv(CpuContext* ctx, ulong rip, ulong len)
    {
        if ((ctx->State.Cr4 & (1UL << 18)) == 0) return Ud(ctx, rip, len); // CR4.OSXSAVE
        if ((uint)ctx->State.Rcx != 0) return Gp0(ctx, rip, len);
        ctx->State.Rax = (uint)ctx->State.Xcr0;
        ctx->State.Rdx = ctx->State.Xcr0 >> 32;
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Syscall)]
    internal static ulong Syscall(CpuContext* ctx, ulong rip, ulong len)
    {
        var cpu = Cpu(ctx);
        if (cpu.Controls.SyscallExiting) return Exit(ctx, ExitReason.Syscall, rip, len);
        ref var s = ref ctx->State;
        if ((s.Efer & 1) == 0) return Ud(ctx, rip, len); // EFER.SCE
        s.Rcx = rip + len;
        s.R11 = s.Rflags & ~(ulong)RFlags.RF;
        s.Rflags = (s.Rflags & ~s.Sfmask & ~(ulong)RFlags.RF) | (ulong)RFlags.Reserved1;
        ushort sel = (ushort)((s.Star >> 32) & 0xFFFC);
        s.Cs = new SegmentRegister { Selector = sel, Limit = 0xFFFFFFFF, AccessRights = 0xA09B };
        s.Ss = new SegmentRegister { Selector = (ushort)(sel + 8), Limit = 0xFFFFFFFF, AccessRights = 0xC093 };
        s.Rip = s.Lstar;
        ctx->Remaining--;
        return Continue;
    }

    [Helper(HelperId.Sysret)]
    internal static ulong Sysret(CpuContext* ctx, ulong rip, ulong len)
    {
        ref var s = ref ctx->State;
        if ((s.Efer & 1) == 0) return Ud(ctx, rip, len);
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        if (!IsCanonical(s.Rcx)) return Gp0(ctx, rip, len);
        ushort baseSel = (ushort)((s.Star >> 48) & 0xFFFF);
        s.Cs = new SegmentRegister { Selector = (ushort)((baseSel + 16) | 3), Limit = 0xFFFFFFFF, AccessRights = 0xA0FB };
        s.Ss = new SegmentRegister { Selector = (ushort)((baseSel + 8) | 3), Limit = 0xFFFFFFFF, AccessRights = 0xC0F3 };
        s.Rflags = (s.R11 & 0x3C7FD7) | (ulong)RFlags.Reserved1;
        s.Rip = s.Rcx;
        ctx->Remaining--;
        return Continue;
    }

    internal static bool IsCanonical(ulong a) => (ulong)((long)(a << 16) >> 16) == a;

    /// <summary>INT n (type 4), INT3/INTO (type 6), INT1 (type 5).</summary>
    [Helper(HelperId.SoftwareInterrupt)]
    internal static ulong SoftwareInterrupt(CpuContext* ctx, ulong rip, ulong len, ulong vector, ulong type)
    {
        var cpu = Cpu(ctx);
        if (cpu.Controls.SoftwareInterruptExiting)
            return Exit(ctx, ExitReason.SoftwareInterrupt, rip, len, vector);
        return cpu.RaiseSoftware((int)vector, (InterruptionType)type, rip, len);
    }

    [Helper(HelperId.Wbinvd)]
    internal static ulong Wbinvd(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        if (Cpu(ctx).Controls.WbinvdExiting) return Exit(ctx, ExitReason.Wbinvd, rip, len);
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Invd)]
    internal static ulong Invd(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        return Exit(ctx, ExitReason.Invd, rip, len);
    }

    [Helper(HelperId.Monitor)]
    internal static ulong Monitor(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Ud(ctx, rip, len);
        if (Cpu(ctx).Controls.MonitorExiting) return Exit(ctx, ExitReason.Monitor, rip, len);
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Mwait)]
    internal static ulong Mwait(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Ud(ctx, rip, len);
        if (Cpu(ctx).Controls.MwaitExiting) return Exit(ctx, ExitReason.Mwait, rip, len);
        return Done(ctx, rip, len);
    }

    /// <summary>RDRAND/RDSEED: register index and operand size in bytes; CF = 1 on success, other status flags 0.</summary>
    private static ulong Random(CpuContext* ctx, ulong rip, ulong len, ulong reg, ulong size, bool seed)
    {
        var cpu = Cpu(ctx);
        if (seed ? cpu.Controls.RdseedExiting : cpu.Controls.RdrandExiting)
            return Exit(ctx, seed ? ExitReason.Rdseed : ExitReason.Rdrand, rip, len);
        Span<byte> b = stackalloc byte[8];
        Memory.HostRandom.Fill(b);
        ulong v = BitConverter.ToUInt64(b);
        ref ulong r = ref ctx->State[(GuestRegister)reg];
        r = size switch { 2 => (r & ~0xFFFFUL) | (v & 0xFFFF), 4 => (uint)v, _ => v };
        ctx->State.Rflags = (ctx->State.Rflags & ~(ulong)RFlags.Status) | (ulong)RFlags.CF;
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Rdrand)]
    internal static ulong Rdrand(CpuContext* ctx, ulong rip, ulong len, ulong reg, ulong size) => Random(ctx, rip, len, reg, size, false);

    [Helper(HelperId.Rdseed)]
    internal static ulong Rdseed(CpuContext* ctx, ulong rip, ulong len, ulong reg, ulong size) => Random(ctx, rip, len, reg, size, true);

    [Helper(HelperId.Swapgs)]
    internal static ulong Swapgs(CpuContext* ctx, ulong rip, ulong len)
    {
        if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
        ref var s = ref ctx->State;
        (s.Gs.Base, s.KernelGsBase) = (s.KernelGsBase, s.Gs.Base);
        return Done(ctx, rip, len);
    }

    [Helper(HelperId.Iret)]
    internal static ulong Iret(CpuContext* ctx, ulong rip, ulong len) => Cpu(ctx).Iretq(rip, len);

    /// <summary>Kind: 0 SGDT, 1 SIDT, 2 LGDT, 3 LIDT.</summary>
    [Helper(HelperId.DescriptorTable)]
    internal static ulong DescriptorTable(CpuContext* ctx, ulong rip, ulong len, ulong kind, ulong linear)
    {
        var cpu = Cpu(ctx);
        ref var s = ref ctx->State;
        Span<byte> b = stackalloc byte[10];
        if (kind >= 2)
        {
            if (Cpl(ctx) != 0) return Gp0(ctx, rip, len);
            if (!cpu.TryReadLinear(linear, b)) return Gp0(ctx, rip, len);
            var t = new DescriptorTableRegister { Limit = BitConverter.ToUInt16(b), Base = BitConverter.ToUInt64(b[2..]) };
            if (kind == 2) s.Gdtr = t; else s.Idtr = t;
            return Done(ctx, rip, len);
        }
        var r = kind == 0 ? s.Gdtr : s.Idtr;
        BitConverter.TryWriteBytes(b, (ushort)r.Limit);
        BitConverter.TryWriteBytes(b[2..], r.Base);
        if (!cpu.TryWriteLinear(linear, b)) return Gp0(ctx, rip, len);
        return Done(ctx, rip, len);
    }

    /// <summary>CLI (0) / STI (1).</summary>
    [Helper(HelperId.InterruptFlag)]
    internal static ulong InterruptFlag(CpuContext* ctx, ulong rip, ulong len, ulong set)
    {
        ref var s = ref ctx->State;
        int iopl = (int)((s.Rflags >> 12) & 3);
        if (Cpl(ctx) > iopl) return Gp0(ctx, rip, len);
        if (set != 0) s.Rflags |= (ulong)RFlags.IF; else s.Rflags &= ~(ulong)RFlags.IF;
        return Done(ctx, rip, len);
    }

    /// <summary>MOV Sreg / POP Sreg: segment index in ES CS SS DS FS GS order, selector.</summary>
    [Helper(HelperId.LoadSegment)]
    internal static ulong LoadSegment(CpuContext* ctx, ulong rip, ulong len, ulong segment, ulong selector)
    {
        ref var s = ref ctx->State;
        if (segment is 1 or > 5) return Ud(ctx, rip, len);
        ref var seg = ref s.Es;
        if (segment == 2) seg = ref s.Ss;
        else if (segment == 3) seg = ref s.Ds;
        else if (segment == 4) seg = ref s.Fs;
        else if (segment == 5) seg = ref s.Gs;
        seg.Selector = (ushort)selector;
        return Done(ctx, rip, len);
    }
}
