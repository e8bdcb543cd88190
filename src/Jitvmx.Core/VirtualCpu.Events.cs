// SPDX-License-Identifier: MIT
using System.Buffers.Binary;

namespace Jitvmx;

public sealed unsafe partial class VirtualCpu
{
    private (int Vector, InterruptionType Type, uint? ErrorCode, int Length)? _injection;

    /// <summary>
    /// VM-entry event injection: the event is delivered through the guest IDT at the start of the
    /// next <see cref="Run()"/>, before any guest instruction (the exception bitmap is not consulted,
    /// as in VMX). For software interrupts and exceptions, <paramref name="instructionLength"/> is
    /// added to RIP for the pushed return address.
    /// </summary>
    public void InjectEvent(int vector, InterruptionType type, uint? errorCode = null, int instructionLength = 0)
    {
        if ((uint)vector > 255) throw new ArgumentOutOfRangeException(nameof(vector));
        _injection = (vector, type, errorCode, instructionLength);
    }

    private VmExit DeliverPendingEvent(out bool exited)
    {
        exited = false;
        if (_injection is not { } e) return default;
        _injection = null;
        ulong rip = _ctx->State.Rip;
        if (!Deliver(e.Vector, e.Type, e.ErrorCode, rip + (ulong)e.Length, out var fail))
        {
            exited = true;
            return fail;
        }
        return default;
    }

    /// <summary>
    /// A fault raised by guest code at <paramref name="rip"/>: exits with reason 0 when the exception
    /// bitmap says so, else is delivered through the guest IDT. Returns the helper result.
    /// </summary>
    internal ulong RaiseFault(int vector, uint? errorCode, ulong rip, ulong length)
    {
        _ctx->State.Rip = rip;
        if ((Controls.ExceptionBitmap & (1u << vector)) != 0)
        {
            SetExit(new VmExit
            {
                Reason = ExitReason.ExceptionOrNmi,
                Rip = rip,
                InterruptionInfo = VmExit.MakeInterruptionInfo(vector, InterruptionType.HardwareException, errorCode is not null),
                InterruptionErrorCode = errorCode ?? 0,
                // VMX reports the length only for software exceptions; the fault's length is given as a convenience.
                InstructionLength = (int)length,
                GuestLinearAddress = vector == ExceptionVector.PF ? _ctx->State.Cr2 : 0,
            });
            return Helpers.Stop;
        }
        if (!Deliver(vector, InterruptionType.HardwareException, errorCode, rip, out var fail))
        {
            SetExit(fail);
            return Helpers.Stop;
        }
        return Helpers.Continue;
    }

    /// <summary>INT n / INT3 / INTO / INT1 at <paramref name="rip"/>; the return address is after it.</summary>
    internal ulong RaiseSoftware(int vector, InterruptionType type, ulong rip, ulong length)
    {
        _ctx->State.Rip = rip;
        bool isException = type is InterruptionType.SoftwareException or InterruptionType.PrivilegedSoftwareException;
        if (isException && (Controls.ExceptionBitmap & (1u << vector)) != 0)
        {
            SetExit(new VmExit
            {
                Reason = ExitReason.ExceptionOrNmi,
                Rip = rip,
                InstructionLength = (int)length,
                InterruptionInfo = VmExit.MakeInterruptionInfo(vector, type, false),
            });
            return Helpers.Stop;
        }
        // INT n checks the gate's DPL against CPL (done in Deliver); the instruction retires when delivered.
        if (!Deliver(vector, type, null, rip + length, out var fail))
        {
            SetExit(fail);
            return Helpers.Stop;
        }
        _ctx->Remaining--;
        return Helpers.Continue;
    }

