// SPDX-License-Identifier: MIT
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Lifting;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm;

/// <summary>Selects the LLVM tier for a VM (<c>--tier llvm</c>).</summary>
public static class LlvmTier
{
    /// <summary>
    /// Compiles every new region of <paramref name="vm"/> with LLVM; false with the reason (the package to install) when libLLVM 19 is missing.
    /// A region LLVM cannot compile keeps the IL tier's code; <paramref name="onFallback"/> hears of it (tests use it to fail).
    /// </summary>
    public static bool TryAttach(VirtualMachine vm, LlvmOptLevel level, out string? whyNot, Action<IrRegion, string>? onFallback = null)
    {
        try
        {
            _ = LlvmJit.Instance;
        }
        catch (Native.LlvmUnavailableException e)
        {
            whyNot = e.Message;
            return false;
        }
        vm.RegionCompiler = new Compiler(Level(level), onFallback);
        whyNot = null;
        return true;
    }

    /// <summary>
    /// LLVM for every region, in two levels (<c>--tier llvm</c>): a new region is compiled at
    /// <paramref name="first"/> before it runs, as code that returns to the dispatcher at every exit so
    /// that its hotness is measured; a region that retires <see cref="VirtualMachineOptions.TierUpThreshold"/>
    /// guest instructions is recompiled at <paramref name="hot"/> on a background thread, swapped in, and
    /// from then on chained. When JITVMX_LLVM_LEVEL is set, every region is compiled once at that level
    /// instead (as <see cref="TryAttach"/> does), so tests get the same code every run.
    /// False with the reason when libLLVM 19 is missing.
    /// </summary>
    public static bool TryAttachTwoLevel(VirtualMachine vm, LlvmOptLevel first, LlvmOptLevel hot, out string? whyNot)
    {
        if (LevelOverride() is not null) return TryAttach(vm, hot, out whyNot);
        if (!TryAttach(vm, first, out whyNot)) return false;
        vm.RegionCompiler = new Compiler(first, null, chain: false);
        vm.TierCompiler = new BackgroundTier(vm, hot);
        return true;
    }

    /// <summary>
    /// Tiered compilation (<c>--tier auto</c>): regions start in the IL tier; a region that retires
    /// <see cref="VirtualMachineOptions.TierUpThreshold"/> guest instructions is recompiled by LLVM
    /// at <paramref name="level"/> on a background thread while the guest keeps running, and its
    /// code is swapped in atomically. False with the reason when libLLVM 19 is missing.
    /// </summary>
    public static bool TryAttachBackground(VirtualMachine vm, LlvmOptLevel level, out string? whyNot)
    {
        // Loading libLLVM (about 30 ms) and creating the JIT happen on the background thread, so
        // short runs do not wait for them; the library file is only looked for here.
        if (!Native.LlvmApi.IsInstalled && !Native.LlvmApi.IsAvailable)
        {
            whyNot = Native.LlvmApi.Unavailable().Message;
            return false;
        }
        vm.TierCompiler = new BackgroundTier(vm, Level(level));
        whyNot = null;
        return true;
    }

    private static int s_inProgress;

    /// <summary>Background compilations running now, in all VMs (for tests of shutdown).</summary>
    internal static int CompilationsInProgress => Volatile.Read(ref s_inProgress);

    /// <summary>
    /// The directory of LLVM's on-disk code cache, from which a later process loads the objects this one
    /// compiled (<c>JITVMX_CACHE_DIR</c>, else the user's cache directory); null when <c>JITVMX_CACHE=0</c>.
    /// </summary>
    public static string? CodeCacheDirectory => CodeCache.Directory;

    /// <summary>
    /// Where the tier profile of the guest program in file <paramref name="program"/> belongs
    /// (<see cref="VirtualMachineOptions.TierProfile"/>): beside the code cache, named by the
    /// program's full path, size and modification time, so a rebuilt program starts a new one.
    /// Null when the code cache is off, <c>JITVMX_TIER_PROFILE=0</c> is set, or the file cannot be
    /// read (a profile without the cache would only move compilations earlier).
    /// </summary>
    public static string? TierProfilePath(string program) =>
        Environment.GetEnvironmentVariable("JITVMX_TIER_PROFILE") == "0" ? null : ProgramFile(program, ".txt");

