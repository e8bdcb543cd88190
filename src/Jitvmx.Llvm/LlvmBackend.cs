// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Text;
using Jitvmx.Backend;
using Jitvmx.Ir;
using Jitvmx.Llvm.Native;
using Jitvmx.Runtime;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>Optimisation applied to a region's LLVM IR before code generation.</summary>
public enum LlvmOptLevel
{
    /// <summary>Only mem2reg (guest registers become SSA values) and fast instruction selection: the cheapest code to produce, slower than the IL tier.</summary>
    O0,
    /// <summary>A short pipeline for translated code: SSA, CSE, combining, CFG cleanup.</summary>
    O1,
    /// <summary>LLVM's <c>default&lt;O2&gt;</c>.</summary>
    O2,
}

/// <summary>
/// Timing of one LLVM compilation, in Stopwatch ticks, and what a record of it for a later run needs:
/// the object's code-cache key (null when the cache is not used) and the helpers the code imports.
/// </summary>
internal readonly record struct LlvmCompileTimes(long Lower, long Optimize, long CodeGen, long Link, bool Cached = false, string? Key = null, int[]? Helpers = null)
{
    public double TotalMs => (Lower + Optimize + CodeGen + Link) * 1000.0 / Stopwatch.Frequency;
}

/// <summary>
/// Lowers an IR region (after <see cref="Passes.Run"/>) to one LLVM function <c>i32 region(ptr ctx)</c>
/// with exactly the semantics of <see cref="IlBackend"/>: guest registers, flags and XMM registers
/// live in allocas (loaded at entry, stored at every exit; mem2reg makes them SSA values), each guest
/// block charges the budget and loop headers check the stop flag, every memory access is the inline
/// software-TLB check with the slow path called through <see cref="LlvmRuntime"/>, and exits return
/// a successor slot, −1 (RIP stored) or −2.
/// </summary>
internal sealed unsafe partial class LlvmBackend
{
    private static readonly int[] s_flagBits = [0, 2, 4, 6, 7, 11, 10]; // RFLAGS bit of each Flag: CF PF AF ZF SF OF DF

    // JITVMX_DUMP_LLVM=1 prints every region's optimised LLVM IR to stderr (a debugging aid).
    private static readonly bool s_dump = Environment.GetEnvironmentVariable("JITVMX_DUMP_LLVM") == "1";

    private readonly IrRegion _region;
    private readonly nint _ctx, _module, _b;
    private nint _fn, _ctxArg;
    private readonly nint _i1, _i8, _i16, _i32, _i64, _i128, _v128, _ptr, _void;
    private readonly nint[] _gpr = new nint[16], _flag = new nint[7], _xmm = new nint[16];
    private readonly bool[] _gprWritten = new bool[16], _flagWritten = new bool[7], _xmmWritten = new bool[16];
    private readonly Dictionary<IrValue, nint> _values = [];
    private readonly Dictionary<IrValue, IrBlock> _defBlock = [];
    private readonly Dictionary<IrValue, nint> _slots = []; // values used outside their block live in allocas
    private readonly Dictionary<IrBlock, nint> _blocks = [];
    private readonly Dictionary<string, (nint Fn, nint Type)> _functions = [];
    private readonly SortedDictionary<int, nint> _helpers = []; // helper number -> its symbol's global
    private readonly List<ulong> _successors = [];
    private nint _remaining, _code, _tlb, _argBuf, _resBuf, _vecBuf, _spill, _fault, _stepOut;
    // Lazy flags (FlagDeferral): per flag, the site that wrote it last (0: the i1 in _flag holds it) and its leaves.
    private FlagDeferral? _defer;
    private readonly nint[] _flagSite = new nint[7];
    private readonly nint[,] _flagLeaf = new nint[7, FlagDeferral.MaxLeaves];
    // Within the block being emitted: the expression a flag was last set to (deferred), or plain (stored).
    private readonly IrValue?[] _blockFlag = new IrValue?[7];
    private readonly bool[] _blockFlagKnown = new bool[7];
    private readonly FlagDeferral.Site?[] _blockSite = new FlagDeferral.Site?[7]; // the deferred write _blockFlag is
    private Dictionary<IrValue, nint>? _remap;
    private IrBlock _current = null!;
    private int _maxArgs;
    private bool _lazyFlags = true, _chain = true;
    // Guest reads rely on host faults (IrRegion.HostReadFaults).
    private bool _hostReads;
    // Guest writes rely on host faults (IrRegion.HostWriteFaults).
    private bool _hostWrites;

    private LlvmBackend(IrRegion region, nint context, nint module)
    {
        _region = region;
        _ctx = context;
        _module = module;
        _b = LLVMCreateBuilderInContext(context);
        _i1 = LLVMIntTypeInContext(context, 1);
        _i8 = LLVMIntTypeInContext(context, 8);
        _i16 = LLVMIntTypeInContext(context, 16);
        _i32 = LLVMIntTypeInContext(context, 32);
        _i64 = LLVMIntTypeInContext(context, 64);
        _i128 = LLVMIntTypeInContext(context, 128);
        _v128 = LLVMVectorType(_i8, 16);
        _ptr = LLVMPointerTypeInContext(context, 0);
        _void = LLVMVoidTypeInContext(context);
    }

    /// <summary>
    /// Compiles <paramref name="region"/> through the process JIT. Returns false with the reason when
    /// the region uses something this backend does not lower (the caller keeps the IL tier's code).
    /// </summary>
    public static bool TryCompile(IrRegion region, LlvmOptLevel level, out CompiledRegion? compiled, out string? reason) =>
        TryCompile(region, level, out compiled, out reason, out _);

    /// <inheritdoc cref="TryCompile(IrRegion, LlvmOptLevel, out CompiledRegion?, out string?)"/>
    /// <param name="region">The region (after <see cref="Passes.Run"/>).</param>
    /// <param name="level">Optimisation; O0 also computes flags where they are written (lazy flags only pay off optimised).</param>
    /// <param name="compiled">The code, or null.</param>
    /// <param name="reason">Why the region was not compiled.</param>
    /// <param name="times">Time spent per phase.</param>
    /// <param name="chain">
    /// False for code that always returns to the dispatcher and reports no cookie (nothing links to
    /// or from it): the first, cheap code of a region that a background tier replaces when hot, so
    /// that the dispatcher measures each region's own hotness.
    /// </param>
    /// <param name="useCache">False to compile even when <see cref="CodeCache"/> holds the object (the tier's warm-up).</param>
    public static bool TryCompile(IrRegion region, LlvmOptLevel level, out CompiledRegion? compiled, out string? reason, out LlvmCompileTimes times, bool chain = true,
        bool useCache = true)
    {
        compiled = null;
        times = default;
        var jit = LlvmJit.Instance;
        string name = jit.UniqueName($"region_{region.EntryRip:x}");
        long t0 = Stopwatch.GetTimestamp();
        nint context = LLVMContextCreate();
        try
        {
            // Not for the cheap first code (O0): fast instruction selection cannot select callbr and
            // hands those blocks to the slower selector, and that code is soon replaced if hot.
            bool hostReads = region.HostReadFaults && level != LlvmOptLevel.O0;
            nint obj;
            List<FaultMapEntry> faults;
            ulong[] successors;
            int[] helpers;
            long t1, t2;
            bool cached = false;
            string? key;
            while (true)
            {
                if (!TryLower(region, context, name, out nint module, out successors, out helpers, out reason, lazyFlags: level != LlvmOptLevel.O0, chain: chain, hostReads: hostReads))
                    return false;
                t1 = Stopwatch.GetTimestamp();
                // Compiled before, by this process or an earlier one: the stored object (see CodeCache).
                // Not O0 code, which compiles in a few milliseconds (--tier llvm would store every region of every
                // program), nor when dumping: the dump shows the optimised IR, which a hit skips.
                key = CodeCache.Directory is null || !useCache || level == LlvmOptLevel.O0 || s_dump ? null : CodeCache.Key(Print(module), name, CacheSettings(level, region));
                if (key is not null && CodeCache.TryLoad(key, name) is { } stored)
                {
                    faults = [];
                    if (!hostReads || CheckHostReads(stored, name, out faults))
                    {
                        LLVMDisposeModule(module);
                        fixed (byte* p = stored) obj = LLVMCreateMemoryBufferWithMemoryRangeCopy(p, (nuint)stored.Length, name);
                        t2 = Stopwatch.GetTimestamp();
                        cached = true;
                        break;
                    }
                }
                Optimize(module, level, SwitchesFpEnv(region));
                t2 = Stopwatch.GetTimestamp();
                if (s_dump) Console.Error.WriteLine($"jitvmx: LLVM region 0x{region.EntryRip:x} ({level})\n{Print(module)}");
                // Code is generated on this thread with its own target machine and linked as an object:
                // compilations on several threads do not share LLJIT's single compiler.
                obj = EmitObject(module, CodegenLevel(level));
                LLVMDisposeModule(module);
                faults = [];
                var bytes = new ReadOnlySpan<byte>(LLVMGetBufferStart(obj), (int)LLVMGetBufferSize(obj));
                if (!hostReads || CheckHostReads(bytes, name, out faults))
                {
                    if (key is not null) CodeCache.Store(key, name, bytes);
                    break;
                }
                LLVMDisposeMemoryBuffer(obj);
                hostReads = false; // again with software checks
            }
            long t3 = Stopwatch.GetTimestamp();
            jit.DefineHelpers(helpers);
            nint cells = chain ? DefineCells(jit, name, successors.Length) : 0;
            byte[]? objBytes = PerfMap.Enabled ? new ReadOnlySpan<byte>(LLVMGetBufferStart(obj), (int)LLVMGetBufferSize(obj)).ToArray() : null;
            nint tracker = jit.AddObject(obj); // takes the buffer
            nint fn = jit.Lookup(name);        // links against the runtime and helper symbols
            if (objBytes is not null) PerfMap.Record(name, fn, objBytes);
            ulong[] faultKeys = HostFaults.Register(fn, faults); // before the code can run
            times = new LlvmCompileTimes(t1 - t0, t2 - t1, t3 - t2, Stopwatch.GetTimestamp() - t3, cached, key, helpers);
            compiled = Native(fn, tracker, successors, cells, EntryNeed(region), faultKeys);
            return true;
        }
        finally
        {
            LLVMContextDispose(context);
        }
    }

    /// <summary>
    /// Compiles <paramref name="region"/> to a relocatable ELF object defining <paramref name="symbol"/>.
    /// The object imports the runtime entry points and the helpers (<paramref name="helpers"/>, by
    /// <see cref="Helpers.Symbol"/>) by name: no address or helper number of this process is baked in,
    /// so it can be stored and loaded by <see cref="LoadObject"/> in another process.
    /// </summary>
    public static bool TryEmitObject(IrRegion region, LlvmOptLevel level, string symbol, out byte[]? obj, out ulong[] successors, out int[] helpers, out string? reason)
    {
        obj = null;
        nint context = LLVMContextCreate();
        try
        {
            for (bool hostReads = region.HostReadFaults && level != LlvmOptLevel.O0; ; hostReads = false)
            {
                if (!TryLower(region, context, symbol, out nint module, out successors, out helpers, out reason, lazyFlags: level != LlvmOptLevel.O0, hostReads: hostReads)) return false;
                Optimize(module, level, SwitchesFpEnv(region));
                // The object imports only the helpers still called after optimisation (a wide divide's
                // helper goes when the dividend is known to be narrow).
                helpers = [.. helpers.Where(id => LLVMGetNamedGlobal(module, Helpers.Symbol(id)) is var g && g != 0 && LLVMGetFirstUse(g) != 0)];
                obj = TakeBytes(EmitObject(module, CodegenLevel(level)));
                LLVMDisposeModule(module);
                if (!hostReads || CheckHostReads(obj, symbol, out _)) return true;
            }
        }
        finally
        {
            LLVMContextDispose(context);
        }
    }

