// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Jitvmx.Memory;
using Jitvmx.Runtime;

namespace Jitvmx;

/// <summary>
/// A virtual machine: guest-physical memory (the EPT), the translation cache shared by its vCPUs,
/// and the vCPUs. Embed it as the execution backend of a VMM: map memory, create a vCPU, set its
/// state and controls, and call <see cref="VirtualCpu.Run()"/> in a loop handling exits.
/// </summary>
public sealed class VirtualMachine : IDisposable
{
    private readonly List<VirtualCpu> _cpus = [];
    private bool _disposed;

    /// <summary>Creates an empty VM.</summary>
    public VirtualMachine(VirtualMachineOptions? options = null)
    {
        Options = options ?? new VirtualMachineOptions();
        Cache = new TranslationCache(this);
        Cache.StartPreload();
    }

    /// <summary>Options the VM was created with.</summary>
    public VirtualMachineOptions Options { get; }

    internal PhysicalMemory Physical { get; } = new();

    internal TranslationCache Cache { get; }

    /// <summary>Backend used instead of the IL tier for new regions (single-instruction regions stay IL); null for IL only.</summary>
    internal Runtime.IRegionCompiler? RegionCompiler { get; set; }

    /// <summary>Background tier for hot regions (tiered compilation); null for none.</summary>
    internal Runtime.ITierCompiler? TierCompiler { get; set; }

    /// <summary>
    /// Declares that guest memory lies at one offset from host memory: host address = guest-linear
    /// address + this, for every page accessed without a VM exit (a user-mode front end that keeps
    /// the guest in one reservation of host address space). The software TLB then only holds pages
    /// that keep to it, and compiled code (LLVM and IL tiers) adds it instead of loading each TLB
    /// entry's addend, which takes a dependent load off every guest access. Pages that do not keep to it take the slow path:
    /// still correct. Set it before the first vCPU runs; null (the default) for none.
    /// </summary>
    public long? FlatAddend
    {
        get => _flatAddend;
        set
        {
            // Code compiled for the old value (translated, or installed from an object) would misplace every access.
            if (!Cache.IsEmpty)
                throw new InvalidOperationException("FlatAddend must be set before any code is translated or installed");
            _flatAddend = value;
            foreach (var cpu in _cpus) cpu.SetFlatAddend(value ?? 0);
        }
    }
    private long? _flatAddend;

    /// <summary>
    /// Declares, with <see cref="FlatAddend"/>, that host memory is readable only where the guest may
    /// read, over the whole flat window and its guards: host addresses [FlatAddend − <see cref="FlatWindowGuard"/>,
    /// FlatAddend + <see cref="FlatWindow"/> + <see cref="FlatWindowGuard"/>) are unreadable except where the
    /// guest may read at FlatAddend + its address (guest-readable pages that keep to the flat addend; pages
    /// mapped elsewhere stay unreadable in the window). The embedder keeps that true as mappings change.
    /// Code compiled through LLVM then reads guest memory at FlatAddend + address with a plain load when the
    /// address's register part is below <see cref="FlatWindow"/>, and a host fault takes the read to the
    /// software path, which makes the same checks as always: guest behaviour is unchanged.
    /// Writes keep their software check unless <see cref="HostWriteFaults"/> is set too. Set it before any
    /// code is translated; false by default.
    /// </summary>
    public bool HostReadFaults
    {
        get => _hostReadFaults;
        set
        {
            if (!Cache.IsEmpty)
                throw new InvalidOperationException("HostReadFaults must be set before any code is translated or installed");
            _hostReadFaults = value;
        }
    }
    private bool _hostReadFaults;

