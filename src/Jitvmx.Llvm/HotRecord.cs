// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Text;
using Jitvmx.Backend;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm;

/// <summary>
/// What the background tier writes into a tier-profile line (<see cref="TierProfile.Hint.Payload"/>)
/// about the code it installed, so that the next run can install the same code without translating
/// the region again: lifting, the passes, lowering and printing the module for the code-cache key
/// took 5–10 ms per hinted region (35 ms for the first, cold), in front of every hot loop of a run.
/// <para>
/// The record names the object in the code cache by its key and carries the region's shape
/// (<see cref="HotShape"/>), its successor slots, the budget its entry needs, the helpers it imports
/// (by symbol: helpers registered at run time are numbered in the order a process meets them) and a
/// SHA-256 of the guest bytes it was translated from. It holds only
/// under the settings it was made with: a stamp over both assemblies' builds, LLVM and the host CPU,
/// the optimisation level, the VM's translation settings and the JITVMX_ environment. A different
/// stamp, other guest bytes or an object gone from the cache send the hint the long way, which
/// translates and compiles as before (and writes a new record).
/// </para>
/// <para>
/// Format: <c>STAMP/KEY/NEED/CHARGE/INSNS/SHA/RANGES/SUCCESSORS/HELPERS/COVERED</c>; lists are
/// comma-separated (<c>-</c> when empty), ranges <c>START-END</c>, helpers <c>P:SYMBOL</c> (P 1 when
/// pure); numbers hexadecimal except the decimal NEED, CHARGE and INSNS.
/// </para>
/// </summary>
internal sealed class HotRecord
{
    public required string Key { get; init; }
    public required HotShape Shape { get; init; }
    public required int EntryNeed { get; init; }
    public required byte[] GuestHash { get; init; }
    public required ulong[] Successors { get; init; }
    public required (string Symbol, bool Pure)[] Helpers { get; init; }

    /// <summary>
    /// The stamp for code compiled at <paramref name="level"/> for <paramref name="vm"/> in this process:
    /// everything besides the guest bytes that decides what a hinted region compiles to.
    /// </summary>
    public static string Stamp(VirtualMachine vm, LlvmOptLevel level)
    {
        var jit = LlvmJit.Instance;
        var o = vm.Options;
        var text = new StringBuilder();
        text.Append(typeof(VirtualMachine).Assembly.ManifestModule.ModuleVersionId).Append('\n')
            .Append(typeof(HotRecord).Assembly.ManifestModule.ModuleVersionId).Append('\n')
            .Append(jit.Version).Append('\n').Append(jit.Triple).Append('\n').Append(jit.HostCpu).Append('\n').Append(jit.HostFeatures).Append('\n')
            .Append(CultureInfo.InvariantCulture, $"{level} {o.MaxRegionInstructions} {o.MaxRegionBlocks} {o.MaxInlineCallDepth} {o.PredictIndirectBranches} ")
            .Append(CultureInfo.InvariantCulture, $"{vm.FlatAddend is not null} {vm.HostReadFaults} {vm.HostWriteFaults}\n");
        // Every JITVMX_ setting but those that only log or say where files go: a switch this list
        // missed would otherwise load code made under another setting.
        var names = new List<string>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
            if (e.Key is string k && k.StartsWith("JITVMX_", StringComparison.Ordinal) && k is not ("JITVMX_TIER_LOG" or "JITVMX_PERF_MAP" or "JITVMX_CACHE_DIR"))
                names.Add($"{k}={e.Value}");
        names.Sort(StringComparer.Ordinal);
        foreach (string n in names) text.Append(n).Append('\n');
        return $"{PreparedRegionCache.Checksum(Encoding.UTF8.GetBytes(text.ToString())):x16}";
    }

