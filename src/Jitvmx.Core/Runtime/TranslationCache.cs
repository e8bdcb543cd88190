// SPDX-License-Identifier: MIT
using System.Diagnostics;
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Lifting;

namespace Jitvmx.Runtime;

/// <summary>A compiled region in the cache.</summary>
internal sealed unsafe class Region
{
    public Region(ulong entry, CompiledRegion code, int entryCharge, ulong[] pages, bool singleStep)
    {
        Entry = entry;
        Function = code.Function;
        SuccessorRips = code.SuccessorRips;
        Successors = new Region?[SuccessorRips.Length];
        EntryCharge = Math.Max(entryCharge, code.EntryCharge);
        Pages = pages;
        SingleStep = singleStep;
    }

    public readonly ulong Entry;
    /// <summary>The code; replaced atomically when a background tier recompiles the region.</summary>
    public RegionFunction Function;
    /// <summary>
    /// Guest instructions retired in this region's code so far, plus a weight per entry from the dispatcher
    /// (VirtualCpu.DispatchWeight) when a background tier is attached: hotness for tiering, and while queued
    /// for the background tier, its rank there.
    /// </summary>
    public long Retired;
    /// <summary>Whether the code is the interpreter's (the region is promoted to the IL tier when hot).</summary>
    public bool Interpreted;
    /// <summary>Set once the region was handed to the background tier.</summary>
    public bool TierQueued;
    /// <summary>Set once the background tier passed the region over as covered by hot code (<see cref="TranslationCache.RequeueIfCovered"/>).</summary>
    public bool PassedOver;
    /// <summary>
    /// Set while a background tier compiles this interpreted region from a <see cref="TierProfile"/> hint:
    /// it stays in the interpreter meanwhile, since its native code comes in milliseconds (usually from the
    /// code cache) and compiling it for the IL tier would cost the host JIT more than that.
    /// </summary>
    public bool AwaitingHint;
    public readonly ulong[] SuccessorRips;
    /// <summary>Per-exit successor slots, filled on first use (compiled code cannot be patched, so the dispatcher chains).</summary>
    public readonly Region?[] Successors;
    /// <summary>
    /// Budget the code needs at entry: the entry block's charge, or more for code that checks only at
    /// its entry and loop heads (<see cref="CompiledRegion.EntryCharge"/>); with less the dispatcher steps.
    /// </summary>
    public int EntryCharge;
    /// <summary>Guest-physical pages the code came from.</summary>
    public readonly ulong[] Pages;
    public readonly bool SingleStep;
    /// <summary>The x87/SSE enable mode the code was translated for (<see cref="X87SseEnable.Mode"/>); a vCPU in another mode must not run it.</summary>
    public int Mode { get; init; }
    public volatile bool Valid = true;
    /// <summary>Guest instructions the region was lifted from.</summary>
    public int GuestInstructions { get; init; }
    /// <summary>Entries and retired instructions, counted only with <see cref="VirtualMachineOptions.Profile"/>.</summary>
    public long ProfileEntries, ProfileRetired, ProfileTicks;

    public string TierName => Native ? "llvm" : Interpreted ? "interp" : "il";

    /// <summary>Most computed targets recorded per region (<see cref="RecordIndirectTarget"/>).</summary>
    public const int MaxIndirectTargets = 32;
    /// <summary>
    /// Computed targets (of indirect jumps, indirect calls and returns, by the branching instruction's
    /// RIP) seen leaving this region's code before it was queued for the background tier, which
    /// translates them into the hot code as guarded internal branches; null until the first. Written
    /// by the vCPU only before queueing.
    /// </summary>
    public (ulong Site, ulong Target)[]? IndirectTargets;
    /// <summary>How many of <see cref="IndirectTargets"/> are filled.</summary>
    public int IndirectTargetCount;

    /// <summary>Remembers a computed target the region's code left for (once; the first <see cref="MaxIndirectTargets"/> distinct ones).</summary>
    public void RecordIndirectTarget(ulong site, ulong target)
    {
        var t = IndirectTargets ??= new (ulong, ulong)[MaxIndirectTargets];
        int n = IndirectTargetCount;
        for (int i = 0; i < n; i++)
            if (t[i] == (site, target)) return;
        if (n < t.Length)
        {
            t[n] = (site, target);
            IndirectTargetCount = n + 1;
        }
    }

    /// <summary>The recorded computed targets (a copy).</summary>
    public (ulong Site, ulong Target)[] PredictedTargets() => IndirectTargets is { } t ? t.AsSpan(0, IndirectTargetCount).ToArray() : [];

    /// <summary>Native entry of the region's code (LLVM's), for chaining; 0 while the code is managed.</summary>
    public nint NativeEntry;
    /// <summary>Whether the code is native.</summary>
    public bool Native => NativeEntry != 0;
    /// <summary>Set while <see cref="Links"/> holds a link (the region is on the cache's unlink list).</summary>
    public bool Linked;
    /// <summary>The native code's link cells (one per successor slot), or null.</summary>
    public nint* Links;
    /// <summary>Number that native code reports when it leaves through one of this region's slots (0: none).</summary>
    public int Cookie;
    /// <summary>
    /// Whether other native code may enter this region's code directly: it must report its cookie when
    /// it leaves, or the dispatcher would take its exit for the caller's. A background tier's first,
    /// provisional code does not, so the dispatcher sees, and counts, every entry into it.
    /// </summary>
    public bool Chainable => NativeEntry != 0 && Cookie != 0;
}

