// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>
/// String instructions MOVS STOS LODS SCAS CMPS with REP/REPE/REPNE. A repeated instruction is an
/// IR loop inside the instruction: each iteration does its memory accesses, then updates the flags,
/// RSI/RDI and RCX, so a fault or an exit request leaves the registers at the completed iterations.
/// </summary>
[InstructionFamily]
internal static class Strings
{
    private enum Op { Movs, Stos, Lods, Scas, Cmps }

    private static readonly int s_bulkStos = Helpers.Register(typeof(StringBulk), nameof(StringBulk.Stos), pure: false);
    private static readonly int s_bulkMovs = Helpers.Register(typeof(StringBulk), nameof(StringBulk.Movs), pure: false);

    public static void RegisterFamily(EmitterTable t)
    {
        t.Add((Lifter l, in Instruction i) => Emit(l, i, Op.Movs), Mnemonic.Movsb, Mnemonic.Movsw, Mnemonic.Movsq);
        t.Add(Code.Movsd_m32_m32, (Lifter l, in Instruction i) => Emit(l, i, Op.Movs)); // Mnemonic.Movsd is also the SSE move
        t.Add((Lifter l, in Instruction i) => Emit(l, i, Op.Stos), Mnemonic.Stosb, Mnemonic.Stosw, Mnemonic.Stosd, Mnemonic.Stosq);
        t.Add((Lifter l, in Instruction i) => Emit(l, i, Op.Lods), Mnemonic.Lodsb, Mnemonic.Lodsw, Mnemonic.Lodsd, Mnemonic.Lodsq);
        t.Add((Lifter l, in Instruction i) => Emit(l, i, Op.Scas), Mnemonic.Scasb, Mnemonic.Scasw, Mnemonic.Scasd, Mnemonic.Scasq);
        t.Add((Lifter l, in Instruction i) => Emit(l, i, Op.Cmps), Mnemonic.Cmpsb, Mnemonic.Cmpsw, Mnemonic.Cmpsq);
        t.Add(Code.Cmpsd_m32_m32, (Lifter l, in Instruction i) => Emit(l, i, Op.Cmps)); // Mnemonic.Cmpsd is also the SSE compare
    }

    /// <summary>Shape of one string instruction.</summary>
    private readonly record struct Shape(Op Op, IrType Type, bool Addr32, Register SourceSegment);

    private static void Emit(Lifter l, in Instruction i, Op op)
    {
        bool addr32 = false;
        for (int n = 0; n < i.OpCount; n++)
            addr32 |= i.GetOpKind(n) is OpKind.MemorySegESI or OpKind.MemoryESEDI;
        var s = new Shape(op, IrTypes.FromBytes(i.MemorySize.GetSize()), addr32, i.MemorySegment);
        if (!i.HasRepePrefix && !i.HasRepnePrefix)
        {
            Iteration(l, s);
            return;
        }
        var b = l.B;
        var head = l.NewBlock();
        var body = l.NewBlock();
        var done = l.NewBlock();
        b.Jump(head);

        l.SetBlock(head);
        // REP MOVS/STOS forward with flat addressing: whole pages at a time on host memory (the
        // per-element body below does what the bulk path leaves: a TLB miss, a page boundary
        // inside an element, DF set, overlap within an element).
        if (op is Op.Movs or Op.Stos && !addr32 && (op == Op.Stos || s.SourceSegment is Register.DS or Register.None))
            b.Call(op == Op.Stos ? s_bulkStos : s_bulkMovs, IrType.Void, b.I64((ulong)(s.Type.Bits() / 8)));
        b.Branch(b.IsZero(Count(l, addr32)), done, body);

        l.SetBlock(body);
        Iteration(l, s);
        var count = b.Sub(Count(l, addr32), b.Const(addr32 ? I32 : I64, 1));
        if (addr32) l.WriteReg(Register.ECX, count);
        else l.SetGpr(GuestRegister.Rcx, count);
        if (op is Op.Scas or Op.Cmps)
        {
            // REPE stops when ZF = 0, REPNE when ZF = 1 (after RCX was decremented).
            var zf = b.GetFlag(Flag.ZF);
            var stop = i.HasRepePrefix ? b.NotBool(zf) : zf;
            var latch = l.NewBlock();
            b.Branch(stop, done, latch);
            l.SetBlock(latch);
        }
        l.LoopBack(head);
        l.SetBlock(done);
    }

    private static IrValue Count(Lifter l, bool addr32) => addr32 ? l.ReadReg(Register.ECX) : l.Gpr(GuestRegister.Rcx);

    private static Register Accumulator(IrType t) => t switch { I8 => Register.AL, I16 => Register.AX, I32 => Register.EAX, _ => Register.RAX };

    /// <summary>Offset register value as an address (wrapped to 32 bits under an address-size override).</summary>
    private static IrValue Pointer(Lifter l, GuestRegister r, bool addr32)
    {
        var v = l.Gpr(r);
        return addr32 ? l.B.ZExt(l.B.Trunc(v, I32), I64) : v;
    }

