// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Jitvmx.Backend;
using Jitvmx.Lifting;
using Jitvmx.Runtime;

namespace Jitvmx;

/// <summary>
/// A virtual CPU. Between runs its <see cref="State"/> is the VMCS guest-state area, readable and
/// writable; <see cref="Run()"/> executes translated guest code until a VM exit and returns the exit
/// record. As with VMX, the VMM completes an intercepted instruction (writes its results and
/// advances RIP, e.g. with <see cref="CompleteCpuid"/>) before the next run.
/// Reset state: 64-bit mode with paging off (guest-linear = guest-physical), CPL 0, RFLAGS = 2.
/// </summary>
public sealed unsafe partial class VirtualCpu : IDisposable, ICodeSource
{
    private readonly CpuContext* _ctx;
    private readonly GCHandle _self;
    private readonly Region?[] _lookup = new Region?[LookupSize];
    private long _lookupGeneration;
    private VmExit _pendingExit;
    private bool _stepUncached;
    private PendingKind _pending;
    private bool _disposed;
    private ulong _budgetLeft;
    private bool _budgetActive;
    private readonly long[] _exitCounts = new long[64];
    private readonly Dictionary<ExitReason, long> _extensionCounts = [];

    private const int LookupBits = 12;
    private const int LookupSize = 1 << LookupBits;

    private enum PendingKind { None, Exit, Restart, Continue }

    internal VirtualCpu(VirtualMachine vm, int index)
    {
        Machine = vm;
        Index = index;
        _ctx = (CpuContext*)NativeMemory.AlignedAlloc((nuint)(StateOffsets.TlbInline + sizeof(TlbEntry) * CpuContext.TlbSize), 64);
        NativeMemory.Clear(_ctx, (nuint)sizeof(CpuContext));
        _ctx->Tlb = (TlbEntry*)((byte*)_ctx + StateOffsets.TlbInline);
        FlushTlb();
        _ctx->JumpCache = (JumpCacheEntry*)NativeMemory.AlignedAlloc((nuint)(sizeof(JumpCacheEntry) * CpuContext.JumpCacheSize), 64);
        ClearJumpCache();
        _self = GCHandle.Alloc(this, GCHandleType.Normal);
        _ctx->Owner = GCHandle.ToIntPtr(_self);
        Reset();
    }

    /// <summary>The VM this vCPU belongs to.</summary>
    public VirtualMachine Machine { get; }

    /// <summary>Index of the vCPU in its VM.</summary>
    public int Index { get; }

    /// <summary>The guest-state area. Valid and precise whenever the vCPU is not running.</summary>
    public ref GuestState State => ref _ctx->State;

    /// <summary>The VM-execution controls.</summary>
    public ExecutionControls Controls { get; } = new();

    /// <summary>The exit returned by the last <see cref="Run()"/>.</summary>
    public VmExit LastExit { get; private set; }

    /// <summary>Guest instructions retired since the vCPU was created.</summary>
    public ulong InstructionsRetired { get; private set; }

    /// <summary>Number of exits with each basic reason so far.</summary>
    public IReadOnlyDictionary<ExitReason, long> ExitCounts
    {
        get
        {
            var d = new Dictionary<ExitReason, long>(_extensionCounts);
            for (int i = 0; i < _exitCounts.Length; i++)
                if (_exitCounts[i] != 0) d[(ExitReason)i] = _exitCounts[i];
            return d;
        }
    }

    internal CpuContext* Context => _ctx;

    internal static VirtualCpu FromContext(CpuContext* ctx) => (VirtualCpu)GCHandle.FromIntPtr(ctx->Owner).Target!;

    /// <summary>Puts the vCPU in its reset state (flat 64-bit mode, registers zero).</summary>
    public void Reset()
    {
        ref var s = ref _ctx->State;
        s = default;
        s.Rflags = (ulong)RFlags.Reserved1;
        s.Cr0 = 0x31;       // PE, ET, NE. 64-bit code with CR0.PG clear is Jitvmx's flat mode: guest-linear = guest-physical.
        s.Cr4 = 0x620;      // PAE, OSFXSR, OSXMMEXCPT: SSE is enabled, as an OS would have set it up
        s.Efer = 0x500;     // LME, LMA
        s.Cs = new SegmentRegister { Selector = 0x08, Limit = 0xFFFFFFFF, AccessRights = 0xA09B };
        var data = new SegmentRegister { Selector = 0x10, Limit = 0xFFFFFFFF, AccessRights = 0xC093 };
        s.Ds = data; s.Es = data; s.Ss = data; s.Fs = data; s.Gs = data;
        s.Mxcsr = 0x1F80;
        s.X87.Control = 0x037F;
        s.X87.Tag = 0xFFFF;
        s.Xcr0 = 1;
        s.Pat = 0x0007040600070406;
        s.ApicBase = 0xFEE00900;
        _pending = PendingKind.None;
        _mmioLog.Clear();
    }

