// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Ir;

namespace Jitvmx.Lifting;

/// <summary>Reads guest code for the translator: executable bytes only.</summary>
internal interface ICodeSource
{
    /// <summary>
    /// Copies up to <paramref name="buffer"/>.Length bytes of executable guest code starting at guest-linear
    /// <paramref name="address"/>; returns how many contiguous bytes were executable (0 when the first is not).
    /// </summary>
    int FetchCode(ulong address, Span<byte> buffer);
}

/// <summary>Limits on region formation.</summary>
internal readonly record struct RegionLimits(int MaxInstructions, int MaxBlocks, int MaxBlockInstructions, int MaxCallDepth = 0)
{
    public static readonly RegionLimits Default = new(400, 32, 96);
    public static readonly RegionLimits SingleInstruction = new(1, 1, 1);
}

/// <summary>
/// Block discovery and lifting of one region: starting at an entry RIP, follows direct branches
/// while the limits allow and lifts every guest block into one <see cref="IrRegion"/>.
/// </summary>
internal sealed class Translator
{
    // Blocks are short: fetch a small window of code and refill when a block runs past it.
    private const int FetchWindow = 512;
    private readonly ICodeSource _code;
    private readonly RegionLimits _limits;
    private readonly IrRegion _region = new();
    private readonly IrBuilder _b;
    private readonly Lifter _lifter;
    private readonly Dictionary<(ulong Address, int Context), IrBlock> _heads = [];
    private readonly Queue<(ulong Address, int Context)> _queue = new();
    // Inlined calls: context 0 is the region's own code; each direct call taken into the region
    // gets a context whose RET can continue inside the region at the known return address.
    private readonly List<(int Parent, ulong ReturnAddress, int Depth)> _contexts = [(-1, 0, 0)];
    private int _context;
    private readonly byte[] _buffer = new byte[FetchWindow];
    private int _lifted;
    private readonly int _mode;
    private (ulong Site, ulong Target)[] _predicted = [];

    /// <summary>Whether the region is limited to one instruction.</summary>
    public bool SingleStep => _limits.MaxInstructions == 1;

    /// <summary>Mnemonics seen that have no emitter (they raised #UD).</summary>
    public List<Mnemonic> Unsupported { get; } = [];

    /// <summary>Instructions whose emitter failed unexpectedly (they raised #UD).</summary>
    public List<string> LifterErrors { get; } = [];

    private Translator(ICodeSource code, RegionLimits limits, int mode)
    {
        _code = code;
        _limits = limits;
        _mode = mode;
        _b = new IrBuilder(_region);
        _lifter = new Lifter(this, _b);
    }

