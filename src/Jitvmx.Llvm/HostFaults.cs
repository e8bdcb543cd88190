// SPDX-License-Identifier: MIT
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Jitvmx.Llvm.Native;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm;

/// <summary>
/// Guest reads that take the host's page protection as their check. In a VM with
/// <see cref="VirtualMachine.HostReadFaults"/>, LLVM code reads guest memory straight from the flat
/// window with one host load each, which lists itself and its software slow path in the object
/// (<see cref="HostReadMap"/>).
/// <para>
/// This class keeps those pairs (faulting instruction → slow path) for every linked region in a
/// lock-free hash table, and installs a SIGSEGV/SIGBUS handler, itself generated with LLVM so that it
/// runs no managed code, which redirects a fault at a listed instruction to its slow path and
/// passes every other fault to the handler installed before it (the .NET runtime's).
/// </para>
/// </summary>
internal static unsafe partial class HostFaults
{
    private const int Sigbus = 7, Sigsegv = 11;
    private const ulong SaSiginfo = 4, SaOnstack = 0x0800_0000, SaRestart = 0x1000_0000;
    // glibc's struct sigaction on x86-64: handler, sa_mask (128 bytes), sa_flags (int), sa_restorer.
    private const int SigactionSize = 152, SaFlagsOffset = 136;
    // ucontext_t: uc_flags, uc_link, uc_stack (24 bytes), then mcontext's gregs, REG_RIP = 16.
    private const int UcontextRip = 40 + 16 * 8;
    private const ulong HashMultiplier = 0x9E37_79B9_7F4A_7C15;

    private static readonly Lock s_lock = new();
    // The current table, read by the handler: [0] = capacity − 1, then (faulting address, handler address) pairs; address 0 is an empty slot.
    private static ulong** s_cell;
    private static int s_used;
    // Per signal: the handler installed before ours and its flags, which ours calls for faults not its own.
    private static nint* s_previous;
    private static bool s_installed;

    /// <summary>
    /// Installs the handler, once per process. Must precede linking code with faulting reads.
    /// </summary>
    public static void EnsureInstalled()
    {
        lock (s_lock)
        {
            if (s_installed) return;
            s_cell = (ulong**)NativeMemory.AllocZeroed((nuint)sizeof(nint));
            *s_cell = NewTable(1024);
            s_previous = (nint*)NativeMemory.AllocZeroed(4, (nuint)sizeof(nint)); // SIGSEGV handler, flags; SIGBUS handler, flags
            nint handler = BuildHandler();
            Install(Sigsegv, handler, s_previous);
            Install(Sigbus, handler, s_previous + 2);
            s_installed = true;
        }
    }

    private static void Install(int sig, nint handler, nint* previous)
    {
        byte* act = stackalloc byte[SigactionSize];
        byte* old = stackalloc byte[SigactionSize];
        new Span<byte>(act, SigactionSize).Clear();
        *(nint*)act = handler;
        // On the alternate stack where the runtime set one up (it relies on it for stack overflows, which reach it through ours).
        *(int*)(act + SaFlagsOffset) = (int)(SaSiginfo | SaOnstack | SaRestart);
        if (Sigaction(sig, act, old) != 0)
            throw new InvalidOperationException($"sigaction({sig}) failed: errno {Marshal.GetLastPInvokeError()}");
        previous[0] = *(nint*)old;
        previous[1] = (nint)(uint)*(int*)(old + SaFlagsOffset);
    }

    [LibraryImport("libc", EntryPoint = "sigaction", SetLastError = true)]
    private static partial int Sigaction(int sig, byte* act, byte* oldact);

    private static ulong* NewTable(int capacity)
    {
        var t = (ulong*)NativeMemory.AllocZeroed((nuint)(1 + 2 * capacity), sizeof(ulong));
        t[0] = (ulong)(capacity - 1);
        return t;
    }

    private static ulong Slot(ulong address, ulong mask) => ((address * HashMultiplier) >> 32) & mask;