    // ===================== run loop =====================

    /// <summary>Runs the guest until a VM exit.</summary>
    public VmExit Run()
    {
        _budgetActive = false;
        return RunCore();
    }

    /// <summary>Runs the guest for at most <paramref name="maxInstructions"/> guest instructions; running out is <see cref="ExitReason.InstructionBudget"/>.</summary>
    public VmExit Run(ulong maxInstructions)
    {
        _budgetActive = true;
        _budgetLeft = maxInstructions;
        return RunCore();
    }

    /// <summary>
    /// Asks the vCPU to exit with <see cref="ExitReason.ExitRequested"/> within a bounded number of
    /// guest instructions (at most about a million: the dispatcher sees the request). Safe from any thread.
    /// </summary>
    public void RequestExit() => Volatile.Write(ref _ctx->StopRequested, 1);

    // The budget is handed out in slices, so compiled code comes back to the dispatcher at least
    // every slice: that is where an exit request is seen (loops and chains check only the budget),
    // and with a background tier a loop entered once gets a region of its own at its loop header
    // and is measured.
    private const long Slice = 1 << 20;

    /// <summary>
    /// What one entry through the dispatcher adds to a region's hotness for the background tier, in guest
    /// instructions: about what an entry costs (a region of the IL tier entered from the dispatcher, ~30 ns,
    /// against ~1 ns a guest instruction in its code).
    /// </summary>
    internal const int DispatchWeight = 32;
    private long _outsideSlice;