    /// <summary>
    /// Delivers an event through the 64-bit IDT. On a failure that escalates past a double fault
    /// returns false with a triple-fault exit (or the exit a nested exception demands).
    /// </summary>
    private bool Deliver(int vector, InterruptionType type, uint? errorCode, ulong returnRip, out VmExit fail, int depth = 0)
    {
        fail = default;
        ref var s = ref _ctx->State;
        if (depth >= 2 || (depth == 1 && vector == ExceptionVector.DF))
        {
            fail = new VmExit { Reason = ExitReason.TripleFault, Rip = s.Rip };
            return false;
        }
        bool soft = type is InterruptionType.SoftwareInterrupt or InterruptionType.SoftwareException;
        Span<byte> gate = stackalloc byte[16];
        if ((ulong)vector * 16 + 15 > s.Idtr.Limit || !TryReadLinear(s.Idtr.Base + (ulong)vector * 16, gate))
            return Nested(ExceptionVector.GP, (uint)(vector * 8 + 2), out fail, depth);
        int attr = gate[5];
        int gateType = attr & 0xF;
        int dpl = (attr >> 5) & 3;
        int cpl = s.Cs.Selector & 3;
        if (gateType is not (0xE or 0xF)) return Nested(ExceptionVector.GP, (uint)(vector * 8 + 2), out fail, depth);
        if (soft && type == InterruptionType.SoftwareInterrupt && dpl < cpl) return Nested(ExceptionVector.GP, (uint)(vector * 8 + 2), out fail, depth);
        if ((attr & 0x80) == 0) return Nested(ExceptionVector.NP, (uint)(vector * 8 + 2), out fail, depth);
        ulong target = BinaryPrimitives.ReadUInt16LittleEndian(gate) | ((ulong)BinaryPrimitives.ReadUInt16LittleEndian(gate[6..]) << 16)
            | ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(gate[8..]) << 32);
        ushort selector = BinaryPrimitives.ReadUInt16LittleEndian(gate[2..]);
        int ist = gate[4] & 7;
        int newCpl = selector & 3;