    /// <summary>
    /// Lists <paramref name="function"/>'s faulting reads (offsets from its entry). Call before the
    /// code can run. Returns the faulting addresses, for <see cref="Unregister"/>.
    /// </summary>
    public static ulong[] Register(nint function, IReadOnlyList<FaultMapEntry> entries)
    {
        var keys = new ulong[entries.Count];
        if (entries.Count == 0) return keys;
        EnsureInstalled();
        lock (s_lock)
        {
            ulong* t = *s_cell;
            if ((ulong)(s_used + entries.Count) * 2 > t[0] + 1)
            {
                // A bigger table, published whole; the old one is left to handlers that may still read it.
                int capacity = (int)(t[0] + 1);
                while ((ulong)(s_used + entries.Count) * 2 > (ulong)capacity) capacity *= 2;
                ulong* grown = NewTable(capacity);
                s_used = 0;
                for (ulong i = 0; i <= t[0]; i++)
                    if (t[1 + 2 * i] != 0 && t[2 + 2 * i] != 0) Put(grown, t[1 + 2 * i], t[2 + 2 * i]);
                Volatile.Write(ref *(nint*)s_cell, (nint)grown);
                t = grown;
            }
            for (int k = 0; k < entries.Count; k++)
            {
                keys[k] = (ulong)function + entries[k].FaultOffset;
                Put(t, keys[k], (ulong)function + entries[k].HandlerOffset);
            }
        }
        return keys;
    }

    private static void Put(ulong* t, ulong key, ulong handler)
    {
        ulong mask = t[0];
        for (ulong i = Slot(key, mask); ; i = (i + 1) & mask)
        {
            ulong* e = t + 1 + 2 * i;
            if (e[0] == key) { Volatile.Write(ref e[1], handler); return; }
            if (e[0] != 0) continue;
            e[1] = handler;
            Volatile.Write(ref e[0], key); // the handler is in place before a reader can match the key
            s_used++;
            return;
        }
    }

    /// <summary>Forgets faulting reads of code that is being freed.</summary>
    public static void Unregister(ulong[] keys)
    {
        if (keys.Length == 0) return;
        lock (s_lock)
        {
            ulong* t = *s_cell;
            foreach (ulong key in keys)
                for (ulong i = Slot(key, t[0]); t[1 + 2 * i] != 0; i = (i + 1) & t[0])
                    if (t[1 + 2 * i] == key) { Volatile.Write(ref t[2 + 2 * i], 0UL); break; }
        }
    }

    /// <summary>Where a fault at <paramref name="address"/> resumes, or 0 (what the handler computes).</summary>
    internal static ulong Lookup(ulong address)
    {
        if (s_cell is null) return 0;
        ulong* t = (ulong*)Volatile.Read(ref *(nint*)s_cell);
        for (ulong i = Slot(address, t[0]); t[1 + 2 * i] != 0; i = (i + 1) & t[0])
            if (t[1 + 2 * i] == address) return t[2 + 2 * i];
        return 0;
    }

