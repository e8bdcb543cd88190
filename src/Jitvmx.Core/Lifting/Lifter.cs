// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;
using static Jitvmx.Ir.IrType;

namespace Jitvmx.Lifting;

/// <summary>Lifts one guest instruction into IR.</summary>
internal delegate void Emitter(Lifter l, in Instruction insn);

/// <summary>
/// Per-translation lifting context: operand access with x86 partial-register rules, the memory
/// path, flag computation with the last flag producer remembered for condition codes, and control
/// flow into and out of the region. Family files (Alu.cs, Shifts.cs, …) use only this API.
/// </summary>
internal sealed partial class Lifter
{
    private readonly Translator _translator;
    private FlagProducer _producer;

    public Lifter(Translator translator, IrBuilder builder)
    {
        _translator = translator;
        B = builder;
    }

    /// <summary>The IR builder, positioned in the current block.</summary>
    public IrBuilder B { get; }

    /// <summary>Address of the instruction being lifted.</summary>
    public ulong Rip { get; private set; }

    /// <summary>Address of the next instruction.</summary>
    public ulong NextRip { get; private set; }

    /// <summary>Length of the instruction being lifted.</summary>
    public int Length => (int)(NextRip - Rip);

    /// <summary>The bytes of the instruction being lifted (as many as fit in <paramref name="buffer"/>); returns how many.</summary>
    public int InstructionBytes(Span<byte> buffer) => _translator.FetchCode(Rip, buffer[..Math.Min(buffer.Length, Length)]);

    /// <summary>Whether the region is a single instruction (stepping to a budget boundary or replaying MMIO).</summary>
    public bool SingleStep => _translator.SingleStep;

    /// <summary>Set by an emitter that ended the guest basic block (a branch, an exit).</summary>
    public bool EndsBlock { get; set; }

    internal void Begin(in Instruction insn, GuestInsn gi)
    {
        Rip = insn.IP;
        NextRip = insn.NextIP;
        EndsBlock = false;
        B.Insn = gi;
    }

    // ================= registers =================

    /// <summary>GPR index (0–15) of any-size general register.</summary>
    public static int GprIndex(Register r) => r.GetFullRegister() - Register.RAX;

    private static bool IsHighByte(Register r) => r is Register.AH or Register.CH or Register.DH or Register.BH;

    /// <summary>IR type of a register.</summary>
    public static IrType RegType(Register r) => IrTypes.FromBytes(r.GetSize());

    /// <summary>Reads a general register of any size (AH–BH included).</summary>
    public IrValue ReadReg(Register r)
    {
        if (!r.IsGPR()) throw new LiftException($"register {r} is not supported here");
        var full = B.GetReg(GprIndex(r));
        int size = r.GetSize();
        if (size == 8) return full;
        if (IsHighByte(r)) return B.Trunc(B.LShr(full, B.I64(8)), I8);
        return B.Trunc(full, IrTypes.FromBytes(size));
    }

    /// <summary>Writes a general register: 32-bit writes zero the upper half, 8/16-bit writes merge.</summary>
    public void WriteReg(Register r, IrValue v)
    {
        if (!r.IsGPR()) throw new LiftException($"register {r} is not supported here");
        int idx = GprIndex(r);
        int size = r.GetSize();
        switch (size)
        {
            case 8: B.SetReg(idx, v); return;
            case 4: B.SetReg(idx, B.ZExt(v, I64)); return;
        }
        var old = B.GetReg(idx);
        if (IsHighByte(r))
        {
            var merged = B.Or(B.And(old, B.I64(~0xFF00UL)), B.Shl(B.ZExt(v, I64), B.I64(8)));
            B.SetReg(idx, merged);
            return;
        }
        ulong keep = size == 2 ? ~0xFFFFUL : ~0xFFUL;
        B.SetReg(idx, B.Or(B.And(old, B.I64(keep)), B.ZExt(v, I64)));
    }

    /// <summary>Reads an XMM register (V128).</summary>
    public IrValue ReadXmm(Register r) => B.GetXmm(r - Register.XMM0);

    /// <summary>Writes an XMM register (V128).</summary>
    public void WriteXmm(Register r, IrValue v) => B.SetXmm(r - Register.XMM0, v);

