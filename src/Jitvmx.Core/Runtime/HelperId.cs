// SPDX-License-Identifier: MIT
using System.Reflection;

namespace Jitvmx;

/// <summary>
/// Runtime helpers that translated code calls, by number, so that every backend (and cached code)
/// binds them the same way. A helper is <c>static ulong H(CpuContext* ctx, ulong a0, …)</c>.
/// Exit helpers (used by ExitHelper terminators) see spilled, precise guest state and return
/// <see cref="Helpers.Continue"/> or <see cref="Helpers.Stop"/>.
/// </summary>
public enum HelperId
{
    // ---- pure value helpers ----
    /// <summary>Quotient of the unsigned 128-by-64 division (hi, lo, divisor); no overflow.</summary>
    UDiv128Quotient,
    /// <summary>Remainder of the unsigned 128-by-64 division.</summary>
    UDiv128Remainder,
    /// <summary>Quotient of the signed 128-by-64 division; no overflow.</summary>
    SDiv128Quotient,
    /// <summary>Remainder of the signed 128-by-64 division.</summary>
    SDiv128Remainder,
    /// <summary>1 when the signed 128-by-64 division (hi, lo, divisor) raises #DE.</summary>
    SDiv128Faults,
    /// <summary>PDEP (value, mask).</summary>
    Pdep,
    /// <summary>PEXT (value, mask).</summary>
    Pext,
    /// <summary>Host TSC plus the vCPU's TSC offset.</summary>
    ReadTsc,

    // ---- exit helpers: (rip, length, …) ----
    /// <summary>Raise exception (vector, error code) at the instruction.</summary>
    RaiseException,
    /// <summary>Stop at rip (an interruptible instruction was interrupted by an exit request).</summary>
    StopAt,
    /// <summary>CPUID.</summary>
    Cpuid,
    /// <summary>HLT.</summary>
    Hlt,
    /// <summary>IN/OUT/INS/OUTS (qualification).</summary>
    Io,
    /// <summary>RDMSR.</summary>
    Rdmsr,
    /// <summary>WRMSR.</summary>
    Wrmsr,
    /// <summary>MOV to/from CR, CLTS, LMSW (qualification, source value).</summary>
    CrAccess,
    /// <summary>INVLPG (linear address).</summary>
    Invlpg,
    /// <summary>RDTSC.</summary>
    Rdtsc,
    /// <summary>RDTSCP.</summary>
    Rdtscp,
    /// <summary>RDPMC.</summary>
    Rdpmc,
    /// <summary>VMCALL.</summary>
    Vmcall,
    /// <summary>PAUSE.</summary>
    Pause,
    /// <summary>XSETBV.</summary>
    Xsetbv,
    /// <summary>XGETBV.</summary>
    Xgetbv,
    /// <summary>SYSCALL.</summary>
    Syscall,
    /// <summary>INT n / INT3 / INTO (vector, type).</summary>
    SoftwareInterrupt,
    /// <summary>WBINVD / WBNOINVD.</summary>
    Wbinvd,
    /// <summary>INVD.</summary>
    Invd,
    /// <summary>MONITOR.</summary>
    Monitor,
    /// <summary>MWAIT.</summary>
    Mwait,
    /// <summary>RDRAND (destination register index, size).</summary>
    Rdrand,
    /// <summary>RDSEED (destination register index, size).</summary>
    Rdseed,
    /// <summary>A VMX instruction (exit reason).</summary>
    VmxInstruction,
    /// <summary>SWAPGS.</summary>
    Swapgs,
    /// <summary>IRETQ.</summary>
    Iret,
    /// <summary>SYSRET.</summary>
    Sysret,
    /// <summary>LGDT/LIDT/SGDT/SIDT (kind, linear address).</summary>
    DescriptorTable,
    /// <summary>CLI/STI (set).</summary>
    InterruptFlag,
    /// <summary>MOV to a segment register (segment index, selector).</summary>
    LoadSegment,
    /// <summary>Instruction whose flags/registers are handled by the helper in place (no exit): reserved for later families.</summary>
    Reserved,
}

/// <summary>Marks the implementation of a helper.</summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class HelperAttribute(HelperId id) : Attribute
{
    public HelperId Id { get; } = id;
    /// <summary>No side effects and no guest-state access: callable without spilling, removable when unused.</summary>
    public bool Pure { get; init; }
}

/// <summary>The helper table shared by every backend.</summary>
public static partial class Helpers
{
    /// <summary>Exit-helper result: continue at the RIP in the guest state.</summary>
    public const ulong Continue = unchecked((ulong)-1L);
    /// <summary>Exit-helper result: stop the region; the dispatcher looks at what is pending.</summary>
    public const ulong Stop = unchecked((ulong)-2L);