    /// <summary>
    /// Links an object from <see cref="TryEmitObject"/> into the process JIT and returns the region.
    /// <paramref name="helpers"/> are this process's numbers of the helpers the object imports.
    /// </summary>
    public static CompiledRegion LoadObject(ReadOnlySpan<byte> obj, string symbol, ulong[] successors, IEnumerable<int> helpers, int entryCharge = 0)
    {
        var jit = LlvmJit.Instance;
        jit.DefineHelpers(helpers);
        var cells = DefineCells(jit, symbol, successors.Length);
        if (!HostReadMap.TryRead(obj, symbol, out var faults, out string? why))
            throw new InvalidOperationException($"LLVM object {symbol}: {why}");
        nint tracker = jit.AddObject(obj, symbol);
        nint fn = jit.Lookup(symbol);
        if (PerfMap.Enabled) PerfMap.Record(symbol, fn, obj);
        return Native(fn, tracker, successors, cells, entryCharge, HostFaults.Register(fn, faults));
    }

    /// <summary>Regions whose reads were compiled again with software checks (<see cref="CheckHostReads"/>).</summary>
    public static long HostReadFallbacks;

    /// <summary>
    /// Reads the object's list of host-fault reads. An object LLVM wrote in a form this reader does not
    /// follow is compiled again with software checks: a read without its entry would fault with no handler.
    /// </summary>
    private static bool CheckHostReads(ReadOnlySpan<byte> obj, string symbol, out List<FaultMapEntry> faults)
    {
        if (HostReadMap.TryRead(obj, symbol, out faults, out string? why)) return true;
        Interlocked.Increment(ref HostReadFallbacks);
        if (s_faultLog) Console.Error.WriteLine($"jitvmx: {symbol}: {why}; software checks instead");
        return false;
    }

    private static readonly bool s_faultLog = Environment.GetEnvironmentVariable("JITVMX_TIER_LOG") == "1";

    /// <summary>Allocates and defines the link cells and cookie cell a region's code imports (never freed, as code is not).</summary>
    private static nint DefineCells(LlvmJit jit, string symbol, int successors)
    {
        int slots = Math.Max(1, successors);
        var block = (nint*)System.Runtime.InteropServices.NativeMemory.AllocZeroed((nuint)(slots + 1), (nuint)sizeof(nint));
        jit.DefineAbsolute([(LinksSymbol(symbol), (nint)block), (CookieSymbol(symbol), (nint)(block + slots))], callable: false);
        return (nint)block;
    }

    private static CompiledRegion Native(nint fn, nint tracker, ulong[] successors, nint cells, int entryCharge = 0, ulong[]? faultKeys = null)
    {
        var thunk = new LlvmRegionThunk(fn, tracker, faultKeys ?? []);
        var links = (nint*)cells;
        return new CompiledRegion(thunk.Invoke, successors)
        {
            EntryCharge = entryCharge, NativeEntry = fn, Links = links, CookieCell = links is null ? null : (int*)(links + Math.Max(1, successors.Length)),
        };
    }

    /// <summary>Codegen optimisation level used with an IR level.</summary>
    public static int CodegenLevel(LlvmOptLevel level) => level == LlvmOptLevel.O0 ? 0 : 2;

    /// <summary>
    /// Lowers <paramref name="region"/> and computes its code-cache key, generating no code: the first
    /// run of those paths (the LLVM C API's types and builders, the key's hash) for a tier whose first
    /// compilations are code-cache loads. Whether it lowered.
    /// </summary>
    public static bool WarmUpLowering(IrRegion region)
    {
        nint context = LLVMContextCreate();
        try
        {
            string name = LlvmJit.Instance.UniqueName("warm_up");
            if (!TryLower(region, context, name, out nint module, out _, out _, out _)) return false;
            _ = CodeCache.Key(Print(module), name, CacheSettings(LlvmOptLevel.O1, region));
            LLVMDisposeModule(module);
            return true;
        }
        finally
        {
            LLVMContextDispose(context);
        }
    }

    /// <summary>What shapes an object besides its lowered IR and this build (<see cref="CodeCache.Key"/>).</summary>
    private static string CacheSettings(LlvmOptLevel level, IrRegion region) =>
        $"{level} codegen {CodegenLevel(level)} fpenv {SwitchesFpEnv(region)} options {Environment.GetEnvironmentVariable("JITVMX_LLVM_OPTIONS")}";

    /// <summary>Generates a relocatable object for <paramref name="module"/> (not consumed); the caller owns the returned LLVMMemoryBufferRef.</summary>
    public static nint EmitObject(nint module, int codegenLevel)
    {
        if (LLVMTargetMachineEmitToMemoryBuffer(LlvmJit.Instance.TargetMachine(codegenLevel), module, 1, out nint err, out nint buffer) != 0)
            throw new InvalidOperationException($"LLVM: emitting an object: {TakeMessage(err)}");
        return buffer;
    }

    /// <summary>The bytes of an object buffer, which is disposed.</summary>
    public static byte[] TakeBytes(nint buffer)
    {
        var bytes = new ReadOnlySpan<byte>(LLVMGetBufferStart(buffer), (int)LLVMGetBufferSize(buffer)).ToArray();
        LLVMDisposeMemoryBuffer(buffer);
        return bytes;
    }

    /// <summary>
    /// Runs the pipeline of <paramref name="level"/> over <paramref name="module"/>; with
    /// <paramref name="threadJumps"/>, O1 adds jump threading (see <see cref="SwitchesFpEnv"/>).
    /// </summary>
    public static void Optimize(nint module, LlvmOptLevel level, bool threadJumps = false)
    {
        string passes = level switch
        {
            LlvmOptLevel.O0 => "function(mem2reg)",
            // instcombine alone checks that it reached a fixpoint and aborts the process when not.
            // jump-threading folds the checks that repeat a branch already taken: in a region that
            // switches MXCSR as it runs, the fast path of one SSE operation leads straight to the next
            // one's (it took about 25 % off nbody's hot loop before regions checked MXCSR at entry).
            // Elsewhere it found nothing to gain and cost 10-18 % of the compile time.
            LlvmOptLevel.O1 when threadJumps => "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,jump-threading,simplifycfg,dce)",
            LlvmOptLevel.O1 => "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,dce)",
            _ => "default<O2>",
        };
        nint options = LLVMCreatePassBuilderOptions();
        try { Check(LLVMRunPasses(module, passes, LlvmJit.Instance.TargetMachine(), options), $"running {passes}"); }
        finally { LLVMDisposePassBuilderOptions(options); }
    }

