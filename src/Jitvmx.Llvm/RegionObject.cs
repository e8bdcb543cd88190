// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Jitvmx.Backend;
using Jitvmx.Lifting;
using Jitvmx.Runtime;

namespace Jitvmx.Llvm;

/// <summary>A region object was refused: the message says why (bad file, other build or host, changed guest code).</summary>
public sealed class RegionObjectException(string message) : Exception(message);

/// <summary>A helper a region object imports: its stable symbol, whether the code treats it as pure, and its C# signature.</summary>
public sealed record RegionObjectHelper(string Symbol, bool Pure, string Signature);

/// <summary>
/// One region compiled by LLVM to a relocatable object, with what is needed to run it in another
/// process: the guest code it was compiled from (entry RIP, guest-linear byte ranges and their
/// SHA-256), the helpers it imports by stable name, its successor-slot layout, and the build and
/// host it was compiled for. The file is a fixed header, the metadata, then the ELF object:
/// <code>
///   0  8  magic "JVMXROBJ"
///   8  4  format version (<see cref="FormatVersion"/>)
///  12  4  metadata length M
///  16  4  object length N
///  20 32  SHA-256 of the M + N bytes that follow
///  52  M  metadata (little-endian integers, strings as a 32-bit length and UTF-8)
///  52+M N ELF relocatable object
/// </code>
/// <see cref="Read"/> checks everything that does not depend on the guest; <see cref="Install"/>
/// checks the guest code and links the object.
/// </summary>
public sealed class RegionObject
{
    /// <summary>Version of the file layout and of the metadata it carries.</summary>
    public const int FormatVersion = 1;

    private const int HeaderSize = 52;
    private static ReadOnlySpan<byte> Magic => "JVMXROBJ"u8;

    private RegionObject(
        ulong entryRip, (ulong Start, ulong End)[] guestRanges, byte[] guestHash, int guestInstructionCount, int entryCharge,
        ulong[] successorRips, RegionObjectHelper[] helpers, string symbol, LlvmOptLevel level,
        string jitvmxVersion, string abi, string triple, string cpu, string features, byte[] obj)
    {
        EntryRip = entryRip;
        GuestRanges = guestRanges;
        GuestHash = guestHash;
        GuestInstructionCount = guestInstructionCount;
        EntryCharge = entryCharge;
        SuccessorRips = successorRips;
        Helpers = helpers;
        Symbol = symbol;
        Level = level;
        JitvmxVersion = jitvmxVersion;
        Abi = abi;
        Triple = triple;
        Cpu = cpu;
        Features = features;
        Object = obj;
    }

    /// <summary>Guest RIP of the region's entry.</summary>
    public ulong EntryRip { get; }

    /// <summary>Guest-linear code ranges [start, end) the region was compiled from, sorted and merged.</summary>
    public IReadOnlyList<(ulong Start, ulong End)> GuestRanges { get; }

    /// <summary>SHA-256 of the guest bytes of <see cref="GuestRanges"/>, in order.</summary>
    public IReadOnlyList<byte> GuestHash { get; }

    /// <summary>Guest instructions lifted into the region.</summary>
    public int GuestInstructionCount { get; }

    /// <summary>Budget the code needs at entry (the dispatcher checks it before entering; see <see cref="CompiledRegion.EntryCharge"/>).</summary>
    public int EntryCharge { get; }

    /// <summary>Guest RIP of each direct-exit slot, in the slot order the code returns.</summary>
    public IReadOnlyList<ulong> SuccessorRips { get; }

    /// <summary>Helpers the object imports.</summary>
    public IReadOnlyList<RegionObjectHelper> Helpers { get; }

    /// <summary>The function the object defines, <c>i32 (ptr ctx)</c>.</summary>
    public string Symbol { get; }

    /// <summary>Optimisation level it was compiled at.</summary>
    public LlvmOptLevel Level { get; }

    /// <summary>Informational version of the Jitvmx build that compiled it (its lifters made the code).</summary>
    public string JitvmxVersion { get; }

