// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Jitvmx.Backend;

namespace Jitvmx.Runtime;

/// <summary>
/// The interpreter tier's prepared regions of one guest program, kept in a file across runs
/// (<see cref="VirtualMachineOptions.PreparedRegions"/>). Starting a program lifts hundreds of regions
/// of libc start-up code that each run a few times; with this file the next run takes them as they
/// were, without decoding, lifting or the lifter's own start-up.
/// </summary>
/// <remarks>
/// A record holds the guest bytes its region was translated from, and is used only while guest
/// memory holds exactly those bytes at the same addresses, so that a changed program, another
/// program's file or code the guest rewrote costs a translation, never correctness. The file names
/// the Jitvmx build and the translation settings it was written with, and is ignored by any other;
/// each record has a checksum, and a damaged record ends the file's use there. Later runs append the
/// records they add (one write each, so that concurrent runs do not interleave); a file from another
/// build, or one mostly of replaced records, is written anew through a temporary file and a rename.
/// </remarks>
internal sealed class PreparedRegionCache
{
    /// <summary>Records kept at most: a guest that generates code at run time must not grow the file without bound.</summary>
    public const int MaxRecords = 16384;

    private const uint Magic = 0x5250564A; // "JVPR"
    private const int FormatVersion = 1;

    private readonly string _path;
    private string? _settings;
    private string? _fileSettings;
    private readonly Dictionary<(ulong Entry, int Mode), Record> _records = [];
    private readonly Lock _lock = new();

    /// <summary>One prepared region: where its code is, the bytes it was translated from, and the code.</summary>
    public sealed class Record
    {
        public required ulong Entry { get; init; }
        public required int Mode { get; init; }
        /// <summary>Guest instructions the entry block charges (<see cref="Region.EntryCharge"/>'s source).</summary>
        public required int EntryInsns { get; init; }
        public required int GuestInstructions { get; init; }
        /// <summary>Contiguous guest ranges of the region's instructions, in address order, with their bytes.</summary>
        public required (ulong Start, byte[] Bytes)[] Code { get; init; }
        /// <summary>The prepared code as <see cref="Interpreter.Write"/> wrote it.</summary>
        public required byte[] Image { get; init; }
    }

    /// <summary>Loads <paramref name="path"/> (nothing when it is missing or from another build or setting; the records before a damaged one).</summary>
    /// <param name="path">The file.</param>
    /// <param name="settings">Everything besides the guest bytes that the prepared code depends on (region limits, memory model).</param>
    public PreparedRegionCache(string path, string settings) : this(path) => Bind(settings);

    private PreparedRegionCache(string path)
    {
        _path = path;
        try
        {
            if (File.Exists(path)) Parse(File.ReadAllBytes(path));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _records.Clear();
        }
    }

    /// <summary>
    /// Reads <paramref name="path"/> before the settings are known (on another thread while the VM is
    /// set up: the front end sets the memory model after creating it); <see cref="Bind"/> then keeps
    /// the records only if the file was written with the same settings.
    /// </summary>
    public static PreparedRegionCache Preload(string path) => new(path);

    /// <summary>Fixes the settings: records written under others are dropped (and the file is written anew). Returns this.</summary>
    public PreparedRegionCache Bind(string settings)
    {
        lock (_lock)
        {
            _settings = settings;
            if (_fileSettings != settings)
            {
                _records.Clear();
                _headerValid = false;
                _fileRecords = 0;
            }
            LoadedRecords = _records.Count;
        }
        return this;
    }

    /// <summary>Records the file held when it was loaded.</summary>
    public int LoadedRecords { get; private set; }

    /// <summary>The build the file must come from: the core assembly's module version (new on every compilation).</summary>
    private static readonly Guid s_build = typeof(PreparedRegionCache).Module.ModuleVersionId;

    /// <summary>
    /// The prepared code of the region at <paramref name="entry"/> in <paramref name="mode"/>, when
    /// the guest's executable memory holds the bytes it was translated from; else null.
    /// </summary>
    public Record? Find(VirtualCpu cpu, ulong entry, int mode)
    {
        Record? r;
        lock (_lock)
            if (!_records.TryGetValue((entry, mode), out r)) return null;
        Span<byte> buffer = stackalloc byte[256];
        foreach (var (start, bytes) in r.Code)
        {
            for (int done = 0; done < bytes.Length; done += buffer.Length)
            {
                var chunk = buffer[..Math.Min(buffer.Length, bytes.Length - done)];
                if (cpu.FetchCode(start + (ulong)done, chunk) != chunk.Length || !chunk.SequenceEqual(bytes.AsSpan(done, chunk.Length))) return null;
            }
        }
        return r;
    }

    /// <summary>Keeps a region prepared in this run (replacing an older record at its entry) for <see cref="Save"/>.</summary>
    public void Add(Record record)
    {
        lock (_lock)
        {
            if (_records.Count >= MaxRecords && !_records.ContainsKey((record.Entry, record.Mode))) return;
            _records[(record.Entry, record.Mode)] = record;
            _new.Add(record);
        }
    }

