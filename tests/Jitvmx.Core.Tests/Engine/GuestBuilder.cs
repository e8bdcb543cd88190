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

    /// <summary>Writes a 64-bit interrupt gate (selector 0x08, present, DPL 0) for <paramref name="vector"/> into the IDT at <paramref name="idt"/>.</summary>
    public void WriteInterruptGate(ulong idt, int vector, ulong target)
    {
        var gate = new byte[16];
        BitConverter.TryWriteBytes(gate.AsSpan(0), (ushort)target);
        BitConverter.TryWriteBytes(gate.AsSpan(2), (ushort)0x08);
        gate[5] = 0x8E;
        BitConverter.TryWriteBytes(gate.AsSpan(6), (ushort)(target >> 16));
        BitConverter.TryWriteBytes(gate.AsSpan(8), (uint)(target >> 32));
        Vm.WritePhysical(idt + (ulong)vector * 16, gate);
    }

    public void Dispose() => Vm.Dispose();
}