    /// <summary>Calls a pure helper registered with <see cref="Helpers.Register(System.Reflection.MethodInfo, bool)"/> (vector and scalar operations written in C#, inlined by the JIT).</summary>
    public IrValue CallPure(int helper, IrType result, params IrValue[] args) => B.Call(helper, result, args);

    /// <summary>Reads a 64-bit GPR by index.</summary>
    public IrValue Gpr(GuestRegister r) => B.GetReg((int)r);

    /// <summary>Writes a 64-bit GPR by index.</summary>
    public void SetGpr(GuestRegister r, IrValue v) => B.SetReg((int)r, v);

    // ================= operands =================

    /// <summary>Size in bytes of operand <paramref name="n"/> (immediates take the size of operand 0).</summary>
    public static int OpSize(in Instruction insn, int n)
    {
        switch (insn.GetOpKind(n))
        {
            case OpKind.Register: return insn.GetOpRegister(n).GetSize();
            case OpKind.Memory: return insn.MemorySize.GetSize();
            case OpKind.Immediate8: return 1;
            case OpKind.Immediate16 or OpKind.Immediate8to16: return n == 0 ? 2 : OpSize(insn, 0);
            default: return n == 0 ? 8 : OpSize(insn, 0);
        }
    }

    /// <summary>IR type of operand <paramref name="n"/>.</summary>
    public static IrType OpType(in Instruction insn, int n) => IrTypes.FromBytes(OpSize(insn, n));

    /// <summary>Reads operand <paramref name="n"/> at its own size (immediates at the size of operand 0, sign-extended by Iced).</summary>
    public IrValue ReadOp(in Instruction insn, int n) => ReadOp(insn, n, OpType(insn, n));

    /// <summary>Reads operand <paramref name="n"/> as type <paramref name="t"/>.</summary>
    public IrValue ReadOp(in Instruction insn, int n, IrType t)
    {
        switch (insn.GetOpKind(n))
        {
            case OpKind.Register when insn.GetOpRegister(n).IsXMM():
                var x = ReadXmm(insn.GetOpRegister(n));
                return t == V128 ? x : B.Trunc(x, t);
            case OpKind.Register: return ReadReg(insn.GetOpRegister(n));
            case OpKind.Memory: return Load(t, Address(insn));
            case OpKind.Immediate8 or OpKind.Immediate8_2nd or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate64
                or OpKind.Immediate8to16 or OpKind.Immediate8to32 or OpKind.Immediate8to64 or OpKind.Immediate32to64:
                return B.Const(t, insn.GetImmediate(n));
            default: throw new LiftException($"operand kind {insn.GetOpKind(n)} is not supported");
        }
    }

    /// <summary>Writes operand <paramref name="n"/> (register or memory).</summary>
    public void WriteOp(in Instruction insn, int n, IrValue v)
    {
        switch (insn.GetOpKind(n))
        {
            case OpKind.Register when insn.GetOpRegister(n).IsXMM():
                // A scalar written to an XMM register zero-extends it (MOVD/MOVQ); merging forms build the V128 themselves.
                WriteXmm(insn.GetOpRegister(n), v.Type == V128 ? v : B.ZExt(v, V128));
                break;
            case OpKind.Register: WriteReg(insn.GetOpRegister(n), v); break;
            case OpKind.Memory: Store(Address(insn), v); break;
            default: throw new LiftException($"cannot write operand kind {insn.GetOpKind(n)}");
        }
    }

    /// <summary>Whether operand <paramref name="n"/> is memory.</summary>
    public static bool IsMem(in Instruction insn, int n) => insn.GetOpKind(n) == OpKind.Memory;

    /// <summary>Guest-linear effective address of the memory operand (segment base of FS/GS included, 32-bit address size honoured).</summary>
    public IrValue Address(in Instruction insn)
    {
        IrValue ea;
        if (insn.IsIPRelativeMemoryOperand)
        {
            ea = B.I64(insn.IPRelativeMemoryAddress);
        }
        else
        {
            ea = B.I64(insn.MemoryDisplacement64);
            bool addr32 = false;
            if (insn.MemoryBase != Register.None)
            {
                addr32 |= insn.MemoryBase.GetSize() == 4;
                ea = B.Add(ReadRegFull(insn.MemoryBase), ea);
            }
            if (insn.MemoryIndex != Register.None)
            {
                addr32 |= insn.MemoryIndex.GetSize() == 4;
                var idx = ReadRegFull(insn.MemoryIndex);
                int scale = insn.MemoryIndexScale;
                if (scale > 1) idx = B.Shl(idx, B.I64((ulong)System.Numerics.BitOperations.Log2((uint)scale)));
                ea = B.Add(ea, idx);
            }
            if (addr32) ea = B.ZExt(B.Trunc(ea, I32), I64);
        }
        return AddSegmentBase(insn.MemorySegment, ea);
    }