    private static void Advance(Lifter l, GuestRegister r, IrValue step, bool addr32)
    {
        var b = l.B;
        if (addr32) l.WriteReg(Register.EAX + (int)r, b.Add(b.Trunc(l.Gpr(r), I32), b.Trunc(step, I32)));
        else l.SetGpr(r, b.Add(l.Gpr(r), step));
    }

    /// <summary>One element: memory accesses first, then flags and pointer registers.</summary>
    private static void Iteration(Lifter l, in Shape s)
    {
        var b = l.B;
        var t = s.Type;
        ulong size = (ulong)(t.Bits() / 8);
        var src = l.AddSegmentBase(s.SourceSegment, Pointer(l, GuestRegister.Rsi, s.Addr32));
        var dst = Pointer(l, GuestRegister.Rdi, s.Addr32); // ES: no base in 64-bit mode, no override
        var acc = Accumulator(t);
        bool usesSi = false, usesDi = false;
        switch (s.Op)
        {
            case Op.Movs:
                l.Store(dst, l.Load(t, src));
                usesSi = usesDi = true;
                break;
            case Op.Stos:
                l.Store(dst, l.ReadReg(acc));
                usesDi = true;
                break;
            case Op.Lods:
                l.WriteReg(acc, l.Load(t, src));
                usesSi = true;
                break;
            case Op.Scas:
            {
                var a = l.ReadReg(acc);
                var m = l.Load(t, dst);
                l.FlagsSub(a, m, b.Sub(a, m));
                usesDi = true;
                break;
            }
            case Op.Cmps:
            {
                var a = l.Load(t, src);
                var m = l.Load(t, dst);
                l.FlagsSub(a, m, b.Sub(a, m));
                usesSi = usesDi = true;
                break;
            }
        }
        var step = b.Select(b.GetFlag(Flag.DF), b.I64(0 - size), b.I64(size));
        if (usesSi) Advance(l, GuestRegister.Rsi, step, s.Addr32);
        if (usesDi) Advance(l, GuestRegister.Rdi, step, s.Addr32);
    }
}

/// <summary>
/// Bulk REP STOS and REP MOVS: as many whole elements as lie on pages the software TLB already maps
/// for the access (so no fault, MMIO or code page is possible), done on host memory. RCX, RDI and RSI
/// advance as the element loop would have advanced them; the loop finishes whatever is left.
/// </summary>
internal static unsafe class StringBulk
{
    /// <summary>Host address of [la, la + bytes) if one TLB entry maps it for the access; else null.</summary>
    private static byte* Host(Runtime.CpuContext* ctx, ulong la, ulong bytes, bool write)
    {
        ref var e = ref VirtualCpu.Entry(ctx, la);
        ulong page = la & Runtime.CpuContext.PageMask;
        if ((write ? e.WriteTag : e.ReadTag) != page || ((la + bytes - 1) & Runtime.CpuContext.PageMask) != page) return null;
        return (byte*)(la + (ulong)e.Addend);
    }

    /// <summary>Elements of <paramref name="size"/> bytes from <paramref name="la"/> to its page's end.</summary>
    private static ulong InPage(ulong la, ulong size) => (4096 - (la & 0xFFF)) / size;

    public static void Stos(Runtime.CpuContext* ctx, ulong size)
    {
        ref var s = ref ctx->State;
        if ((s.Rflags & (ulong)RFlags.DF) != 0) return;
        while (s.Rcx != 0)
        {
            ulong n = Math.Min(s.Rcx, InPage(s.Rdi, size));
            if (n == 0) return;
            byte* p = Host(ctx, s.Rdi, n * size, write: true);
            if (p is null) return;
            switch (size)
            {
                case 1: new Span<byte>(p, (int)n).Fill((byte)s.Rax); break;
                case 2: for (ulong k = 0; k < n; k++) System.Runtime.CompilerServices.Unsafe.WriteUnaligned(p + k * 2, (ushort)s.Rax); break;
                case 4: for (ulong k = 0; k < n; k++) System.Runtime.CompilerServices.Unsafe.WriteUnaligned(p + k * 4, (uint)s.Rax); break;
                default: for (ulong k = 0; k < n; k++) System.Runtime.CompilerServices.Unsafe.WriteUnaligned(p + k * 8, s.Rax); break;
            }
            s.Rdi += n * size;
            s.Rcx -= n;
        }
    }

    public static void Movs(Runtime.CpuContext* ctx, ulong size)
    {
        ref var s = ref ctx->State;
        if ((s.Rflags & (ulong)RFlags.DF) != 0) return;
        while (s.Rcx != 0)
        {
            ulong n = Math.Min(s.Rcx, Math.Min(InPage(s.Rdi, size), InPage(s.Rsi, size)));
            // A forward copy onto its own source repeats a pattern: copy no further than the distance.
            ulong gap = s.Rdi - s.Rsi;
            if (gap != 0 && gap < n * size) n = gap / size;
            if (n == 0) return;
            byte* d = Host(ctx, s.Rdi, n * size, write: true), src = Host(ctx, s.Rsi, n * size, write: false);
            if (d is null || src is null) return;
            Buffer.MemoryCopy(src, d, n * size, n * size);
            s.Rdi += n * size;
            s.Rsi += n * size;
            s.Rcx -= n;
        }
    }
}