        ulong rsp = s.Rsp;
        Span<byte> tss = stackalloc byte[8];
        if (ist != 0)
        {
            if (!TryReadLinear(s.Tr.Base + 0x24 + (ulong)(ist - 1) * 8, tss)) return Nested(ExceptionVector.TS, 0, out fail, depth);
            rsp = BinaryPrimitives.ReadUInt64LittleEndian(tss);
        }
        else if (newCpl < cpl)
        {
            if (!TryReadLinear(s.Tr.Base + 4 + (ulong)newCpl * 8, tss)) return Nested(ExceptionVector.TS, 0, out fail, depth);
            rsp = BinaryPrimitives.ReadUInt64LittleEndian(tss);
        }
        rsp &= ~0xFUL;
        Span<byte> frame = stackalloc byte[48];
        int n = errorCode is null ? 5 : 6;
        int o = 0;
        if (errorCode is uint ec) { BinaryPrimitives.WriteUInt64LittleEndian(frame, ec); o = 8; }
        BinaryPrimitives.WriteUInt64LittleEndian(frame[(o + 0)..], returnRip);
        BinaryPrimitives.WriteUInt64LittleEndian(frame[(o + 8)..], s.Cs.Selector);
        BinaryPrimitives.WriteUInt64LittleEndian(frame[(o + 16)..], s.Rflags);
        BinaryPrimitives.WriteUInt64LittleEndian(frame[(o + 24)..], s.Rsp);
        BinaryPrimitives.WriteUInt64LittleEndian(frame[(o + 32)..], s.Ss.Selector);
        ulong newRsp = rsp - (ulong)(n * 8);
        if (!TryWriteLinear(newRsp, frame[..(n * 8)]))
            return Nested(vector == ExceptionVector.PF || depth > 0 ? ExceptionVector.DF : ExceptionVector.PF, 0, out fail, depth);
        s.Rsp = newRsp;
        if (newCpl != cpl) s.Ss = new SegmentRegister { Selector = (ushort)newCpl, AccessRights = 0x1C000 };
        s.Cs = new SegmentRegister { Selector = selector, Limit = 0xFFFFFFFF, AccessRights = newCpl == 0 ? 0xA09Bu : 0xA0FBu };
        s.Rflags &= ~(ulong)(RFlags.TF | RFlags.RF | (RFlags)(1UL << 14) | (RFlags)(1UL << 17));
        if (gateType == 0xE) s.Rflags &= ~(ulong)RFlags.IF;
        s.Rip = target;
        return true;
    }

    private bool Nested(int vector, uint errorCode, out VmExit fail, int depth)
    {
        // An exception while delivering one becomes a double fault; one while delivering #DF, a triple fault.
        if (depth >= 1)
        {
            fail = new VmExit { Reason = ExitReason.TripleFault, Rip = _ctx->State.Rip };
            return false;
        }
        if ((Controls.ExceptionBitmap & (1u << ExceptionVector.DF)) != 0)
        {
            fail = new VmExit
            {
                Reason = ExitReason.ExceptionOrNmi,
                Rip = _ctx->State.Rip,
                InterruptionInfo = VmExit.MakeInterruptionInfo(ExceptionVector.DF, InterruptionType.HardwareException, true),
            };
            return false;
        }
        _ = vector;
        _ = errorCode;
        return Deliver(ExceptionVector.DF, InterruptionType.HardwareException, 0, _ctx->State.Rip, out fail, depth + 1);
    }

    /// <summary>IRETQ in 64-bit mode: pops RIP, CS, RFLAGS, RSP, SS.</summary>
    internal ulong Iretq(ulong rip, ulong len)
    {
        ref var s = ref _ctx->State;
        Span<byte> frame = stackalloc byte[40];
        if (!TryReadLinear(s.Rsp, frame)) return RaiseFault(ExceptionVector.SS, 0, rip, len);
        ulong newRip = BinaryPrimitives.ReadUInt64LittleEndian(frame);
        ushort cs = (ushort)BinaryPrimitives.ReadUInt64LittleEndian(frame[8..]);
        ulong flags = BinaryPrimitives.ReadUInt64LittleEndian(frame[16..]);
        ulong rsp = BinaryPrimitives.ReadUInt64LittleEndian(frame[24..]);
        ushort ss = (ushort)BinaryPrimitives.ReadUInt64LittleEndian(frame[32..]);
        int cpl = s.Cs.Selector & 3;
        if ((cs & 3) < cpl) return RaiseFault(ExceptionVector.GP, (uint)(cs & ~3), rip, len);
        ulong mutable = 0x3F7FD5; // CF PF AF ZF SF TF IF DF OF IOPL NT RF AC VIF VIP ID
        if (cpl > 0) mutable &= ~(ulong)(3 << 12); // IOPL only at CPL 0
        if (cpl > (int)((s.Rflags >> 12) & 3)) mutable &= ~(ulong)RFlags.IF;
        s.Rflags = (s.Rflags & ~mutable) | (flags & mutable) | (ulong)RFlags.Reserved1;
        s.Cs = new SegmentRegister { Selector = cs, Limit = 0xFFFFFFFF, AccessRights = (cs & 3) == 0 ? 0xA09Bu : 0xA0FBu };
        s.Ss = new SegmentRegister { Selector = ss, Limit = 0xFFFFFFFF, AccessRights = (ss & 3) == 0 ? 0xC093u : 0xC0F3u };
        s.Rsp = rsp;
        s.Rip = newRip;
        _ctx->Remaining--;
        return Helpers.Continue;
    }

    /// <summary>Architectural RDMSR of the MSRs the guest-state area holds; null for an unknown MSR (#GP).</summary>
    internal ulong? ReadMsr(uint msr)
    {
        ref var s = ref _ctx->State;
        return msr switch
        {
            0x10 => Helpers.ReadTsc(_ctx),
            0x1B => s.ApicBase,
            0x174 => s.SysenterCs,
            0x175 => s.SysenterEsp,
            0x176 => s.SysenterEip,
            0x277 => s.Pat,
            0xC0000080 => s.Efer,
            0xC0000081 => s.Star,
            0xC0000082 => s.Lstar,
            0xC0000083 => s.Cstar,
            0xC0000084 => s.Sfmask,
            0xC0000100 => s.Fs.Base,
            0xC0000101 => s.Gs.Base,
            0xC0000102 => s.KernelGsBase,
            0xC0000103 => s.TscAux,
            _ => null,
        };
    }

    /// <summary>Architectural WRMSR; false for an unknown MSR or a non-canonical base (#GP).</summary>
    internal bool WriteMsr(uint msr, ulong v)
    {
        ref var s = ref _ctx->State;
        bool canonical = Helpers.IsCanonical(v);
        switch (msr)
        {
            case 0x10: Controls.TscOffset = (long)(v - Jitvmx.HostTsc.Read()); return true;
            case 0x1B: s.ApicBase = v; return true;
            case 0x174: s.SysenterCs = v; return true;
            case 0x175: s.SysenterEsp = v; return true;
            case 0x176: s.SysenterEip = v; return true;
            case 0x277: s.Pat = v; return true;
            case 0xC0000080: s.Efer = (s.Efer & 0x400) | (v & ~0x400UL); return true;
            case 0xC0000081: s.Star = v; return true;
            case 0xC0000082 when canonical: s.Lstar = v; return true;
            case 0xC0000083 when canonical: s.Cstar = v; return true;
            case 0xC0000084: s.Sfmask = v & 0xFFFFFFFF; return true;
            case 0xC0000100 when canonical: s.Fs.Base = v; return true;
            case 0xC0000101 when canonical: s.Gs.Base = v; return true;
            case 0xC0000102 when canonical: s.KernelGsBase = v; return true;
            case 0xC0000103: s.TscAux = v & 0xFFFFFFFF; return true;
            default: return false;
        }
    }
}
