// SPDX-License-Identifier: MIT
using System.Reflection;
using System.Runtime.InteropServices;

namespace Jitvmx.Llvm.Native;

/// <summary>libLLVM 19 could not be loaded; Jitvmx runs IL-only without it.</summary>
public sealed class LlvmUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Integer comparison predicates (LLVMIntPredicate).</summary>
internal enum LlvmIntPredicate
{
    Eq = 32, Ne, Ugt, Uge, Ult, Ule, Sgt, Sge, Slt, Sle,
}

/// <summary>LLVMRealPredicate: ordered comparisons are false when either operand is NaN.</summary>
internal enum LlvmRealPredicate
{
    Oeq = 1, Ogt, Oge, Olt, Ole, One,
}

/// <summary>A symbol name with its absolute address and flags (LLVMOrcCSymbolMapPair: name, address, generic flags, target flags).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LlvmSymbolMapPair
{
    public nint Name;      // LLVMOrcSymbolStringPoolEntryRef, retained for the callee
    public ulong Address;  // LLVMOrcExecutorAddress
    public byte GenericFlags;
    public byte TargetFlags;

    public const byte Exported = 1, Callable = 4;
}

/// <summary>
/// The part of the LLVM-C API (LLVM 19) that Jitvmx uses, bound by source-generated P/Invoke.
/// Handles are <c>nint</c>s named after their C types. Ownership rules are stated at each call:
/// "owns" means the caller must dispose the result; "takes" means LLVM takes ownership of an
/// argument (the caller must not dispose it afterwards).
/// </summary>
internal static unsafe partial class LlvmApi
{
    private const string Lib = "LLVM";
    /// <summary>The exact library: other LLVM versions may be installed beside it, with other ABIs.</summary>
    public const string LibraryFile = "libLLVM.so.19.1";
    private static readonly string[] s_candidates = [LibraryFile, "/usr/lib/x86_64-linux-gnu/" + LibraryFile];
    private static readonly Lazy<nint> s_handle = new(Load);

    static LlvmApi() => NativeLibrary.SetDllImportResolver(typeof(LlvmApi).Assembly, Resolve);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        name == Lib ? Handle : 0;

    private static nint Load()
    {
        foreach (var c in s_candidates)
            if (NativeLibrary.TryLoad(c, out nint h)) return h;
        return 0;
    }

    /// <summary>Whether libLLVM 19 can be loaded.</summary>
    public static bool IsAvailable => s_handle.Value != 0;

    /// <summary>Whether the library file is where Debian's libllvm19 puts it (a check without loading it).</summary>
    public static bool IsInstalled => File.Exists(s_candidates[1]);

    /// <summary>The library handle; throws <see cref="LlvmUnavailableException"/> when it is missing.</summary>
    public static nint Handle => s_handle.Value != 0 ? s_handle.Value : throw Unavailable();

    /// <summary>The one error reported when the library is missing.</summary>
    public static LlvmUnavailableException Unavailable() =>
        new($"{LibraryFile} was not found: install the Debian package libllvm19 (apt-get install libllvm19) to use the LLVM tier");

    /// <summary>Copies a C string that the caller does not own.</summary>
    public static string Str(nint s) => s == 0 ? "" : Marshal.PtrToStringUTF8(s) ?? "";

    /// <summary>Copies and frees a message string owned by the caller (LLVMDisposeMessage).</summary>
    public static string TakeMessage(nint s)
    {
        string r = Str(s);
        if (s != 0) LLVMDisposeMessage(s);
        return r;
    }

    /// <summary>Throws when <paramref name="error"/> (an LLVMErrorRef) is set; consumes the error.</summary>
    public static void Check(nint error, string what)
    {
        if (error == 0) return;
        nint msg = LLVMGetErrorMessage(error); // consumes the error, returns a string we own
        string text = Str(msg);
        LLVMDisposeErrorMessage(msg);
        throw new InvalidOperationException($"LLVM: {what}: {text}");
    }