/// <summary>
/// What installing hot code needs to know of the region it was compiled from, besides the code: the
/// guest blocks inside it other than the entry (<paramref name="Covered"/>), the guest code it was
/// translated from, what its entry block charges the budget, and its size in guest instructions.
/// An earlier run's code comes with these recorded; a fresh translation gives them by <see cref="Of"/>.
/// </summary>
internal readonly record struct HotShape(ulong[] Covered, (ulong Start, ulong End)[] GuestRanges, int EntryCharge, int GuestInstructions)
{
    /// <summary>The shape of <paramref name="ir"/> (after the passes).</summary>
    public static HotShape Of(IrRegion ir)
    {
        var covered = new List<ulong>();
        foreach (var b in ir.Blocks)
            if (b.ChargedInsns > 0 && b.GuestAddress != ir.EntryRip) covered.Add(b.GuestAddress);
        return new HotShape([.. covered], ir.MergedGuestRanges(), ir.Blocks[0].ChargedInsns, ir.GuestInstructionCount);
    }
}

/// <summary>
/// Translated regions of one VM, keyed by entry RIP, with an index from guest-physical page to the
/// regions whose code lies on it (for self-modifying code and remapping).
/// </summary>
internal sealed unsafe class TranslationCache(VirtualMachine vm)
{
    private readonly Dictionary<ulong, Region> _regions = [];
    private readonly Dictionary<ulong, Region> _single = [];
    private readonly Dictionary<ulong, List<Region>> _byPage = [];
    private readonly Lock _lock = new();
    private long _generation;
    private readonly List<Region> _profiled = [];
    // JITVMX_DUMP_IR=1 prints every region's IR to stderr (a debugging aid).
    private static readonly bool s_dumpIr = Environment.GetEnvironmentVariable("JITVMX_DUMP_IR") == "1";

    public TranslationStatistics Statistics { get; } = new();

    /// <summary>Whether no region was ever translated or installed (invalidated and flushed ones count too).</summary>
    public bool IsEmpty => !Volatile.Read(ref _used);
    private bool _used;

    private long _pagesAdded;

    /// <summary>Counts the times a page came to hold translated code (see <see cref="HintedTranslation.PagesNotTranslated"/>).</summary>
    public long PagesAdded => Volatile.Read(ref _pagesAdded);

    /// <summary>Bumped on every invalidation; vCPUs compare it to drop their lookup caches.</summary>
    public long Generation => Volatile.Read(ref _generation);

    public Region? Find(ulong rip, bool singleStep)
    {
        lock (_lock)
        {
            var map = singleStep ? _single : _regions;
            return map.TryGetValue(rip, out var r) ? r : null;
        }
    }

    /// <summary>Translates and inserts the region at <paramref name="rip"/>; null with <paramref name="faultAddress"/> when its first instruction cannot be fetched.</summary>
    /// <param name="cpu">The vCPU whose code view (paging) is used.</param>
    /// <param name="rip">Entry address.</param>
    /// <param name="singleStep">A one-instruction region (kept apart from the others).</param>
    /// <param name="faultAddress">The address that could not be fetched.</param>
    /// <param name="register">False for a throwaway translation: not in the cache and not protecting its pages.</param>
    /// <param name="hot">Compile with the full region limits even when the interpreter tier is on (a promotion).</param>
    public Region? Translate(VirtualCpu cpu, ulong rip, bool singleStep, out ulong faultAddress, bool register = true, bool hot = false)
    {
        long t0 = Stopwatch.GetTimestamp();
        // The interpreter tier takes new regions unless a second backend replaces the IL tier.
        bool interpret = vm.Options.InterpreterTierUp > 0 && vm.RegionCompiler is null && !hot;
        var limits = singleStep ? RegionLimits.SingleInstruction
            : interpret ? InterpreterLimits
            : FullLimits;
        int mode = X87SseEnable.Mode(cpu.State);
        // The interpreter tier's regions of earlier runs, when the guest bytes are still the same.
        bool cacheable = interpret && !singleStep && register;
        if (cacheable && PreparedRegions is { } prepared && prepared.Find(cpu, rip, mode) is { } record
            && Interpreter.TryLoad(record.Image) is { } image)
        {
            faultAddress = 0;
            var code = image.Compiled();
            var ranges = new (ulong, ulong)[record.Code.Length];
            for (int i = 0; i < ranges.Length; i++) ranges[i] = (record.Code[i].Start, record.Code[i].Start + (ulong)record.Code[i].Bytes.Length);
            var cached = new Region(rip, code, record.EntryInsns, CodePages(cpu, ranges), false)
            {
                Interpreted = true, Mode = mode, GuestInstructions = record.GuestInstructions,
            };
            return Register(cpu, cached, code, t0, hot: false, interpreted: true, fromCache: true, record.GuestInstructions, blocks: 0, lifted: 0, null, null);
        }
        long generation = Generation;
        var unsupported = new List<Iced.Intel.Mnemonic>();
        var lifterErrors = new List<string>();
        var ir = Translator.Translate(cpu, rip, limits, out faultAddress, unsupported, lifterErrors, mode);
        if (ir is null) return null;
        int blocks = ir.Blocks.Count(b => b.ChargedInsns > 0);
        Passes.Run(ir);
        long lifted = Stopwatch.GetTimestamp() - t0;
        if (s_dumpIr) Console.Error.WriteLine($"jitvmx: region 0x{rip:x}\n{ir}");
        CompiledRegion? compiled = null;
        Interpreter? preparedCode = null;
        if (!singleStep && vm.RegionCompiler is { } other) compiled = other.TryCompile(ir, out _);
        // One-instruction regions (MMIO replay, stores into code pages, stepping to a budget
        // boundary) are often thrown away after one use: never worth a host JIT compilation.
        else if (interpret || singleStep) compiled = Interpreter.TryPrepare(ir, out preparedCode);
        bool interpreted = compiled is not null && interpret;
        compiled ??= IlBackend.Compile(ir);
        var pages = CodePages(cpu, ir.GuestRanges);
        var region = new Region(rip, compiled, ir.Blocks[0].ChargedInsns, pages, singleStep)
        {
            Interpreted = interpreted && !singleStep, Mode = mode, GuestInstructions = ir.GuestInstructionCount,
        };
        if (!register)
        {
            lock (_lock) Statistics.TranslationTicks += Stopwatch.GetTimestamp() - t0;
            return region;
        }
        if (cacheable && interpreted && preparedCode is not null && unsupported.Count == 0 && lifterErrors.Count == 0 && PreparedRegions is { } keep)
            Keep(keep, cpu, region, ir, preparedCode, generation);
        return Register(cpu, region, compiled, t0, hot, interpreted, fromCache: false, ir.GuestInstructionCount, blocks, lifted, unsupported, lifterErrors);
    }