    /// <summary>Adds the FS or GS base (the only segment bases that apply in 64-bit mode).</summary>
    public IrValue AddSegmentBase(Register segment, IrValue ea)
    {
        if (segment == Register.FS) return B.Add(ea, B.GetState(I64, StateOffsets.FsBase));
        if (segment == Register.GS) return B.Add(ea, B.GetState(I64, StateOffsets.GsBase));
        return ea;
    }

    private IrValue ReadRegFull(Register r) => r.GetSize() == 8 ? B.GetReg(GprIndex(r)) : B.ZExt(ReadReg(r), I64);

    // ================= memory =================

    /// <summary>Loads through the memory path.</summary>
    public IrValue Load(IrType t, IrValue address) => B.Load(t, address);

    /// <summary>Stores through the memory path.</summary>
    public void Store(IrValue address, IrValue v) => B.Store(address, v);

    /// <summary>Pushes a value (its size decides the RSP step). RSP is written after the store, so a faulting push changes nothing.</summary>
    public void Push(IrValue v)
    {
        var rsp = B.Sub(Gpr(GuestRegister.Rsp), B.I64((ulong)(v.Type.Bits() / 8)));
        Store(rsp, v);
        SetGpr(GuestRegister.Rsp, rsp);
    }

    /// <summary>Pops a value of type <paramref name="t"/>; returns it with the new RSP value not yet written (the caller writes it after its other memory accesses).</summary>
    public IrValue PopValue(IrType t, out IrValue newRsp)
    {
        var rsp = Gpr(GuestRegister.Rsp);
        var v = Load(t, rsp);
        newRsp = B.Add(rsp, B.I64((ulong)(t.Bits() / 8)));
        return v;
    }

    /// <summary>Pops and commits RSP.</summary>
    public IrValue Pop(IrType t)
    {
        var v = PopValue(t, out var rsp);
        SetGpr(GuestRegister.Rsp, rsp);
        return v;
    }

    // ================= control flow =================

    /// <summary>Continues guest execution at a known address: a branch inside the region when the translator takes it in, else a region exit. Ends the current block.</summary>
    public void JumpTo(ulong target)
    {
        var block = _translator.InternalTarget(target);
        if (block is not null) B.Jump(block);
        else B.ExitDirect(target);
        EndsBlock = true;
    }

    /// <summary>Two-way guest branch on <paramref name="cond"/>. Ends the current block.</summary>
    public void BranchTo(IrValue cond, ulong ifTrue, ulong ifFalse)
    {
        var t = TargetBlock(ifTrue);
        var f = TargetBlock(ifFalse);
        B.Branch(cond, t, f);
        EndsBlock = true;
    }

    private IrBlock TargetBlock(ulong target)
    {
        var block = _translator.InternalTarget(target);
        if (block is not null) return block;
        var stub = B.NewBlock();
        var saved = B.Block;
        B.SetBlock(stub);
        B.ExitDirect(target);
        B.SetBlock(saved);
        return stub;
    }

    /// <summary>
    /// A direct CALL whose return address is already pushed: continues in the callee inside the
    /// region when the translator takes the call in, else leaves the region. Ends the current block.
    /// </summary>
    public void CallTo(ulong target, ulong returnAddress)
    {
        // A call is a push and a jump: code the region has already (a recursive call to its entry)
        // is jumped to inside it; its RET then leaves, or continues at a predicted return address.
        var block = _translator.InlineCall(target, returnAddress) ?? _translator.ExistingBlock(target);
        if (block is not null) B.Jump(block);
        else B.ExitDirect(target);
        EndsBlock = true;
    }