    // ---------------- options ----------------
    /// <summary>Sets LLVM's global command-line options (argv[0] is a program name). Once per process, before any target machine exists.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial void LLVMParseCommandLineOptions(int argc, string[] argv, string? overview);

    // ---------------- targets ----------------
    [LibraryImport(Lib)] public static partial void LLVMInitializeX86TargetInfo();
    [LibraryImport(Lib)] public static partial void LLVMInitializeX86Target();
    [LibraryImport(Lib)] public static partial void LLVMInitializeX86TargetMC();
    [LibraryImport(Lib)] public static partial void LLVMInitializeX86AsmPrinter();
    [LibraryImport(Lib)] public static partial void LLVMInitializeX86AsmParser();
    /// <summary>Owns: the result (LLVMDisposeMessage).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMGetDefaultTargetTriple();
    /// <summary>Owns: the result (LLVMDisposeMessage).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMGetHostCPUName();
    /// <summary>The loaded LLVM's version (major, minor, patch).</summary>
    [LibraryImport(Lib)] public static partial void LLVMGetVersion(out uint major, out uint minor, out uint patch);
    /// <summary>Owns: the result (LLVMDisposeMessage).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMGetHostCPUFeatures();
    /// <summary>Target is a static object (not owned); owns *error on failure (returns non-zero).</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int LLVMGetTargetFromTriple(string triple, out nint target, out nint error);
    /// <summary>Owns: the target machine (LLVMDisposeTargetMachine). Level 0–3, reloc 2 = PIC, code model 0 = default.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMCreateTargetMachine(nint target, string triple, string cpu, string features, int level, int reloc, int codeModel);
    [LibraryImport(Lib)] public static partial void LLVMDisposeTargetMachine(nint tm);
    /// <summary>Codegen of <paramref name="module"/> (not consumed) to an object (fileType 1); owns *buffer on success, *error on failure (returns non-zero).</summary>
    [LibraryImport(Lib)] public static partial int LLVMTargetMachineEmitToMemoryBuffer(nint tm, nint module, int fileType, out nint error, out nint buffer);

    // ---------------- memory buffers ----------------
    [LibraryImport(Lib)] public static partial nuint LLVMGetBufferSize(nint buffer);
    [LibraryImport(Lib)] public static partial byte* LLVMGetBufferStart(nint buffer);
    [LibraryImport(Lib)] public static partial void LLVMDisposeMemoryBuffer(nint buffer);
    /// <summary>Owns: a buffer holding a copy of the bytes.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMCreateMemoryBufferWithMemoryRangeCopy(byte* data, nuint length, string name);

    // ---------------- messages and errors ----------------
    [LibraryImport(Lib)] public static partial void LLVMDisposeMessage(nint message);
    /// <summary>Consumes the error; owns the returned string (LLVMDisposeErrorMessage).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMGetErrorMessage(nint error);
    [LibraryImport(Lib)] public static partial void LLVMDisposeErrorMessage(nint message);

    // ---------------- modules, types, functions ----------------
    /// <summary>Owns: the context (LLVMContextDispose), unless it belongs to a thread-safe context.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMContextCreate();
    [LibraryImport(Lib)] public static partial void LLVMContextDispose(nint context);
    /// <summary>Owns: the module (LLVMDisposeModule) until it is handed to a thread-safe module.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMModuleCreateWithNameInContext(string name, nint context);
    [LibraryImport(Lib)] public static partial void LLVMDisposeModule(nint module);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial void LLVMSetDataLayout(nint module, string layout);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial void LLVMSetTarget(nint module, string triple);
    /// <summary>Owns: the text (LLVMDisposeMessage).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMPrintModuleToString(nint module);
    /// <summary>Action 2 = return status; owns *message (LLVMDisposeMessage). Non-zero when invalid.</summary>
    [LibraryImport(Lib)] public static partial int LLVMVerifyModule(nint module, int action, out nint message);