    /// <summary>Fingerprint of the run-time interface the code is bound to (context layout, codes, trampolines).</summary>
    public string Abi { get; }

    /// <summary>LLVM target triple.</summary>
    public string Triple { get; }

    /// <summary>Host CPU name the code was tuned for.</summary>
    public string Cpu { get; }

    /// <summary>LLVM target features the code may use (<c>+feature,-feature,…</c>).</summary>
    public string Features { get; }

    /// <summary>The ELF relocatable object.</summary>
    public ReadOnlyMemory<byte> Object { get; }

    // ================= compiling =================

    /// <summary>
    /// Translates the region at <paramref name="rip"/> as <paramref name="cpu"/> sees the guest now (the
    /// VM's region limits), compiles it with LLVM at <paramref name="level"/> and returns it as an object.
    /// Throws <see cref="RegionObjectException"/> when the code cannot be fetched or LLVM does not lower it.
    /// </summary>
    public static RegionObject Compile(VirtualCpu cpu, ulong rip, LlvmOptLevel level = LlvmOptLevel.O2)
    {
        var o = cpu.Machine.Options;
        var limits = new RegionLimits(o.MaxRegionInstructions, o.MaxRegionBlocks, Math.Min(96, o.MaxRegionInstructions), o.MaxInlineCallDepth);
        var ir = Translator.Translate(cpu, rip, limits, out ulong fault)
            ?? throw new RegionObjectException($"no code to compile at 0x{rip:x} (fetch fault at 0x{fault:x})");
        Ir.Passes.Run(ir);
        var ranges = ir.MergedGuestRanges();
        byte[] hash = HashGuest(cpu, ranges) ?? throw new RegionObjectException($"guest code at 0x{rip:x} changed while it was compiled");
        // Named after what it computes, so loading the same object twice links it once.
        string symbol = $"jitvmx_region_{rip:x}_{level}{(ir.FlatMemory ? "_flat" : "")}{(ir.HostReadFaults ? "_hr" : "")}_{Convert.ToHexStringLower(hash, 0, 8)}";
        if (!LlvmBackend.TryEmitObject(ir, level, symbol, out byte[]? obj, out ulong[] successors, out int[] helperIds, out string? reason))
            throw new RegionObjectException($"LLVM cannot compile the region at 0x{rip:x}: {reason}");
        var helpers = helperIds.Select(id => new RegionObjectHelper(Jitvmx.Helpers.Symbol(id), Jitvmx.Helpers.IsPure(id), Signature(Jitvmx.Helpers.Method(id)!))).ToArray();
        var jit = LlvmJit.Instance;
        return new RegionObject(rip, ranges, hash, ir.GuestInstructionCount, LlvmBackend.EntryNeed(ir), successors, helpers, symbol, level,
            BuildVersion, AbiFingerprint + (ir.HostReadFaults ? HostReadsAbi : "") + (ir.HostWriteFaults ? HostWritesAbi : "") + (ir.FlatMemory ? FlatAbi : ""), jit.Triple, jit.HostCpu, jit.HostFeatures, obj!);
    }

    // Marks the interface of code compiled for a VM with a flat addend (VirtualMachine.FlatAddend).
    private const string FlatAbi = "+flat";
    // Marks code whose reads may rely on host faults (VirtualMachine.HostReadFaults).
    private const string HostReadsAbi = "+hostreads";
    // Marks code whose writes may rely on host faults (VirtualMachine.HostWriteFaults).
    private const string HostWritesAbi = "+hostwrites";

    // ================= loading =================

