// SPDX-License-Identifier: MIT
using Iced.Intel;

namespace Jitvmx.Tests.Engine;

/// <summary>A flat guest for engine tests: code at 0x1000 (RX), RAM at 0x100000 (RW, stack at its top).</summary>
public sealed class GuestBuilder : IDisposable
{
    public const ulong CodeBase = 0x1000;
    public const ulong RamBase = 0x100000;
    public const ulong RamSize = 0x100000;

    public GuestBuilder(Action<Assembler> emit, MemoryPermissions codePermissions = MemoryPermissions.ReadExecute, VirtualMachineOptions? options = null)
    {
        Vm = new VirtualMachine(options);
        var asm = new Assembler(64);
        emit(asm);
        using var ms = new MemoryStream();
        asm.Assemble(new StreamCodeWriter(ms), CodeBase);
        Code = ms.ToArray();
        CodeRegion = Vm.MapMemory(CodeBase, (ulong)((Code.Length + 4095) & ~4095), codePermissions);
        Vm.WritePhysical(CodeBase, Code);
        Ram = Vm.MapMemory(RamBase, RamSize, MemoryPermissions.ReadWrite);
        Cpu = Vm.CreateCpu();
        Cpu.State.Rip = CodeBase;
        Cpu.State.Rsp = RamBase + RamSize - 0x100;
        Cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;
    }

    public VirtualMachine Vm { get; }
    public VirtualCpu Cpu { get; }
    public byte[] Code { get; }
    public GuestMemoryRegion CodeRegion { get; }
    public GuestMemoryRegion Ram { get; }

    public void Dispose() => Vm.Dispose();
}