    [LibraryImport(Lib)] public static partial nint LLVMIntTypeInContext(nint context, uint bits);
    [LibraryImport(Lib)] public static partial nint LLVMVoidTypeInContext(nint context);
    [LibraryImport(Lib)] public static partial nint LLVMPointerTypeInContext(nint context, uint addressSpace);
    [LibraryImport(Lib)] public static partial nint LLVMVectorType(nint element, uint count);
    [LibraryImport(Lib)] public static partial nint LLVMTypeOf(nint value);
    [LibraryImport(Lib)] public static partial nint LLVMFloatTypeInContext(nint context);
    [LibraryImport(Lib)] public static partial nint LLVMDoubleTypeInContext(nint context);
    [LibraryImport(Lib)] public static partial nint LLVMArrayType2(nint element, ulong count);
    [LibraryImport(Lib)] public static partial nint LLVMFunctionType(nint ret, nint* parameters, uint count, int isVarArg);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMAddFunction(nint module, string name, nint functionType);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMGetNamedFunction(nint module, string name);
    /// <summary>A global variable owned by <paramref name="module"/>; without an initializer it is an external declaration, resolved at link time.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMAddGlobal(nint module, nint type, string name);
    /// <summary>The global named <paramref name="name"/> in <paramref name="module"/> (owned by it), or 0.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMGetNamedGlobal(nint module, string name);
    /// <summary>The first use of a value (owned by the value), 0 when nothing uses it.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMGetFirstUse(nint value);
    /// <summary>Marks a global as never written, so loads of it can be hoisted and merged.</summary>
    [LibraryImport(Lib)] public static partial void LLVMSetGlobalConstant(nint global, int isConstant);
    [LibraryImport(Lib)] public static partial nint LLVMGetParam(nint function, uint index);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMAppendBasicBlockInContext(nint context, nint function, string name);
    /// <summary>Intrinsic id by name ("llvm.ctpop"), 0 if none.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial uint LLVMLookupIntrinsicID(string name, nuint length);

    // Attributes (strictfp). Index -1 is the function itself; attributes are owned by the context.
    public const uint LLVMAttributeFunctionIndex = uint.MaxValue;
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial uint LLVMGetEnumAttributeKindForName(string name, nuint length);
    [LibraryImport(Lib)] public static partial nint LLVMCreateEnumAttribute(nint context, uint kindId, ulong value);
    [LibraryImport(Lib)] public static partial void LLVMAddAttributeAtIndex(nint function, uint index, nint attribute);
    [LibraryImport(Lib)] public static partial void LLVMAddCallSiteAttribute(nint call, uint index, nint attribute);
    /// <summary>Declares (once) the overload of intrinsic <paramref name="id"/> for the given types in the module.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMGetIntrinsicDeclaration(nint module, uint id, nint* types, nuint count);
    [LibraryImport(Lib)] public static partial nint LLVMIntrinsicGetType(nint context, uint id, nint* types, nuint count);