    /// <summary>
    /// Declares, with <see cref="HostReadFaults"/>, that host memory of the flat window is also writable only
    /// where the guest may write (read-only where it may only read or execute). The VM then keeps each page the
    /// guest may write read-only on the host while it holds translated code, and makes it writable again when
    /// that code is discarded. Code compiled through LLVM writes guest memory with a plain store at FlatAddend +
    /// address, and a host fault (a page the guest may not write, or one holding translated code) takes the
    /// write to the software path, which makes the same checks as always and discards overwritten code: guest
    /// behaviour is unchanged. The embedder writes guest memory through <see cref="WritePhysical"/>, or calls
    /// <see cref="InvalidateTranslations"/> for the range before it (or the host) writes it directly: a page
    /// holding code is read-only until then. Set it before any code is translated; false by default.
    /// </summary>
    public bool HostWriteFaults
    {
        get => _hostWriteFaults;
        set
        {
            if (!Cache.IsEmpty)
                throw new InvalidOperationException("HostWriteFaults must be set before any code is translated or installed");
            _hostWriteFaults = value;
        }
    }
    private bool _hostWriteFaults;

    /// <summary>Bytes of guest address space that <see cref="HostReadFaults"/> code reads through the flat window (1 TiB); reads above it take the software path.</summary>
    public const ulong FlatWindow = 1UL << 40;

    /// <summary>
    /// Unreadable bytes the embedder keeps on each side of the flat window (4 GiB): a read's register part is
    /// checked against the window, and its constant displacement (under 2 GiB either way) and size may take it past either end.
    /// </summary>
    public const ulong FlatWindowGuard = 1UL << 32;

    /// <summary>The current guest-physical mappings, sorted by address.</summary>
    public IReadOnlyList<GuestMemoryRegion> MemoryRegions => Physical.Regions;

    /// <summary>The vCPUs created so far.</summary>
    public IReadOnlyList<VirtualCpu> Cpus => _cpus;

    /// <summary>Translation statistics.</summary>
    public TranslationStatistics Statistics => Cache.Statistics;

    /// <summary>Per-region counts, most time first; empty unless <see cref="VirtualMachineOptions.Profile"/> is set.</summary>
    public IReadOnlyList<RegionProfile> Profile() => Cache.Profile();

    /// <summary>Maps <paramref name="size"/> bytes of zeroed memory that the VM allocates at guest-physical <paramref name="gpa"/>.</summary>
    public GuestMemoryRegion MapMemory(ulong gpa, ulong size, MemoryPermissions permissions)
    {
        CheckRange(gpa, size);
        nint host = HostMemory.Allocate(size);
        try
        {
            return Map(gpa, size, host, permissions, owned: true);
        }
        catch
        {
            HostMemory.Free(host, size);
            throw;
        }
    }

    /// <summary>Maps host memory supplied by the VMM (it must stay valid while mapped) at guest-physical <paramref name="gpa"/>.</summary>
    public GuestMemoryRegion MapHostMemory(ulong gpa, ulong size, nint hostAddress, MemoryPermissions permissions)
    {
        CheckRange(gpa, size);
        if (hostAddress == 0) throw new ArgumentException("host address is null", nameof(hostAddress));
        return Map(gpa, size, hostAddress, permissions, owned: false);
    }

    private GuestMemoryRegion Map(ulong gpa, ulong size, nint host, MemoryPermissions perms, bool owned)
    {
        var r = Physical.Add(gpa, size, host, perms, owned);
        MappingChanged(gpa, size);
        return r;
    }

    /// <summary>Removes a mapping; later accesses to its range are EPT violations.</summary>
    public void Unmap(GuestMemoryRegion region)
    {
        Physical.Remove(region);
        MappingChanged(region.GuestPhysicalAddress, region.Size);
    }

    /// <summary>Changes a mapping's permissions.</summary>
    public void Protect(GuestMemoryRegion region, MemoryPermissions permissions)
    {
        region.Permissions = permissions;
        MappingChanged(region.GuestPhysicalAddress, region.Size);
    }

    private void MappingChanged(ulong gpa, ulong size)
    {
        Cache.InvalidatePhysical(gpa, size);
        foreach (var c in _cpus) c.FlushTlb();
    }

