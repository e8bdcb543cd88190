// SPDX-License-Identifier: MIT
using Iced.Intel;

namespace Jitvmx.Llvm.Tests;

/// <summary>A flat guest: code at 0x1000, RAM at 0x100000 (RW, stack at its top).</summary>
public sealed class TestGuest : IDisposable
{
    public const ulong CodeBase = 0x1000;
    public const ulong RamBase = 0x100000;
    public const ulong RamSize = 0x100000;

    public TestGuest(Action<Assembler> emit, MemoryPermissions codePermissions = MemoryPermissions.ReadExecute, VirtualMachineOptions? options = null)
    {
        Vm = new VirtualMachine(options);
        var asm = new Assembler(64);
        emit(asm);
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), CodeBase);
        Code = ms.ToArray();
        Vm.MapMemory(CodeBase, (ulong)Math.Max(4096, (Code.Length + 4095) & ~4095), codePermissions);
        Vm.WritePhysical(CodeBase, Code);
        Vm.MapMemory(RamBase, RamSize, MemoryPermissions.ReadWrite);
        Cpu = Vm.CreateCpu();
        Cpu.State.Rip = CodeBase;
        Cpu.State.Rsp = RamBase + RamSize - 0x100;
        Cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;
    }

    public VirtualMachine Vm { get; }
    public VirtualCpu Cpu { get; }
    public byte[] Code { get; }

    public void Dispose() => Vm.Dispose();
}