    /// <summary>
    /// Adds this run's new records to the file: appended when the file is this build's, else a new
    /// file. Failing to write (read-only or full disk) only loses the speed-up of the next run, so
    /// errors are swallowed; returns whether it wrote.
    /// </summary>
    public bool Save()
    {
        byte[] bytes;
        bool append;
        lock (_lock)
        {
            if (_new.Count == 0) return false;
            // A file mostly of replaced records (code that keeps changing) is written anew.
            append = _headerValid && _fileRecords + _new.Count <= 2 * _records.Count + 64;
            bytes = append ? Serialize(_new, header: false) : Serialize(_records.Values, header: true);
            _fileRecords = append ? _fileRecords + _new.Count : _records.Count;
            _headerValid = true;
            _new.Clear();
        }
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(_path))!);
            if (append)
            {
                // One write with O_APPEND: concurrent runs' records do not interleave.
                using var f = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite, 1);
                f.Write(bytes);
                return true;
            }
            string tmp = $"{_path}.{Environment.ProcessId}.tmp";
            try
            {
                File.WriteAllBytes(tmp, bytes);
                File.Move(tmp, _path, overwrite: true);
                return true;
            }
            finally
            {
                if (File.Exists(tmp)) File.Delete(tmp);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private readonly List<Record> _new = [];
    private bool _headerValid;
    private int _fileRecords;

    // File: a header (magic, version, build, settings), then records, each as its length, a checksum
    // and the record. Records are appended by later runs; the last one at an entry wins.
    private byte[] Serialize(IEnumerable<Record> records, bool header)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true);
        if (header)
        {
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write(s_build.ToByteArray());
            w.Write(_settings ?? throw new InvalidOperationException("prepared regions saved before Bind"));
        }
        using var one = new MemoryStream();
        using var rw = new BinaryWriter(one);
        foreach (var r in records)
        {
            one.SetLength(0);
            rw.Write(r.Entry);
            rw.Write(r.Mode);
            rw.Write(r.EntryInsns);
            rw.Write(r.GuestInstructions);
            rw.Write(r.Code.Length);
            foreach (var (start, bytes) in r.Code)
            {
                rw.Write(start);
                rw.Write(bytes.Length);
                rw.Write(bytes);
            }
            rw.Write(r.Image.Length);
            rw.Write(r.Image);
            rw.Flush();
            var payload = one.GetBuffer().AsSpan(0, (int)one.Length);
            w.Write(payload.Length);
            w.Write(Checksum(payload));
            w.Write(payload);
        }
        w.Flush();
        return ms.ToArray();
    }

    private void Parse(byte[] file)
    {
        var r = new BinaryReader(new MemoryStream(file, writable: false));
        try
        {
            if (r.ReadUInt32() != Magic || r.ReadInt32() != FormatVersion) return;
            if (new Guid(r.ReadBytes(16)) != s_build) return;
            _fileSettings = r.ReadString();
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or ArgumentException)
        {
            return;
        }
        _headerValid = true;
        long at = r.BaseStream.Position;
        // Records up to the first damaged one (a run that died while appending leaves a torn record last).
        while (file.Length - at >= 12)
        {
            int length = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan((int)at));
            ulong sum = BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan((int)at + 4));
            if (length <= 0 || length > file.Length - at - 12) break;
            var payload = new ReadOnlySpan<byte>(file, (int)at + 12, length);
            if (Checksum(payload) != sum) break;
            var record = ReadRecord(new BinaryReader(new MemoryStream(file, (int)at + 12, length, writable: false)));
            if (record is null) break;
            _records[(record.Entry, record.Mode)] = record;
            _fileRecords++;
            at += 12 + length;
        }
        if (at != file.Length) _headerValid = false; // rewrite rather than append after damage
    }

    private static Record? ReadRecord(BinaryReader r)
    {
        try
        {
            ulong entry = r.ReadUInt64();
            int mode = r.ReadInt32(), entryInsns = r.ReadInt32(), guestInstructions = r.ReadInt32();
            var code = new (ulong, byte[])[Length(r)];
            for (int c = 0; c < code.Length; c++)
            {
                ulong start = r.ReadUInt64();
                code[c] = (start, Bytes(r));
            }
            return new Record { Entry = entry, Mode = mode, EntryInsns = entryInsns, GuestInstructions = guestInstructions, Code = code, Image = Bytes(r) };
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            return null;
        }
    }

    private static int Length(BinaryReader r)
    {
        int n = r.ReadInt32();
        if (n < 0 || n > r.BaseStream.Length - r.BaseStream.Position) throw new InvalidDataException("bad length");
        return n;
    }

    private static byte[] Bytes(BinaryReader r)
    {
        int n = Length(r);
        var b = r.ReadBytes(n);
        if (b.Length != n) throw new EndOfStreamException();
        return b;
    }

    /// <summary>A 64-bit checksum (not cryptographic: it finds damage, and the file is trusted as the code cache is).</summary>
    internal static ulong Checksum(ReadOnlySpan<byte> data)
    {
        const ulong k = 0x9E3779B97F4A7C15;
        ulong h = (ulong)data.Length * k;
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (ulong w in words) h = (System.Numerics.BitOperations.RotateLeft(h ^ w, 29) * k) + 0x632BE59BD9B4E019;
        for (int i = words.Length * 8; i < data.Length; i++) h = (h ^ data[i]) * k;
        h ^= h >> 32;
        return h * k ^ (h >> 29);
    }
}