    private static void CheckRange(ulong gpa, ulong size)
    {
        if ((gpa & 0xFFF) != 0) throw new ArgumentException($"guest-physical address 0x{gpa:x} is not page aligned", nameof(gpa));
        if (size == 0 || (size & 0xFFF) != 0) throw new ArgumentException($"size 0x{size:x} is not a non-zero multiple of 4096", nameof(size));
        if (gpa + size < gpa || gpa + size > (1UL << 52)) throw new ArgumentException("range exceeds the 52-bit guest-physical address space");
    }

    /// <summary>Host span of guest-physical memory; throws when the range is not mapped RAM in one region.</summary>
    public unsafe Span<byte> GetSpan(ulong gpa, int length)
    {
        var r = Physical.Find(gpa) ?? throw new ArgumentException($"guest-physical 0x{gpa:x} is not mapped");
        if (gpa + (ulong)length > r.End) throw new ArgumentException($"guest-physical range 0x{gpa:x}+{length} crosses the end of its mapping");
        return new Span<byte>((byte*)r.HostAddress + (long)(gpa - r.GuestPhysicalAddress), length);
    }

    /// <summary>Copies guest-physical memory out (may span regions).</summary>
    public void ReadPhysical(ulong gpa, Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            var r = Physical.Find(gpa) ?? throw new ArgumentException($"guest-physical 0x{gpa:x} is not mapped");
            int n = (int)Math.Min((ulong)destination.Length, r.End - gpa);
            GetSpan(gpa, n).CopyTo(destination);
            destination = destination[n..];
            gpa += (ulong)n;
        }
    }

    /// <summary>Copies into guest-physical memory (may span regions); translations of overwritten code are discarded.</summary>
    public void WritePhysical(ulong gpa, ReadOnlySpan<byte> source)
    {
        ulong start = gpa;
        int total = source.Length;
        // First too: with HostWriteFaults a page holding code is read-only on the host until its code is discarded.
        if (_hostWriteFaults) Cache.InvalidatePhysical(start, (ulong)total);
        while (source.Length > 0)
        {
            var r = Physical.Find(gpa) ?? throw new ArgumentException($"guest-physical 0x{gpa:x} is not mapped");
            int n = (int)Math.Min((ulong)source.Length, r.End - gpa);
            source[..n].CopyTo(GetSpan(gpa, n));
            source = source[n..];
            gpa += (ulong)n;
        }
        Cache.InvalidatePhysical(start, (ulong)total);
    }

    /// <summary>Discards translations of guest code in [<paramref name="gpa"/>, +<paramref name="length"/>).</summary>
    public void InvalidateTranslations(ulong gpa, ulong length) => Cache.InvalidatePhysical(gpa, length);

    /// <summary>Creates a vCPU in the reset state of a flat 64-bit guest (see <see cref="VirtualCpu"/>).</summary>
    public VirtualCpu CreateCpu()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var cpu = new VirtualCpu(this, _cpus.Count);
        cpu.SetFlatAddend(_flatAddend ?? 0);
        _cpus.Add(cpu);
        return cpu;
    }

    /// <summary>
    /// Writes the regions the interpreter tier prepared in this run to <see cref="VirtualMachineOptions.PreparedRegions"/>
    /// (when there are new ones); returns whether it wrote. Dispose does it too: call it when the
    /// process ends without disposing the VM.
    /// </summary>
    public bool SavePreparedRegions() => Cache.SavePreparedRegions();

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Cache.SavePreparedRegions();
        TierCompiler?.Dispose();
        foreach (var c in _cpus) c.Dispose();
        Physical.Dispose();
    }
}

/// <summary>Options of a <see cref="VirtualMachine"/>.</summary>
public sealed class VirtualMachineOptions
{
    /// <summary>Guest instructions per region at most (larger regions compile slower but run faster).</summary>
    public int MaxRegionInstructions { get; init; } = 400;

