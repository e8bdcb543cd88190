// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Text;
using ELFSharp.ELF;
using ELFSharp.ELF.Segments;

namespace Jitvmx.Linux;

/// <summary>A program the front end cannot run, with a one-line reason.</summary>
public sealed class LinuxLoadException(string message) : Exception(message);

/// <summary>What loading an executable produced.</summary>
internal sealed record LoadedImage(ulong Entry, ulong PhdrAddress, int PhdrCount, int PhdrEntrySize, ulong LoadBias, ulong BrkStart);

/// <summary>
/// Loads static ELF64 x86-64 executables (ET_EXEC at their own addresses, static-PIE ET_DYN at
/// <see cref="AddressSpace.PieBase"/>) and builds the initial stack as the Linux kernel does.
/// The ELF header is checked by hand first so that each kind of bad input gets its own message;
/// segments are read with ELFSharp.
/// </summary>
internal static class ElfLoader
{
    private const int PtLoad = 1, PtInterp = 3, PtPhdr = 6;

    public static LoadedImage Load(string path, AddressSpace mem)
    {
        if (Directory.Exists(path)) throw new LinuxLoadException($"{path}: is a directory");
        if (!File.Exists(path)) throw new LinuxLoadException($"{path}: no such file");
        byte[] header = new byte[64];
        int got;
        try
        {
            using var f = File.OpenRead(path);
            got = f.ReadAtLeast(header, header.Length, throwOnEndOfStream: false);
        }
        catch (UnauthorizedAccessException)
        {
            throw new LinuxLoadException($"{path}: permission denied");
        }
        if (got < 4 || header[0] != 0x7F || header[1] != (byte)'E' || header[2] != (byte)'L' || header[3] != (byte)'F')
            throw new LinuxLoadException($"{path}: not an ELF file");
        if (header[4] != 2) throw new LinuxLoadException($"{path}: 32-bit ELF executables are not supported (x86-64 only)");
        if (got < 64 || header[5] != 1) throw new LinuxLoadException($"{path}: malformed or big-endian ELF header");
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(16));
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(18));
        if (machine != 62) throw new LinuxLoadException($"{path}: not an x86-64 ELF (e_machine {machine})");
        if (type is not (2 or 3)) throw new LinuxLoadException($"{path}: not an executable (ELF type {type})");
        ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(54));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(56));

        IELF? parsed;
        try
        {
            if (!ELFReader.TryLoad(path, out parsed)) throw new LinuxLoadException($"{path}: malformed ELF file");
        }
        catch (Exception e) when (e is not LinuxLoadException)
        {
            throw new LinuxLoadException($"{path}: malformed ELF file ({e.Message})");
        }
        using var elf = (ELF<ulong>)parsed;
        var segments = elf.Segments.Cast<Segment<ulong>>().ToList();
        var interp = segments.FirstOrDefault(s => (int)s.Type == PtInterp);
        if (interp is not null)
        {
            string interpreter = Encoding.UTF8.GetString(interp.GetFileContents()).TrimEnd('\0');
            throw new LinuxLoadException($"{path}: dynamically linked programs are not supported yet: PT_INTERP {interpreter}");
        }
        var loads = segments.Where(s => (int)s.Type == PtLoad && s.Size > 0).ToList();
        loads.Sort((a, b) => a.Address.CompareTo(b.Address)); // not OrderBy: its sorter over ulong keys was JIT-compiled on every start
        if (loads.Count == 0) throw new LinuxLoadException($"{path}: no loadable segments");

        ulong lo = AddressSpace.PageDown(loads[0].Address);
        ulong hi = 0;
        foreach (var s in loads) hi = Math.Max(hi, s.Address + s.Size);
        ulong bias = type == 3 ? AddressSpace.PieBase - lo : 0;
        ulong start = lo + bias, end = AddressSpace.PageUp(hi + bias);
        if (hi < lo || !AddressSpace.InRange(start, end) || start < AddressSpace.MinAddress || end > AddressSpace.MmapTop)
            throw new LinuxLoadException($"{path}: segments at 0x{lo:x}-0x{hi:x} lie outside the guest address space");

        // Page permissions: a page shared by two segments gets both segments' permissions.
        var pages = new MemoryPermissions?[(end - start) / AddressSpace.PageSize];
        foreach (var s in loads)
        {
            var perms = MemoryPermissions.None;
            if ((s.Flags & SegmentFlags.Read) != 0) perms |= MemoryPermissions.Read;
            if ((s.Flags & SegmentFlags.Write) != 0) perms |= MemoryPermissions.Write;
            if ((s.Flags & SegmentFlags.Execute) != 0) perms |= MemoryPermissions.Execute | MemoryPermissions.Read;
            for (ulong p = AddressSpace.PageDown(s.Address + bias); p < s.Address + bias + s.Size; p += AddressSpace.PageSize)
            {
                ref var slot = ref pages[(p - start) / AddressSpace.PageSize];
                slot = (slot ?? MemoryPermissions.None) | perms;
            }
        }
        for (int i = 0; i < pages.Length;)
        {
            int j = i + 1;
            while (j < pages.Length && pages[j] == pages[i]) j++;
            if (pages[i] is MemoryPermissions p)
                mem.Map(start + (ulong)i * AddressSpace.PageSize, start + (ulong)j * AddressSpace.PageSize, p);
            i = j;
        }
        foreach (var s in loads)
        {
            byte[] bytes = s.GetFileContents();
            mem.Fill(s.Address + bias, bytes.AsSpan(0, (int)Math.Min((ulong)bytes.Length, s.Size)));
        }

        var phdrSeg = segments.FirstOrDefault(s => (int)s.Type == PtPhdr);
        ulong phdr = phdrSeg is not null ? phdrSeg.Address + bias : 0;
        if (phdrSeg is null)
            foreach (var s in loads)
                if (s.Offset <= (long)phoff && phoff < (ulong)s.Offset + (ulong)s.FileSize)
                {
                    phdr = s.Address + (phoff - (ulong)s.Offset) + bias;
                    break;
                }
        return new LoadedImage(elf.EntryPoint + bias, phdr, phnum, phentsize, type == 3 ? bias : 0, end);
    }

    // Auxiliary vector keys (include/uapi/linux/auxvec.h).
    private const ulong AtNull = 0, AtPhdr = 3, AtPhent = 4, AtPhnum = 5, AtPagesz = 6, AtBase = 7, AtFlags = 8, AtEntry = 9,
        AtUid = 11, AtEuid = 12, AtGid = 13, AtEgid = 14, AtPlatform = 15, AtHwcap = 16, AtClktck = 17, AtSecure = 23,
        AtRandom = 25, AtHwcap2 = 26, AtExecfn = 31;

    /// <summary>
    /// Maps the stack and lays out what the kernel puts there (fs/binfmt_elf.c): at the top the
    /// executable's name, the environment and argument strings, the platform string and 16 random
    /// bytes, then the auxiliary vector, envp, argv and argc, with RSP 16-byte aligned at argc.
    /// Returns the initial RSP.
    /// </summary>
    public static unsafe ulong BuildStack(AddressSpace mem, LoadedImage image, string execFn, IReadOnlyList<string> argv,
        IReadOnlyList<string> envp, CpuidModel cpuid, (uint Uid, uint Euid, uint Gid, uint Egid) ids)
    {
        mem.Map(AddressSpace.StackTop - AddressSpace.StackSize, AddressSpace.StackTop, MemoryPermissions.ReadWrite);
        ulong sp = AddressSpace.StackTop - 8; // the kernel leaves a null word at the very top

        ulong PushBytes(ReadOnlySpan<byte> bytes)
        {
            sp -= (ulong)bytes.Length;
            bytes.CopyTo(new Span<byte>(mem.Host(sp), bytes.Length));
            return sp;
        }
        ulong PushString(string s) => PushBytes(Encoding.UTF8.GetBytes(s + "\0"));

        ulong execFnAddr = PushString(execFn);
        var envAddrs = new ulong[envp.Count];
        var argAddrs = new ulong[argv.Count];
        for (int i = envp.Count - 1; i >= 0; i--) envAddrs[i] = PushString(envp[i]);
        for (int i = argv.Count - 1; i >= 0; i--) argAddrs[i] = PushString(argv[i]);
        sp &= ~15UL;
        ulong platform = PushString("x86_64");
        sp &= ~15UL;
        Span<byte> random = stackalloc byte[16];
        Native.Random(random);
        ulong randomAddr = PushBytes(random);

        var aux = new List<(ulong, ulong)>
        {
            (AtHwcap, cpuid.Leaf1Edx), (AtPagesz, AddressSpace.PageSize), (AtClktck, 100),
            (AtPhdr, image.PhdrAddress), (AtPhent, (ulong)image.PhdrEntrySize), (AtPhnum, (ulong)image.PhdrCount),
            (AtBase, 0), (AtFlags, 0), (AtEntry, image.Entry),
            (AtUid, ids.Uid), (AtEuid, ids.Euid), (AtGid, ids.Gid), (AtEgid, ids.Egid), (AtSecure, 0),
            (AtRandom, randomAddr), (AtHwcap2, 0), (AtExecfn, execFnAddr), (AtPlatform, platform), (AtNull, 0),
        };
        int words = 1 + argv.Count + 1 + envp.Count + 1 + aux.Count * 2;
        sp -= (ulong)words * 8;
        sp &= ~15UL;
        var w = (ulong*)mem.Host(sp);
        int k = 0;
        w[k++] = (ulong)argv.Count;
        foreach (var a in argAddrs) w[k++] = a;
        w[k++] = 0;
        foreach (var e in envAddrs) w[k++] = e;
        w[k++] = 0;
        foreach (var (key, value) in aux) { w[k++] = key; w[k++] = value; }
        return sp;
    }
}