    private static readonly Lock s_lock = new();
    private static readonly Dictionary<string, int> s_bySymbol = [];
    // The table's helpers, named here with their purity: the table used to be read from the [Helper]
    // attributes, and the process's first enum and attribute reflection cost every start 4 ms more
    // than this list does (the first reflection over Helpers' methods still costs about 10 ms). The
    // attributes stay at the methods (a test checks that this list says the same), and each method is
    // named as its number.
    private static readonly (HelperId Id, string Name, bool Pure)[] s_declared =
    [
        D(HelperId.UDiv128Quotient, pure: true), D(HelperId.UDiv128Remainder, pure: true), D(HelperId.SDiv128Quotient, pure: true), D(HelperId.SDiv128Remainder, pure: true),
        D(HelperId.SDiv128Faults, pure: true), D(HelperId.Pdep, pure: true), D(HelperId.Pext, pure: true), D(HelperId.ReadTsc, pure: true),
        D(HelperId.Cpuid), D(HelperId.CrAccess), D(HelperId.DescriptorTable), D(HelperId.Hlt), D(HelperId.InterruptFlag),
        D(HelperId.Invd), D(HelperId.Invlpg), D(HelperId.Io), D(HelperId.Iret), D(HelperId.LoadSegment),
        D(HelperId.Monitor), D(HelperId.Mwait), D(HelperId.Pause), D(HelperId.RaiseException), D(HelperId.Rdmsr),
        D(HelperId.Rdpmc), D(HelperId.Rdrand), D(HelperId.Rdseed), D(HelperId.Rdtsc), D(HelperId.Rdtscp),
        D(HelperId.SoftwareInterrupt), D(HelperId.StopAt), D(HelperId.Swapgs), D(HelperId.Syscall), D(HelperId.Sysret),
        D(HelperId.Vmcall), D(HelperId.VmxInstruction), D(HelperId.Wbinvd), D(HelperId.Wrmsr), D(HelperId.Xgetbv),
        D(HelperId.Xsetbv),
    ];