    /// <summary>
    /// RET to a popped address: inside an inlined call, one compare with the expected return address
    /// continues in the caller within the region; anything else leaves through the dispatcher.
    /// </summary>
    public void ReturnTo(IrValue target)
    {
        ulong expected = 0;
        if (_translator.InlinedReturn() is { } r)
        {
            GuardedBranch(target, r.ReturnAddress, r.Continuation);
            expected = r.ReturnAddress;
        }
        foreach (var (site, t) in _translator.PredictedTargets)
            if (site == Rip && t != expected) GuardedBranch(target, t, _translator.InternalTarget(t));
        B.ExitIndirect(target, Rip);
        EndsBlock = true;
    }

    /// <summary>
    /// Continues at a computed address: a predicted target (seen at run time) continues inside the
    /// region after a compare, anything else leaves through the dispatcher. For an indirect CALL,
    /// <paramref name="returnAddress"/> lets the predicted callee's RET continue in the region. Ends the current block.
    /// </summary>
    public void JumpIndirect(IrValue target, ulong? returnAddress = null)
    {
        foreach (var (site, t) in _translator.PredictedTargets)
            if (site == Rip) GuardedBranch(target, t, returnAddress is ulong ra ? _translator.PredictedCall(t, ra) : _translator.InternalTarget(t));
        B.ExitIndirect(target, Rip);
        EndsBlock = true;
    }

    private void GuardedBranch(IrValue target, ulong expected, IrBlock? block)
    {
        if (block is null) return;
        var other = B.NewBlock();
        B.Branch(B.Eq(target, B.I64(expected)), block, other);
        B.SetBlock(other);
    }

    /// <summary>Ends the block through a helper that sees precise state (RIP at this instruction) and decides what follows.</summary>
    public void ExitThrough(HelperId helper, params IrValue[] extra)
    {
        var args = new IrValue[2 + extra.Length];
        args[0] = B.I64(Rip);
        args[1] = B.I64((ulong)Length);
        extra.CopyTo(args, 2);
        B.ExitHelper(helper, args);
        EndsBlock = true;
    }

    /// <summary>Raises a guest exception at this instruction (fault semantics). Ends the block.</summary>
    public void RaiseException(int vector, uint errorCode = 0)
    {
        ExitThrough(HelperId.RaiseException, B.I64((ulong)vector), B.I64(errorCode));
    }

    /// <summary>Raises a guest exception when <paramref name="cond"/> holds; lifting continues on the other path.</summary>
    public void RaiseExceptionIf(IrValue cond, int vector, uint errorCode = 0)
    {
        if (IrBuilder.IsConst(cond, out ulong c) && c == 0) return;
        var fault = B.NewBlock();
        var cont = B.NewBlock();
        B.Branch(cond, fault, cont);
        B.SetBlock(fault);
        ExitThrough(HelperId.RaiseException, B.I64((ulong)vector), B.I64(errorCode));
        B.SetBlock(cont);
        EndsBlock = false;
    }

    /// <summary>Starts a new IR block in the middle of an instruction (for loops such as REP and for conditional work).</summary>
    public IrBlock NewBlock() => B.NewBlock();

    /// <summary>Positions the builder at <paramref name="block"/>.</summary>
    public void SetBlock(IrBlock block) => B.SetBlock(block);

    /// <summary>
    /// A back-edge created inside one instruction (REP string loops): jumps to <paramref name="loopHead"/>
    /// unless an exit was requested or the budget ran out, in which case the region stops with RIP at
    /// this instruction — an interruptible instruction resumes from its registers.
    /// </summary>
    public void LoopBack(IrBlock loopHead)
    {
        loopHead.ResumeInsn ??= B.Insn;
        if (SingleStep)
        {
            // One iteration per dispatch when stepping, so an MMIO replay covers exactly one iteration's accesses.
            B.ExitHelper(HelperId.StopAt, B.I64(Rip));
            return;
        }
        var requested = B.GetState(I32, StateOffsets.StopRequested);
        var stop = B.NewBlock();
        B.Branch(B.Ne(requested, B.I32(0)), stop, loopHead);
        B.SetBlock(stop);
        B.ExitHelper(HelperId.StopAt, B.I64(Rip));
    }
}

/// <summary>An instruction the lifter cannot translate; it becomes #UD at run time.</summary>
internal sealed class LiftException(string message) : Exception(message);