    /// <summary>
    /// Links the object into this process and installs it in <paramref name="cpu"/>'s VM as the region at
    /// <see cref="EntryRip"/>, used instead of translating. Throws <see cref="RegionObjectException"/> when
    /// the guest bytes differ from those it was compiled from (or are no longer mapped executable) or a
    /// helper it imports does not exist in this build as it did.
    /// </summary>
    public void Install(VirtualCpu cpu)
    {
        // Code for a flat VM adds that VM's addend; code for any other VM runs in a flat one too.
        if (Abi.EndsWith(FlatAbi, StringComparison.Ordinal) && cpu.Machine.FlatAddend is null)
            throw new RegionObjectException($"region 0x{EntryRip:x}: compiled for a VM with guest memory at one host offset (FlatAddend); this VM has none");
        if (Abi.Contains(HostReadsAbi, StringComparison.Ordinal) && !cpu.Machine.HostReadFaults)
            throw new RegionObjectException($"region 0x{EntryRip:x}: compiled for a VM whose guest reads may fault on the host (HostReadFaults); this VM's may not");
        if (Abi.Contains(HostWritesAbi, StringComparison.Ordinal) && !cpu.Machine.HostWriteFaults)
            throw new RegionObjectException($"region 0x{EntryRip:x}: compiled for a VM whose guest writes may fault on the host (HostWriteFaults); this VM's may not");
        byte[]? now = HashGuest(cpu, GuestRanges);
        if (now is null)
            throw new RegionObjectException($"region 0x{EntryRip:x}: its guest code is no longer mapped executable");
        if (!now.AsSpan().SequenceEqual([.. GuestHash]))
            throw new RegionObjectException($"region 0x{EntryRip:x}: the guest code differs from the code it was compiled from (hash mismatch over {Describe(GuestRanges)})");
        var ids = new int[Helpers.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            var h = Helpers[i];
            if (!Jitvmx.Helpers.TryResolveSymbol(h.Symbol, h.Pure, out ids[i], out string? why))
                throw new RegionObjectException($"region 0x{EntryRip:x}: {why}");
            string signature = Signature(Jitvmx.Helpers.Method(ids[i])!);
            if (signature != h.Signature)
                throw new RegionObjectException($"region 0x{EntryRip:x}: helper {h.Symbol} is {signature} in this build, {h.Signature} in the object");
        }
        CompiledRegion code;
        lock (s_linked)
        {
            // The symbol names the code (entry, level, guest-byte hash): a second VM reuses the first link.
            if (!s_linked.TryGetValue(Symbol, out code!))
                s_linked[Symbol] = code = LlvmBackend.LoadObject(Object.Span, Symbol, [.. SuccessorRips], ids);
        }
        if (!code.SuccessorRips.AsSpan().SequenceEqual([.. SuccessorRips]))
            throw new RegionObjectException($"region 0x{EntryRip:x}: already linked as {Symbol} with other successor slots");
        cpu.Machine.Cache.Install(cpu, EntryRip, code, EntryCharge, GuestRanges);
    }

    private static readonly Dictionary<string, CompiledRegion> s_linked = [];