    /// <summary>
    /// Generates the handler: void (int sig, siginfo_t*, ucontext_t*). It looks the faulting RIP up in
    /// the table; a hit with a live entry moves RIP to the slow path and returns. Anything else goes to
    /// the previous handler: called as it asked (with or without SA_SIGINFO), or, when that was the
    /// default action or "ignore", the default is put back so that the fault, repeated, takes it.
    /// </summary>
    private static nint BuildHandler()
    {
        nint ctx = LLVMContextCreate();
        try
        {
            nint module = LLVMModuleCreateWithNameInContext("jitvmx_host_faults", ctx);
            var jit = LlvmJit.Instance;
            LLVMSetTarget(module, jit.Triple);
            LLVMSetDataLayout(module, jit.DataLayout);
            nint i8 = LLVMIntTypeInContext(ctx, 8), i32 = LLVMIntTypeInContext(ctx, 32), i64 = LLVMIntTypeInContext(ctx, 64);
            nint ptr = LLVMPointerTypeInContext(ctx, 0), voidT = LLVMVoidTypeInContext(ctx);
            nint* p3 = stackalloc nint[3] { i32, ptr, ptr };
            nint handlerType = LLVMFunctionType(voidT, p3, 3, 0);
            nint handlerType1 = LLVMFunctionType(voidT, p3, 1, 0);
            nint* p2 = stackalloc nint[2] { i32, ptr };
            nint signalType = LLVMFunctionType(ptr, p2, 2, 0);
            const string name = "jitvmx_host_fault_handler";
            nint fn = LLVMAddFunction(module, name, handlerType);
            nint b = LLVMCreateBuilderInContext(ctx);
            nint C(ulong v) => LLVMConstInt(i64, v, 0);
            nint At(nint basePtr, nint offset) { nint o = offset; return LLVMBuildGEP2(b, i8, basePtr, &o, 1, ""); }
            // The table cell, the previous handlers and libc's signal() are symbols defined at link time, not
            // constants: the module is then the same in every process, and the code cache supplies its object
            // (code generation was 7 ms of the first hot region's load).
            nint cellSymbol = LLVMAddGlobal(module, ptr, "jitvmx_fault_cell");
            nint previousSymbol = LLVMAddGlobal(module, LLVMArrayType2(i64, 4), "jitvmx_fault_previous");
            nint Volatile(nint type, nint p) { nint v = LLVMBuildLoad2(b, type, p, ""); LLVMSetVolatile(v, 1); return v; }

            nint entry = LLVMAppendBasicBlockInContext(ctx, fn, "entry"), probe = LLVMAppendBasicBlockInContext(ctx, fn, "probe"),
                miss = LLVMAppendBasicBlockInContext(ctx, fn, "miss"), next = LLVMAppendBasicBlockInContext(ctx, fn, "next"),
                found = LLVMAppendBasicBlockInContext(ctx, fn, "found"), redirect = LLVMAppendBasicBlockInContext(ctx, fn, "redirect"),
                chain = LLVMAppendBasicBlockInContext(ctx, fn, "chain"), info = LLVMAppendBasicBlockInContext(ctx, fn, "siginfo"),
                plain = LLVMAppendBasicBlockInContext(ctx, fn, "plain"), call1 = LLVMAppendBasicBlockInContext(ctx, fn, "call"),
                dfl = LLVMAppendBasicBlockInContext(ctx, fn, "default");
            nint sig = LLVMGetParam(fn, 0), siginfo = LLVMGetParam(fn, 1), uc = LLVMGetParam(fn, 2);

            LLVMPositionBuilderAtEnd(b, entry);
            nint ripSlot = At(uc, C(UcontextRip));
            nint rip = LLVMBuildLoad2(b, i64, ripSlot, "rip");
            nint table = Volatile(ptr, cellSymbol);
            nint mask = LLVMBuildLoad2(b, i64, table, "mask");
            nint first = LLVMBuildAnd(b, LLVMBuildLShr(b, LLVMBuildMul(b, rip, C(HashMultiplier), ""), C(32), ""), mask, "");
            LLVMBuildBr(b, probe);

            LLVMPositionBuilderAtEnd(b, probe);
            nint index = LLVMBuildPhi(b, i64, "i");
            nint slot = At(table, LLVMBuildAdd(b, LLVMBuildMul(b, index, C(16), ""), C(8), ""));
            nint key = Volatile(i64, slot);
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LlvmIntPredicate.Eq, key, rip, ""), found, miss);

