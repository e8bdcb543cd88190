// SPDX-License-Identifier: MIT
using Jitvmx.Llvm.Native;
using static Jitvmx.Llvm.Native.LlvmApi;

namespace Jitvmx.Llvm.Tests;

public unsafe class LlvmJitTests
{
    [Fact]
    public void OptionsFromTheEnvironmentReplaceBuiltInOnesOfTheSameName()
    {
        Assert.Equal(["jitvmx", .. LlvmJit.BuiltInOptions], LlvmJit.CommandLine(null));
        string[] line = LlvmJit.CommandLine("-jump-table-density=40  -fast-isel");
        // LLVM exits the process when an option comes twice.
        Assert.Single(line, o => o.StartsWith("-jump-table-density", StringComparison.Ordinal));
        Assert.Contains("-jump-table-density=40", line);
        Assert.Contains("-max-jump-table-size=2048", line);
        Assert.Equal("-fast-isel", line[^1]);
    }

    [Fact]
    public void LibraryLoadsByItsExactName()
    {
        Assert.True(LlvmJit.IsAvailable, "libLLVM.so.19.1 must be installed (Debian package libllvm19)");
        Assert.StartsWith("x86_64", LlvmJit.Instance.Triple);
        Assert.NotEmpty(LlvmJit.Instance.DataLayout);
    }

    [Fact]
    public void JitsAHandBuiltAddAndCallsIt()
    {
        var jit = LlvmJit.Instance;
        string name = jit.UniqueName("add");
        nint tsc = LLVMOrcCreateNewThreadSafeContext();
        nint ctx = LLVMOrcThreadSafeContextGetContext(tsc);
        nint module = LLVMModuleCreateWithNameInContext("add", ctx);
        LLVMSetTarget(module, jit.Triple);
        LLVMSetDataLayout(module, jit.DataLayout);
        nint i32 = LLVMIntTypeInContext(ctx, 32);
        nint* ps = stackalloc nint[2] { i32, i32 };
        nint fnType = LLVMFunctionType(i32, ps, 2, 0);
        nint fn = LLVMAddFunction(module, name, fnType);
        nint b = LLVMCreateBuilderInContext(ctx);
        LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
        LLVMBuildRet(b, LLVMBuildAdd(b, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), "sum"));
        LLVMDisposeBuilder(b);
        Assert.Equal(0, LLVMVerifyModule(module, 2, out nint msg));
        TakeMessage(msg);
        nint tsm = LLVMOrcCreateNewThreadSafeModule(module, tsc);
        LLVMOrcDisposeThreadSafeContext(tsc);
        var (rt, fnAddress) = jit.AddModule(tsm, name);
        var add = (delegate* unmanaged<int, int, int>)fnAddress;
        Assert.Equal(5, add(2, 3));
        Assert.Equal(int.MinValue, add(int.MaxValue, 1));
        LlvmJit.Release(rt, removeCode: true);
    }

    [Fact]
    public void MissingLibraryIsOneClearError()
    {
        var e = LlvmApi.Unavailable();
        Assert.Contains("install the Debian package libllvm19", e.Message);
        Assert.Contains(LlvmApi.LibraryFile, e.Message);
    }
}
