// SPDX-License-Identifier: MIT
using System.Globalization;
using System.Text;

namespace Jitvmx.Runtime;

/// <summary>
/// What a background tier compiled in earlier runs of the same guest program: each hot region's
/// entry, the x87/SSE mode it was translated in and the computed targets it was translated with.
/// A later run queues such a region as soon as its entry is first translated, instead of after it
/// has retired <see cref="VirtualMachineOptions.TierUpThreshold"/> instructions in the lower tiers;
/// with the same guest bytes it lowers to the same LLVM IR and the code cache supplies the object.
/// <para>
/// Only a hint: the code is translated from the guest's memory as always, so a profile of another
/// program or of changed bytes costs compile time, never correctness. The file is append-only text,
/// one region a line (<c>v1 ENTRY MODE SITE:TARGET,…</c>, hexadecimal); unreadable lines are skipped,
/// and a file with many repeated lines is rewritten without them when loaded.
/// </para>
/// <para>
/// A <c>v2</c> line adds a fifth field, the tier's own description of the code it installed
/// (<see cref="Hint.Payload"/>, no spaces): with it the tier can load that code without translating
/// the region again, after checking the guest bytes. This class does not look inside it.
/// </para>
/// </summary>
internal sealed class TierProfile
{
    /// <summary>Regions kept at most (the first ones read).</summary>
    public const int MaxRegions = 4096;

    /// <summary>One recorded hot region; <paramref name="Payload"/> is the tier's description of its code (v2 lines), else null.</summary>
    public sealed record Hint(ulong Entry, int Mode, (ulong Site, ulong Target)[] Targets, string? Payload = null);

    private readonly string _path;
    private readonly Dictionary<ulong, Hint> _hints = [];
    // Entries queued from a hint in this process: each only once.
    private readonly HashSet<ulong> _taken = [];
    private readonly HashSet<ulong> _pending = [];
    private readonly HashSet<string> _written = [];
    private readonly Lock _lock = new();

    private TierProfile(string path) => _path = path;

    /// <summary>Number of regions the profile held when loaded.</summary>
    public int Count { get; private set; }

    /// <summary>Of <see cref="Count"/>, the regions whose line has a payload (v2).</summary>
    public int Recorded { get; private set; }

    /// <summary>
    /// Reads the profile at <paramref name="path"/> (a missing or unreadable file is an empty
    /// profile: it only costs what the run would have cost without one).
    /// </summary>
    public static TierProfile Load(string path)
    {
        var profile = new TierProfile(path);
        int lines = 0;
        try
        {
            if (File.Exists(path))
                foreach (string line in File.ReadLines(path))
                {
                    lines++;
                    if (Parse(line) is not { } hint) continue;
                    profile._written.Add(line);
                    if (profile._hints.Count < MaxRegions || profile._hints.ContainsKey(hint.Entry)) profile._hints[hint.Entry] = hint;
                }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        profile.Count = profile._hints.Count;
        foreach (var h in profile._hints.Values)
            if (h.Payload is not null) profile.Recorded++;
        // Runs append what they compiled; repeats pile up when a program's hot set changes from run to run.
        if (lines > 2 * profile._hints.Count + 64) profile.Rewrite();
        return profile;
    }

    /// <summary>The line for a region (see the class summary): v2 with a <paramref name="payload"/>, else v1.</summary>
    public static string Format(ulong entry, int mode, ReadOnlySpan<(ulong Site, ulong Target)> targets, string? payload = null)
    {
        if (payload is not null && (payload.Length == 0 || payload.AsSpan().IndexOfAny(' ', '\n', '\r') >= 0))
            throw new ArgumentException("a payload is one non-empty word", nameof(payload));
        var sb = new StringBuilder($"{(payload is null ? "v1" : "v2")} {entry:x} {mode}");
        sb.Append(' ');
        for (int i = 0; i < targets.Length; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append($"{targets[i].Site:x}:{targets[i].Target:x}");
        }
        if (targets.Length == 0) sb.Append('-');
        if (payload is not null) sb.Append(' ').Append(payload);
        return sb.ToString();
    }

    /// <summary>Reads one line; null if it is not one this version writes.</summary>
    public static Hint? Parse(string line)
    {
        string[] f = line.Split(' ');
        if (!(f.Length == 4 && f[0] == "v1" || f.Length == 5 && f[0] == "v2" && f[4].Length > 0)) return null;
        if (!ulong.TryParse(f[1], NumberStyles.AllowHexSpecifier, null, out ulong entry)
            || !int.TryParse(f[2], NumberStyles.None, null, out int mode))
            return null;
        var targets = new List<(ulong, ulong)>();
        if (f[3] != "-")
            foreach (string pair in f[3].Split(','))
            {
                int colon = pair.IndexOf(':');
                if (colon <= 0
                    || !ulong.TryParse(pair.AsSpan(0, colon), NumberStyles.AllowHexSpecifier, null, out ulong site)
                    || !ulong.TryParse(pair.AsSpan(colon + 1), NumberStyles.AllowHexSpecifier, null, out ulong target))
                    return null;
                targets.Add((site, target));
            }
        if (targets.Count > TranslationCache.MaxPredictedTargets) return null;
        return new Hint(entry, mode, [.. targets], f.Length == 5 ? f[4] : null);
    }

    /// <summary>
    /// The hint for a region first translated at <paramref name="entry"/> in <paramref name="mode"/>,
    /// once per entry and process; null when there is none (or it was taken). A taken hint is
    /// pending until <see cref="Finish"/>.
    /// </summary>
    public Hint? Take(ulong entry, int mode)
    {
        lock (_lock)
        {
            if (!_hints.TryGetValue(entry, out var hint) || hint.Mode != mode || !_taken.Add(entry)) return null;
            _pending.Add(entry);
            return hint;
        }
    }

    /// <summary>Whether the hint for <paramref name="entry"/> was taken and its compilation has not finished.</summary>
    public bool Pending(ulong entry)
    {
        lock (_lock) return _pending.Contains(entry);
    }

    /// <summary>Ends the pending state of <paramref name="entry"/>'s hint (installed or given up).</summary>
    public void Finish(ulong entry)
    {
        lock (_lock) _pending.Remove(entry);
    }

    /// <summary>
    /// Appends a region the background tier installed (called off the vCPU thread; a line already in the
    /// file is not written again), with the tier's <paramref name="payload"/> if it has one.
    /// </summary>
    public void Record(ulong entry, int mode, ReadOnlySpan<(ulong Site, ulong Target)> targets, string? payload = null)
    {
        string line = Format(entry, mode, targets, payload);
        lock (_lock)
        {
            if (!_written.Add(line)) return;
            try
            {
                if (Path.GetDirectoryName(_path) is { Length: > 0 } dir) Directory.CreateDirectory(dir);
                // One short write with O_APPEND: lines from concurrent runs do not interleave.
                File.AppendAllText(_path, line + "\n");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A profile that cannot be written only costs the next run time.
            }
        }
    }

    private void Rewrite()
    {
        try
        {
            string temp = $"{_path}.{Environment.ProcessId}.tmp";
            File.WriteAllLines(temp, _hints.Values.Select(h => Format(h.Entry, h.Mode, h.Targets, h.Payload)));
            File.Move(temp, _path, overwrite: true);
            _written.Clear();
            foreach (var h in _hints.Values) _written.Add(Format(h.Entry, h.Mode, h.Targets, h.Payload));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