            LLVMPositionBuilderAtEnd(b, miss);
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LlvmIntPredicate.Eq, key, C(0), ""), chain, next);

            LLVMPositionBuilderAtEnd(b, next);
            nint following = LLVMBuildAnd(b, LLVMBuildAdd(b, index, C(1), ""), mask, "");
            LLVMBuildBr(b, probe);
            nint* vals = stackalloc nint[2] { first, following };
            nint* from = stackalloc nint[2] { entry, next };
            LLVMAddIncoming(index, vals, from, 2);

            LLVMPositionBuilderAtEnd(b, found);
            nint target = Volatile(i64, At(slot, C(8)));
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LlvmIntPredicate.Ne, target, C(0), ""), redirect, chain);

            LLVMPositionBuilderAtEnd(b, redirect);
            LLVMBuildStore(b, target, ripSlot);
            LLVMBuildRetVoid(b);

            // The previous handler of this signal: s_previous[0..1] for SIGSEGV, [2..3] for SIGBUS.
            LLVMPositionBuilderAtEnd(b, chain);
            nint isBus = LLVMBuildICmp(b, LlvmIntPredicate.Eq, sig, LLVMConstInt(i32, Sigbus, 0), "");
            nint prev = LLVMBuildSelect(b, isBus, At(previousSymbol, C(16)), previousSymbol, "");
            nint old = Volatile(ptr, prev);
            nint flags = Volatile(i64, At(prev, C(8)));
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LlvmIntPredicate.Ne, LLVMBuildAnd(b, flags, C(SaSiginfo), ""), C(0), ""), info, plain);

            LLVMPositionBuilderAtEnd(b, info);
            nint* args = stackalloc nint[3] { sig, siginfo, uc };
            LLVMBuildCall2(b, handlerType, old, args, 3, "");
            LLVMBuildRetVoid(b);

            LLVMPositionBuilderAtEnd(b, plain);
            // SIG_DFL is 0 and SIG_IGN 1: ignoring a fault would repeat it forever.
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LlvmIntPredicate.Ule, LLVMBuildPtrToInt(b, old, i64, ""), C(1), ""), dfl, call1);

            LLVMPositionBuilderAtEnd(b, call1);
            LLVMBuildCall2(b, handlerType1, old, args, 1, "");
            LLVMBuildRetVoid(b);

            LLVMPositionBuilderAtEnd(b, dfl);
            nint signalFn = LLVMAddFunction(module, "jitvmx_fault_signal", signalType);
            nint* sargs = stackalloc nint[2] { sig, LLVMConstNull(ptr) };
            LLVMBuildCall2(b, signalType, signalFn, sargs, 2, "");
            LLVMBuildRetVoid(b);
            LLVMDisposeBuilder(b);

            jit.DefineAbsolute([("jitvmx_fault_cell", (nint)s_cell), ("jitvmx_fault_previous", (nint)s_previous)], callable: false);
            jit.DefineAbsolute([("jitvmx_fault_signal", NativeLibrary.GetExport(NativeLibrary.Load("libc.so.6"), "signal"))], callable: true);
            string? cacheKey = CodeCache.Directory is null ? null : CodeCache.Key(LlvmBackend.Print(module), name, "host fault handler O1");
            if (cacheKey is not null && CodeCache.TryLoad(cacheKey, name) is { } stored)
            {
                LLVMDisposeModule(module);
                jit.AddObject(stored, name);
                return jit.Lookup(name);
            }
            LlvmBackend.Optimize(module, LlvmOptLevel.O1);
            nint obj = LlvmBackend.EmitObject(module, 2);
            LLVMDisposeModule(module);
            if (cacheKey is not null) CodeCache.Store(cacheKey, name, new ReadOnlySpan<byte>(LLVMGetBufferStart(obj), (int)LLVMGetBufferSize(obj)));
            jit.AddObject(obj);
            return jit.Lookup(name);
        }
        finally
        {
            LLVMContextDispose(ctx);
        }
    }
}

/// <summary>One faulting read of a function: offsets from the function's entry of the read and of its slow path.</summary>
internal readonly record struct FaultMapEntry(uint FaultOffset, uint HandlerOffset);

/// <summary>
/// Reads the list of host-fault reads out of a relocatable ELF object: section <see cref="Section"/>, pairs of
/// 64-bit addresses (the load, its slow path) that the assembler leaves as relocations against the code.
/// </summary>
internal static class HostReadMap
{
    /// <summary>The section the reads' inline assembly appends to.</summary>
    public const string Section = ".jitvmx_reads";

    private const uint ShtSymtab = 2, ShtRela = 4, RX86_64_64 = 1;
    private const int SttFunc = 2;