    /// <summary>Records a region just prepared for the interpreter in <paramref name="cache"/>, with the guest bytes it came from.</summary>
    private void Keep(PreparedRegionCache cache, VirtualCpu cpu, Region region, Jitvmx.Ir.IrRegion ir, Interpreter code, long generation)
    {
        var ranges = ir.MergedGuestRanges();
        var bytes = new (ulong Start, byte[] Bytes)[ranges.Length];
        for (int i = 0; i < ranges.Length; i++)
        {
            var b = new byte[ranges[i].End - ranges[i].Start];
            if (cpu.FetchCode(ranges[i].Start, b) != b.Length) return;
            bytes[i] = (ranges[i].Start, b);
        }
        // Guest code changed while it was lifted: these bytes may not be the ones translated.
        if (Generation != generation) return;
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms)) code.Write(w);
        cache.Add(new PreparedRegionCache.Record
        {
            Entry = region.Entry, Mode = region.Mode, EntryInsns = region.EntryCharge, GuestInstructions = ir.GuestInstructionCount,
            Code = bytes, Image = ms.ToArray(),
        });
    }

    /// <summary>Inserts a new region, counts it, protects its code and queues it when the tier profile names it.</summary>
    private Region Register(VirtualCpu cpu, Region region, CompiledRegion compiled, long t0, bool hot, bool interpreted, bool fromCache,
        int guestInstructions, int blocks, long lifted, List<Iced.Intel.Mnemonic>? unsupported, List<string>? lifterErrors)
    {
        bool singleStep = region.SingleStep;
        ulong rip = region.Entry;
        int mode = region.Mode;
        var pages = region.Pages;
        lock (_lock)
        {
            if (vm.Options.Profile && !singleStep) _profiled.Add(region);
            if (compiled.IsNative) AttachNative(region, compiled);
            Insert(region, replacing: hot);
            var s = Statistics;
            if (hot) s.RegionsPromoted++;
            else s.RegionsTranslated++;
            if (interpreted) s.RegionsInterpreted++;
            if (fromCache) s.RegionsFromPreparedCache++;
            s.InstructionsTranslated += guestInstructions;
            s.BlocksTranslated += blocks;
            s.TranslationTicks += Stopwatch.GetTimestamp() - t0;
            s.LiftTicks += lifted;
            foreach (var e in lifterErrors ?? [])
                if (s.LifterErrors.Count < 100) s.LifterErrors.Add(e);
            foreach (var m in unsupported ?? [])
            {
                string name = m.ToString().ToLowerInvariant();
                s.Unsupported[name] = s.Unsupported.GetValueOrDefault(name) + 1;
            }
        }
        ProtectCode(pages);
        if (!singleStep && vm.TierCompiler is { } tier && Hints is { } profile)
        {
            // A region hot in earlier runs goes to the background tier now rather than after the threshold.
            if (profile.Take(rip, mode) is { } hint)
            {
                region.TierQueued = true;
                region.AwaitingHint = interpreted;
                Interlocked.Increment(ref Statistics.RegionsQueuedFromProfile);
                tier.EnqueueHint(cpu, hint);
            }
            else if (profile.Pending(rip)) region.TierQueued = true; // promoted while its hinted compilation waits
        }
        return region;
    }

    private TierProfile? _profile;
    private bool _profileLoaded;
    private PreparedRegionCache? _prepared;
    private bool _preparedLoaded;

    /// <summary>The VM's prepared-region file (<see cref="VirtualMachineOptions.PreparedRegions"/>), loaded on first use; null when it has none.</summary>
    public PreparedRegionCache? PreparedRegions
    {
        get
        {
            if (Volatile.Read(ref _preparedLoaded)) return _prepared;
            lock (_lock)
            {
                if (!_preparedLoaded)
                {
                    _prepared = vm.Options.PreparedRegions is { Length: > 0 } path ? Preloaded(path).Bind(PreparedSettings) : null;
                    Volatile.Write(ref _preparedLoaded, true);
                }
                return _prepared;
            }
        }
    }

    private Task<PreparedRegionCache>? _preload;

    /// <summary>
    /// Starts reading the prepared-region file, and the helper table that taking regions from it
    /// needs, on a pool thread: the front end loads the guest program meanwhile (they took 15–20 ms
    /// of a short program's start on the main thread).
    /// </summary>
    public void StartPreload()
    {
        if (vm.Options.PreparedRegions is not { Length: > 0 } path) return;
        _preload = Task.Run(() =>
        {
            System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(Helpers).TypeHandle);
            return PreparedRegionCache.Preload(path);
        });
    }

    private PreparedRegionCache Preloaded(string path)
    {
        try
        {
            if (_preload is { } t) return t.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Read again on this thread: whatever failed there fails here with its own exception.
        }
        return PreparedRegionCache.Preload(path);
    }

    /// <summary>What prepared code depends on besides the guest bytes and the build: the interpreter tier's limits and the memory model.</summary>
    private string PreparedSettings =>
        $"limits {InterpreterLimits.MaxInstructions},{InterpreterLimits.MaxBlocks},{InterpreterLimits.MaxBlockInstructions},{InterpreterLimits.MaxCallDepth}; "
        + $"flat {vm.FlatAddend is not null}; host reads {vm.HostReadFaults}; host writes {vm.HostWriteFaults}";

    /// <summary>The settings string a VM like this one binds its prepared regions to (tests).</summary>
    internal string PreparedSettingsForTests => PreparedSettings;

    /// <summary>Writes the prepared-region file when this run added to it (see <see cref="VirtualMachine.SavePreparedRegions"/>).</summary>
    public bool SavePreparedRegions() => Volatile.Read(ref _preparedLoaded) && _prepared is { } p && p.Save();

    /// <summary>The VM's tier profile (<see cref="VirtualMachineOptions.TierProfile"/>), loaded on first use; null when it has none.</summary>
    public TierProfile? Hints
    {
        get
        {
            if (Volatile.Read(ref _profileLoaded)) return _profile;
            lock (_lock)
            {
                if (!_profileLoaded)
                {
                    _profile = vm.Options.TierProfile is { Length: > 0 } path ? TierProfile.Load(path) : null;
                    Volatile.Write(ref _profileLoaded, true);
                }
                return _profile;
            }
        }
    }

    /// <summary>
    /// Inserts a region whose code was compiled earlier, possibly in another process (an LLVM object),
    /// at <paramref name="rip"/>. Its code pages, found from <paramref name="guestRanges"/> as a
    /// translation's are, get the same self-modifying-code protection. The caller has checked that the
    /// guest bytes are those the code was compiled from.
    /// </summary>
    public Region Install(VirtualCpu cpu, ulong rip, CompiledRegion code, int entryCharge, IEnumerable<(ulong Start, ulong End)> guestRanges)
    {
        var pages = CodePages(cpu, guestRanges);
        // The object's metadata does not record the x87/SSE enable mode: it is taken to be the vCPU's.
        var region = new Region(rip, code, entryCharge, pages, singleStep: false) { Mode = X87SseEnable.Mode(cpu.State) };
        lock (_lock)
        {
            if (code.IsNative) AttachNative(region, code);
            Insert(region);
            Statistics.RegionsLoaded++;
        }
        ProtectCode(pages);
        return region;
    }

    /// <summary>
    /// Makes <paramref name="region"/> the one at its entry and indexes it by code page (under the
    /// lock). A region it replaces counts as invalidated unless this is a promotion to a higher tier.
    /// </summary>
    private void Insert(Region region, bool replacing = false)
    {
        _used = true;
        var map = region.SingleStep ? _single : _regions;
        // The new region's pages first: a page it shares with the old one stays code (and host read-only) throughout.
        foreach (ulong page in region.Pages)
        {
            if (!_byPage.TryGetValue(page, out var list))
            {
                _byPage[page] = list = [];
                _pagesAdded++;
            }
            list.Add(region);
            SetCodePage(page, true);
        }
        if (map.TryGetValue(region.Entry, out var old))
        {
            if (replacing) Retire(old);
            else Remove(old);
        }
        map[region.Entry] = region;
    }

    /// <summary>
    /// Marks whether guest-physical <paramref name="page"/> holds translated code (under the lock): its
    /// <see cref="GuestMemoryRegion.CodePages"/> byte, which sends stores to it to the slow path, and with
    /// <see cref="VirtualMachine.HostWriteFaults"/> its host protection (read-only while it holds code, where
    /// the guest may write it), which does the same for compiled code's plain stores.
    /// </summary>
    private void SetCodePage(ulong page, bool code)
    {
        var r = vm.Physical.Find(page);
        if (r is null) return;
        ref byte mark = ref r.CodePages[(page - r.GuestPhysicalAddress) >> 12];
        if ((mark != 0) == code) return;
        mark = code ? (byte)1 : (byte)0;
        if (vm.HostWriteFaults && (r.Permissions & MemoryPermissions.Write) != 0)
            Memory.HostMemory.ProtectPage(r.HostAddress + (nint)(page - r.GuestPhysicalAddress), writable: !code);
    }

    /// <summary>Pages now holding code lose their writable TLB entries, so guest writes to them reach the slow path.</summary>
    private void ProtectCode(ulong[] pages)
    {
        foreach (var c in vm.Cpus)
            foreach (ulong page in pages) c.FlushTlbWrite(page);
    }

    /// <summary>The VM's region limits (compiled tiers, promotions and background retranslations).</summary>
    private RegionLimits FullLimits => new(vm.Options.MaxRegionInstructions, vm.Options.MaxRegionBlocks,
        Math.Min(96, vm.Options.MaxRegionInstructions), vm.Options.MaxInlineCallDepth);

    /// <summary>
    /// Region limits of the interpreter tier: a few blocks, since code that runs a handful of times
    /// should not pay for lifting paths it never takes. Hot regions are translated again with the
    /// full limits when they are promoted.
    /// </summary>
    private static readonly RegionLimits InterpreterLimits = new(64, 4, 64);

    /// <summary>
    /// Replaces an interpreted region that became hot by a region compiled by the IL tier (with the
    /// full limits, so it usually covers more code). The old region stops being valid; the
    /// dispatcher and the chained successor slots find the new one by its entry.
    /// </summary>
    public void Promote(VirtualCpu cpu, Region region)
    {
        region.Interpreted = false;
        if (!region.Valid) return;
        Translate(cpu, region.Entry, singleStep: false, out _, hot: true);
    }

    /// <summary>
    /// Translates a cached region again (same entry and limits) for a background tier, on any
    /// thread; null when its code can no longer be fetched. The caller checks that the result has
    /// the same successor slots before using it.
    /// </summary>
    public IrRegion? Retranslate(VirtualCpu cpu, Region region)
    {
        var ir = Translator.Translate(cpu, region.Entry, FullLimits, out _, mode: region.Mode);
        if (ir is null) return null;
        Passes.Run(ir);
        return ir;
    }

    /// <summary>
    /// Translates a hot region again for a background tier (on any thread) with the computed targets
    /// its code was seen to leave for (<see cref="Region.IndirectTargets"/>) as guarded branches inside
    /// it, so that a loop around an indirect jump (an interpreter's switch, a call through a pointer)
    /// becomes one region. Null when there is nothing predicted, when the
    /// code can no longer be fetched, or when the result reaches a page that holds no translated code
    /// yet (a write to it could not be noticed before <see cref="Replace"/>). <paramref name="generation"/>
    /// is the cache's generation before the guest bytes were read, for <see cref="Replace"/>.
    /// </summary>
    /// <param name="cpu">The vCPU whose code view is used.</param>
    /// <param name="region">The hot region.</param>
    /// <param name="generation">The cache's generation before the guest bytes were read.</param>
    /// <param name="targets">The predicted targets the region was translated with, in address order.</param>
    public IrRegion? RetranslateWithTargets(VirtualCpu cpu, Region region, out long generation, out (ulong Site, ulong Target)[] targets)
    {
        generation = Generation;
        targets = PredictedTargets(region);
        if (targets.Length == 0) return null;
        return TranslateHot(cpu, region.Entry, region.Mode, targets, out var ir) == HintedTranslation.Ready ? ir : null;
    }

    /// <summary>
    /// Translates the hot code at <paramref name="entry"/> with the full limits and <paramref name="targets"/>
    /// (sorted in place: in address order, not the order they were seen in, the same targets give the same
    /// code, which LLVM's code cache finds again in the next run), for <see cref="Replace"/>: refused when it
    /// reaches a page that holds no translated code yet, since a write there would go unnoticed.
    /// </summary>
    private HintedTranslation TranslateHot(VirtualCpu cpu, ulong entry, int mode, (ulong Site, ulong Target)[] targets, out IrRegion? ir)
    {
        ir = null;
        Array.Sort(targets);
        var lifted = Translator.Translate(cpu, entry, FullLimits, out _, mode: mode, predictedTargets: targets);
        if (lifted is null) return HintedTranslation.Gone;
        var pages = CodePages(cpu, lifted.GuestRanges);
        lock (_lock)
            foreach (ulong p in pages)
                if (!_byPage.ContainsKey(p)) return HintedTranslation.PagesNotTranslated;
        Passes.Run(lifted);
        ir = lifted;
        return HintedTranslation.Ready;
    }

    /// <summary>What <see cref="RetranslateHinted"/> found.</summary>
    public enum HintedTranslation { Ready, PagesNotTranslated, Gone }

    /// <summary>
    /// Translates the region a <see cref="TierProfile"/> hint names (on any thread) with the full
    /// limits and the hint's predicted targets, as <see cref="RetranslateWithTargets"/> does with
    /// recorded ones. <see cref="HintedTranslation.PagesNotTranslated"/> when it reaches a page that
    /// holds no translated code yet (try again once the guest ran there), <see cref="HintedTranslation.Gone"/>
    /// when the entry holds no region in the hint's mode or its code cannot be fetched.
    /// </summary>
    public HintedTranslation RetranslateHinted(VirtualCpu cpu, TierProfile.Hint hint, out IrRegion? ir, out long generation)
    {
        generation = Generation;
        ir = null;
        lock (_lock)
            if (!_regions.TryGetValue(hint.Entry, out var current) || current.Mode != hint.Mode) return HintedTranslation.Gone;
        return TranslateHot(cpu, hint.Entry, hint.Mode, vm.Options.PredictIndirectBranches ? hint.Targets.ToArray() : [], out ir);
    }

    /// <summary>
    /// Installs hot code compiled from <see cref="RetranslateHinted"/> in place of whatever region is
    /// at the hint's entry now (the hinted region may have been promoted meanwhile), on the terms of
    /// <see cref="Replace"/>; false when the entry has no region or a background tier's code already.
    /// </summary>
    public bool ReplaceHinted(VirtualCpu cpu, TierProfile.Hint hint, IrRegion ir, CompiledRegion code, long generation) =>
        InstallHinted(cpu, hint, HotShape.Of(ir), code, generation);

    /// <summary>
    /// <see cref="ReplaceHinted"/> for code compiled in an earlier run (see <see cref="PrepareHinted"/>),
    /// described by <paramref name="shape"/>.
    /// </summary>
    public bool InstallHinted(VirtualCpu cpu, TierProfile.Hint hint, HotShape shape, CompiledRegion code, long generation)
    {
        Region? current;
        lock (_lock)
            if (!_regions.TryGetValue(hint.Entry, out current) || current.Chainable) return false;
        if (!ReplaceShaped(cpu, current, shape, code, generation, predicted: hint.Targets.Length > 0)) return false;
        Hints?.Finish(hint.Entry);
        Interlocked.Increment(ref Statistics.RegionsTieredUpFromProfile);
        return true;
    }

    /// <summary>
    /// For hot code compiled in an earlier run from <paramref name="guestRanges"/>, loaded instead of
    /// translating the hinted region again: <see cref="HintedTranslation.Gone"/> when the entry holds
    /// no region in the hint's mode, <see cref="HintedTranslation.PagesNotTranslated"/> when a range
    /// reaches a page that holds no translated code yet (as <see cref="RetranslateHinted"/>), else
    /// <see cref="HintedTranslation.Ready"/>. <paramref name="generation"/> is read first: the caller
    /// then compares the guest bytes with those the code was compiled from, and <see cref="Replace"/>
    /// refuses the code if anything was invalidated since.
    /// </summary>
    public HintedTranslation PrepareHinted(VirtualCpu cpu, TierProfile.Hint hint, IEnumerable<(ulong Start, ulong End)> guestRanges, out long generation)
    {
        generation = Generation;
        var pages = CodePages(cpu, guestRanges);
        lock (_lock)
        {
            if (!_regions.TryGetValue(hint.Entry, out var current) || current.Mode != hint.Mode) return HintedTranslation.Gone;
            foreach (ulong p in pages)
                if (!_byPage.ContainsKey(p)) return HintedTranslation.PagesNotTranslated;
        }
        return HintedTranslation.Ready;
    }

    /// <summary>
    /// Ends a hint's compilation that did not install code: the region at <paramref name="entry"/>
    /// goes back to counting toward the usual tier-up.
    /// </summary>
    public void HintFailed(ulong entry)
    {
        Hints?.Finish(entry);
        lock (_lock)
            if (_regions.TryGetValue(entry, out var current) && !current.Chainable)
            {
                Volatile.Write(ref current.TierQueued, false);
                Volatile.Write(ref current.AwaitingHint, false);
            }
    }

    /// <summary>A hint's compilation has to wait (<see cref="HintedTranslation.PagesNotTranslated"/>): the region at <paramref name="entry"/> may go to the IL tier meanwhile.</summary>
    public void HintDeferred(ulong entry)
    {
        lock (_lock)
            if (_regions.TryGetValue(entry, out var current)) Volatile.Write(ref current.AwaitingHint, false);
    }

    /// <summary>
    /// The computed targets <paramref name="region"/> left for, and those the regions at these
    /// targets left for, and so on (at most <see cref="MaxPredictedTargets"/>): an interpreter's handler
    /// always goes on to the same few handlers, but the loop through all of them is what is hot.
    /// </summary>
    private (ulong Site, ulong Target)[] PredictedTargets(Region region)
    {
        var found = new List<(ulong Site, ulong Target)>(region.PredictedTargets());
        lock (_lock)
        {
            for (int i = 0; i < found.Count && found.Count < MaxPredictedTargets; i++)
            {
                if (!_regions.TryGetValue(found[i].Target, out var r) || r == region) continue;
                foreach (var t in r.PredictedTargets())
                    if (found.Count < MaxPredictedTargets && !found.Contains(t)) found.Add(t);
            }
        }
        return [.. found];
    }

    /// <summary>
    /// Installs hot code compiled from <see cref="RetranslateWithTargets"/> as a new region at the old
    /// one's entry (its exits differ, so it cannot be swapped in place). Refused when the region is
    /// no longer current or any translated code was invalidated since <paramref name="generation"/>:
    /// the guest bytes the code was made from might have changed. Every page the code covers held
    /// translated code already, so from here on a write to any of them discards it.
    /// </summary>
    public bool Replace(VirtualCpu cpu, Region region, IrRegion ir, CompiledRegion code, long generation, bool predicted = true) =>
        ReplaceShaped(cpu, region, HotShape.Of(ir), code, generation, predicted);

    private bool ReplaceShaped(VirtualCpu cpu, Region region, HotShape shape, CompiledRegion code, long generation, bool predicted)
    {
        var pages = CodePages(cpu, shape.GuestRanges);
        var hot = new Region(region.Entry, code, shape.EntryCharge, pages, singleStep: false)
        {
            Mode = region.Mode, GuestInstructions = shape.GuestInstructions, TierQueued = true, Retired = region.Retired,
            // Kept for the regions whose targets lead here (see PredictedTargets).
            IndirectTargets = region.IndirectTargets, IndirectTargetCount = region.IndirectTargetCount,
        };
        lock (_lock)
        {
            if (!region.Valid || Generation != generation) return false;
            if (vm.Options.Profile) _profiled.Add(hot);
            if (code.IsNative) AttachNative(hot, code);
            Insert(hot, replacing: true);
            foreach (ulong a in shape.Covered) _coveredByHot.Add(a);
        }
        Interlocked.Increment(ref Statistics.RegionsTieredUp);
        if (predicted) Interlocked.Increment(ref Statistics.RegionsPredicted);
        return true;
    }

    /// <summary>Most (site, target) pairs a hot region is translated with.</summary>
    public const int MaxPredictedTargets = 64;

    // Guest addresses that hot code installed by Replace continues to inside itself.
    private readonly HashSet<ulong> _coveredByHot = [];

    /// <summary>
    /// Whether hot code at another entry already runs <paramref name="region"/>'s code inside itself
    /// (a predicted target of it, or on the way there). Such a region was queued before that code
    /// was installed and is likely cold now: it goes back to counting, and is queued again only if
    /// it stays hot. Saves compiling the same loop once per entry. A region passed over once and
    /// queued again has shown that its own entry stays hot (a function inlined into some callers'
    /// hot code and called from elsewhere too): it is compiled, however often new hot code covers it.
    /// </summary>
    public bool RequeueIfCovered(Region region)
    {
        lock (_lock)
        {
            if (!_coveredByHot.Remove(region.Entry) || region.PassedOver) return false;
            region.PassedOver = true;
        }
        region.Retired = 0;
        Volatile.Write(ref region.TierQueued, false);
        Interlocked.Increment(ref Statistics.RegionsRequeued);
        return true;
    }

    /// <summary>Installs code compiled by a background tier, if the region is still current and the code fits its slots.</summary>
    public bool Swap(Region region, CompiledRegion code)
    {
        if (!region.Valid || !code.SuccessorRips.AsSpan().SequenceEqual(region.SuccessorRips)) return false;
        lock (_lock)
        {
            if (!region.Valid) return false;
            if (code.IsNative) AttachNative(region, code);
            // Before the code: a dispatcher that sees the new code must not enter it with less.
            if (code.EntryCharge > region.EntryCharge) Volatile.Write(ref region.EntryCharge, code.EntryCharge);
            Volatile.Write(ref region.Function, code.Function);
        }
        Interlocked.Increment(ref Statistics.RegionsTieredUp);
        return true;
    }

    private static ulong[] CodePages(VirtualCpu cpu, IEnumerable<(ulong Start, ulong End)> guestRanges)
    {
        var set = new HashSet<ulong>();
        foreach (var (start, end) in guestRanges)
        {
            for (ulong p = start & CpuContext.PageMask; p < end; p += 4096)
                if (cpu.TranslateForCode(p) is ulong gpa) set.Add(gpa & CpuContext.PageMask);
        }
        return [.. set];
    }

    // Indexed by cookie; replaced (never changed in place) when it grows, so the dispatcher reads it without the lock.
    private Region?[] _byCookie = new Region?[64];
    private int _cookies = 1;
    private readonly List<Region> _linked = [];

    /// <summary>Makes <paramref name="code"/> the region's native code: gives it a cookie (under the lock).</summary>
    private void AttachNative(Region region, CompiledRegion code)
    {
        // The dispatcher reads these without the lock: everything is in place before the code is.
        if (code.CookieCell is not null)
        {
            if (_cookies == _byCookie.Length)
            {
                var grown = new Region?[_byCookie.Length * 2];
                _byCookie.CopyTo(grown, 0);
                Volatile.Write(ref _byCookie, grown);
            }
            region.Cookie = _cookies++;
            _byCookie[region.Cookie] = region;
            *code.CookieCell = region.Cookie;
        }
        region.Links = code.Links;
        region.NativeEntry = code.NativeEntry;
    }

    /// <summary>The region whose native code reported <paramref name="cookie"/>.</summary>
    public Region ByCookie(int cookie) => Volatile.Read(ref _byCookie)[cookie]!;

    /// <summary>
    /// Chains native code: slot <paramref name="slot"/> of <paramref name="from"/> jumps straight to
    /// <paramref name="to"/>'s code from now on, without returning to the dispatcher.
    /// </summary>
    public void Link(Region from, int slot, Region to)
    {
        lock (_lock)
        {
            if (!from.Valid || !to.Valid || from.Links is null || !to.Chainable) return;
            if (!from.Linked)
            {
                from.Linked = true;
                _linked.Add(from);
            }
            from.Links[slot] = to.NativeEntry;
            Statistics.ChainLinks++;
        }
    }

    /// <summary>Enters <paramref name="to"/> in <paramref name="cpu"/>'s indirect-branch cache for <paramref name="rip"/>.</summary>
    public void CacheJump(VirtualCpu cpu, ulong rip, Region to)
    {
        lock (_lock)
        {
            if (!to.Valid || !to.Chainable) return;
            ref var e = ref cpu.Context->JumpCache[CpuContext.JumpCacheIndex(rip)];
            e.Function = 0;
            e.Rip = rip;
            e.Function = to.NativeEntry;
            Statistics.JumpsCached++;
        }
    }

    /// <summary>
    /// Undoes all chaining (under the lock): some native code is no longer valid, and any link or
    /// cached jump could lead to it. Invalidation is rare; relinking is cheap.
    /// </summary>
    private void UnlinkAll()
    {
        foreach (var r in _linked)
        {
            for (int i = 0; i < r.SuccessorRips.Length; i++) r.Links[i] = 0;
            r.Linked = false;
        }
        _linked.Clear();
        foreach (var c in vm.Cpus) c.ClearJumpCache();
    }

    private void Remove(Region r)
    {
        Statistics.RegionsInvalidated++;
        Retire(r);
    }

    /// <summary>Drops a region from the cache and the page index (replaced, or invalidated).</summary>
    private void Retire(Region r)
    {
        r.Valid = false;
        // Only chainable code is ever linked to or cached as a jump target.
        if (r.Chainable) UnlinkAll();
        foreach (ulong page in r.Pages)
        {
            if (_byPage.TryGetValue(page, out var list))
            {
                list.Remove(r);
                if (list.Count == 0)
                {
                    // No code left on it: stores no longer need the slow path.
                    _byPage.Remove(page);
                    SetCodePage(page, false);
                }
            }
        }
        var map = r.SingleStep ? _single : _regions;
        if (map.TryGetValue(r.Entry, out var cur) && cur == r) map.Remove(r.Entry);
    }

    /// <summary>Discards the regions with code on guest-physical page <paramref name="page"/> (under the lock); returns whether there were any.</summary>
    private bool InvalidatePage(ulong page)
    {
        if (!_byPage.TryGetValue(page, out var list)) return false;
        foreach (var r in list.ToArray()) Remove(r);
        SetCodePage(page, false);
        return true;
    }

    /// <summary>Discards every region with code in the guest-physical range; returns whether any was.</summary>
    public bool InvalidatePhysical(ulong gpa, ulong length)
    {
        bool any = false;
        lock (_lock)
        {
            ulong first = gpa & CpuContext.PageMask, end = gpa + length;
            // Plain loops: LINQ over these key types was JIT-compiled on every start (mmap and brk invalidate).
            if ((end - first) / 4096 > (ulong)_byPage.Count)
            {
                var hit = new List<ulong>();
                foreach (var kv in _byPage)
                    if (kv.Key >= first && kv.Key < end) hit.Add(kv.Key);
                foreach (ulong p in hit) any |= InvalidatePage(p);
            }
            else
            {
                ulong n = (end - first + 4095) / 4096;
                for (ulong i = 0; i < n; i++) any |= InvalidatePage(first + i * 4096);
            }
            if (any) Interlocked.Increment(ref _generation);
        }
        return any;
    }

    /// <summary>Every region's counts so far, most time first (empty unless profiling).</summary>
    public List<RegionProfile> Profile()
    {
        lock (_lock)
            return [.. _profiled.Where(r => r.ProfileEntries > 0)
                .Select(r => new RegionProfile(r.Entry, r.TierName, r.ProfileEntries, r.ProfileRetired, r.GuestInstructions,
                    TimeSpan.FromSeconds((double)r.ProfileTicks / Stopwatch.Frequency)))
                .OrderByDescending(p => p.Time)];
    }

    /// <summary>Discards everything.</summary>
    public void Clear()
    {
        lock (_lock)
        {
            foreach (var r in _regions.Values.Concat(_single.Values).ToList()) Remove(r);
            Interlocked.Increment(ref _generation);
        }
    }
}