    /// <summary>
    /// Guest instructions a region must retire before a background tier recompiles it; each entry into the
    /// region from the dispatcher counts as 32 more (what it costs), so short regions entered very often qualify too.
    /// </summary>
    public long TierUpThreshold { get; init; } = 2_000_000;

    /// <summary>Guest basic blocks per region at most.</summary>
    public int MaxRegionBlocks { get; init; } = 32;

    /// <summary>
    /// How many levels of direct calls a region follows into their callees (0: calls leave the region).
    /// Deeper regions make hot call-heavy loops faster but cost compile time on code that runs once
    /// (a static glibc hello world translates twice as much with 3), so it is off by default and
    /// meant for hot-region tiers.
    /// </summary>
    public int MaxInlineCallDepth { get; init; }

    /// <summary>
    /// Guest instructions a region runs in the interpreter (the first tier) before the IL tier
    /// compiles it; 0 (the default) compiles every region with the IL tier right away. Preparing a
    /// region for the interpreter costs microseconds against about a millisecond of host JIT, and
    /// most code of a program runs only a few times, so a threshold of a few hundred makes short
    /// runs and start-up several times faster while hot code still reaches the compiled tiers.
    /// </summary>
    public long InterpreterTierUp { get; init; }

    /// <summary>
    /// Whether a background tier takes the computed targets a hot region was seen to jump to (an
    /// interpreter's switch, calls through pointers, returns) into its code as guarded branches, so
    /// that such loops run in one region instead of one region per target. On by default; off keeps
    /// every hot region's code the same as its first translation's.
    /// </summary>
    public bool PredictIndirectBranches { get; init; } = Environment.GetEnvironmentVariable("JITVMX_PREDICT") != "0";

    /// <summary>
    /// A file in which a background tier records the hot regions it compiled (entries and predicted
    /// targets), and from which the next run of the same guest program queues them as soon as their
    /// code is first translated, instead of after <see cref="TierUpThreshold"/> instructions in the
    /// lower tiers. With a persistent code cache the compilation is then a load, and hot code runs
    /// from the start. Only a hint: code is always translated from guest memory. Null (the default): none.
    /// One file per guest program; concurrent runs may share it.
    /// </summary>
    public string? TierProfile { get; init; }

    /// <summary>
    /// A file that keeps the interpreter tier's prepared regions across runs of one guest program:
    /// written when the VM is disposed (or by <see cref="VirtualMachine.SavePreparedRegions"/>), read at
    /// the first translation. A region is taken from it only while guest memory holds the very bytes
    /// it was translated from, so a stale or foreign file costs translations, never correctness. It
    /// spares a run the lifting of its start-up code (hundreds of regions of libc initialisation).
    /// Null (the default): none. Used only with the interpreter tier (<see cref="InterpreterTierUp"/>).
    /// </summary>
    public string? PreparedRegions { get; init; }

    /// <summary>
    /// Counts entries and retired guest instructions per region (a few nanoseconds per region
    /// entry), for <see cref="VirtualMachine.Profile"/>: where the guest's time goes, and in which tier.
    /// </summary>
    public bool Profile { get; init; }
}

/// <summary>One region's line of a <see cref="VirtualMachine.Profile"/>.</summary>
/// <param name="Entry">Guest entry RIP.</param>
/// <param name="Tier">The tier that ran it last: interp, il or llvm.</param>
/// <param name="Entries">Times the dispatcher entered it.</param>
/// <param name="Instructions">Guest instructions it retired.</param>
/// <param name="GuestInstructions">Guest instructions it was translated from.</param>
/// <param name="Time">Wall time spent in its code (helpers and memory slow paths included).</param>
public readonly record struct RegionProfile(ulong Entry, string Tier, long Entries, long Instructions, int GuestInstructions, TimeSpan Time);

