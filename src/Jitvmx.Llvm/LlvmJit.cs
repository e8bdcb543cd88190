// SPDX-License-Identifier: MIT
using Jitvmx.Llvm.Native;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>
/// The process's ORC LLJIT for the host (x86-64), created once on first use. Modules and objects are
/// added under their own resource tracker; code is compiled when a symbol is first looked up. The
/// runtime entry points translated code calls (<see cref="LlvmRuntime"/>) are defined as absolute
/// symbols in the main JITDylib, resolved when code is linked, so object code stays relocatable.
/// </summary>
internal sealed unsafe class LlvmJit
{
    private static readonly Lazy<LlvmJit> s_instance = new(() => new LlvmJit(), LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly nint _jit;
    private readonly nint _dylib;
    private readonly ThreadLocal<nint>[] _targetMachines = new ThreadLocal<nint>[4];
    private readonly Lock _irCompile = new();
    private readonly Lock _helperLock = new();
    private readonly HashSet<int> _helpersDefined = [];
    private long _names;

    /// <summary>The JIT; throws <see cref="LlvmUnavailableException"/> (every time, same message) when libLLVM 19 is missing.</summary>
    public static LlvmJit Instance => s_instance.Value;

    /// <summary>Whether libLLVM 19 can be loaded.</summary>
    public static bool IsAvailable => LlvmApi.IsAvailable;

    /// <summary>
    /// LLVM's options for translated code. Switches over predicted computed-branch targets (an
    /// interpreter's handlers, a few hundred bytes apart) become jump tables down to 1 % density
    /// instead of LLVM's 10 %, at most 2048 entries: one indirect jump, as in the guest, instead of a
    /// compare tree (`interp` −5 to −9 %, best of five, three times).
    /// </summary>
    internal static readonly string[] BuiltInOptions = ["-jump-table-density=1", "-max-jump-table-size=2048"];

    /// <summary>
    /// The command line given to LLVM: <see cref="BuiltInOptions"/> and then <paramref name="extra"/>
    /// (<c>JITVMX_LLVM_OPTIONS</c>, space-separated, a tuning knob for measurements), whose options
    /// replace built-in ones of the same name (LLVM exits the process on an option given twice).
    /// </summary>
    internal static string[] CommandLine(string? extra)
    {
        string[] given = (extra ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        static string Name(string option) => option.Split('=')[0];
        var names = given.Select(Name).ToHashSet();
        return ["jitvmx", .. BuiltInOptions.Where(o => !names.Contains(Name(o))), .. given];
    }

    private LlvmJit()
    {
        _ = Handle; // throws LlvmUnavailableException with the package to install
        string[] argv = CommandLine(Environment.GetEnvironmentVariable("JITVMX_LLVM_OPTIONS"));
        LLVMParseCommandLineOptions(argv.Length, argv, null);
        // LLVMInitializeNativeTarget is a static inline in the headers: call what it calls.
        LLVMInitializeX86TargetInfo();
        LLVMInitializeX86Target();
        LLVMInitializeX86TargetMC();
        LLVMInitializeX86AsmPrinter();
        LLVMInitializeX86AsmParser(); // inline assembly (HostFaults reads)
        Check(LLVMOrcCreateLLJIT(out _jit, 0), "creating LLJIT");
        _dylib = LLVMOrcLLJITGetMainJITDylib(_jit);
        Triple = Str(LLVMOrcLLJITGetTripleString(_jit));
        DataLayout = Str(LLVMOrcLLJITGetDataLayoutStr(_jit));
        HostCpu = TakeMessage(LLVMGetHostCPUName());
        HostFeatures = TakeMessage(LLVMGetHostCPUFeatures());
        LLVMGetVersion(out uint major, out uint minor, out uint patch);
        Version = $"{major}.{minor}.{patch}";
        for (int level = 0; level < _targetMachines.Length; level++)
        {
            int l = level;
            _targetMachines[level] = new ThreadLocal<nint>(() => CreateTargetMachine(l));
        }
        DefineAbsolute(LlvmRuntime.Symbols(), callable: true);
    }

    /// <summary>Target triple of the JIT (the host).</summary>
    public string Triple { get; }

    /// <summary>Data layout every module added must use.</summary>
    public string DataLayout { get; }

    /// <summary>The host CPU's LLVM name, which code is tuned for.</summary>
    public string HostCpu { get; }

    /// <summary>The loaded libLLVM's version (another point release may generate other code).</summary>
    public string Version { get; }

    /// <summary>The host CPU's LLVM target features (<c>+sse4.2,-avx512f,…</c>), which code may use.</summary>
    public string HostFeatures { get; }

    /// <summary>
    /// A target machine for the host CPU and its features with codegen level <paramref name="codegenLevel"/>
    /// (0–3), one per thread: a target machine must not generate code on two threads at once.
    /// </summary>
    public nint TargetMachine(int codegenLevel = 2) => _targetMachines[codegenLevel].Value;

    private nint CreateTargetMachine(int level)
    {
        if (LLVMGetTargetFromTriple(Triple, out nint target, out nint err) != 0)
            throw new InvalidOperationException($"LLVM: no target for {Triple}: {TakeMessage(err)}");
        // PIC so emitted objects link anywhere, default code model.
        return LLVMCreateTargetMachine(target, Triple, HostCpu, HostFeatures, level, 2, 0);
    }

    /// <summary>A symbol name not used before in this process (with <paramref name="prefix"/> for readability).</summary>
    public string UniqueName(string prefix) => $"{prefix}_{Interlocked.Increment(ref _names):x8}";

    /// <summary>
    /// Defines, once per process, the symbols of helpers <paramref name="ids"/> (<see cref="Helpers.Symbol"/>)
    /// that code imports: each is a constant cell holding the helper's number in this process, which the
    /// code passes to the helper trampoline. Must precede linking code that uses them.
    /// </summary>
    public void DefineHelpers(IEnumerable<int> ids)
    {
        lock (_helperLock) // held until defined, so no other thread links against a name not yet defined
        {
            var fresh = ids.Where(id => !_helpersDefined.Contains(id)).Distinct().ToList();
            if (fresh.Count == 0) return;
            var symbols = new List<(string Name, nint Address)>();
            foreach (int id in fresh)
            {
                // Never freed: linked code may refer to it for the life of the process.
                int* cell = (int*)System.Runtime.InteropServices.NativeMemory.Alloc(sizeof(int));
                *cell = id;
                symbols.Add((Helpers.Symbol(id), (nint)cell));
            }
            DefineAbsolute(symbols, callable: false);
            _helpersDefined.UnionWith(fresh);
        }
    }

    /// <summary>Defines symbols at fixed addresses in this process (functions when <paramref name="callable"/>, else data) in the main JITDylib.</summary>
    public void DefineAbsolute(IReadOnlyList<(string Name, nint Address)> symbols, bool callable)
    {
        var pairs = new LlvmSymbolMapPair[symbols.Count];
        for (int i = 0; i < pairs.Length; i++)
            pairs[i] = new LlvmSymbolMapPair
            {
                Name = LLVMOrcLLJITMangleAndIntern(_jit, symbols[i].Name), // retained: ownership passes with the pair
                Address = (ulong)symbols[i].Address,
                GenericFlags = callable ? (byte)(LlvmSymbolMapPair.Exported | LlvmSymbolMapPair.Callable) : LlvmSymbolMapPair.Exported,
            };
        fixed (LlvmSymbolMapPair* p = pairs)
        {
            nint unit = LLVMOrcAbsoluteSymbols(p, (nuint)pairs.Length); // takes the names
            nint err = LLVMOrcJITDylibDefine(_dylib, unit);             // takes the unit on success
            if (err != 0) LLVMOrcDisposeMaterializationUnit(unit);
            Check(err, "defining runtime symbols");
        }
    }

    /// <summary>
    /// Adds a thread-safe module (ownership passes to LLVM, also on failure) under a new resource
    /// tracker, which the caller owns (<see cref="Release"/>), and compiles it by looking up
    /// <paramref name="symbol"/>. LLJIT's default compiler shares one target machine, so IR modules
    /// are compiled one at a time; <see cref="AddObject(nint)"/> of code generated per thread is the concurrent path.
    /// </summary>
    public (nint Tracker, nint Address) AddModule(nint threadSafeModule, string symbol)
    {
        lock (_irCompile)
        {
            nint rt = LLVMOrcJITDylibCreateResourceTracker(_dylib);
            nint err = LLVMOrcLLJITAddLLVMIRModuleWithRT(_jit, rt, threadSafeModule);
            if (err != 0) LLVMOrcReleaseResourceTracker(rt);
            Check(err, "adding module");
            return (rt, Lookup(symbol));
        }
    }

    /// <summary>Adds a relocatable object (copied) under a new resource tracker the caller owns.</summary>
    public nint AddObject(ReadOnlySpan<byte> obj, string name)
    {
        nint buf;
        fixed (byte* p = obj) buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(p, (nuint)obj.Length, name);
        return AddObject(buf);
    }

    /// <summary>Adds a relocatable object held in an LLVM memory buffer (ownership passes to LLVM) under a new resource tracker the caller owns.</summary>
    public nint AddObject(nint buf)
    {
        nint rt = LLVMOrcJITDylibCreateResourceTracker(_dylib);
        nint err = LLVMOrcLLJITAddObjectFileWithRT(_jit, rt, buf); // takes the buffer
        if (err != 0) LLVMOrcReleaseResourceTracker(rt);
        Check(err, "adding object");
        return rt;
    }

    /// <summary>Address of <paramref name="name"/>, compiling and linking its module on first lookup.</summary>
    public nint Lookup(string name)
    {
        Check(LLVMOrcLLJITLookup(_jit, out ulong address, name), $"looking up {name}");
        return (nint)address;
    }

    /// <summary>Frees the code added under <paramref name="tracker"/> and the tracker itself. Nothing may still run that code.</summary>
    public static void Release(nint tracker, bool removeCode)
    {
        if (removeCode) Check(LLVMOrcResourceTrackerRemove(tracker), "removing code");
        LLVMOrcReleaseResourceTracker(tracker);
    }
}