    // ---------------- inline assembly ----------------
    /// <summary>An inline-assembly callee (owned by the context); <paramref name="dialect"/> 0 is AT&amp;T.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint LLVMGetInlineAsm(nint type, string asm, nuint asmSize, string constraints, nuint constraintsSize,
        int hasSideEffects, int isAlignStack, int dialect, int canThrow);

    // ---------------- metadata ----------------
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial uint LLVMGetMDKindIDInContext(nint context, string name, uint length);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMMDStringInContext2(nint context, string str, nuint length);
    [LibraryImport(Lib)] public static partial nint LLVMMDNodeInContext2(nint context, nint* metadata, nuint count);
    [LibraryImport(Lib)] public static partial nint LLVMValueAsMetadata(nint value);
    [LibraryImport(Lib)] public static partial nint LLVMMetadataAsValue(nint context, nint metadata);
    /// <summary>Attaches metadata (as a value) of kind <paramref name="kind"/> to an instruction.</summary>
    [LibraryImport(Lib)] public static partial void LLVMSetMetadata(nint instruction, uint kind, nint value);

    // ---------------- constants ----------------
    [LibraryImport(Lib)] public static partial nint LLVMConstInt(nint type, ulong value, int signExtend);
    [LibraryImport(Lib)] public static partial nint LLVMConstNull(nint type);
    [LibraryImport(Lib)] public static partial nint LLVMConstIntToPtr(nint value, nint type);
    [LibraryImport(Lib)] public static partial nint LLVMConstReal(nint type, double value);
    /// <summary>A constant vector of <paramref name="count"/> scalar constants.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMConstVector(nint* values, uint count);
    [LibraryImport(Lib)] public static partial nint LLVMGetPoison(nint type);

    // ---------------- instruction builder ----------------
    /// <summary>Owns: the builder (LLVMDisposeBuilder).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMCreateBuilderInContext(nint context);
    [LibraryImport(Lib)] public static partial void LLVMDisposeBuilder(nint builder);
    [LibraryImport(Lib)] public static partial void LLVMPositionBuilderAtEnd(nint builder, nint block);
    [LibraryImport(Lib)] public static partial nint LLVMGetInsertBlock(nint builder);

    [LibraryImport(Lib)] public static partial nint LLVMBuildRet(nint b, nint value);
    [LibraryImport(Lib)] public static partial nint LLVMBuildRetVoid(nint b);
    [LibraryImport(Lib)] public static partial nint LLVMBuildBr(nint b, nint dest);
    [LibraryImport(Lib)] public static partial nint LLVMBuildCondBr(nint b, nint cond, nint then, nint @else);
    /// <summary>A switch on an integer; cases are added with <see cref="LLVMAddCase"/>.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMBuildSwitch(nint b, nint value, nint elseBlock, uint caseCount);
    [LibraryImport(Lib)] public static partial void LLVMAddCase(nint @switch, nint onValue, nint dest);
    /// <summary>Kind 2 is musttail: the call must be followed by ret of its result and reuses the caller's frame.</summary>
    [LibraryImport(Lib)] public static partial void LLVMSetTailCallKind(nint call, int kind);
    [LibraryImport(Lib)] public static partial nint LLVMBuildUnreachable(nint b);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildAdd(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildSub(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildMul(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildUDiv(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildSDiv(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildURem(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildSRem(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildShl(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildLShr(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildAShr(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildAnd(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildOr(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildXor(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildNeg(nint b, nint v, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildFAdd(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildFSub(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildFMul(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildFDiv(nint b, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildFCmp(nint b, LlvmRealPredicate op, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildNot(nint b, nint v, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildICmp(nint b, LlvmIntPredicate op, nint l, nint r, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildSelect(nint b, nint cond, nint then, nint @else, string name);
    /// <summary>Lanes of <paramref name="v1"/>:<paramref name="v2"/> picked by a constant vector of i32 indices.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildShuffleVector(nint b, nint v1, nint v2, nint mask, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildInsertElement(nint b, nint vector, nint element, nint index, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildExtractElement(nint b, nint vector, nint index, string name);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildTrunc(nint b, nint v, nint type, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildZExt(nint b, nint v, nint type, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildSExt(nint b, nint v, nint type, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildBitCast(nint b, nint v, nint type, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildIntToPtr(nint b, nint v, nint type, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildPtrToInt(nint b, nint v, nint type, string name);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildAlloca(nint b, nint type, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildLoad2(nint b, nint type, nint pointer, string name);
    [LibraryImport(Lib)] public static partial nint LLVMBuildStore(nint b, nint value, nint pointer);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildGEP2(nint b, nint type, nint pointer, nint* indices, uint count, string name);
    [LibraryImport(Lib)] public static partial void LLVMSetVolatile(nint memoryAccess, int isVolatile);
    [LibraryImport(Lib)] public static partial void LLVMSetAlignment(nint value, uint bytes);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildPhi(nint b, nint type, string name);
    [LibraryImport(Lib)] public static partial void LLVMAddIncoming(nint phi, nint* values, nint* blocks, uint count);
    /// <summary>callbr: calls <paramref name="function"/> (inline assembly) and continues at <paramref name="defaultDest"/>, or at one of the indirect destinations the assembly may jump to.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint LLVMBuildCallBr(nint b, nint functionType, nint function, nint defaultDest, nint* indirectDests, uint indirectCount,
        nint* args, uint argCount, nint* bundles, uint bundleCount, string name);
    /// <summary>Calling conventions: 0 C, 14 preserve_most, 15 preserve_all (the callee keeps every register, vectors too, but the return).</summary>
    [LibraryImport(Lib)] public static partial void LLVMSetFunctionCallConv(nint function, uint cc);
    [LibraryImport(Lib)] public static partial void LLVMSetInstructionCallConv(nint call, uint cc);
    /// <summary>Linkage 8 is internal (not visible outside the module).</summary>
    [LibraryImport(Lib)] public static partial void LLVMSetLinkage(nint global, int linkage);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMBuildCall2(nint b, nint functionType, nint function, nint* args, uint count, string name);

    // ---------------- optimisation ----------------
    /// <summary>Owns: the options (LLVMDisposePassBuilderOptions).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMCreatePassBuilderOptions();
    [LibraryImport(Lib)] public static partial void LLVMDisposePassBuilderOptions(nint options);
    /// <summary>Runs a new-pass-manager pipeline ("default&lt;O2&gt;", "mem2reg,instcombine") over the module in place. Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMRunPasses(nint module, string passes, nint tm, nint options);

    // ---------------- ORC LLJIT ----------------
    /// <summary>Owns: the context reference (LLVMOrcDisposeThreadSafeContext drops it; modules keep their own reference).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcCreateNewThreadSafeContext();
    /// <summary>The LLVMContext inside; not owned.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcThreadSafeContextGetContext(nint tsc);
    [LibraryImport(Lib)] public static partial void LLVMOrcDisposeThreadSafeContext(nint tsc);
    /// <summary>Takes: the module. Owns: the thread-safe module until it is added to a JIT.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcCreateNewThreadSafeModule(nint module, nint tsc);
    [LibraryImport(Lib)] public static partial void LLVMOrcDisposeThreadSafeModule(nint tsm);
    /// <summary>Takes: the builder (0 for defaults). Owns: *jit (LLVMOrcDisposeLLJIT). Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcCreateLLJIT(out nint jit, nint builder);
    [LibraryImport(Lib)] public static partial nint LLVMOrcDisposeLLJIT(nint jit);
    /// <summary>Not owned (lives as long as the JIT).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcLLJITGetMainJITDylib(nint jit);
    /// <summary>Not owned.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcLLJITGetTripleString(nint jit);
    /// <summary>Not owned.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcLLJITGetDataLayoutStr(nint jit);
    /// <summary>Owns: one reference to the interned name (passed on, retained, to LLVMOrcAbsoluteSymbols).</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMOrcLLJITMangleAndIntern(nint jit, string name);
    /// <summary>Takes: the names in <paramref name="pairs"/>. Owns: the unit until LLVMOrcJITDylibDefine succeeds.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcAbsoluteSymbols(LlvmSymbolMapPair* pairs, nuint count);
    /// <summary>Takes: the unit on success. Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcJITDylibDefine(nint dylib, nint unit);
    [LibraryImport(Lib)] public static partial void LLVMOrcDisposeMaterializationUnit(nint unit);
    /// <summary>Owns: the tracker (LLVMOrcReleaseResourceTracker).</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcJITDylibCreateResourceTracker(nint dylib);
    [LibraryImport(Lib)] public static partial void LLVMOrcReleaseResourceTracker(nint tracker);
    /// <summary>Frees the code added under the tracker. Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcResourceTrackerRemove(nint tracker);
    /// <summary>Takes: the thread-safe module (also on failure). Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcLLJITAddLLVMIRModuleWithRT(nint jit, nint tracker, nint tsm);
    /// <summary>Takes: the object buffer (also on failure). Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib)] public static partial nint LLVMOrcLLJITAddObjectFileWithRT(nint jit, nint tracker, nint objectBuffer);
    /// <summary>Materializes (compiles and links) the symbol if needed. Returns an LLVMErrorRef.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial nint LLVMOrcLLJITLookup(nint jit, out ulong address, string name);
}