    /// <summary>
    /// Translates the region at <paramref name="entry"/>. Returns null with <paramref name="faultAddress"/>
    /// set when the first instruction cannot be fetched. <paramref name="mode"/> is the
    /// <see cref="X87SseEnable.Mode"/> the region is translated for (0: x87, SSE and XSAVE enabled).
    /// </summary>
    /// <remarks>
    /// <paramref name="predictedTargets"/> are computed-branch targets seen at run time, by the RIP of
    /// the branching instruction (<see cref="Runtime.Region.IndirectTargets"/>): an indirect jump,
    /// indirect call or return at that RIP compares its target with them and continues inside the
    /// region on a match (the blocks are taken in while the limits allow).
    /// </remarks>
    public static IrRegion? Translate(ICodeSource code, ulong entry, RegionLimits limits, out ulong faultAddress, List<Mnemonic>? unsupported = null,
        List<string>? lifterErrors = null, int mode = 0, (ulong Site, ulong Target)[]? predictedTargets = null)
    {
        var t = new Translator(code, limits, mode) { _predicted = predictedTargets ?? [] };
        faultAddress = 0;
        var span = t._buffer.AsSpan(0, 16);
        int n = code.FetchCode(entry, span);
        if (n == 0)
        {
            faultAddress = entry;
            return null;
        }
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(t._buffer, 0, n), entry);
        decoder.Decode(out var first);
        if (first.Code == Code.INVALID && decoder.LastError == DecoderError.NoMoreBytes)
        {
            faultAddress = entry + (ulong)n;
            return null;
        }
        t._region.EntryRip = entry;
        t._region.FlatMemory = code is VirtualCpu { Machine.FlatAddend: not null };
        t._region.HostReadFaults = code is VirtualCpu { Machine: { FlatAddend: not null, HostReadFaults: true } };
        t._region.HostWriteFaults = t._region.HostReadFaults && code is VirtualCpu { Machine.HostWriteFaults: true };
        t.InternalTarget(entry);
        while (t._queue.TryDequeue(out var item))
        {
            t._context = item.Context;
            t.LiftBlock(item.Address);
        }
        t._region.GuestInstructionCount = t._lifted;
        unsupported?.AddRange(t.Unsupported);
        lifterErrors?.AddRange(t.LifterErrors);
        return t._region;
    }

    /// <summary>Guest code bytes at <paramref name="address"/> (executable bytes only); returns how many were copied.</summary>
    public int FetchCode(ulong address, Span<byte> buffer) => _code.FetchCode(address, buffer);

    /// <summary>The block for a guest address inside the region, creating it while the limits allow; null means "exit the region".</summary>
    public IrBlock? InternalTarget(ulong target) => InternalTarget(target, _context);

    private IrBlock? InternalTarget(ulong target, int context)
    {
        if (_heads.TryGetValue((target, context), out var b)) return b;
        if (_heads.Count >= _limits.MaxBlocks || _lifted + _queue.Count >= _limits.MaxInstructions) return null;
        Span<byte> probe = stackalloc byte[1];
        if (_code.FetchCode(target, probe) == 0) return null;
        b = _b.NewBlock();
        b.GuestAddress = target;
        _heads[(target, context)] = b;
        _queue.Enqueue((target, context));
        return b;
    }

    /// <summary>
    /// A direct call taken into the region: the callee's blocks are lifted in a new context whose RET
    /// continues at <paramref name="returnAddress"/> inside the region. Null when the limits say no.
    /// </summary>
    public IrBlock? InlineCall(ulong target, ulong returnAddress) => InlineCall(target, returnAddress, _limits.MaxCallDepth);

    private IrBlock? InlineCall(ulong target, ulong returnAddress, int maxDepth)
    {
        var (_, _, depth) = _contexts[_context];
        if (depth >= maxDepth || SingleStep) return null;
        // Leave room for the caller's continuation after the call.
        if (_heads.Count + 2 >= _limits.MaxBlocks) return null;
        _contexts.Add((_context, returnAddress, depth + 1));
        var block = InternalTarget(target, _contexts.Count - 1);
        if (block is null) _contexts.RemoveAt(_contexts.Count - 1);
        return block;
    }

    /// <summary>Computed-branch targets to try inside the region (see <see cref="Translate"/>).</summary>
    public ReadOnlySpan<(ulong Site, ulong Target)> PredictedTargets => SingleStep ? [] : _predicted;

    /// <summary>
    /// The block for a predicted target of an indirect CALL: the callee in a new inlined-call context
    /// (one level even when the limits inline no direct calls, so its RET continues in the caller), else
    /// in the current context; null when the limits say no.
    /// </summary>
    public IrBlock? PredictedCall(ulong target, ulong returnAddress) =>
        InlineCall(target, returnAddress, Math.Max(_limits.MaxCallDepth, 1)) ?? InternalTarget(target);

    /// <summary>
    /// The block already in the region for <paramref name="target"/> (in this context, else in the
    /// region's own), taking in no new code: a recursive call to the region's entry continues inside
    /// it. Null when there is none.
    /// </summary>
    public IrBlock? ExistingBlock(ulong target) =>
        SingleStep ? null : _heads.GetValueOrDefault((target, _context)) ?? _heads.GetValueOrDefault((target, 0));

    /// <summary>The return address a RET in the current context is expected to use, with the block that continues there; null outside inlined calls or when the limits say no.</summary>
    public (ulong ReturnAddress, IrBlock Continuation)? InlinedReturn()
    {
        var (parent, returnAddress, _) = _contexts[_context];
        if (parent < 0) return null;
        var block = InternalTarget(returnAddress, parent);
        return block is null ? null : (returnAddress, block);
    }

    private void LiftBlock(ulong start)
    {
        var head = _heads[(start, _context)];
        _b.SetBlock(head);
        int avail = _code.FetchCode(start, _buffer);
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(_buffer, 0, avail), start);
        int count = 0;
        ulong ip = start;
        while (true)
        {
            if (count > 0 && _heads.TryGetValue((ip, _context), out var existing))
            {
                _b.Jump(existing);
                break;
            }
            if (count >= _limits.MaxBlockInstructions || _lifted >= _limits.MaxInstructions)
            {
                _b.ExitDirect(ip);
                break;
            }
            decoder.Decode(out var insn);
            if (insn.Code == Code.INVALID && decoder.LastError == DecoderError.NoMoreBytes && avail == _buffer.Length)
            {
                // The window ended, not the executable code: refill from this instruction and decode it again.
                avail = _code.FetchCode(ip, _buffer);
                decoder = Decoder.Create(64, new ByteArrayCodeReader(_buffer, 0, avail), ip);
                decoder.Decode(out insn);
            }
            if (insn.Code == Code.INVALID && decoder.LastError == DecoderError.NoMoreBytes)
            {
                // Runs into bytes that cannot be fetched: the region ends here and the next dispatch faults precisely.
                _b.ExitDirect(ip);
                break;
            }
            var gi = new GuestInsn { Rip = ip, Length = insn.Length, Index = count, Head = head };
            _lifter.Begin(insn, gi);
            count++;
            _lifted++;
            _region.GuestRanges.Add((ip, insn.NextIP));
            LiftOne(insn);
            ip = insn.NextIP;
            if (_lifter.EndsBlock || _b.Terminated) break;
        }
        head.ChargedInsns = count;
    }

    private void LiftOne(in Instruction insn)
    {
        var emitter = insn.Code == Code.INVALID ? null : EmitterTable.Instance.Lookup(insn);
        if (emitter is null)
        {
            if (insn.Code != Code.INVALID) Unsupported.Add(insn.Mnemonic);
            _lifter.RaiseException(ExceptionVector.UD);
            return;
        }
        if (X87SseEnable.Fault(insn, _mode) is int disabled)
        {
            _lifter.RaiseException(disabled);
            return;
        }
        var startBlock = _b.Block;
        int startNodes = startBlock.Nodes.Count;
        int startBlocks = _region.Blocks.Count;
        try
        {
            emitter(_lifter, insn);
        }
        catch (Exception e) when (e is LiftException or InvalidOperationException or NotSupportedException or ArgumentException)
        {
            // An encoding the family rejects (LiftException) or cannot lift correctly (a lifter bug on a
            // rare form): the guest gets #UD, never a host exception; lifter bugs are counted for --stats.
            if (e is not LiftException) LifterErrors.Add($"{insn.Mnemonic} at 0x{insn.IP:x}: {e.Message}");
            // Roll the partial instruction back and make it #UD.
            foreach (var kv in _heads.Where(kv => kv.Value.Id >= startBlocks).ToList()) _heads.Remove(kv.Key);
            var keep = _queue.Where(a => _heads.ContainsKey(a)).ToList();
            _queue.Clear();
            foreach (var a in keep) _queue.Enqueue(a);
            _region.Blocks.RemoveRange(startBlocks, _region.Blocks.Count - startBlocks);
            startBlock.Nodes.RemoveRange(startNodes, startBlock.Nodes.Count - startNodes);
            _b.SetBlock(startBlock);
            Unsupported.Add(insn.Mnemonic);
            _lifter.RaiseException(ExceptionVector.UD);
        }
    }
}