    /// <summary>The payload for code installed from <paramref name="shape"/>, or null when it cannot be recorded (no cache key, guest bytes not fetchable).</summary>
    public static string? Format(string stamp, VirtualCpu cpu, HotShape shape, CompiledRegion code, LlvmCompileTimes compiled)
    {
        if (compiled.Key is null || compiled.Helpers is null || RegionObject.HashGuest(cpu, shape.GuestRanges) is not { } hash) return null;
        var sb = new StringBuilder();
        sb.Append(stamp).Append('/').Append(compiled.Key).Append('/')
            .Append(CultureInfo.InvariantCulture, $"{code.EntryCharge}/{shape.EntryCharge}/{shape.GuestInstructions}/")
            .Append(Convert.ToHexStringLower(hash)).Append('/');
        List(sb, shape.GuestRanges, (b, r) => b.Append(CultureInfo.InvariantCulture, $"{r.Start:x}-{r.End:x}"));
        sb.Append('/');
        List(sb, code.SuccessorRips, (b, a) => b.Append(CultureInfo.InvariantCulture, $"{a:x}"));
        sb.Append('/');
        List(sb, compiled.Helpers, (b, h) => b.Append(Jitvmx.Helpers.IsPure(h) ? "1:" : "0:").Append(Jitvmx.Helpers.Symbol(h)));
        sb.Append('/');
        List(sb, shape.Covered, (b, a) => b.Append(CultureInfo.InvariantCulture, $"{a:x}"));
        return sb.ToString();
    }

    private static void List<T>(StringBuilder sb, IReadOnlyList<T> items, Action<StringBuilder, T> one)
    {
        if (items.Count == 0) sb.Append('-');
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(',');
            one(sb, items[i]);
        }
    }

    /// <summary>Reads a payload made under <paramref name="stamp"/>; null when it is malformed or another stamp's.</summary>
    public static HotRecord? Parse(string payload, string stamp)
    {
        string[] f = payload.Split('/');
        if (f.Length != 10 || f[0] != stamp || f[1].Length != 64 || !IsHex(f[1]) || f[5].Length != 64 || !IsHex(f[5])) return null;
        if (!int.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out int need)
            || !int.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out int charge)
            || !int.TryParse(f[4], NumberStyles.None, CultureInfo.InvariantCulture, out int insns))
            return null;
        var ranges = ParseList(f[6], s =>
        {
            int dash = s.IndexOf('-');
            return dash > 0 && Hex(s[..dash]) is { } a && Hex(s[(dash + 1)..]) is { } b && a < b ? (a, b) : ((ulong, ulong)?)null;
        });
        var successors = ParseList(f[7], Hex);
        var helpers = ParseList(f[8], s => s.Length > 2 && s[0] is '0' or '1' && s[1] == ':' ? (s[2..], s[0] == '1') : ((string, bool)?)null);
        var covered = ParseList(f[9], Hex);
        if (ranges is null || ranges.Length == 0 || successors is null || helpers is null || covered is null) return null;
        return new HotRecord
        {
            Key = f[1], Shape = new HotShape(covered, ranges, charge, insns), EntryNeed = need,
            GuestHash = Convert.FromHexString(f[5]), Successors = successors, Helpers = helpers,
        };
    }

    private static bool IsHex(string s)
    {
        foreach (char c in s)
            if (!char.IsAsciiHexDigitLower(c) && !char.IsAsciiDigit(c)) return false;
        return true;
    }

    private static ulong? Hex(string s) =>
        s.Length is > 0 and <= 16 && ulong.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong v) ? v : null;

    private static T[]? ParseList<T>(string field, Func<string, T?> one) where T : struct
    {
        if (field == "-") return [];
        string[] parts = field.Split(',');
        var result = new T[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (one(parts[i]) is not { } v) return null;
            result[i] = v;
        }
        return result;
    }

    /// <summary>Whether the guest code of the record's ranges, as fetched now, is what the code was compiled from.</summary>
    public bool GuestMatches(VirtualCpu cpu) => RegionObject.HashGuest(cpu, Shape.GuestRanges) is { } now && now.AsSpan().SequenceEqual(GuestHash);

    /// <summary>
    /// The recorded code, linked into this process as region <paramref name="name"/> (a name of
    /// <see cref="LlvmJit.UniqueName"/> for the same entry); null when the code cache no longer holds the
    /// object or a helper is not one of this build.
    /// </summary>
    public CompiledRegion? Load(string name)
    {
        var ids = new int[Helpers.Length];
        for (int i = 0; i < ids.Length; i++)
            if (!Jitvmx.Helpers.TryResolveSymbol(Helpers[i].Symbol, Helpers[i].Pure, out ids[i], out _)) return null;
        if (CodeCache.TryLoad(Key, name) is not { } obj) return null;
        return LlvmBackend.LoadObject(obj, name, Successors, ids, EntryNeed);
    }
}