    /// <summary>
    /// Where the CLI keeps the interpreter tier's prepared regions of <paramref name="program"/>
    /// (<see cref="VirtualMachineOptions.PreparedRegions"/>): beside its tier profile, under the same
    /// name with ".regions". Null when the code cache is off or JITVMX_PREPARED=0.
    /// </summary>
    public static string? PreparedRegionsPath(string program) =>
        Environment.GetEnvironmentVariable("JITVMX_PREPARED") == "0" ? null : ProgramFile(program, ".regions");

    // Named by the program's full path, size and modification time. The hash only names the file
    // (what is in it is checked against guest memory), so the prepared-region file's checksum does:
    // SHA-256 loaded the platform's cryptography library at the start of every run.
    private static string? ProgramFile(string program, string extension)
    {
        if (CodeCache.Directory is not { } dir) return null;
        try
        {
            var info = new FileInfo(program);
            if (!info.Exists) return null;
            ulong name = PreparedRegionCache.Checksum(System.Text.Encoding.UTF8.GetBytes($"{info.FullName}\0{info.Length}\0{info.LastWriteTimeUtc.Ticks}"));
            return Path.Combine(dir, "profiles", $"{name:x16}{extension}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>
    /// <paramref name="requested"/>, unless JITVMX_LLVM_LEVEL (O0, O1 or O2) overrides it: one level for
    /// every region, for comparing levels and for tests that need the same code every run.
    /// </summary>
    private static LlvmOptLevel Level(LlvmOptLevel requested) => LevelOverride() ?? requested;

    private static LlvmOptLevel? LevelOverride() =>
        Environment.GetEnvironmentVariable("JITVMX_LLVM_LEVEL") is { Length: > 0 } s && Enum.TryParse<LlvmOptLevel>(s, ignoreCase: true, out var l) && Enum.IsDefined(l)
            ? l : null;

    /// <summary>
    /// One background thread per VM compiling hot regions, the hottest first: of the regions waiting,
    /// the one that retired the most guest instructions since the previous pick (ties: the newest).
    /// Regions wait long when the queue is deep (qsort queues 30, at 20–300 ms each), and the guest's
    /// current loop is worth more than one that was hot during start-up and has since stopped.
    /// </summary>
    internal sealed class BackgroundTier : ITierCompiler
    {
        private const int MaxWaiting = 1024;

        // JITVMX_TIER_LOG=1 prints when each region is queued, taken and installed, in milliseconds
        // since the tier started (a debugging aid for compile latency).
        private static readonly bool s_log = Environment.GetEnvironmentVariable("JITVMX_TIER_LOG") == "1";
        private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();

        private void Log(string what) =>
            Console.Error.WriteLine($"jitvmx: tier {System.Diagnostics.Stopwatch.GetElapsedTime(_start).TotalMilliseconds,8:F1} ms  {what}");

        private readonly VirtualMachine _vm;
        private readonly LlvmOptLevel _level;
        // The vCPU only adds to the incoming queue and releases the semaphore, neither of which blocks.
        private readonly System.Collections.Concurrent.ConcurrentQueue<Waiting> _incoming = new();
        private readonly SemaphoreSlim _signal = new(0);
        private readonly List<Waiting> _waiting = [];
        private readonly Thread _thread;
        private volatile bool _stopping;

        /// <summary>A queued region and its <see cref="Region.Retired"/> count when last looked at.</summary>
        private readonly record struct Waiting(VirtualCpu Cpu, Region Region, long Seen);

        public BackgroundTier(VirtualMachine vm, LlvmOptLevel level)
        {
            _vm = vm;
            _level = level;
            _thread = new Thread(Work) { IsBackground = true, Name = "jitvmx-llvm-tier", Priority = ThreadPriority.BelowNormal };
            _thread.Start();
        }

        // Hinted regions (TierProfile) come first: they were hot before, and with the code cache each is a load.
        private readonly System.Collections.Concurrent.ConcurrentQueue<(VirtualCpu Cpu, TierProfile.Hint Hint)> _hints = new();
        // Hints whose code reaches pages the guest has not run yet: tried again when new pages hold code.
        private readonly List<Deferred> _deferred = [];

        private readonly record struct Deferred(VirtualCpu Cpu, TierProfile.Hint Hint, long Since, long PagesAdded);

        /// <summary>How long a hint waits for the pages its code reaches to be run before it is dropped.</summary>
        private static readonly TimeSpan HintPatience = TimeSpan.FromSeconds(10);

        public void EnqueueHint(VirtualCpu cpu, TierProfile.Hint hint)
        {
            if (_stopping) return;
            _hints.Enqueue((cpu, hint));
            _signal.Release();
            if (s_log) Log($"queued 0x{hint.Entry:x} from the tier profile");
        }

        /// <summary>The next hint to compile: a new one, else a deferred one if code was translated on new pages since it was tried.</summary>
        private bool TryTakeHint(out VirtualCpu cpu, out TierProfile.Hint hint, out long since)
        {
            if (_hints.TryDequeue(out var h))
            {
                (cpu, hint, since) = (h.Cpu, h.Hint, System.Diagnostics.Stopwatch.GetTimestamp());
                return true;
            }
            long pages = _vm.Cache.PagesAdded;
            for (int i = 0; i < _deferred.Count; i++)
            {
                var d = _deferred[i];
                if (System.Diagnostics.Stopwatch.GetElapsedTime(d.Since) > HintPatience)
                {
                    _deferred.RemoveAt(i--);
                    _vm.Cache.HintFailed(d.Hint.Entry);
                    if (s_log) Log($"dropped 0x{d.Hint.Entry:x} from the tier profile: its code was not all run");
                    continue;
                }
                if (d.PagesAdded == pages) continue;
                _deferred.RemoveAt(i);
                (cpu, hint, since) = (d.Cpu, d.Hint, d.Since);
                return true;
            }
            (cpu, hint, since) = (null!, null!, 0);
            return false;
        }

        private void CompileHint(VirtualCpu cpu, TierProfile.Hint hint, long since)
        {
            long pages = _vm.Cache.PagesAdded;
            var loaded = LoadHinted(cpu, hint);
            if (loaded == TranslationCache.HintedTranslation.Ready) return;
            // With no record (or one that did not hold), the long way: translated and compiled as a new hot region.
            IrRegion? ir = null;
            long generation = 0;
            var found = loaded == TranslationCache.HintedTranslation.PagesNotTranslated ? loaded
                : _vm.Cache.RetranslateHinted(cpu, hint, out ir, out generation);
            if (found == TranslationCache.HintedTranslation.PagesNotTranslated)
            {
                _vm.Cache.HintDeferred(hint.Entry);
                _deferred.Add(new Deferred(cpu, hint, since, pages));
                return;
            }
            if (found == TranslationCache.HintedTranslation.Ready && Compile(hint.Entry, native: false, ir!, out var times) is { } hot
                && _vm.Cache.ReplaceHinted(cpu, hint, ir!, hot, generation))
            {
                if (s_log) Log($"installed 0x{hint.Entry:x} from the tier profile ({ir!.GuestInstructionCount} instructions)");
                // Next time without translating (a line already in the file is not written again).
                RecordHot(cpu, hint.Entry, hint.Mode, hint.Targets, ir!, hot, times, generation);
                return;
            }
            _vm.Cache.HintFailed(hint.Entry);
            if (s_log) Log($"tier profile's 0x{hint.Entry:x} not installed ({found})");
        }

        private string? _stamp;

        /// <summary>The <see cref="HotRecord.Stamp"/> of this tier's code (made on first use, on this thread).</summary>
        private string Stamp => _stamp ??= HotRecord.Stamp(_vm, _level);

        /// <summary>
        /// Installs the code the hint's record names (<see cref="HotRecord"/>) without translating: Ready
        /// when it did, PagesNotTranslated when the hint has to wait, Gone when the hint has to go the long way.
        /// </summary>
        private TranslationCache.HintedTranslation LoadHinted(VirtualCpu cpu, TierProfile.Hint hint)
        {
            const TranslationCache.HintedTranslation LongWay = TranslationCache.HintedTranslation.Gone;
            if (hint.Payload is null || CodeCache.Directory is null || HotRecord.Parse(hint.Payload, Stamp) is not { } record) return LongWay;
            var state = _vm.Cache.PrepareHinted(cpu, hint, record.Shape.GuestRanges, out long generation);
            if (state != TranslationCache.HintedTranslation.Ready) return state == TranslationCache.HintedTranslation.PagesNotTranslated ? state : LongWay;
            if (!record.GuestMatches(cpu))
            {
                if (s_log) Log($"tier profile's record of 0x{hint.Entry:x} is of other guest bytes");
                return LongWay;
            }
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            CompiledRegion? code;
            try
            {
                code = record.Load(LlvmJit.Instance.UniqueName($"region_{hint.Entry:x}"));
            }
            catch (InvalidOperationException e)
            {
                // A damaged object the cache's checksum let through; the long way compiles it again.
                if (s_log) Log($"tier profile's record of 0x{hint.Entry:x} did not load: {e.Message}");
                return LongWay;
            }
            if (code is null || !_vm.Cache.InstallHinted(cpu, hint, record.Shape, code, generation)) return LongWay;
            Interlocked.Increment(ref _vm.Cache.Statistics.RegionsLoadedFromProfile);
            Interlocked.Increment(ref _vm.Cache.Statistics.TierCompilesCached);
            if (s_log) Log($"installed 0x{hint.Entry:x} from the tier profile's record ({record.Shape.GuestInstructions} instructions, {System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds:F1} ms)");
            return TranslationCache.HintedTranslation.Ready;
        }

        /// <summary>
        /// Writes the profile line for hot code just installed, with its <see cref="HotRecord"/> when the
        /// guest bytes are still those translated (nothing was invalidated since <paramref name="generation"/>).
        /// </summary>
        private void RecordHot(VirtualCpu cpu, ulong entry, int mode, (ulong Site, ulong Target)[] targets, Jitvmx.Ir.IrRegion ir, CompiledRegion code,
            LlvmCompileTimes times, long generation)
        {
            if (_vm.Cache.Hints is not { } profile) return;
            string? payload = HotRecord.Format(Stamp, cpu, HotShape.Of(ir), code, times);
            if (payload is not null && _vm.Cache.Generation != generation) payload = null;
            profile.Record(entry, mode, targets, payload);
        }

        public void Enqueue(VirtualCpu cpu, Region region)
        {
            if (_stopping || _incoming.Count >= MaxWaiting) return;
            _incoming.Enqueue(new Waiting(cpu, region, region.Retired));
            _signal.Release();
            if (s_log) Log($"queued 0x{region.Entry:x} ({region.GuestInstructions} instructions)");
        }

        /// <summary>
        /// Drops what is queued and waits for the region being compiled. An LLVM compilation still
        /// running while the process exits races LLVM's own static destructors and can abort the
        /// process, and one running after the VM is disposed would read freed guest memory.
        /// </summary>
        public void Dispose()
        {
            if (_stopping) return;
            _stopping = true;
            _signal.Release();
            // Also through a warm-up: LLVM must not be running when the process exits.
            _thread.Join();
        }

        /// <summary>Takes the hottest waiting region off the list (see the class summary); false when none waits.</summary>
        private bool TryTake(out Waiting next)
        {
            while (_waiting.Count < MaxWaiting && _incoming.TryDequeue(out var w)) _waiting.Add(w);
            _waiting.RemoveAll(w => !w.Region.Valid);
            next = default;
            if (_waiting.Count == 0) return false;
            var seen = new long[_waiting.Count];
            var now = new long[_waiting.Count];
            for (int i = 0; i < seen.Length; i++)
            {
                seen[i] = _waiting[i].Seen;
                now[i] = Volatile.Read(ref _waiting[i].Region.Retired);
            }
            int best = Hottest(seen, now);
            for (int i = 0; i < seen.Length; i++) _waiting[i] = _waiting[i] with { Seen = seen[i] };
            next = _waiting[best];
            _waiting.RemoveAt(best);
            return true;
        }

        private CompiledRegion? Compile(Region region, IrRegion ir, out LlvmCompileTimes times) => Compile(region.Entry, region.Native, ir, out times);

        private CompiledRegion? Compile(ulong entry, bool native, IrRegion ir, out LlvmCompileTimes times)
        {
            times = default;
            // Helper-bound regions run faster in the IL tier than in LLVM code, but not than in
            // a lower level's LLVM code (the two-level LLVM tier).
            if (!native && HelperBound(ir)) return null;
            if (!LlvmBackend.TryCompile(ir, _level, out var compiled, out string? reason, out times))
            {
                if (s_log) Log($"cannot compile 0x{entry:x}: {reason}");
                return null;
            }
            if (times.Cached) Interlocked.Increment(ref _vm.Cache.Statistics.TierCompilesCached);
            if (s_log)
            {
                static double Ms(long ticks) => ticks * 1000.0 / System.Diagnostics.Stopwatch.Frequency;
                string middle = times.Cached ? "object from the code cache"
                    : $"optimising {Ms(times.Optimize):F1} ms, code generation {Ms(times.CodeGen):F1} ms";
                Log($"compiled 0x{entry:x}: {ir.GuestInstructionCount} guest instructions, lowering {Ms(times.Lower):F1} ms, {middle}, linking {Ms(times.Link):F1} ms");
            }
            return compiled;
        }

        private static int s_warmedUp;

        /// <summary>The warm-up's region, lifted and cleaned as a hot region is (null if it cannot be).</summary>
        internal static IrRegion? WarmUpRegion()
        {
            var ir = Translator.Translate(new WarmUpCode(), WarmUpCode.Entry, RegionLimits.Default, out _);
            if (ir is not null) Passes.Run(ir);
            return ir;
        }

        /// <summary>
        /// Compiles a small made-up loop once and throws it away. The first compilation pays for
        /// loading the lowering's code and types and for LLVM's first use of its code generator
        /// (25–40 ms of lowering alone, measured); done here, on the idle second core while the guest
        /// starts, the first hot region no longer waits for it. A VM disposed meanwhile waits for it
        /// (LLVM must not be running when the process exits); the CLI leaves without disposing.
        /// </summary>
        private void WarmUp(bool codegen)
        {
            // The costs are the process's, not the VM's: once is enough.
            if (Interlocked.Exchange(ref s_warmedUp, 1) != 0) return;
            try
            {
                // Past the code cache: the point is LLVM's first code generation. Without it, the
                // lifting, lowering and cache key that a code-cache load goes through.
                bool done = WarmUpRegion() is { } ir && (codegen
                    ? LlvmBackend.TryCompile(ir, _level, out _, out _, out _, useCache: false)
                    : LlvmBackend.WarmUpLowering(ir));
                if (s_log) Log(done ? (codegen ? "warmed up" : "warmed up (lowering only)") : "warm-up region did not compile");
            }
            catch (Exception e)
            {
                // Only time is at stake: the tier works without it.
                if (s_log) Log($"warm-up failed: {e.Message}");
            }
        }

        /// <summary>
        /// The warm-up's guest code: loads, stores, integer and SSE arithmetic and a loop branch,
        /// the paths most hot regions take through the lowering.
        /// </summary>
        internal sealed class WarmUpCode : ICodeSource
        {
            public const ulong Entry = 0x1000;

            private static readonly byte[] s_code =
            [
                0x48, 0x8b, 0x07,                   // mov rax, [rdi]
                0xf3, 0x0f, 0x6f, 0x47, 0x10,       // movdqu xmm0, [rdi+16]
                0x66, 0x0f, 0xfe, 0xc1,             // paddd xmm0, xmm1
                0xf3, 0x0f, 0x7f, 0x47, 0x10,       // movdqu [rdi+16], xmm0
                0x48, 0x01, 0xf0,                   // add rax, rsi
                0x48, 0x89, 0x47, 0x08,             // mov [rdi+8], rax
                0x48, 0x83, 0xc7, 0x20,             // add rdi, 32
                0x48, 0xff, 0xca,                   // dec rdx
                0x75, 0xdf,                         // jne Entry
                0xc3,                               // ret
            ];

            public int FetchCode(ulong address, Span<byte> buffer)
            {
                if (address < Entry || address >= Entry + (ulong)s_code.Length) return 0;
                int offset = (int)(address - Entry), n = Math.Min(buffer.Length, s_code.Length - offset);
                s_code.AsSpan(offset, n).CopyTo(buffer);
                return n;
            }
        }

        /// <summary>Runs one compilation, counted in <see cref="CompilationsInProgress"/> and the VM's compile time.</summary>
        private void Busy(Action compile)
        {
            Interlocked.Increment(ref s_inProgress);
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                compile();
            }
            finally
            {
                Interlocked.Add(ref _vm.Cache.Statistics.TierCompileTicks, System.Diagnostics.Stopwatch.GetTimestamp() - t0);
                Interlocked.Decrement(ref s_inProgress);
            }
        }

        /// <summary>Compiles a region that became hot in this run and installs the code, recording it in the tier profile.</summary>
        private void CompileHot(VirtualCpu cpu, Region region)
        {
            // With the computed targets seen at run time taken in, when that works out; else the same code.
            if (_vm.Options.PredictIndirectBranches && _vm.Cache.RetranslateWithTargets(cpu, region, out long generation, out var targets) is { } wide
                && Compile(region, wide, out var times) is { } hot && _vm.Cache.Replace(cpu, region, wide, hot, generation))
            {
                RecordHot(cpu, region.Entry, region.Mode, targets, wide, hot, times, generation);
                if (s_log) Log($"installed 0x{region.Entry:x} with predicted targets ({wide.GuestInstructionCount} instructions)");
                return;
            }
            // The next run's hint for this region translates it with no targets, as a new region (the
            // translation here keeps the region's own limits and slots), so the line gets no record.
            bool swapped = _vm.Cache.Retranslate(cpu, region) is { } ir && Compile(region, ir, out _) is { } same && _vm.Cache.Swap(region, same);
            if (swapped) _vm.Cache.Hints?.Record(region.Entry, region.Mode, []);
            if (s_log) Log(swapped ? $"installed 0x{region.Entry:x}" : $"kept 0x{region.Entry:x} in the IL tier");
        }

        private void Work()
        {
            // Load the library and make the JIT now, while the guest starts up on the other core,
            // rather than in front of the first hot region (about 30 ms, more on a busy machine).
            try
            {
                _ = LlvmJit.Instance;
                if (s_log) Log("LLVM ready");
            }
            catch (Native.LlvmUnavailableException)
            {
                return; // it was there when attaching; nothing to compile with now
            }
            // With a tier profile the first compilations are its regions, loads from the code cache that
            // generate no code: warming LLVM's code generation up in front of them only delayed them
            // (`listwalk`'s hot loop waited 85 ms, and a warm-up between two hints delayed the second).
            // What they do need warm (the lifter, the lowering, the cache's hash) is warmed instead.
            // Hints with records (HotRecord) need neither: they link objects. Their regions would only wait.
            if (_vm.Cache.Hints is not { Recorded: > 0 }) WarmUp(codegen: _vm.Cache.Hints is not { Count: > 0 });
            while (true)
            {
                // Deferred hints are looked at again now and then, when new pages may hold code.
                _signal.Wait(_deferred.Count > 0 ? 20 : Timeout.Infinite);
                while (!_stopping)
                {
                    try
                    {
                        if (TryTakeHint(out var hintCpu, out var hint, out long since))
                            Busy(() => CompileHint(hintCpu, hint, since));
                        else if (TryTake(out var w))
                        {
                            if (_vm.Options.PredictIndirectBranches && _vm.Cache.RequeueIfCovered(w.Region))
                            {
                                if (s_log) Log($"skipped 0x{w.Region.Entry:x}: covered by hot code");
                                continue;
                            }
                            if (s_log) Log($"compiling 0x{w.Region.Entry:x} ({_waiting.Count} waiting)");
                            Busy(() => CompileHot(w.Cpu, w.Region));
                        }
                        else break;
                    }
                    catch (ObjectDisposedException)
                    {
                        return; // the VM went away while a region was compiling
                    }
                }
                if (_stopping) return;
            }
        }
    }

    /// <summary>
    /// The background tier's choice among waiting regions: the index of the one whose retired count
    /// grew the most since it was last seen (<paramref name="now"/> − <paramref name="seen"/>), the
    /// last of equals (the newest, as regions are appended); every <paramref name="seen"/> becomes
    /// <paramref name="now"/>, so the next choice measures from this one.
    /// </summary>
    internal static int Hottest(Span<long> seen, ReadOnlySpan<long> now)
    {
        int best = -1;
        long bestHeat = long.MinValue;
        for (int i = seen.Length - 1; i >= 0; i--)
        {
            if (now[i] - seen[i] > bestHeat)
            {
                bestHeat = now[i] - seen[i];
                best = i;
            }
            seen[i] = now[i];
        }
        return best;
    }

    /// <summary>
    /// Whether a region calls runtime helpers so often (SIMD, x87, string compares) that it runs
    /// faster in the IL tier: there RyuJIT calls, and often inlines, the helpers directly, while
    /// LLVM code reaches each one through a transition into managed code.
    /// </summary>
    internal static bool HelperBound(IrRegion ir)
    {
        int calls = 0;
        foreach (var b in ir.Blocks)
            foreach (var v in b.Nodes)
                if (v.Op == IrOp.Call && !LlvmBackend.LowersNatively(v)) calls++;
        return calls * 8 > Math.Max(ir.GuestInstructionCount, 1);
    }

    private sealed class Compiler(LlvmOptLevel level, Action<IrRegion, string>? onFallback, bool chain = true) : IRegionCompiler
    {
        public CompiledRegion? TryCompile(IrRegion region, out string? reason)
        {
            if (LlvmBackend.TryCompile(region, level, out var compiled, out reason, out _, chain)) return compiled;
            onFallback?.Invoke(region, reason ?? "unknown");
            return null;
        }
    }
}