    /// <summary>
    /// The reads of function <paramref name="symbol"/>, as offsets from its entry; false with the reason when
    /// the object is not laid out as expected (a read outside the function's section, or a pair not relocated).
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> obj, string symbol, out List<FaultMapEntry> entries, out string? reason)
    {
        entries = [];
        reason = null;
        try
        {
            if (obj.Length < 64 || BinaryPrimitives.ReadUInt32LittleEndian(obj) != 0x464C457F || obj[4] != 2 || obj[5] != 1)
                return Fail("not a 64-bit little-endian ELF object", out reason);
            ulong shoff = U64(obj, 0x28);
            int shentsize = U16(obj, 0x3A), shnum = U16(obj, 0x3C), shstrndx = U16(obj, 0x3E);
            var sections = new Sec[shnum];
            for (int i = 0; i < shnum; i++)
            {
                int o = checked((int)shoff + i * shentsize);
                sections[i] = new Sec(U32(obj, o), U32(obj, o + 4), (int)U64(obj, o + 24), (int)U64(obj, o + 32), U32(obj, o + 40), U32(obj, o + 44));
            }
            int reads = -1, symtab = -1;
            for (int i = 0; i < shnum; i++)
            {
                if (Name(obj, sections[shstrndx].Offset + (int)sections[i].Name) == Section) reads = i;
                if (sections[i].Type == ShtSymtab) symtab = i;
            }
            if (reads < 0) return true;
            if (symtab < 0) return Fail("no symbol table", out reason);
            var st = sections[symtab];
            int strtab = sections[(int)st.Link].Offset;
            // The function (not the file symbol that carries the module's name): its section and offset.
            int ourSection = -1;
            ulong ourValue = 0;
            for (int k = 0; k < st.Size / 24; k++)
            {
                int o = st.Offset + k * 24;
                if ((obj[o + 4] & 0xF) == SttFunc && Name(obj, strtab + (int)U32(obj, o)) == symbol) { ourSection = U16(obj, o + 6); ourValue = U64(obj, o + 8); break; }
            }
            if (ourSection < 0) return Fail($"no function {symbol}", out reason);
            // Each address: a relocation against a symbol of the function's section, plus its addend.
            var targets = new Dictionary<ulong, ulong>();
            for (int i = 0; i < shnum; i++)
            {
                var s = sections[i];
                if (s.Type != ShtRela || s.Info != reads) continue;
                for (int k = 0; k < s.Size / 24; k++)
                {
                    int o = s.Offset + k * 24;
                    ulong info = U64(obj, o + 8);
                    int sym = st.Offset + (int)(info >> 32) * 24;
                    if ((uint)info != RX86_64_64 || U16(obj, sym + 6) != ourSection)
                        return Fail("a read relocated against another section", out reason);
                    targets[U64(obj, o)] = U64(obj, sym + 8) + U64(obj, o + 16);
                }
            }
            int size = sections[reads].Size;
            if (size % 16 != 0) return Fail($"{Section} of {size} bytes", out reason);
            for (ulong at = 0; at < (ulong)size; at += 16)
            {
                if (!targets.TryGetValue(at, out ulong fault) || !targets.TryGetValue(at + 8, out ulong handler))
                    return Fail("a read without its relocations", out reason);
                entries.Add(new FaultMapEntry(checked((uint)(fault - ourValue)), checked((uint)(handler - ourValue))));
            }
            return true;
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or OverflowException or IndexOutOfRangeException)
        {
            return Fail("truncated object", out reason);
        }
    }

    private readonly record struct Sec(uint Name, uint Type, int Offset, int Size, uint Link, uint Info);

    private static bool Fail(string why, out string? reason) { reason = why; return false; }
    private static ushort U16(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(b[o..]);
    private static uint U32(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b[o..]);
    private static ulong U64(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b[o..]);

    private static string Name(ReadOnlySpan<byte> b, int o)
    {
        int end = b[o..].IndexOf((byte)0);
        return Encoding.ASCII.GetString(b.Slice(o, end));
    }
}