/// <summary>Counters of the translation cache.</summary>
public sealed class TranslationStatistics
{
    /// <summary>Regions compiled.</summary>
    public long RegionsTranslated;
    /// <summary>Guest instructions lifted (a guest instruction in two regions counts twice).</summary>
    public long InstructionsTranslated;
    /// <summary>Guest basic blocks lifted.</summary>
    public long BlocksTranslated;
    /// <summary>Time spent translating, in Stopwatch ticks.</summary>
    public long TranslationTicks;
    /// <summary>Part of <see cref="TranslationTicks"/> spent decoding, lifting and optimizing the IR (the rest is code generation).</summary>
    public long LiftTicks;
    /// <summary>Regions that started in the interpreter.</summary>
    public long RegionsInterpreted;
    /// <summary>Interpreted regions that became hot and were compiled by the IL tier.</summary>
    public long RegionsPromoted;
    /// <summary>Regions installed with code compiled earlier (LLVM objects loaded from files), not translated.</summary>
    public long RegionsLoaded;
    /// <summary>Of <see cref="RegionsInterpreted"/>, those taken from <see cref="VirtualMachineOptions.PreparedRegions"/> instead of translated.</summary>
    public long RegionsFromPreparedCache;
    /// <summary>Regions whose code a background tier replaced.</summary>
    public long RegionsTieredUp;
    /// <summary>Of <see cref="RegionsTieredUp"/>, those whose hot code continues at predicted computed-branch targets inside itself.</summary>
    public long RegionsPredicted;
    /// <summary>Regions a background tier skipped because other hot code already covers their entry (they may be queued again).</summary>
    public long RegionsRequeued;
    /// <summary>Compilations by a background tier whose object code came from a persistent code cache, not the compiler.</summary>
    public long TierCompilesCached;
    /// <summary>Exits of native code chained straight to the successor's native code.</summary>
    public long ChainLinks;
    /// <summary>Indirect-branch targets entered in a vCPU's jump cache of native code.</summary>
    public long JumpsCached;
    /// <summary>Time the background tier spent translating and compiling, in Stopwatch ticks (on its own thread).</summary>
    public long TierCompileTicks;
    /// <summary>Regions handed to a background tier.</summary>
    public long RegionsQueuedForTierUp;
    /// <summary>Regions handed to a background tier at their first translation because the tier profile named them (not in <see cref="RegionsQueuedForTierUp"/>).</summary>
    public long RegionsQueuedFromProfile;
    /// <summary>Of <see cref="RegionsTieredUp"/>, those queued from the tier profile.</summary>
    public long RegionsTieredUpFromProfile;
    /// <summary>Of <see cref="RegionsTieredUpFromProfile"/>, those whose code was loaded as an earlier run recorded it, without translating the region again.</summary>
    public long RegionsLoadedFromProfile;
    /// <summary>Regions discarded by invalidation (self-modifying code, remapping).</summary>
    public long RegionsInvalidated;
    /// <summary>Region lookups satisfied without translating.</summary>
    public long CacheHits;
    /// <summary>Instructions whose lifting failed unexpectedly and that raised #UD instead (the first 100): a Jitvmx bug to report.</summary>
    public readonly List<string> LifterErrors = [];
    /// <summary>Mnemonics that raised #UD because Jitvmx does not implement them, with counts.</summary>
    public readonly Dictionary<string, long> Unsupported = [];

    /// <summary>Translation time.</summary>
    public TimeSpan TranslationTime => TimeSpan.FromTicks(TranslationTicks * TimeSpan.TicksPerSecond / System.Diagnostics.Stopwatch.Frequency);

    /// <summary>Lifting time (decode, lift, IR passes).</summary>
    public TimeSpan LiftTime => TimeSpan.FromTicks(LiftTicks * TimeSpan.TicksPerSecond / System.Diagnostics.Stopwatch.Frequency);
}