    /// <summary>
    /// Lowers <paramref name="region"/> to a new module in <paramref name="context"/> defining function
    /// <paramref name="name"/>, verified. The caller owns the module. False with the reason when the region uses
    /// something not lowered yet or the verifier rejects the function (a lowering bug).
    /// </summary>
    public static bool TryLower(IrRegion region, nint context, string name, out nint module, out ulong[] successors, out int[] helpers, out string? reason,
        bool lazyFlags = true, bool chain = true, bool hostReads = false)
    {
        var jit = LlvmJit.Instance;
        module = LLVMModuleCreateWithNameInContext(name, context);
        LLVMSetTarget(module, jit.Triple);
        LLVMSetDataLayout(module, jit.DataLayout);
        var backend = new LlvmBackend(region, context, module) { _lazyFlags = lazyFlags && s_lazyFlags, _chain = chain, _hostReads = hostReads && region.HostReadFaults,
            _hostWrites = hostReads && region.HostWriteFaults }; // HostWriteFaults implies HostReadFaults
        successors = [];
        helpers = [];
        try
        {
            backend.Emit(name);
            if (LLVMVerifyModule(module, 2, out nint msg) != 0)
                throw new InvalidOperationException($"LLVM rejected region 0x{region.EntryRip:x}: {TakeMessage(msg)}");
            TakeMessage(msg);
            successors = [.. backend._successors];
            helpers = [.. backend._helpers.Keys];
            reason = null;
            return true;
        }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException)
        {
            // Unsupported IR, or a lowering bug the verifier caught: the IL tier's code stays in use.
            LLVMDisposeModule(module);
            module = 0;
            reason = e.Message;
            return false;
        }
        finally
        {
            LLVMDisposeBuilder(backend._b);
        }
    }

    /// <summary>Textual LLVM IR of a module (for tests and debugging).</summary>
    public static string Print(nint module) => TakeMessage(LLVMPrintModuleToString(module));

    // ================= structure =================

    private nint Type(IrType t) => t switch
    {
        IrType.I1 => _i1,
        IrType.I8 => _i8,
        IrType.I16 => _i16,
        IrType.I32 => _i32,
        IrType.I64 => _i64,
        IrType.V128 => _v128,
        _ => throw new NotSupportedException($"IR type {t} has no LLVM type"),
    };

    private void Emit(string name)
    {
        Scan();
        nint param = _ptr;
        _fn = LLVMAddFunction(_module, name, LLVMFunctionType(_i32, &param, 1, 0));
        _ctxArg = LLVMGetParam(_fn, 0);
        nint entry = LLVMAppendBasicBlockInContext(_ctx, _fn, "entry");
        foreach (var b in _region.Blocks) _blocks[b] = LLVMAppendBasicBlockInContext(_ctx, _fn, $"b{b.Id}");
        _fault = LLVMAppendBasicBlockInContext(_ctx, _fn, "fault");
        _stepOut = LLVMAppendBasicBlockInContext(_ctx, _fn, "step.out");
        _spill = LLVMAppendBasicBlockInContext(_ctx, _fn, "spill");

        // Prologue: every alloca, then guest state into them.
        LLVMPositionBuilderAtEnd(_b, entry);
        for (int i = 0; i < 16; i++) if (_gprWritten[i] || _gpr[i] == 1) _gpr[i] = LLVMBuildAlloca(_b, _i64, $"r{i}");
        for (int i = 0; i < 7; i++) if (_flagWritten[i] || _flag[i] == 1) _flag[i] = LLVMBuildAlloca(_b, _i1, ((Flag)i).ToString());
        if (_defer is { } defer)
            for (int f = 0; f < 7; f++)
                if (defer.Kinds[f].Count > 0)
                {
                    _flagSite[f] = LLVMBuildAlloca(_b, _i32, $"{(Flag)f}.site");
                    for (int k = 0; k < defer.LeafSlots; k++) _flagLeaf[f, k] = LLVMBuildAlloca(_b, _i64, $"{(Flag)f}.l{k}");
                }
        for (int i = 0; i < 16; i++) if (_xmmWritten[i] || _xmm[i] == 1) _xmm[i] = LLVMBuildAlloca(_b, _v128, $"xmm{i}");
        _remaining = LLVMBuildAlloca(_b, _i64, "remaining");
        _code = LLVMBuildAlloca(_b, _i32, "code");
        _argBuf = LLVMBuildAlloca(_b, LLVMArrayType2(_i8, (ulong)(Math.Max(1, _maxArgs) * LlvmRuntime.SlotSize)), "args");
        LLVMSetAlignment(_argBuf, 16);
        _resBuf = LLVMBuildAlloca(_b, _v128, "result");
        LLVMSetAlignment(_resBuf, 16);
        _vecBuf = LLVMBuildAlloca(_b, _v128, "vec");
        LLVMSetAlignment(_vecBuf, 16);
        foreach (var v in _slots.Keys.ToList()) _slots[v] = LLVMBuildAlloca(_b, Type(v.Type), $"v{v.Id}");
        FpEnvAllocas();
        _helperIdSlot = LLVMBuildAlloca(_b, _i32, "helper.id");
        LoadState();
        LLVMBuildStore(_b, CtxLoad(_i64, StateOffsets.Remaining, 8), _remaining);
        _tlb = Gep(_ctxArg, I64((ulong)StateOffsets.TlbInline)); // no load, and no register of its own
        _flatAddend = _region.FlatMemory ? CtxLoad(_i64, StateOffsets.FlatAddend, 8) : 0;
        FpEnvPrologue();
        LLVMBuildBr(_b, _blocks[_region.Blocks[0]]);

        _need = BudgetNeeds(_region);
        _groups = AccessGroups.Find(_region);
        _groupChecks.Clear();
        foreach (var b in _region.Blocks) EmitBlock(b);
        _fpOff = false;

        // Memory fault or restart: the slow path set RIP and how many instructions to give back.
        ForgetBlockFlags();
        GiveBackExit(_fault, RegionCode.Stop);
        // An instruction left before it did anything (WindowMode): the dispatcher steps it with the lower tiers.
        GiveBackExit(_stepOut, RegionCode.Step);

        EmitHelperExitBlock();
        LLVMPositionBuilderAtEnd(_b, _spill);
        LeaveState();
        if (_chain) EmitChainedReturn(name, Load(_i32, _code));
        else LLVMBuildRet(_b, Load(_i32, _code));
    }

    /// <summary>Fills <paramref name="block"/>: the instructions in ctx's GiveBack go back to the budget, and the region leaves with <paramref name="code"/> (RIP is set).</summary>
    private void GiveBackExit(nint block, int code)
    {
        LLVMPositionBuilderAtEnd(_b, block);
        LLVMBuildStore(_b, LLVMBuildAdd(_b, Load(_i64, _remaining), CtxLoad(_i64, StateOffsets.GiveBack, 8), ""), _remaining);
        LLVMBuildStore(_b, I32(code), _code);
        LLVMBuildBr(_b, _spill);
    }

    /// <summary>
    /// Leaves the region with <paramref name="code"/>, or chains: a successor slot whose link cell
    /// the dispatcher filled, or an indirect target found in the vCPU's jump cache, is entered by a
    /// tail call, so hot paths through several regions never return to managed code. The stop flag
    /// is checked before each chained entry (a chain can loop without a loop header of its own);
    /// the budget is checked by the entered region itself.
    /// </summary>
    private void EmitChainedReturn(string name, nint code)
    {
        // Imported, not defined here: the loader defines both at cells it allocates (a writable data
        // section per region object would cost a memory mapping each, and processes have a limit).
        int slots = Math.Max(1, _successors.Count);
        nint links = LLVMAddGlobal(_module, LLVMArrayType2(_ptr, (ulong)slots), LinksSymbol(name));
        LLVMSetAlignment(links, 8);
        nint cookie = LLVMAddGlobal(_module, _i32, CookieSymbol(name));
        LLVMSetAlignment(cookie, 4);

        nint direct = NewBlock("chain.slot"), notSlot = NewBlock("chain.notslot"), indirect = NewBlock("chain.indirect");
        nint slotRet = NewBlock("ret.slot"), plainRet = NewBlock("ret");
        nint tailDirect = NewBlock("chain.tail"), tailIndirect = NewBlock("chain.tailind");
        LLVMBuildCondBr(_b, LLVMBuildICmp(_b, LlvmIntPredicate.Sge, code, I32(0), ""), direct, notSlot);

        nint param = _ptr;
        nint fnType = LLVMFunctionType(_i32, &param, 1, 0);
        // A chain that loops is bounded by the budget slice, which each entered region checks.
        nint Go(nint fn) => LLVMBuildICmp(_b, LlvmIntPredicate.Ne, LLVMBuildPtrToInt(_b, fn, _i64, ""), I64(0), "");

        LLVMPositionBuilderAtEnd(_b, direct);
        nint cell = Gep(links, LLVMBuildMul(_b, LLVMBuildZExt(_b, code, _i64, ""), I64(8), ""));
        nint target = Load(_ptr, cell, 8);
        LLVMBuildCondBr(_b, Go(target), tailDirect, slotRet);
        LLVMPositionBuilderAtEnd(_b, tailDirect);
        TailCall(fnType, target);

        LLVMPositionBuilderAtEnd(_b, slotRet);
        CtxStore(Load(_i32, cookie, 4), StateOffsets.ExitCookie, 4);
        LLVMBuildRet(_b, code);

        LLVMPositionBuilderAtEnd(_b, notSlot);
        LLVMBuildCondBr(_b, LLVMBuildICmp(_b, LlvmIntPredicate.Eq, code, I32(RegionCode.Indirect), ""), indirect, plainRet);
        LLVMPositionBuilderAtEnd(_b, indirect);
        nint rip = CtxLoad(_i64, StateOffsets.Rip, 8);
        nint index = LLVMBuildAnd(_b, LLVMBuildXor(_b, rip, LLVMBuildLShr(_b, rip, I64(CpuContext.JumpCacheBits), ""), ""), I64(CpuContext.JumpCacheSize - 1), "");
        nint entry = Gep(CtxLoad(_ptr, StateOffsets.JumpCache, 8), LLVMBuildShl(_b, index, I64(4), ""));
        nint cachedRip = Load(_i64, entry, 8);
        nint cachedFn = Load(_ptr, Gep(entry, I64(8)), 8);
        nint hit = LLVMBuildAnd(_b, LLVMBuildICmp(_b, LlvmIntPredicate.Eq, cachedRip, rip, ""), Go(cachedFn), "");
        LLVMBuildCondBr(_b, hit, tailIndirect, plainRet);
        LLVMPositionBuilderAtEnd(_b, tailIndirect);
        TailCall(fnType, cachedFn);

        LLVMPositionBuilderAtEnd(_b, plainRet);
        LLVMBuildRet(_b, code);
    }

    private void TailCall(nint fnType, nint fn)
    {
        nint arg = _ctxArg;
        nint call = LLVMBuildCall2(_b, fnType, fn, &arg, 1, "");
        LLVMSetTailCallKind(call, 2);
        LLVMBuildRet(_b, call);
    }

    /// <summary>Symbol of a region's link cells (one pointer per successor slot).</summary>
    public static string LinksSymbol(string region) => region + "_links";

    /// <summary>Symbol of the cell holding a region's cookie.</summary>
    public static string CookieSymbol(string region) => region + "_cookie";

    /// <summary>Finds the guest state the region touches, values used outside their block, and the widest helper call.</summary>
    private void Scan()
    {
        foreach (var b in _region.Blocks)
            foreach (var v in b.Nodes)
            {
                _defBlock[v] = b;
                switch (v.Op)
                {
                    case IrOp.GetReg: _gpr[v.Aux] = 1; break;
                    case IrOp.SetReg: _gprWritten[v.Aux] = true; break;
                    case IrOp.GetFlag: _flag[v.Aux] = 1; break;
                    case IrOp.SetFlag: _flagWritten[v.Aux] = true; break;
                    case IrOp.GetXmm: _xmm[v.Aux] = 1; break;
                    case IrOp.SetXmm: _xmmWritten[v.Aux] = true; break;
                    case IrOp.Call or IrOp.ExitHelper:
                        _maxArgs = Math.Max(_maxArgs, v.Args.Length);
                        if (LlvmRuntime.Unsupported(v.Aux, v.Args.Length) is { } why) throw new NotSupportedException(why);
                        break;
                }
            }
        foreach (var b in _region.Blocks)
            foreach (var v in b.Nodes)
                foreach (var a in v.Args)
                    if (a.Op != IrOp.Const && (!_defBlock.TryGetValue(a, out var d) || d != b)) _slots[a] = 0;
        ScanFpEnv();
        // Flags are computed where they are observed: the shared exit, and before each helper that sees state.
        int observers = 1 + _region.Blocks.Sum(b => b.Nodes.Count(v => v.Op == IrOp.Call && !Helpers.IsPure(v.Aux) || v.Op == IrOp.ExitHelper));
        _defer = _lazyFlags ? FlagDeferral.Analyze(_region, observers) : null;
        if (_defer is { Any: false }) _defer = null;
    }

    // JITVMX_LAZY_FLAGS=0 computes every flag where it is written (to compare code and speed).
    private static readonly bool s_lazyFlags = Environment.GetEnvironmentVariable("JITVMX_LAZY_FLAGS") != "0";

    // ================= small builders =================

    private nint I32(long v) => LLVMConstInt(_i32, (ulong)v, 1);
    private nint I64(ulong v) => LLVMConstInt(_i64, v, 0);
    private nint Const(nint type, ulong v) => LLVMConstInt(type, v, 0);

    private nint Gep(nint basePtr, nint byteOffset) => LLVMBuildGEP2(_b, _i8, basePtr, &byteOffset, 1, "");
    private nint CtxPtr(int offset) => offset == 0 ? _ctxArg : Gep(_ctxArg, I64((ulong)offset));

    private nint Load(nint type, nint ptr, uint align = 0)
    {
        nint v = LLVMBuildLoad2(_b, type, ptr, "");
        if (align != 0) LLVMSetAlignment(v, align);
        return v;
    }

    private void Store(nint value, nint ptr, uint align = 0)
    {
        nint s = LLVMBuildStore(_b, value, ptr);
        if (align != 0) LLVMSetAlignment(s, align);
    }

    private nint CtxLoad(nint type, int offset, uint align) => Load(type, CtxPtr(offset), align);
    private void CtxStore(nint value, int offset, uint align) => Store(value, CtxPtr(offset), align);

    private nint NewBlock(string name) => LLVMAppendBasicBlockInContext(_ctx, _fn, name);

    /// <summary>
    /// Calls a runtime function (managed code): under the host's MXCSR, with the guest's put back
    /// after. The memory slow paths (<see cref="CallRaw"/>) run under the guest's: they do no
    /// floating-point arithmetic and never read MXCSR, and any exit they cause leaves through the
    /// spill block, which restores the host's.
    /// </summary>
    private nint Call(string symbol, nint ret, nint[] types, params nint[] args)
    {
        FpEnvOut();
        nint r = CallRaw(symbol, ret, types, args);
        FpEnvIn();
        return r;
    }

    private nint CallRaw(string symbol, nint ret, nint[] types, params nint[] args)
    {
        if (!_functions.TryGetValue(symbol, out var f))
        {
            nint ft;
            fixed (nint* p = types) ft = LLVMFunctionType(ret, p, (uint)types.Length, 0);
            f = (LLVMAddFunction(_module, symbol, ft), ft);
            _functions[symbol] = f;
        }
        fixed (nint* a = args) return LLVMBuildCall2(_b, f.Type, f.Fn, a, (uint)args.Length, "");
    }

    /// <summary>
    /// <see cref="CallRaw"/> through a module-local wrapper with the preserve_all convention: the wrapper
    /// saves what the C call would clobber, so the caller keeps every value in its register across the
    /// call. The memory path's slow calls sit on cold edges of hot loops; with the C convention, every value
    /// live across one of them had to live in a callee-saved register or on the stack for the whole loop.
    /// </summary>
    private nint CallPreserving(string symbol, nint ret, nint[] types, params nint[] args)
    {
        string key = symbol + ".preserve";
        if (!_functions.TryGetValue(key, out var f))
        {
            nint ft;
            fixed (nint* p = types) ft = LLVMFunctionType(ret, p, (uint)types.Length, 0);
            nint wrapper = LLVMAddFunction(_module, key, ft);
            LLVMSetLinkage(wrapper, 8);
            LLVMSetFunctionCallConv(wrapper, PreserveAll);
            LLVMAddAttributeAtIndex(wrapper, LLVMAttributeFunctionIndex, EnumAttribute("noinline"));
            nint at = LLVMGetInsertBlock(_b);
            LLVMPositionBuilderAtEnd(_b, LLVMAppendBasicBlockInContext(_ctx, wrapper, "entry"));
            var forward = new nint[types.Length];
            for (int i = 0; i < forward.Length; i++) forward[i] = LLVMGetParam(wrapper, (uint)i);
            nint r = CallRaw(symbol, ret, types, forward);
            if (ret == _void) LLVMBuildRetVoid(_b); else LLVMBuildRet(_b, r);
            LLVMPositionBuilderAtEnd(_b, at);
            f = (wrapper, ft);
            _functions[key] = f;
        }
        nint call;
        fixed (nint* a = args) call = LLVMBuildCall2(_b, f.Type, f.Fn, a, (uint)args.Length, "");
        LLVMSetInstructionCallConv(call, PreserveAll);
        return call;
    }

    private const uint PreserveAll = 15;

    /// <summary>Calls intrinsic <paramref name="name"/> overloaded on <paramref name="type"/> (0: not overloaded).</summary>
    private nint Intrinsic(string name, nint type, params nint[] args)
    {
        string key = $"{name}.{type}";
        if (!_functions.TryGetValue(key, out var f))
        {
            uint id = LLVMLookupIntrinsicID(name, (nuint)name.Length);
            if (id == 0) throw new NotSupportedException($"no LLVM intrinsic {name}");
            nuint overloads = type == 0 ? 0u : 1u;
            f = (LLVMGetIntrinsicDeclaration(_module, id, &type, overloads), LLVMIntrinsicGetType(_ctx, id, &type, overloads));
            _functions[key] = f;
        }
        fixed (nint* a = args) return LLVMBuildCall2(_b, f.Type, f.Fn, a, (uint)args.Length, "");
    }

    private void SetRip(ulong rip) => CtxStore(I64(rip), StateOffsets.Rip, 8);

    private nint _unlikely;

    /// <summary>A conditional branch whose true side is rare (slow paths, stops, faults): hot code is laid out straight.</summary>
    private nint CondBrUnlikely(nint cond, nint rare, nint common)
    {
        nint br = LLVMBuildCondBr(_b, cond, rare, common);
        if (_unlikely == 0)
        {
            nint* md = stackalloc nint[3];
            md[0] = LLVMMDStringInContext2(_ctx, "branch_weights", 14);
            md[1] = LLVMValueAsMetadata(LLVMConstInt(_i32, 1, 0));
            md[2] = LLVMValueAsMetadata(LLVMConstInt(_i32, 2000, 0));
            _unlikely = LLVMMetadataAsValue(_ctx, LLVMMDNodeInContext2(_ctx, md, 3));
        }
        LLVMSetMetadata(br, LLVMGetMDKindIDInContext(_ctx, "prof", 4), _unlikely);
        return br;
    }

    private void ExitWith(int code)
    {
        LLVMBuildStore(_b, I32(code), _code);
        LLVMBuildBr(_b, _spill);
    }

    /// <summary>The stop flag, read with a volatile load: another thread sets it and it must not be hoisted out of a loop.</summary>
    private nint VolatileStopLoad()
    {
        nint v = CtxLoad(_i32, StateOffsets.StopRequested, 4);
        LLVMSetVolatile(v, 1);
        return v;
    }

    // ================= guest state =================

    private void LoadState()
    {
        for (int i = 0; i < 16; i++)
            if (_gpr[i] > 1) Store(CtxLoad(_i64, StateOffsets.Gpr(i), 8), _gpr[i]);
        for (int x = 0; x < 16; x++)
            if (_xmm[x] > 1) Store(CtxLoad(_v128, StateOffsets.XmmReg(x), 1), _xmm[x]);
        bool any = false;
        for (int f = 0; f < 7; f++) any |= _flag[f] > 1;
        if (!any) return;
        nint rflags = CtxLoad(_i64, StateOffsets.Rflags, 8);
        for (int f = 0; f < 7; f++)
            if (_flag[f] > 1)
            {
                Store(LLVMBuildTrunc(_b, LLVMBuildLShr(_b, rflags, I64((ulong)s_flagBits[f]), ""), _i1, ""), _flag[f]);
                if (_flagSite[f] != 0) Store(I32(0), _flagSite[f]);
                _blockFlag[f] = null;
                _blockSite[f] = null;
                _blockFlagKnown[f] = true;
            }
    }

    /// <summary>
    /// Before a jump or branch: fills the leaf slots no one will read with what other flags' slots
    /// hold. A deferred flag's unused slots get its instruction's other leaves, and a stored flag's
    /// slots get those of a deferred one. Flags written by one instruction then carry equal leaves
    /// on every edge, so LLVM merges their phis: without this, a loop head kept up to three leaves
    /// per flag live (30 values in an interpreter loop, against 4 guest registers) and spilled.
    /// </summary>
    private void EvenFlagLeaves()
    {
        if (_defer is not { Any: true } defer) return;
        int donor = -1;
        for (int f = 0; f < 7; f++)
        {
            if (_flagSite[f] == 0 || !_blockFlagKnown[f] || _blockSite[f] is not { } site) continue;
            for (int k = 0; k < defer.LeafSlots && k < site.Leaves.Length; k++)
                if (Array.IndexOf(site.Used, k) < 0 && AtHand(site.Leaves[k]))
                    Store(ToI64(Value(site.Leaves[k]), site.Leaves[k].Type), _flagLeaf[f, k]);
            if (donor < 0) donor = f;
        }
        if (donor < 0) return;
        for (int f = 0; f < 7; f++)
            if (_flagSite[f] != 0 && _blockFlagKnown[f] && _blockFlag[f] is null)
                for (int k = 0; k < defer.LeafSlots; k++)
                    Store(Load(_i64, _flagLeaf[donor, k]), _flagLeaf[f, k]);
    }

    // Whether Value(v) works here without computing anything new.
    private bool AtHand(IrValue v) =>
        v.Op == IrOp.Const
        || _defBlock.TryGetValue(v, out var d) && d == _current && _values.ContainsKey(v)
        || _slots.TryGetValue(v, out nint slot) && slot != 0;

    private void ForgetBlockFlags()
    {
        Array.Clear(_blockFlag);
        Array.Clear(_blockFlagKnown);
        Array.Clear(_blockSite);
    }

    private void SetFlag(IrValue v)
    {
        int f = v.Aux;
        if (_defer?.SiteOf(v) is { } site)
        {
            Store(I32(site.Id), _flagSite[f]);
            foreach (int k in site.Used)
            {
                var leaf = site.Leaves[k];
                Store(ToI64(Value(leaf), leaf.Type), _flagLeaf[f, k]);
            }
            _blockFlag[f] = v.Args[0];
            _blockSite[f] = site;
        }
        else
        {
            Store(Value(v.Args[0]), _flag[f]);
            if (_flagSite[f] != 0) Store(I32(0), _flagSite[f]);
            _blockFlag[f] = null;
            _blockSite[f] = null;
        }
        _blockFlagKnown[f] = true;
    }

    /// <summary>The value of flag <paramref name="f"/> here: computed from the site that wrote it last when that was deferred.</summary>
    private nint FlagValue(int f)
    {
        if (_blockFlagKnown[f])
            return _blockFlag[f] is { } expr ? Value(expr) : Load(_i1, _flag[f]);
        if (_flagSite[f] == 0) return Load(_i1, _flag[f]);
        var kinds = _defer!.Kinds[f];
        nint site = Load(_i32, _flagSite[f]);
        nint stored = NewBlock($"{(Flag)f}.stored"), join = NewBlock($"{(Flag)f}.value");
        nint sw = LLVMBuildSwitch(_b, site, stored, (uint)kinds.Sum(k => k.Sites.Count));
        var values = new nint[kinds.Count + 1];
        var blocks = new nint[kinds.Count + 1];
        for (int k = 0; k < kinds.Count; k++)
        {
            var kind = kinds[k];
            nint block = NewBlock($"{(Flag)f}.kind{k}");
            foreach (int id in kind.Sites) LLVMAddCase(sw, I32(id), block);
            LLVMPositionBuilderAtEnd(_b, block);
            values[k] = Recompute(f, kind);
            blocks[k] = LLVMGetInsertBlock(_b);
            LLVMBuildBr(_b, join);
        }
        LLVMPositionBuilderAtEnd(_b, stored);
        values[^1] = Load(_i1, _flag[f]);
        blocks[^1] = stored;
        LLVMBuildBr(_b, join);
        LLVMPositionBuilderAtEnd(_b, join);
        nint phi = LLVMBuildPhi(_b, _i1, "");
        fixed (nint* pv = values, pb = blocks) LLVMAddIncoming(phi, pv, pb, (uint)values.Length);
        return phi;
    }

    /// <summary>Emits <paramref name="kind"/>'s expression over the leaves in flag <paramref name="f"/>'s slots.</summary>
    private nint Recompute(int f, FlagDeferral.Kind kind)
    {
        var saved = _remap;
        _remap = [];
        try
        {
            foreach (int k in kind.Used)
            {
                var leaf = kind.Leaves[k];
                nint raw = Load(_i64, _flagLeaf[f, k]);
                _remap[leaf] = leaf.Type == IrType.I64 ? raw : LLVMBuildTrunc(_b, raw, Type(leaf.Type), "");
            }
            foreach (var node in _defer!.Expression(kind.Root)) EmitNode(node);
            return Value(kind.Root);
        }
        finally
        {
            _remap = saved;
        }
    }

    private void SpillState()
    {
        for (int i = 0; i < 16; i++)
            if (_gprWritten[i]) CtxStore(Load(_i64, _gpr[i]), StateOffsets.Gpr(i), 8);
        for (int x = 0; x < 16; x++)
            if (_xmmWritten[x]) CtxStore(Load(_v128, _xmm[x]), StateOffsets.XmmReg(x), 1);
        ulong mask = 0;
        for (int f = 0; f < 7; f++)
            if (_flagWritten[f]) mask |= 1UL << s_flagBits[f];
        if (mask == 0) return;
        // rflags = (rflags & ~mask) | Σ flag << bit
        nint r = LLVMBuildAnd(_b, CtxLoad(_i64, StateOffsets.Rflags, 8), I64(~mask), "");
        for (int f = 0; f < 7; f++)
            if (_flagWritten[f])
                r = LLVMBuildOr(_b, r, LLVMBuildShl(_b, LLVMBuildZExt(_b, FlagValue(f), _i64, ""), I64((ulong)s_flagBits[f]), ""), "");
        CtxStore(r, StateOffsets.Rflags, 8);
    }

    // ================= blocks =================

    private void EmitBlock(IrBlock b)
    {
        _current = b;
        _fpOff = _fpOffBlocks.Contains(b);
        ForgetBlockFlags();
        LLVMPositionBuilderAtEnd(_b, _blocks[b]);
        if (b.ChargedInsns == 0 && b.IsLoopHeader && b.ResumeInsn is { } resume)
        {
            // A loop inside one instruction (REP): stop with RIP at the instruction, which has not retired.
            nint stop = NewBlock($"b{b.Id}.stop"), go = NewBlock($"b{b.Id}.go");
            CondBrUnlikely(LLVMBuildICmp(_b, LlvmIntPredicate.Ne, VolatileStopLoad(), I32(0), ""), stop, go);
            LLVMPositionBuilderAtEnd(_b, stop);
            LLVMBuildStore(_b, LLVMBuildAdd(_b, Load(_i64, _remaining), I64((ulong)resume.GiveBack), ""), _remaining);
            SetRip(resume.Rip);
            ExitWith(RegionCode.Stop);
            LLVMPositionBuilderAtEnd(_b, go);
        }
        else if (b.ChargedInsns > 0 && _need is not null && !_need.ContainsKey(b))
        {
            // Covered by the check at the last entry or loop header: charge without a check.
            LLVMBuildStore(_b, LLVMBuildSub(_b, Load(_i64, _remaining), I64((ulong)b.ChargedInsns), ""), _remaining);
        }
        else if (b.ChargedInsns > 0)
        {
            // No stop-flag check at loop headers: the budget comes in slices (VirtualCpu), so the
            // check below returns to the dispatcher, which sees an exit request, within a slice.
            nint stop = NewBlock($"b{b.Id}.stop"), ok = NewBlock($"b{b.Id}.ok");
            // if (remaining < need) stop before the block with RIP at its start; else remaining -= n,
            // where need (n without the analysis) is the most any path reaching the next check retires.
            // Compared before subtracting, so the stop path needs no copy of the old value.
            int need = _need?[b] ?? b.ChargedInsns;
            nint before = Load(_i64, _remaining);
            CondBrUnlikely(LLVMBuildICmp(_b, LlvmIntPredicate.Slt, before, I64((ulong)need), ""), stop, ok);
            LLVMPositionBuilderAtEnd(_b, stop);
            SetRip(b.GuestAddress);
            ExitWith(RegionCode.Stop);
            LLVMPositionBuilderAtEnd(_b, ok);
            LLVMBuildStore(_b, LLVMBuildSub(_b, before, I64((ulong)b.ChargedInsns), ""), _remaining);
        }
        if (b.Terminator is null) throw new NotSupportedException($"block b{b.Id} of region 0x{_region.EntryRip:x} has no terminator");
        CountRoots(b);
        foreach (var v in b.Nodes) EmitNode(v);
    }

    // Budget a checking block needs (itself and every block up to the next check); null: every block checks.
    private Dictionary<IrBlock, int>? _need;

    /// <summary>Budget the code of <paramref name="region"/> needs at entry (see <see cref="BudgetNeeds"/>); what an object's metadata records.</summary>
    public static int EntryNeed(IrRegion region) =>
        BudgetNeeds(region) is { } need ? need[region.Blocks[0]] : region.Blocks[0].ChargedInsns;

    /// <summary>
    /// Where the budget is checked: at the entry and at loop headers, each for the most instructions
    /// any path from it retires before the next check or an exit; the blocks between only subtract.
    /// The remaining budget stays exact at every exit, and a check that fails stops before its block
    /// as the per-block check would, just earlier (the dispatcher then steps to the exact boundary).
    /// A loop whose head does not check (a REP loop head inside a guest block) keeps per-block checks
    /// for the whole region (null). <see cref="CompiledRegion.EntryCharge"/> reports the entry's need.
    /// </summary>
    internal static Dictionary<IrBlock, int>? BudgetNeeds(IrRegion region)
    {
        var entry = region.Blocks[0];
        bool Checks(IrBlock b) => b == entry || b.IsLoopHeader && b.ChargedInsns > 0;
        var need = new Dictionary<IrBlock, int>();
        var memo = new Dictionary<IrBlock, int>();
        var path = new List<IrBlock>();
        var open = new List<IrBlock>(); // REP loop heads reached again from inside their loop
        bool ok = true;
        // Most instructions retired from the start of b up to the next check or exit (b's own charge included).
        int Longest(IrBlock b)
        {
            if (memo.TryGetValue(b, out int known)) return known;
            int at = path.IndexOf(b);
            if (at >= 0)
            {
                // A loop with no check on it: only a REP loop (whose iterations retire nothing) is fine.
                if (b.ResumeInsn is null || b.ChargedInsns > 0 || path.Skip(at + 1).Any(p => p.ChargedInsns > 0)) ok = false;
                open.Add(b);
                return 0;
            }
            path.Add(b);
            int openBefore = open.Count, most = 0;
            foreach (var s in b.Successors)
                if (!Checks(s)) most = Math.Max(most, Longest(s));
            path.RemoveAt(path.Count - 1);
            open.RemoveAll(x => x == b);
            int result = b.ChargedInsns + most;
            // Not remembered while it depends on a loop head still being walked (it counted that as 0).
            if (open.Count == openBefore) memo[b] = result;
            return result;
        }
        foreach (var b in region.Blocks)
            if (Checks(b)) need[b] = Longest(b);
        return ok ? need : null;
    }

    // ================= values =================

    private nint Value(IrValue v)
    {
        if (v.Op == IrOp.Const) return ConstValue(v);
        if (_remap is not null && _remap.TryGetValue(v, out nint r)) return r;
        if (_defBlock.TryGetValue(v, out var d) && d == _current && _values.TryGetValue(v, out nint x)) return x;
        if (_slots.TryGetValue(v, out nint slot) && slot != 0) return Load(Type(v.Type), slot);
        throw new InvalidOperationException($"IR value v{v.Id} used before its definition in region 0x{_region.EntryRip:x}");
    }

    private nint ConstValue(IrValue v)
    {
        if (v.Type == IrType.V128)
            return LLVMBuildBitCast(_b, LLVMConstInt(_i128, v.Imm, 0), _v128, "");
        return Const(Type(v.Type), v.Imm & v.Type.Mask());
    }

    private void Define(IrValue v, nint value)
    {
        if (_remap is not null)
        {
            _remap[v] = value;
            return;
        }
        _values[v] = value;
        if (_slots.TryGetValue(v, out nint slot) && slot != 0) Store(value, slot);
    }

    private nint Count(IrValue v) => LLVMBuildAnd(_b, Value(v.Args[1]), Const(Type(v.Type), (ulong)v.Type.Bits() - 1), "");

    private nint ToI64(nint value, IrType t) => t == IrType.I64 ? value : LLVMBuildZExt(_b, value, _i64, "");

    private void EmitNode(IrValue v)
    {
        var a = v.Args;
        nint T() => Type(v.Type);
        nint A(int i) => Value(a[i]);
        switch (v.Op)
        {
            case IrOp.Const: return;
            case IrOp.GetReg: Define(v, Load(_i64, _gpr[v.Aux])); return;
            case IrOp.SetReg: Store(A(0), _gpr[v.Aux]); return;
            case IrOp.GetFlag: Define(v, FlagValue(v.Aux)); return;
            case IrOp.SetFlag: SetFlag(v); return;
            case IrOp.GetXmm: Define(v, Load(_v128, _xmm[v.Aux])); return;
            case IrOp.SetXmm: Store(A(0), _xmm[v.Aux]); return;
            case IrOp.GetState when v.Aux == StateOffsets.StopRequested:
                Define(v, Resize(VolatileStopLoad(), IrType.I32, v.Type));
                return;
            case IrOp.GetState when _hostFp && v.Aux == StateOffsets.Mxcsr && v.Type == IrType.I32:
                Define(v, MxcsrValue(v));
                return;
            case IrOp.SetState when _hostFp && v.Aux == StateOffsets.Mxcsr && a[0].Type == IrType.I32:
                SetMxcsr(A(0));
                return;
            case IrOp.GetState:
                Define(v, v.Type == IrType.I1
                    ? LLVMBuildTrunc(_b, CtxLoad(_i8, v.Aux, 1), _i1, "")
                    : CtxLoad(T(), v.Aux, 1));
                return;
            case IrOp.SetState:
                CtxStore(a[0].Type == IrType.I1 ? LLVMBuildZExt(_b, A(0), _i8, "") : A(0), v.Aux, 1);
                return;
            case IrOp.Add: Define(v, LLVMBuildAdd(_b, A(0), A(1), "")); return;
            case IrOp.Sub: Define(v, LLVMBuildSub(_b, A(0), A(1), "")); return;
            case IrOp.Mul: Define(v, LLVMBuildMul(_b, A(0), A(1), "")); return;
            case IrOp.And: Define(v, LLVMBuildAnd(_b, A(0), A(1), "")); return;
            case IrOp.Or: Define(v, LLVMBuildOr(_b, A(0), A(1), "")); return;
            case IrOp.Xor: Define(v, LLVMBuildXor(_b, A(0), A(1), "")); return;
            case IrOp.UDiv: Define(v, LLVMBuildUDiv(_b, A(0), A(1), "")); return;
            case IrOp.URem: Define(v, LLVMBuildURem(_b, A(0), A(1), "")); return;
            case IrOp.SDiv: Define(v, LLVMBuildSDiv(_b, A(0), A(1), "")); return;
            case IrOp.SRem: Define(v, LLVMBuildSRem(_b, A(0), A(1), "")); return;
            // Counts are < width by contract; masking keeps a violation defined (as x86 shifts are) instead of poison.
            case IrOp.Shl: Define(v, LLVMBuildShl(_b, A(0), Count(v), "")); return;
            case IrOp.LShr: Define(v, LLVMBuildLShr(_b, A(0), Count(v), "")); return;
            case IrOp.AShr: Define(v, LLVMBuildAShr(_b, A(0), Count(v), "")); return;
            case IrOp.Rotl: Define(v, Intrinsic("llvm.fshl", T(), A(0), A(0), A(1))); return;
            case IrOp.Rotr: Define(v, Intrinsic("llvm.fshr", T(), A(0), A(0), A(1))); return;
            case IrOp.Not: Define(v, LLVMBuildNot(_b, A(0), "")); return;
            case IrOp.Neg: Define(v, LLVMBuildNeg(_b, A(0), "")); return;
            case IrOp.UMulHi or IrOp.SMulHi:
            {
                bool signed = v.Op == IrOp.SMulHi;
                int w = v.Type.Bits();
                nint wide = LLVMIntTypeInContext(_ctx, (uint)(2 * w));
                nint x = signed ? LLVMBuildSExt(_b, A(0), wide, "") : LLVMBuildZExt(_b, A(0), wide, "");
                nint y = signed ? LLVMBuildSExt(_b, A(1), wide, "") : LLVMBuildZExt(_b, A(1), wide, "");
                nint hi = LLVMBuildLShr(_b, LLVMBuildMul(_b, x, y, ""), Const(wide, (ulong)w), "");
                Define(v, LLVMBuildTrunc(_b, hi, T(), ""));
                return;
            }
            case IrOp.ZExt when v.Type == IrType.V128 && _vectorReads.TryGetValue(a[0], out nint read):
                Define(v, read); // read into a vector register already, the rest zeroed
                return;
            case IrOp.ZExt when v.Type == IrType.V128:
                // The value becomes the low lane; the rest is zero.
                Define(v, LLVMBuildBitCast(_b, LLVMBuildZExt(_b, A(0), _i128, ""), _v128, ""));
                return;
            case IrOp.Trunc when a[0].Type == IrType.V128:
                Define(v, LLVMBuildTrunc(_b, LLVMBuildBitCast(_b, A(0), _i128, ""), T(), ""));
                return;
            case IrOp.ZExt or IrOp.SExt or IrOp.Trunc:
                Define(v, Resize(A(0), a[0].Type, v.Type, v.Op == IrOp.SExt));
                return;
            case IrOp.Eq: Define(v, LLVMBuildICmp(_b, LlvmIntPredicate.Eq, A(0), A(1), "")); return;
            case IrOp.Ne: Define(v, LLVMBuildICmp(_b, LlvmIntPredicate.Ne, A(0), A(1), "")); return;
            case IrOp.Ult: Define(v, LLVMBuildICmp(_b, LlvmIntPredicate.Ult, A(0), A(1), "")); return;
            case IrOp.Ule: Define(v, LLVMBuildICmp(_b, LlvmIntPredicate.Ule, A(0), A(1), "")); return;
            case IrOp.Slt: Define(v, LLVMBuildICmp(_b, LlvmIntPredicate.Slt, A(0), A(1), "")); return;
            case IrOp.Sle: Define(v, LLVMBuildICmp(_b, LlvmIntPredicate.Sle, A(0), A(1), "")); return;
            case IrOp.Select: Define(v, LLVMBuildSelect(_b, A(0), A(1), A(2), "")); return;
            case IrOp.Parity:
            {
                nint low = Resize(A(0), a[0].Type, IrType.I8);
                nint odd = LLVMBuildTrunc(_b, Intrinsic("llvm.ctpop", _i8, low), _i1, "");
                Define(v, LLVMBuildNot(_b, odd, ""));
                return;
            }
            case IrOp.Popcnt: Define(v, Intrinsic("llvm.ctpop", T(), A(0))); return;
            // i1 false: the result for 0 is the width, as the IR defines.
            case IrOp.Ctz: Define(v, Intrinsic("llvm.cttz", T(), A(0), Const(_i1, 0))); return;
            case IrOp.Clz: Define(v, Intrinsic("llvm.ctlz", T(), A(0), Const(_i1, 0))); return;
            case IrOp.Bswap: Define(v, Intrinsic("llvm.bswap", T(), A(0))); return;
            case IrOp.Load: EmitLoad(v); return;
            case IrOp.Store: EmitStore(v); return;
            case IrOp.Call: EmitCall(v); return;
            case IrOp.Jump:
                EvenFlagLeaves();
                LLVMBuildBr(_b, _blocks[v.Target!]);
                return;
            case IrOp.Branch:
                EvenFlagLeaves();
                LLVMBuildCondBr(_b, A(0), _blocks[v.Target!], _blocks[v.Else!]);
                return;
            case IrOp.ExitDirect:
                SetRip(v.Imm);
                ExitWith(_successors.Count);
                _successors.Add(v.Imm);
                return;
            case IrOp.ExitIndirect:
                CtxStore(A(0), StateOffsets.Rip, 8);
                // Code that returns to the dispatcher at every exit is profiled there, per branching instruction.
                if (!_chain) CtxStore(I64(v.Imm), StateOffsets.IndirectSite, 8);
                ExitWith(RegionCode.Indirect);
                return;
            case IrOp.ExitHelper: EmitExitHelper(v); return;
            default: throw new NotSupportedException($"IR op {v.Op} has no LLVM lowering");
        }
    }

    /// <summary>Zero- or sign-extends or truncates an integer between IR types.</summary>
    private nint Resize(nint value, IrType from, IrType to, bool signed = false)
    {
        int f = from.Bits(), t = to.Bits();
        if (f == t) return value;
        if (t < f) return LLVMBuildTrunc(_b, value, Type(to), "");
        return signed ? LLVMBuildSExt(_b, value, Type(to), "") : LLVMBuildZExt(_b, value, Type(to), "");
    }

    // ================= memory path =================

    /// <summary>
    /// entry = tlb + ((addr &gt;&gt; 12) &amp; mask) * 32; branches to <paramref name="slow"/> unless the tag at
    /// <paramref name="tagOffset"/> equals the page of the access's last byte; returns the host pointer.
    /// </summary>
    private nint TlbCheck(nint addr, int size, int tagOffset, nint slow)
    {
        nint entry = TlbEntry(addr);
        nint tag = Load(_i64, tagOffset == 0 ? entry : Gep(entry, I64((ulong)tagOffset)), 8);
        nint last = size > 1 ? LLVMBuildAdd(_b, addr, I64((ulong)(size - 1)), "") : addr;
        nint page = LLVMBuildAnd(_b, last, I64(CpuContext.PageMask), "");
        nint fast = NewBlock("tlb.hit");
        CondBrUnlikely(LLVMBuildICmp(_b, LlvmIntPredicate.Ne, tag, page, ""), slow, fast);
        LLVMPositionBuilderAtEnd(_b, fast);
        return LLVMBuildIntToPtr(_b, LLVMBuildAdd(_b, addr, Addend(entry), ""), _ptr, "");
    }

    // The VM's flat addend, loaded once at entry, or 0 (see VirtualMachine.FlatAddend).
    private nint _flatAddend;

    /// <summary>
    /// The addend of a TLB entry that hit: in a flat VM the VM's own, which does not wait for the
    /// entry (the access then depends on its address alone, not on a load indexed by it).
    /// </summary>
    private nint Addend(nint entry) => _flatAddend != 0 ? _flatAddend : Load(_i64, Gep(entry, I64(16)), 8);

    // The region's access groups, and for each group already reached: whether its check passed, and the addend.
    private Dictionary<IrValue, (AccessGroup Group, long Offset)> _groups = [];
    private readonly Dictionary<AccessGroup, (nint Miss, nint Addend)> _groupChecks = [];

    /// <summary>
    /// <see cref="TlbCheck"/> for an access of an <see cref="AccessGroup"/>: the group's first access checks
    /// its whole span once (every tag it needs equals the page of its first and of its last byte); each
    /// access then uses the group's addend when that check passed, and checks alone when it did not.
    /// </summary>
    private nint AccessCheck(IrValue v, nint addr, int size, int tagOffset, nint slow)
    {
        if (!_groups.TryGetValue(v, out var member)) return TlbCheck(addr, size, tagOffset, slow);
        var g = member.Group;
        if (!_groupChecks.TryGetValue(g, out var check))
        {
            // Only the first access's check runs before every other (blocks may be emitted out of that order).
            if (v != g.First) return TlbCheck(addr, size, tagOffset, slow);
            // The span from this access's own address: the root itself may not be at hand in this block.
            nint low = LLVMBuildAdd(_b, addr, I64((ulong)(g.Low - member.Offset)), "");
            nint high = LLVMBuildAdd(_b, addr, I64((ulong)(g.High - member.Offset)), "");
            nint entry = TlbEntry(low);
            nint page = LLVMBuildAnd(_b, high, I64(CpuContext.PageMask), "");
            nint diff = I64(0);
            if (g.Loads) diff = LLVMBuildXor(_b, Load(_i64, entry, 8), page, "");
            if (g.Stores) diff = LLVMBuildOr(_b, diff, LLVMBuildXor(_b, Load(_i64, Gep(entry, I64(8)), 8), page, ""), "");
            check = (LLVMBuildICmp(_b, LlvmIntPredicate.Ne, diff, I64(0), ""), Addend(entry));
            _groupChecks[g] = check;
        }
        nint hit = NewBlock("group.hit"), alone = NewBlock("group.miss"), join = NewBlock("group.host");
        CondBrUnlikely(check.Miss, alone, hit);
        LLVMPositionBuilderAtEnd(_b, hit);
        nint fastHost = LLVMBuildIntToPtr(_b, LLVMBuildAdd(_b, addr, check.Addend, ""), _ptr, "");
        LLVMBuildBr(_b, join);
        LLVMPositionBuilderAtEnd(_b, alone);
        nint aloneHost = TlbCheck(addr, size, tagOffset, slow);
        nint aloneEnd = LLVMGetInsertBlock(_b);
        LLVMBuildBr(_b, join);
        LLVMPositionBuilderAtEnd(_b, join);
        return Phi2(_ptr, fastHost, hit, aloneHost, aloneEnd);
    }

    /// <summary>
    /// A guest read that relies on host faults (<see cref="VirtualMachine.HostReadFaults"/>): one host load
    /// from FlatAddend + address, written as inline assembly with <c>callbr</c> ("asm goto") whose other
    /// destination is <paramref name="slow"/>. The address is a register plus a constant displacement, which
    /// goes into the load's addressing mode, so a pointer chase pays no more latency than natively. A
    /// register at or above <see cref="VirtualMachine.FlatWindow"/> branches to the slow path first (a
    /// compare the processor predicts, off the load's dependence chain); the
    /// load then stays within the window and its guards (a displacement is under 2 GiB), whose unreadable
    /// pages make it fault. The assembly lists the load's address and the slow path's in section
    /// <see cref="HostReadMap.Section"/>, which <see cref="HostReadMap"/> reads out of the object: a host
    /// fault at the load resumes in the slow path (<see cref="HostFaults"/>) with the registers as the
    /// branch left them. Numeric local labels keep copies made by tail duplication apart.
    /// <paramref name="intoVector"/> reads 4 or 8 bytes
    /// into the low lane of a zeroed vector register (MOVD/MOVQ) for a scalar SSE operand.
    /// Leaves the builder in the block after the load and returns the value read, of <paramref name="type"/>
    /// (V128 with <paramref name="intoVector"/>).
    /// </summary>
    private nint HostRead(IrValue access, nint type, int size, nint slow, bool intoVector = false)
    {
        var address = access.Args[0];
        var indexIr = SplitDisplacement(address, out long disp);
        bool vec = size == 16 || intoVector;
        // 8- and 16-bit reads zero-extend into a 32-bit register (no partial-register merge).
        nint result = vec ? _v128 : size == 8 ? _i64 : _i32;
        var mode = WindowMode(access, indexIr, disp, out long absolute);
        // Operands: the result, then the register part and the window's size (Checked), or the register
        // part (RootChecked), then the flat addend; the slow path last.
        int baseAt = mode switch { Window.Checked => 3, Window.RootChecked => 2, _ => 1 };
        string at = mode == Window.Absolute ? $"{absolute}(${baseAt})" : $"{disp}(${baseAt},$1)";
        string label = $"${{{baseAt + 1}:l}}";
        string load = (size, intoVector) switch
        {
            (1, _) => $"movzbl {at}, ${{0:k}}",
            (2, _) => $"movzwl {at}, ${{0:k}}",
            (4, false) => $"movl {at}, ${{0:k}}",
            (8, false) => $"movq {at}, $0",
            (4, true) => $"movd {at}, $0",
            (8, true) => $"movq {at}, $0",
            _ => $"movdqu {at}, $0",
        };
        // A checked read compares even through a register an earlier read of the block compared: that read may
        // have taken its slow path because the register was outside the window, and succeeded (guest memory
        // above the window, mapped elsewhere on the host), so the join after it says nothing of the register.
        string text = (mode == Window.Checked ? $"cmpq $2, $1\njae {label}\n" : "")
            + $"1: {load}\n.pushsection {HostReadMap.Section},\"a\",@progbits\n.quad 1b, {label}\n.popsection";
        // The compare changes the flags, which LLVM does not assume of assembly unless told.
        string constraints = (vec ? "=x," : "=r,") + mode switch { Window.Checked => "r,r,r,!i,~{flags}", Window.RootChecked => "r,r,!i", _ => "r,!i" };
        uint count = (uint)baseAt;
        nint* types = stackalloc nint[3] { _i64, _i64, _i64 };
        nint* args = stackalloc nint[3];
        int k = 0;
        if (mode != Window.Absolute) args[k++] = Value(indexIr);
        if (mode == Window.Checked) args[k++] = I64(VirtualMachine.FlatWindow);
        args[k] = _flatAddend;
        nint fnType = LLVMFunctionType(result, types, count, 0);
        nint asm = LLVMGetInlineAsm(fnType, text, (nuint)Encoding.UTF8.GetByteCount(text), constraints, (nuint)constraints.Length, 0, 0, 0, 0);
        nint fast = NewBlock("read");
        nint* indirect = stackalloc nint[1] { slow };
        nint call = LLVMBuildCallBr(_b, fnType, asm, fast, indirect, 1, args, count, null, 0, "");
        // It reads memory and has no other effect: stores before it stay before it.
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, EnumAttribute("memory", ReadsAnyMemory));
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, EnumAttribute("nounwind"));
        LLVMPositionBuilderAtEnd(_b, fast);
        return result == type || vec ? call : LLVMBuildTrunc(_b, call, type, "");
    }

    /// <summary>
    /// The part of a guest address that goes through a register to a host access, and its constant
    /// displacement (0 if none), which goes into the addressing mode. Only an addition made in the block
    /// being emitted splits: its operands are at hand only there (values cross blocks through slots).
    /// </summary>
    private IrValue SplitDisplacement(IrValue address, out long disp)
    {
        disp = 0;
        if (address.Op == IrOp.Add && address.Type == IrType.I64 && _defBlock.TryGetValue(address, out var home) && home == _current)
        {
            for (int k = 0; k < 2; k++)
                if (address.Args[k].Op == IrOp.Const && (long)address.Args[k].Imm == (int)(long)address.Args[k].Imm)
                {
                    disp = (long)address.Args[k].Imm;
                    return address.Args[1 - k];
                }
        }
        return address;
    }

    /// <summary>
    /// Whether the access at <paramref name="index"/> + <paramref name="disp"/> has a constant address
    /// that fits a displacement (under 2 GiB, so inside the window): then it needs neither the window
    /// compare nor a register, and <paramref name="absolute"/> is the address. A fault still takes the
    /// slow path (the assembly is listed all the same).
    /// </summary>
    private static bool KnownInWindow(IrValue index, long disp, out long absolute)
    {
        absolute = index.Op == IrOp.Const ? (long)(index.Imm + (ulong)disp) : -1;
        return absolute is >= 0 and <= int.MaxValue - 16 && VirtualMachine.FlatWindow > int.MaxValue;
    }

    /// <summary>
    /// A guest write that relies on host faults (<see cref="VirtualMachine.HostWriteFaults"/>), the counterpart of
    /// <see cref="HostRead"/>: the register part of the address is compared with the window, then one host store
    /// at FlatAddend + address, listed in <see cref="HostReadMap.Section"/> so that a host fault resumes in
    /// <paramref name="slow"/>. The host faults where the guest may not write and on pages holding translated
    /// code, which the VM keeps read-only (the slow path discards that code: self-modifying code). An x86 store
    /// that faults writes nothing, even across a page boundary, so the slow path does all of it. A constant
    /// value goes into the instruction as an immediate. Leaves the builder in the block after the store.
    /// </summary>
    private void HostWrite(IrValue access, IrValue valueIr, nint value, int size, nint slow)
    {
        var address = access.Args[0];
        var indexIr = SplitDisplacement(address, out long disp);
        bool immediate = size <= 8 && valueIr.Op == IrOp.Const && (long)valueIr.Imm == (int)(long)valueIr.Imm;
        var mode = WindowMode(access, indexIr, disp, out long absolute);
        // Operands: the value unless it is an immediate, then as for reads (HostRead).
        int n = immediate ? 0 : 1;
        int baseAt = n + mode switch { Window.Checked => 2, Window.RootChecked => 1, _ => 0 };
        string index = $"${n}", flatBase = $"${baseAt}", label = $"${{{baseAt + 1}:l}}";
        ulong mask = size switch { 1 => 0xFF, 2 => 0xFFFF, 4 => 0xFFFF_FFFF, _ => ulong.MaxValue };
        string source = immediate ? $"$${(size == 8 ? (long)valueIr.Imm : (long)(valueIr.Imm & mask))}"
            : size switch { 1 => "${0:b}", 2 => "${0:w}", 4 => "${0:k}", _ => "$0" };
        string store = size switch { 1 => "movb", 2 => "movw", 4 => "movl", 8 => "movq", _ => "movdqu" };
        string target = mode == Window.Absolute ? $"{absolute}({flatBase})" : $"{disp}({flatBase},{index})";
        string text = (mode == Window.Checked ? $"cmpq ${n + 1}, {index}\njae {label}\n" : "")
            + $"1: {store} {source}, {target}\n.pushsection {HostReadMap.Section},\"a\",@progbits\n.quad 1b, {label}\n.popsection";
        // In a strictfp function (one that switches MXCSR) LLVM gives every assembly statement implicit
        // definitions of the FP control registers, which makes it look like an x87 instruction, and
        // follows each one that may access memory with an FWAIT. There the statement's side effects
        // alone keep it in order (machine passes move no memory access across them), so no memory clobber.
        string constraints = (immediate ? "" : size == 16 ? "x," : "r,")
            + mode switch { Window.Checked => "r,r,r,!i", Window.RootChecked => "r,r,!i", _ => "r,!i" }
            + (_hostFp ? "" : ",~{memory}") + (mode == Window.Checked ? ",~{flags}" : "");
        int count = baseAt + 1;
        nint* types = stackalloc nint[4];
        nint* args = stackalloc nint[4];
        int at = 0;
        if (!immediate)
        {
            types[at] = LLVMTypeOf(value);
            args[at++] = value;
        }
        if (mode != Window.Absolute)
        {
            types[at] = _i64; args[at++] = Value(indexIr);
        }
        if (mode == Window.Checked)
        {
            types[at] = _i64; args[at++] = I64(VirtualMachine.FlatWindow);
        }
        types[at] = _i64; args[at++] = _flatAddend;
        nint fnType = LLVMFunctionType(_void, types, (uint)count, 0);
        // Side effects: the store must stay where it is among the region's other memory accesses.
        nint asm = LLVMGetInlineAsm(fnType, text, (nuint)Encoding.UTF8.GetByteCount(text), constraints, (nuint)constraints.Length, 1, 0, 0, 0);
        nint fast = NewBlock("written");
        nint* indirect = stackalloc nint[1] { slow };
        nint call = LLVMBuildCallBr(_b, fnType, asm, fast, indirect, 1, args, (uint)count, null, 0, "");
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, EnumAttribute("nounwind"));
        LLVMPositionBuilderAtEnd(_b, fast);
    }

    /// <summary>How a host access makes sure its register part is in the window.</summary>
    private enum Window
    {
        /// <summary>A compare in the access's assembly.</summary>
        Checked,
        /// <summary>An IR compare of the address's root (<see cref="AddressRoot"/>), already emitted: LLVM shares it between the block's accesses.</summary>
        RootChecked,
        /// <summary>None: a constant address (<see cref="KnownInWindow"/>).</summary>
        Absolute,
    }

    /// <summary>
    /// The check for <paramref name="access"/> (register part <paramref name="indexIr"/>, displacement
    /// <paramref name="disp"/>). For <see cref="Window.RootChecked"/> it emits the IR compare of the address's root:
    /// a root outside the window leaves the region before the instruction, which the dispatcher then steps in the
    /// lower tiers (<see cref="RegionCode.Step"/>; a region of one instruction never compares so, which makes
    /// progress), so the code after the compare knows the root is inside. Several accesses of a block through one root
    /// (pushes, pops, a frame's locals: RSP plus constants) then compare once, as LLVM removes compares that one
    /// on the same value decides. A root inside the window keeps every access within its guards (the constants
    /// add up to under 1 GiB, the guards are 4 GiB), where a host fault takes the access's own slow path.
    /// </summary>
    private Window WindowMode(IrValue access, IrValue indexIr, long disp, out long absolute)
    {
        if (KnownInWindow(indexIr, disp, out absolute)) return Window.Absolute;
        if (_rootUses is null || access.Insn is not { } insn || AddressRoot(access.Args[0]) is not { } root
            || !_rootUses.TryGetValue(root, out int uses) || uses < 2)
            return Window.Checked;
        nint outside = NewBlock("window.out"), inside = NewBlock("window");
        CondBrUnlikely(LLVMBuildICmp(_b, LlvmIntPredicate.Ne, AboveWindow(Value(root)), I64(0), ""), outside, inside);
        LLVMPositionBuilderAtEnd(_b, outside);
        // Nothing of the instruction is done: its accesses come before its register writes.
        SetRip(insn.Rip);
        CtxStore(I64((ulong)(long)insn.GiveBack), StateOffsets.GiveBack, 8);
        LLVMBuildBr(_b, _stepOut);
        LLVMPositionBuilderAtEnd(_b, inside);
        return Window.RootChecked;
    }

    /// <summary>
    /// <paramref name="x"/> shifted right by the window's bits: 0 when it is inside. Pure assembly (LLVM shares equal
    /// ones and knows the result after a branch on it), not an IR compare: the window's size does not fit an
    /// immediate, and LLVM hoisted it into a register for the whole region, which register-bound loops paid for.
    /// </summary>
    private nint AboveWindow(nint x)
    {
        int bits = System.Numerics.BitOperations.Log2(VirtualMachine.FlatWindow);
        string text = $"movq $1, $0\nshrq $${bits}, $0";
        const string constraints = "=&r,r,~{flags}";
        nint* types = stackalloc nint[1] { _i64 };
        nint fnType = LLVMFunctionType(_i64, types, 1, 0);
        nint asm = LLVMGetInlineAsm(fnType, text, (nuint)text.Length, constraints, (nuint)constraints.Length, 0, 0, 0, 0);
        nint* args = stackalloc nint[1] { x };
        nint call = LLVMBuildCall2(_b, fnType, asm, args, 1, "");
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, EnumAttribute("memory", 0));
        LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, EnumAttribute("nounwind"));
        return call;
    }

    // Instructions accessing memory through each address root in the block being emitted (AddressRoot), counting the
    // accesses that rely on host faults (reads with HostReadFaults, writes with HostWriteFaults). A root shared by one instruction only is compared in its assembly: a region of one instruction
    // (what the dispatcher steps) then never leaves before it.
    private Dictionary<IrValue, int>? _rootUses;

    private void CountRoots(IrBlock b)
    {
        _rootUses = null;
        if (!_hostReads) return;
        Dictionary<IrValue, GuestInsn?>? last = null;
        foreach (var v in b.Nodes)
            if ((v.Op == IrOp.Load || v.Op == IrOp.Store && _hostWrites) && AddressRoot(v.Args[0]) is { } root)
            {
                _rootUses ??= [];
                last ??= [];
                if (last.TryGetValue(root, out var seen) && seen == v.Insn) continue;
                last[root] = v.Insn;
                _rootUses[root] = _rootUses.GetValueOrDefault(root) + 1;
            }
    }

    /// <summary>
    /// The value <paramref name="address"/> adds constants to (through additions and subtractions made in the block being emitted, whose
    /// operands are at hand there); null when the constants add up to 1 GiB or more, or the address is a constant.
    /// </summary>
    private IrValue? AddressRoot(IrValue address)
    {
        long offset = 0;
        var a = address;
        while (a.Op is IrOp.Add or IrOp.Sub && a.Type == IrType.I64 && _defBlock.TryGetValue(a, out var home) && home == _current)
        {
            int k = a.Args[1].Op == IrOp.Const ? 1 : a.Op == IrOp.Add && a.Args[0].Op == IrOp.Const ? 0 : -1;
            if (k < 0) break;
            long c = (long)a.Args[k].Imm;
            if (c is > 1 << 30 or < -(1 << 30)) return null;
            offset += a.Op == IrOp.Sub ? -c : c;
            if (offset is > 1 << 30 or < -(1 << 30)) return null;
            a = a.Args[1 - k];
        }
        return a.Op == IrOp.Const ? null : a;
    }

    // memory(read): the attribute packs two bits (none, ref, mod, modref) per location: argument memory,
    // inaccessible memory, other memory. The address reaches the assembly as integers, so "other" too.
    private const ulong ReadsAnyMemory = 1 | 1 << 2 | 1 << 4;

    // Scalar SSE reads (MOVSD, ADDSD m64, ...) whose value goes only into the low lane of a vector: read straight into a vector register.
    private readonly Dictionary<IrValue, nint> _vectorReads = [];

    /// <summary>Whether <paramref name="v"/>'s one use is a zero-extension to V128 later in its block.</summary>
    private bool OnlyWidenedToVector(IrValue v)
    {
        if (v.Uses != 1) return false;
        var nodes = _current.Nodes;
        for (int k = nodes.IndexOf(v) + 1; k < nodes.Count; k++)
            if (Array.IndexOf(nodes[k].Args, v) >= 0) return nodes[k].Op == IrOp.ZExt && nodes[k].Type == IrType.V128;
        return false;
    }

    private nint EnumAttribute(string name, ulong value = 0) =>
        LLVMCreateEnumAttribute(_ctx, LLVMGetEnumAttributeKindForName(name, (nuint)name.Length), value);

    /// <summary>A phi of two incoming values, built at the builder's position.</summary>
    private nint Phi2(nint type, nint a, nint fromA, nint b, nint fromB)
    {
        nint phi = LLVMBuildPhi(_b, type, "");
        nint* vals = stackalloc nint[2] { a, b };
        nint* blocks = stackalloc nint[2] { fromA, fromB };
        LLVMAddIncoming(phi, vals, blocks, 2);
        return phi;
    }

    /// <summary>The TLB entry of <paramref name="addr"/>: tlb + ((addr &gt;&gt; 12) &amp; mask) * 32.</summary>
    private nint TlbEntry(nint addr) =>
        Gep(_tlb, LLVMBuildShl(_b, LLVMBuildAnd(_b, LLVMBuildLShr(_b, addr, I64(CpuContext.PageBits), ""), I64(CpuContext.TlbSize - 1), ""), I64(5), ""));

    /// <summary>After a slow-path call: a fault or restart leaves the region through the fault block.</summary>
    private void CheckPending(nint next)
    {
        nint pending = CtxLoad(_i32, StateOffsets.Pending, 4);
        CondBrUnlikely(LLVMBuildICmp(_b, LlvmIntPredicate.Ne, pending, I32(0), ""), _fault, next);
    }

    private (nint Rip, nint GiveBack) InsnArgs(IrValue v) => (I64(v.Insn?.Rip ?? 0), I32(v.Insn?.GiveBack ?? 0));

    private void EmitLoad(IrValue v)
    {
        bool vec = v.Type == IrType.V128;
        int size = v.Type == IrType.I1 ? 1 : v.Type.Bits() / 8;
        nint memType = v.Type == IrType.I1 ? _i8 : Type(v.Type);
        nint addr = Value(v.Args[0]);
        nint slow = NewBlock("load.slow"), join = NewBlock("load.done");
        bool intoVector = _hostReads && size is 4 or 8 && OnlyWidenedToVector(v);
        nint fastValue = _hostReads ? HostRead(v, memType, size, slow, intoVector) : Load(memType, AccessCheck(v, addr, size, 0, slow), 1);
        nint fastEnd = LLVMGetInsertBlock(_b);
        LLVMBuildBr(_b, join);

        LLVMPositionBuilderAtEnd(_b, slow);
        var (rip, giveBack) = InsnArgs(v);
        nint slowValue;
        if (vec)
        {
            CallPreserving(LlvmRuntime.Load128Symbol, _void, [_ptr, _i64, _i64, _i32, _ptr], _ctxArg, addr, rip, giveBack, _vecBuf);
            slowValue = Load(_v128, _vecBuf, 16);
        }
        else
        {
            nint r = CallPreserving(LlvmRuntime.LoadSymbol, _i64, [_ptr, _i64, _i32, _i64, _i32], _ctxArg, addr, I32(size), rip, giveBack);
            slowValue = size == 8 ? r : LLVMBuildTrunc(_b, r, memType, "");
        }
        if (intoVector) slowValue = LLVMBuildBitCast(_b, LLVMBuildZExt(_b, slowValue, _i128, ""), _v128, "");
        nint slowEnd = LLVMGetInsertBlock(_b);
        CheckPending(join);

        LLVMPositionBuilderAtEnd(_b, join);
        nint phi = Phi2(intoVector ? _v128 : memType, fastValue, fastEnd, slowValue, slowEnd);
        if (intoVector)
        {
            _vectorReads[v] = phi;
            phi = LLVMBuildTrunc(_b, LLVMBuildBitCast(_b, phi, _i128, ""), memType, "");
        }
        Define(v, v.Type == IrType.I1 ? LLVMBuildTrunc(_b, phi, _i1, "") : phi);
    }

    private void EmitStore(IrValue v)
    {
        var valueIr = v.Args[1];
        bool vec = valueIr.Type == IrType.V128;
        int size = valueIr.Type == IrType.I1 ? 1 : valueIr.Type.Bits() / 8;
        nint addr = Value(v.Args[0]);
        nint value = Value(valueIr);
        if (valueIr.Type == IrType.I1) value = LLVMBuildZExt(_b, value, _i8, "");
        nint slow = NewBlock("store.slow"), join = NewBlock("store.done");
        if (_hostWrites) HostWrite(v, valueIr, value, size, slow);
        else Store(value, AccessCheck(v, addr, size, 8, slow), 1);
        LLVMBuildBr(_b, join);

        LLVMPositionBuilderAtEnd(_b, slow);
        var (rip, giveBack) = InsnArgs(v);
        if (vec)
        {
            Store(value, _vecBuf, 16);
            CallPreserving(LlvmRuntime.Store128Symbol, _void, [_ptr, _i64, _ptr, _i64, _i32], _ctxArg, addr, _vecBuf, rip, giveBack);
        }
        else
        {
            CallPreserving(LlvmRuntime.StoreSymbol, _void, [_ptr, _i64, _i32, _i64, _i64, _i32], _ctxArg, addr, I32(size), ToI64(value, size == 1 ? IrType.I8 : valueIr.Type), rip, giveBack);
        }
        CheckPending(join);
        LLVMPositionBuilderAtEnd(_b, join);
    }

    // ================= helpers =================

    /// <summary>
    /// The helper's number in the running process, loaded from the external constant named by its stable
    /// symbol: each process defines that symbol (<see cref="LlvmJit.DefineHelpers"/>) as a cell holding
    /// its own number, since registration order, and so numbering, differs between processes.
    /// </summary>
    private nint HelperNumber(int id)
    {
        if (!_helpers.TryGetValue(id, out nint global))
        {
            global = LLVMAddGlobal(_module, _i32, Helpers.Symbol(id));
            LLVMSetGlobalConstant(global, 1);
            LLVMSetAlignment(global, 4);
            _helpers[id] = global;
        }
        return Load(_i32, global, 4);
    }

    /// <summary>Calls helper <paramref name="v"/>.Aux through the runtime's helper trampoline: arguments in 16-byte slots, result in the result buffer.</summary>
    /// <param name="v">The call.</param>
    /// <param name="switchFpEnv">False where the guest's MXCSR is known not to be loaded (nothing to switch).</param>
    private void CallHelper(IrValue v, bool switchFpEnv = true)
    {
        StoreHelperArgs(v);
        if (switchFpEnv) Call(LlvmRuntime.CallHelperSymbol, _void, [_i32, _ptr, _ptr, _ptr], HelperNumber(v.Aux), _ctxArg, _argBuf, _resBuf);
        else CallRaw(LlvmRuntime.CallHelperSymbol, _void, [_i32, _ptr, _ptr, _ptr], HelperNumber(v.Aux), _ctxArg, _argBuf, _resBuf);
    }

    private void StoreHelperArgs(IrValue v)
    {
        for (int i = 0; i < v.Args.Length; i++)
        {
            var arg = v.Args[i];
            nint slot = Gep(_argBuf, I64((ulong)(i * LlvmRuntime.SlotSize)));
            if (arg.Type == IrType.V128) Store(Value(arg), slot, 16);
            else Store(ToI64(Value(arg), arg.Type), slot, 16);
        }
    }

    private void EmitCall(IrValue v)
    {
        if (TryEmitSimdInteger(v) || TryEmitSseFloat(v) || TryEmitWideDivide(v)) return;
        bool pure = Helpers.IsPure(v.Aux);
        if (!pure) SpillState();
        CallHelper(v);
        if (v.Type != IrType.Void)
        {
            nint r = v.Type == IrType.V128 ? Load(_v128, _resBuf, 16) : Resize(Load(_i64, _resBuf, 16), IrType.I64, v.Type);
            Define(v, r);
        }
        if (!pure) LoadState();
    }

    /// <summary>
    /// Leaves through a helper (exceptions, system instructions): the arguments and the helper go to
    /// memory and one shared block spills the state and calls it, so that a region with many such
    /// exits (a #XM check after every SSE operation, alignment and divide checks) carries one spill
    /// sequence, not one per exit.
    /// </summary>
    private void EmitExitHelper(IrValue v)
    {
        StoreHelperArgs(v);
        // The instruction has not retired: a helper that completes it takes one from the budget.
        LLVMBuildStore(_b, LLVMBuildAdd(_b, Load(_i64, _remaining), I64((ulong)(long)(v.Insn?.GiveBack ?? 0)), ""), _remaining);
        if (_helperExit == 0) _helperExit = NewBlock("helper.exit");
        LLVMBuildStore(_b, HelperNumber(v.Aux), _helperIdSlot);
        LLVMBuildBr(_b, _helperExit);
    }

    // The shared helper exit, and the slot its helper's number travels in.
    private nint _helperExit, _helperIdSlot;

    /// <summary>What every way out of the region does first: guest state, the budget and MXCSR back to the context.</summary>
    private void LeaveState()
    {
        SpillState();
        CtxStore(Load(_i64, _remaining), StateOffsets.Remaining, 8);
        FpEnvOut();
    }

    /// <summary>The shared block of <see cref="EmitExitHelper"/>, emitted after all others.</summary>
    private void EmitHelperExitBlock()
    {
        if (_helperExit == 0) return;
        ForgetBlockFlags();
        LLVMPositionBuilderAtEnd(_b, _helperExit);
        LeaveState();
        CallRaw(LlvmRuntime.CallHelperSymbol, _void, [_i32, _ptr, _ptr, _ptr], Load(_i32, _helperIdSlot), _ctxArg, _argBuf, _resBuf);
        LLVMBuildRet(_b, LLVMBuildTrunc(_b, Load(_i64, _resBuf, 16), _i32, ""));
    }
}