    private VmExit RunCore()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var ctx = _ctx;
        ulong timer = Controls.PreemptionTimer ?? ulong.MaxValue;
        ulong limit = _budgetActive ? Math.Min(timer, _budgetLeft) : timer;
        long start = limit >= long.MaxValue ? long.MaxValue : (long)limit;
        long slice = Math.Min(start, Slice);
        ctx->Remaining = slice;
        _outsideSlice = start - slice;
        ctx->Pending = 0;
        _pending = PendingKind.None;
        VmExit exit = DeliverPendingEvent(out bool exited);
        if (!exited) exit = Dispatch();
        long executed = start - (ctx->Remaining + _outsideSlice);
        _outsideSlice = 0;
        InstructionsRetired += (ulong)executed;
        if (Controls.PreemptionTimer is ulong t) Controls.PreemptionTimer = t - (ulong)executed;
        if (_budgetActive) _budgetLeft -= (ulong)executed;
        LastExit = exit;
        Count(exit.Reason);
        return exit;
    }

    private void Count(ExitReason r)
    {
        if ((uint)r < (uint)_exitCounts.Length) _exitCounts[(int)r]++;
        else _extensionCounts[r] = _extensionCounts.GetValueOrDefault(r) + 1;
    }

    private VmExit Dispatch()
    {
        var ctx = _ctx;
        Region? next = null;
        bool profile = Machine.Options.Profile;
        while (true)
        {
            if (ctx->StopRequested != 0)
            {
                ctx->StopRequested = 0;
                return new VmExit { Reason = ExitReason.ExitRequested, Rip = ctx->State.Rip };
            }
            if (ctx->Remaining <= 0 && !RefillSlice())
                return BudgetExit();

            ulong rip = ctx->State.Rip;
            if (_stepUncached)
            {
                // A store hit a page holding translated code (possibly this code): run the storing
                // instruction from a translation that does not protect its page, then carry on.
                _stepUncached = false;
                next = Machine.Cache.Translate(this, rip, singleStep: true, out _fetchFaultAddress, register: false);
                if (next is null) return FetchFault();
            }
            else if (next is null || !next.Valid)
            {
                next = Lookup(rip, singleStep: _mmioLog.Count > 0);
                if (next is null)
                    return FetchFault();
            }
            if (next.EntryCharge > ctx->Remaining && !next.SingleStep && RefillSlice())
            {
                // The slice ran low, not the budget: carry on with a fresh slice.
            }
            else if (next.EntryCharge > ctx->Remaining && !next.SingleStep)
            {
                // Not enough budget for the whole entry block: step one instruction at a time to the exact boundary.
                next = Lookup(rip, singleStep: true);
                if (next is null) return FetchFault();
            }
            var current = next;
            if (current.SingleStep) _mmioCursor = 0;
            int code;
            long before = ctx->Remaining;
            long t0 = profile ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            // Native code reports whose slot it returns; 0 after the call means managed code ran
            // (possibly the old code of a region a background tier swapped meanwhile).
            ctx->ExitCookie = 0;
            try
            {
                code = current.Function(ctx);
            }
            catch (InvalidProgramException e)
            {
                // The JIT rejected the region before any of it ran: guest state is untouched. This is a
                // Jitvmx bug; report it to the VMM rather than running anything imprecise.
                throw new InvalidOperationException($"Jitvmx could not compile the region at 0x{current.Entry:x}: {e.Message}", e);
            }
            if (profile)
            {
                current.ProfileEntries++;
                current.ProfileTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
                current.ProfileRetired += before - ctx->Remaining;
            }
            if (current.Interpreted)
            {
                // Not while native code for it is on its way from the tier profile: the host JIT costs more.
                if (((current.Retired += before - ctx->Remaining) >= Machine.Options.InterpreterTierUp
                    || current.Function.Target is Interpreter { LeftHotLoop: true }) && !current.AwaitingHint)
                    Machine.Cache.Promote(this, current);
            }
            else if (Machine.TierCompiler is { } tier && !current.SingleStep)
            {
                // Counted on while queued too: the tier compiles the regions that keep running first.
                // Each entry through here costs about as much as DispatchWeight guest instructions, so a
                // short region entered millions of times (a PLT stub's one JMP, a small callee) is as hot
                // as that time says, not just as its instructions do.
                current.Retired += before - ctx->Remaining + DispatchWeight;
                if (!current.TierQueued && current.Retired >= Machine.Options.TierUpThreshold)
                {
                    current.TierQueued = true;
                    Interlocked.Increment(ref Machine.Cache.Statistics.RegionsQueuedForTierUp);
                    tier.Enqueue(this, current);
                }
            }
            if (code >= 0)
            {
                // Native code may have chained through other regions: the slot is the last one's.
                if (ctx->ExitCookie != 0 && ctx->ExitCookie != current.Cookie) current = Machine.Cache.ByCookie(ctx->ExitCookie);
                next = current.Successors[code];
                if (next is null || !next.Valid)
                {
                    next = Lookup(current.SuccessorRips[code], singleStep: false);
                    current.Successors[code] = next;
                }
                if (current.Links != null && next is { Chainable: true } && next.Mode == current.Mode && current.Links[code] != next.NativeEntry)
                    Machine.Cache.Link(current, code, next);
                if (current.SingleStep) CompleteSingleStep();
                continue;
            }
            next = null;
            // Code below the last tier learns where its computed jumps go, for the background tier
            // (chained native code is the last tier, and its exits may be another region's).
            if (code == RegionCode.Indirect && !current.TierQueued && !current.Interpreted && !current.Chainable && ctx->Pending == 0)
                current.RecordIndirectTarget(ctx->IndirectSite, ctx->State.Rip);
            if (code == RegionCode.Indirect && current.Native && ctx->Pending == 0 && _mmioLog.Count == 0)
            {
                // Native code left for a computed target (RET, an indirect jump or call): find the
                // target now and let native code jump there itself next time.
                next = Lookup(ctx->State.Rip, singleStep: false);
                if (next is null) return FetchFault();
                if (next.Chainable && next.Mode == current.Mode) Machine.Cache.CacheJump(this, ctx->State.Rip, next);
                continue;
            }
            if (code == RegionCode.Step && ctx->Pending == 0)
            {
                // One-instruction regions never run such code: this makes progress.
                next = Lookup(ctx->State.Rip, singleStep: true);
                if (next is null) return FetchFault();
                continue;
            }
            if (code == RegionCode.Stop || ctx->Pending != 0)
            {
                ctx->Pending = 0;
                var kind = _pending;
                _pending = PendingKind.None;
                if (kind == PendingKind.Exit) return _pendingExit;
                if (kind == PendingKind.Restart) _stepUncached = true;
                else if (current.SingleStep) CompleteSingleStep();
                // Restart (self-modifying code), continue, budget or exit request: the loop head sorts it out.
                continue;
            }
            if (current.SingleStep) CompleteSingleStep();
        }
    }

    private void CompleteSingleStep()
    {
        // An instruction replayed for MMIO has retired: its completed accesses are consumed.
        _mmioLog.Clear();
    }

    /// <summary>Moves the next slice of the budget into the context; false when none is left.</summary>
    private bool RefillSlice()
    {
        if (_outsideSlice <= 0) return false;
        long s = Math.Min(_outsideSlice, Slice);
        _outsideSlice -= s;
        _ctx->Remaining += s;
        return true;
    }

    private VmExit BudgetExit()
    {
        // Whichever limit was the smaller one ran out; the timer wins a tie, as VMX checks it first.
        bool timer = Controls.PreemptionTimer is ulong t && (!_budgetActive || t <= _budgetLeft);
        return new VmExit { Reason = timer ? ExitReason.PreemptionTimer : ExitReason.InstructionBudget, Rip = _ctx->State.Rip };
    }

    private Region? Lookup(ulong rip, bool singleStep)
    {
        var cache = Machine.Cache;
        long gen = cache.Generation;
        if (gen != _lookupGeneration)
        {
            Array.Clear(_lookup);
            _lookupGeneration = gen;
        }
        int slot = (int)((rip ^ (rip >> LookupBits)) & (LookupSize - 1));
        // Code is translated for one x87/SSE enable mode (CR0/CR4 bits); a region of another mode is a miss.
        int mode = X87SseEnable.Mode(_ctx->State);
        if (mode != _jumpCacheMode)
        {
            // Native code's indirect jumps must not reach code of the old mode.
            ClearJumpCache();
            _jumpCacheMode = mode;
        }
        if (!singleStep)
        {
            var r = _lookup[slot];
            if (r is not null && r.Entry == rip && r.Valid && r.Mode == mode)
            {
                cache.Statistics.CacheHits++;
                return r;
            }
        }
        var found = cache.Find(rip, singleStep);
        if (found is not null && found.Mode != mode) found = null;
        if (found is not null) cache.Statistics.CacheHits++;
        else found = cache.Translate(this, rip, singleStep, out _fetchFaultAddress);
        if (found is not null && !singleStep) _lookup[slot] = found;
        return found;
    }

    private ulong _fetchFaultAddress;
    private int _jumpCacheMode;

    private VmExit FetchFault()
    {
        // The first byte that could not be fetched decides the exit: an EPT violation on the fetch.
        ulong la = _fetchFaultAddress;
        ulong gpa = la;
        var region = Machine.Physical.Find(gpa);
        ulong q = ExitQualification.EptFetch | ExitQualification.EptLinearValid | ExitQualification.EptTranslatedAccess | PermissionBits(region);
        return new VmExit
        {
            Reason = ExitReason.EptViolation,
            Qualification = q,
            Rip = _ctx->State.Rip,
            GuestLinearAddress = la,
            GuestPhysicalAddress = gpa,
            AccessSize = 1,
        };
    }

    internal static ulong PermissionBits(GuestMemoryRegion? r)
    {
        if (r is null) return 0;
        ulong q = 0;
        if ((r.Permissions & MemoryPermissions.Read) != 0) q |= ExitQualification.EptReadable;
        if ((r.Permissions & MemoryPermissions.Write) != 0) q |= ExitQualification.EptWritable;
        if ((r.Permissions & MemoryPermissions.Execute) != 0) q |= ExitQualification.EptExecutable;
        return q;
    }

    // ===================== pending exits set by helpers =====================

    /// <summary>Records a VM exit for the dispatcher to return (called from helpers and the memory slow path).</summary>
    internal void SetExit(in VmExit exit)
    {
        _pendingExit = exit;
        _pending = PendingKind.Exit;
        _ctx->Pending = 1;
    }

    internal void SetRestart()
    {
        _pending = PendingKind.Restart;
        _ctx->Pending = 1;
    }

    /// <summary>Counts an instruction completed by a helper (the region gave it back to the budget).</summary>
    internal void RetireOne() => _ctx->Remaining--;

    // ===================== code fetch (ICodeSource) =====================

    int ICodeSource.FetchCode(ulong address, Span<byte> buffer) => FetchCode(address, buffer);

    internal int FetchCode(ulong address, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            ulong la = address + (ulong)done;
            if (TranslateForCode(la) is not ulong gpa) break;
            var r = Machine.Physical.Find(gpa);
            if (r is null || (r.Permissions & MemoryPermissions.Execute) == 0) break;
            int inPage = (int)Math.Min(4096 - (la & 0xFFF), (ulong)(buffer.Length - done));
            new ReadOnlySpan<byte>((byte*)r.HostAddress + (long)(gpa - r.GuestPhysicalAddress), inPage).CopyTo(buffer[done..]);
            done += inPage;
        }
        return done;
    }

    /// <summary>Guest-physical address of a code byte, or null (flat mode: identity).</summary>
    internal ulong? TranslateForCode(ulong linear) => linear;

    /// <summary>Empties the indirect-branch cache of native code (native code was invalidated, or the x87/SSE mode changed).</summary>
    internal void ClearJumpCache()
    {
        var jc = _ctx->JumpCache;
        for (int i = 0; i < CpuContext.JumpCacheSize; i++)
        {
            jc[i].Function = 0;
            jc[i].Rip = ulong.MaxValue;
        }
    }

    // ===================== TLB =====================

    /// <summary>Invalidates the whole software TLB.</summary>
    public void FlushTlb()
    {
        var tlb = _ctx->Tlb;
        for (int i = 0; i < CpuContext.TlbSize; i++)
        {
            tlb[i].ReadTag = TlbEntry.Invalid;
            tlb[i].WriteTag = TlbEntry.Invalid;
        }
    }

    /// <summary>Drops write permission of TLB entries mapping guest-physical <paramref name="gpaPage"/> (it now holds code).</summary>
    internal void FlushTlbWrite(ulong gpaPage)
    {
        // Flat mode: linear = physical, so the entry is at the page's own index.
        ref var e = ref _ctx->Tlb[(gpaPage >> CpuContext.PageBits) & (CpuContext.TlbSize - 1)];
        if (e.WriteTag == gpaPage) e.WriteTag = TlbEntry.Invalid;
    }

    // ===================== completion helpers for the VMM =====================

    /// <summary>Advances RIP past the instruction of the last exit (as a VMM does after emulating it).</summary>
    public void SkipInstruction()
    {
        if (LastExit.InstructionLength == 0)
            throw new InvalidOperationException($"the last exit ({LastExit.Reason}) has no instruction to skip");
        _ctx->State.Rip += (ulong)LastExit.InstructionLength;
        InstructionsRetired++;
    }

    /// <summary>Completes a CPUID exit: writes EAX–EDX (upper halves zeroed) and advances RIP.</summary>
    public void CompleteCpuid(uint eax, uint ebx, uint ecx, uint edx)
    {
        Expect(ExitReason.Cpuid);
        ref var s = ref _ctx->State;
        s.Rax = eax; s.Rbx = ebx; s.Rcx = ecx; s.Rdx = edx;
        SkipInstruction();
    }

    /// <summary>Completes an IN exit: writes the value into AL/AX/EAX per the access size and advances RIP.</summary>
    public void CompleteIoIn(uint value)
    {
        Expect(ExitReason.IoInstruction);
        ulong q = LastExit.Qualification;
        if (!ExitQualification.IoIsIn(q) || ExitQualification.IoIsString(q))
            throw new InvalidOperationException("the last exit is not a non-string IN");
        ref var s = ref _ctx->State;
        s.Rax = ExitQualification.IoSize(q) switch
        {
            1 => (s.Rax & ~0xFFUL) | (value & 0xFF),
            2 => (s.Rax & ~0xFFFFUL) | (value & 0xFFFF),
            _ => value,
        };
        SkipInstruction();
    }

    /// <summary>Completes an OUT exit (advances RIP).</summary>
    public void CompleteIoOut()
    {
        Expect(ExitReason.IoInstruction);
        SkipInstruction();
    }

    /// <summary>Completes an RDMSR exit: EDX:EAX = value, RIP advanced.</summary>
    public void CompleteRdmsr(ulong value)
    {
        Expect(ExitReason.Rdmsr);
        _ctx->State.Rax = (uint)value;
        _ctx->State.Rdx = value >> 32;
        SkipInstruction();
    }

    /// <summary>Completes an RDTSC (and RDTSCP: ECX = <paramref name="tscAux"/>) exit.</summary>
    public void CompleteRdtsc(ulong tsc, uint tscAux = 0)
    {
        if (LastExit.Reason is not (ExitReason.Rdtsc or ExitReason.Rdtscp)) Expect(ExitReason.Rdtsc);
        _ctx->State.Rax = (uint)tsc;
        _ctx->State.Rdx = tsc >> 32;
        if (LastExit.Reason == ExitReason.Rdtscp) _ctx->State.Rcx = tscAux;
        SkipInstruction();
    }

    private void Expect(ExitReason r)
    {
        if (LastExit.Reason != r) throw new InvalidOperationException($"the last exit is {LastExit.Reason}, not {r}");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _self.Free();
        NativeMemory.AlignedFree(_ctx->JumpCache);
        NativeMemory.AlignedFree(_ctx);
    }

    internal static ref TlbEntry Entry(CpuContext* ctx, ulong la) => ref ctx->Tlb[(la >> CpuContext.PageBits) & (CpuContext.TlbSize - 1)];
}