    /// <summary>SHA-256 of the guest code bytes of <paramref name="ranges"/> as fetched now; null when one is not fully fetchable.</summary>
    internal static byte[]? HashGuest(VirtualCpu cpu, IEnumerable<(ulong Start, ulong End)> ranges)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[4096];
        foreach (var (start, end) in ranges)
        {
            for (ulong a = start; a < end;)
            {
                int n = (int)Math.Min((ulong)buffer.Length, end - a);
                if (cpu.FetchCode(a, buffer.AsSpan(0, n)) != n) return null;
                sha.AppendData(buffer, 0, n);
                a += (ulong)n;
            }
        }
        return sha.GetHashAndReset();
    }

    private static string Describe(IReadOnlyList<(ulong Start, ulong End)> ranges) =>
        string.Join(", ", ranges.Take(4).Select(r => $"0x{r.Start:x}-0x{r.End:x}")) + (ranges.Count > 4 ? ", …" : "");

    // ================= what the code is bound to =================

    private static string Signature(MethodInfo m) =>
        $"{m.ReturnType.Name}({string.Join(",", m.GetParameters().Select(p => p.ParameterType.Name))})";

    private static string BuildVersion { get; } =
        typeof(VirtualMachine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary>
    /// SHA-256 over everything compiled code assumes of the run time: the context and guest-state layouts,
    /// the region return codes and helper results, the TLB geometry, the trampolines and their slot size.
    /// </summary>
    private static unsafe string AbiFingerprint { get; } = ComputeAbi();

    private static unsafe string ComputeAbi()
    {
        var sb = new StringBuilder();
        foreach (var t in new[] { typeof(CpuContext), typeof(GuestState), typeof(SegmentRegister) })
        {
            sb.Append(t.Name).Append(':').Append(Marshal.SizeOf(t)).Append(';');
            foreach (var f in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
                sb.Append(f.Name).Append('@').Append(Marshal.OffsetOf(t, f.Name)).Append(';');
        }
        foreach (var f in typeof(StateOffsets).GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            sb.Append(f.Name).Append('=').Append(f.GetValue(null)).Append(';');
        sb.Append($"tlb={CpuContext.TlbSize},{CpuContext.PageBits};codes={RegionCode.Indirect},{RegionCode.Stop},{RegionCode.Step};");
        sb.Append($"results={Jitvmx.Helpers.Continue},{Jitvmx.Helpers.Stop};slot={LlvmRuntime.SlotSize};");
        foreach (var (name, _) in LlvmRuntime.Symbols()) sb.Append(name).Append(';');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    // ================= the file =================

    /// <summary>The file's bytes.</summary>
    public byte[] ToBytes()
    {
        var meta = new MemoryStream();
        using (var w = new BinaryWriter(meta, Encoding.UTF8, leaveOpen: true))
        {
            WriteString(w, JitvmxVersion);
            WriteString(w, Abi);
            WriteString(w, Triple);
            WriteString(w, Cpu);
            WriteString(w, Features);
            WriteString(w, Symbol);
            w.Write((int)Level);
            w.Write(EntryRip);
            w.Write(GuestInstructionCount);
            w.Write(EntryCharge);
            w.Write(GuestRanges.Count);
            foreach (var (start, end) in GuestRanges)
            {
                w.Write(start);
                w.Write(end);
            }
            w.Write([.. GuestHash]);
            w.Write(SuccessorRips.Count);
            foreach (ulong s in SuccessorRips) w.Write(s);
            w.Write(Helpers.Count);
            foreach (var h in Helpers)
            {
                WriteString(w, h.Symbol);
                w.Write(h.Pure);
                WriteString(w, h.Signature);
            }
        }
        var file = new byte[HeaderSize + meta.Length + Object.Length];
        Magic.CopyTo(file);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(8), FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(12), (int)meta.Length);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(16), Object.Length);
        meta.GetBuffer().AsSpan(0, (int)meta.Length).CopyTo(file.AsSpan(HeaderSize));
        Object.Span.CopyTo(file.AsSpan(HeaderSize + (int)meta.Length));
        SHA256.HashData(file.AsSpan(HeaderSize), file.AsSpan(20, 32));
        return file;
    }

    /// <summary>
    /// Parses and checks a region object file: the format, its integrity, and that this build and host
    /// can run it (same Jitvmx build and run-time interface, same target, the CPU features it uses).
    /// Throws <see cref="RegionObjectException"/> saying what is wrong.
    /// </summary>
    public static RegionObject Read(ReadOnlySpan<byte> file)
    {
        if (file.Length < Magic.Length || !file[..Magic.Length].SequenceEqual(Magic))
            throw new RegionObjectException("not a Jitvmx region object (bad magic)");
        if (file.Length < HeaderSize)
            throw new RegionObjectException($"truncated region object: {file.Length} bytes, the header alone is {HeaderSize}");
        int version = BinaryPrimitives.ReadInt32LittleEndian(file[8..]);
        if (version != FormatVersion)
            throw new RegionObjectException($"region object format version {version}; this build reads version {FormatVersion}");
        int metaLength = BinaryPrimitives.ReadInt32LittleEndian(file[12..]);
        int objLength = BinaryPrimitives.ReadInt32LittleEndian(file[16..]);
        if (metaLength < 0 || objLength < 0)
            throw new RegionObjectException("corrupt region object: negative section length");
        long expected = (long)HeaderSize + metaLength + objLength;
        if (file.Length < expected)
            throw new RegionObjectException($"truncated region object: {file.Length} bytes, the header announces {expected}");
        if (file.Length > expected)
            throw new RegionObjectException($"corrupt region object: {file.Length - expected} bytes after the announced end");
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(file[HeaderSize..], digest);
        if (!digest.SequenceEqual(file.Slice(20, 32)))
            throw new RegionObjectException("corrupt region object: checksum mismatch");

        RegionObject o;
        try
        {
            using var r = new BinaryReader(new MemoryStream(file.Slice(HeaderSize, metaLength).ToArray()), Encoding.UTF8);
            string jitvmx = ReadString(r), abi = ReadString(r), triple = ReadString(r), cpu = ReadString(r), features = ReadString(r), symbol = ReadString(r);
            var level = (LlvmOptLevel)r.ReadInt32();
            ulong entry = r.ReadUInt64();
            int insns = r.ReadInt32(), charge = r.ReadInt32();
            var ranges = new (ulong, ulong)[Count(r, 16)];
            for (int i = 0; i < ranges.Length; i++) ranges[i] = (r.ReadUInt64(), r.ReadUInt64());
            byte[] hash = r.ReadBytes(32);
            var successors = new ulong[Count(r, 8)];
            for (int i = 0; i < successors.Length; i++) successors[i] = r.ReadUInt64();
            var helpers = new RegionObjectHelper[Count(r, 9)];
            for (int i = 0; i < helpers.Length; i++) helpers[i] = new RegionObjectHelper(ReadString(r), r.ReadBoolean(), ReadString(r));
            if (hash.Length != 32 || r.BaseStream.Position != metaLength)
                throw new EndOfStreamException();
            o = new RegionObject(entry, ranges, hash, insns, charge, successors, helpers, symbol, level, jitvmx, abi, triple, cpu, features,
                file.Slice(HeaderSize + metaLength, objLength).ToArray());
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or DecoderFallbackException)
        {
            // The checksum matched, so the writer itself produced this: still refuse it cleanly.
            throw new RegionObjectException("corrupt region object: malformed metadata");
        }
        o.CheckRunnableHere();
        return o;
    }

    /// <summary>Reads and checks a region object file (<see cref="Read(ReadOnlySpan{byte})"/>).</summary>
    public static RegionObject ReadFile(string path) => Read(File.ReadAllBytes(path));

    private void CheckRunnableHere()
    {
        if (JitvmxVersion != BuildVersion)
            throw new RegionObjectException($"region object compiled by Jitvmx {JitvmxVersion}; this is {BuildVersion}");
        if (Abi != AbiFingerprint && Abi != AbiFingerprint + FlatAbi && Abi != AbiFingerprint + HostReadsAbi + FlatAbi
            && Abi != AbiFingerprint + HostReadsAbi + HostWritesAbi + FlatAbi)
            throw new RegionObjectException("region object compiled for another run-time interface (context layout or trampolines differ)");
        var jit = LlvmJit.Instance;
        if (Triple != jit.Triple)
            throw new RegionObjectException($"region object compiled for {Triple}; this host is {jit.Triple}");
        var have = jit.HostFeatures.Split(',').Where(f => f.StartsWith('+')).ToHashSet();
        var missing = Features.Split(',').Where(f => f.StartsWith('+') && !have.Contains(f)).ToList();
        if (missing.Count > 0)
            throw new RegionObjectException($"region object compiled for a {Cpu} using {string.Join(",", missing)}, which this {jit.HostCpu} lacks");
        if (!Enum.IsDefined(Level) || EntryCharge < 0 || GuestRanges.Count == 0 || GuestRanges.Any(g => g.End <= g.Start))
            throw new RegionObjectException("corrupt region object: inconsistent metadata");
    }

    private static int Count(BinaryReader r, int minBytesEach)
    {
        int n = r.ReadInt32();
        if (n < 0 || (long)n * minBytesEach > r.BaseStream.Length - r.BaseStream.Position) throw new EndOfStreamException();
        return n;
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write(bytes.Length);
        w.Write(bytes);
    }

    private static string ReadString(BinaryReader r)
    {
        byte[] bytes = r.ReadBytes(Count(r, 1));
        return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
    }
}