    private static (HelperId, string, bool) D(HelperId id, bool pure = false, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(id))] string expression = "") =>
        (id, expression[(expression.LastIndexOf('.') + 1)..], pure);

    /// <summary>Number of <see cref="HelperId"/> values (the last is <see cref="HelperId.Reserved"/>).</summary>
    internal const int TableSize = (int)HelperId.Reserved + 1;

    private static readonly (MethodInfo Method, bool Pure)[] s_table = BuildTable();
    private static readonly List<(MethodInfo Method, bool Pure)> s_registered = [];
    private static readonly Dictionary<MethodInfo, int> s_registeredIds = [];

    /// <summary>Prefix of every helper's stable symbol (<see cref="Symbol(int)"/>).</summary>
    public const string SymbolPrefix = "jitvmx.helper.";

    /// <summary>First number given to helpers registered with <see cref="Register(MethodInfo, bool)"/>.</summary>
    public const int FirstRegistered = 1000;

    /// <summary>
    /// Registers a static method as a helper and returns its number. Its parameters and result may
    /// be integers (up to 64 bits) or <c>Vector128&lt;byte&gt;</c>; a first parameter of type
    /// <c>CpuContext*</c> receives the context. Pure helpers must not touch guest state; others see
    /// it spilled and reloaded around the call. Registering the same method again returns the same
    /// number, so families can register in their static set-up.
    /// </summary>
    internal static int Register(MethodInfo method, bool pure)
    {
        if (!method.IsStatic) throw new ArgumentException($"helper {method.Name} must be static");
        lock (s_lock)
        {
            if (s_registeredIds.TryGetValue(method, out int id)) return id;
            id = FirstRegistered + s_registered.Count;
            AddSymbol(method, id);
            s_registered.Add((method, pure));
            s_registeredIds[method] = id;
            return id;
        }
    }

    /// <summary>Registers <paramref name="type"/>'s static method <paramref name="name"/> (see <see cref="Register(MethodInfo, bool)"/>).</summary>
    internal static int Register(Type type, string name, bool pure) =>
        Register(type.GetMethod(name, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            ?? throw new ArgumentException($"{type.Name}.{name} not found"), pure);

    /// <summary>The method implementing helper number <paramref name="id"/> (enum or registered).</summary>
    internal static MethodInfo? Method(int id)
    {
        if (id < FirstRegistered) return s_table[id].Method;
        lock (s_lock) return s_registered[id - FirstRegistered].Method;
    }

    /// <summary>How many helpers were registered so far (numbers <see cref="FirstRegistered"/> on).</summary>
    internal static int RegisteredCount
    {
        get { lock (s_lock) return s_registered.Count; }
    }

    /// <summary>Whether helper number <paramref name="id"/> is pure.</summary>
    internal static bool IsPure(int id)
    {
        if (id < FirstRegistered) return s_table[id].Pure;
        lock (s_lock) return s_registered[id - FirstRegistered].Pure;
    }

    /// <summary>Name of helper number <paramref name="id"/>, for IR dumps.</summary>
    internal static string Name(int id) => id < FirstRegistered ? ((HelperId)id).ToString() : (Method(id) is { } m ? $"{m.DeclaringType?.Name}.{m.Name}" : $"#{id}");

    /// <summary>
    /// The stable name of helper number <paramref name="id"/>: <see cref="SymbolPrefix"/>, the declaring
    /// type's full name and the method name. Numbers of registered helpers depend on the order families
    /// register them in, so code kept beyond this process (LLVM objects) refers to helpers by this name.
    /// </summary>
    public static string Symbol(int id) => SymbolOf(Method(id) ?? throw new ArgumentException($"helper {Name(id)} is not implemented", nameof(id)));

    private static string SymbolOf(MethodInfo m) => SymbolPrefix + m.DeclaringType!.FullName + "." + m.Name;

    /// <summary>Records the symbol of a new helper; two helpers whose names collide (overloads) are a Jitvmx bug.</summary>
    private static void AddSymbol(MethodInfo method, int id)
    {
        lock (s_lock)
        {
            string symbol = SymbolOf(method);
            if (!s_bySymbol.TryAdd(symbol, id))
                throw new InvalidOperationException($"helpers {Name(s_bySymbol[symbol])} and {method.DeclaringType?.Name}.{method.Name} have the same symbol {symbol} (overloaded helper methods cannot be named stably)");
        }
    }

    /// <summary>
    /// Helper number of <paramref name="symbol"/> in this process, registering its method (as
    /// <paramref name="pure"/>, which the code using it was compiled with) when no family has yet:
    /// cached code can run before any translation. False with the reason when no Jitvmx assembly
    /// defines such a static method, or the name is ambiguous.
    /// </summary>
    public static bool TryResolveSymbol(string symbol, bool pure, out int id, out string? whyNot)
    {
        lock (s_lock)
            if (s_bySymbol.TryGetValue(symbol, out id))
            {
                whyNot = IsPure(id) == pure ? null : $"helper {symbol} is {(pure ? "not " : "")}pure in this build";
                return whyNot is null;
            }
        id = -1;
        int dot = symbol.LastIndexOf('.');
        if (!symbol.StartsWith(SymbolPrefix, StringComparison.Ordinal) || dot <= SymbolPrefix.Length)
        {
            whyNot = $"'{symbol}' is not a helper symbol";
            return false;
        }
        string typeName = symbol[SymbolPrefix.Length..dot], methodName = symbol[(dot + 1)..];
        MethodInfo? method;
        try
        {
            // One method by name: listing all of a helper family's methods cost a start-up from cached code milliseconds.
            var type = s_helperTypes.TryGetValue(typeName, out var known) ? known : typeof(Helpers).Assembly.GetType(typeName);
            method = type?.GetMethod(methodName, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic);
        }
        catch (AmbiguousMatchException)
        {
            whyNot = $"helper {symbol} is ambiguous (overloaded)";
            return false;
        }
        if (method is null)
        {
            whyNot = $"no helper {symbol} in this build";
            return false;
        }
        id = Register(method, pure);
        return TryResolveSymbol(symbol, pure, out id, out whyNot);
    }

    // The types that declare helpers, by full name: resolving a symbol through Assembly.GetType started
    // the type-name parser, milliseconds on a start from cached code. Others still resolve that way.
    private static readonly Dictionary<string, Type> s_helperTypes = new(StringComparer.Ordinal)
    {
        [typeof(Helpers).FullName!] = typeof(Helpers),
        [typeof(Lifting.CryptoOps).FullName!] = typeof(Lifting.CryptoOps),
        [typeof(Lifting.MmxOps).FullName!] = typeof(Lifting.MmxOps),
        [typeof(Lifting.SimdIntOps).FullName!] = typeof(Lifting.SimdIntOps),
        [typeof(Lifting.SimdOps).FullName!] = typeof(Lifting.SimdOps),
        [typeof(Lifting.StringBulk).FullName!] = typeof(Lifting.StringBulk),
        [typeof(Lifting.X87Ops).FullName!] = typeof(Lifting.X87Ops),
        [typeof(Lifting.XsaveOps).FullName!] = typeof(Lifting.XsaveOps),
    };

    private static (MethodInfo, bool)[] BuildTable()
    {
        var table = new (MethodInfo, bool)[TableSize];
        foreach (var (id, name, pure) in s_declared)
        {
            var m = typeof(Helpers).GetMethod(name, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
                ?? throw new InvalidOperationException($"helper {name} has no method");
            if (table[(int)id].Item1 is not null) throw new InvalidOperationException($"helper {name} is declared twice");
            table[(int)id] = (m, pure);
            AddSymbol(m, (int)id);
        }
        return table;
    }

    /// <summary>The table's helpers as declared (number, method name, purity), for the test that compares them with the attributes.</summary>
    internal static IEnumerable<(HelperId Id, string Name, bool Pure)> Declared => s_declared;

    /// <summary>The method implementing a helper (null while unimplemented).</summary>
    internal static MethodInfo? Method(HelperId id) => s_table[(int)id].Method;

    /// <summary>Whether the helper is pure.</summary>
    public static bool IsPure(HelperId id) => s_table[(int)id].Pure;
}
