// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Reads that rely on host faults (<see cref="VirtualMachine.HostReadFaults"/>): RAM in a flat window that is
/// inaccessible elsewhere, so LLVM code reads it with plain loads and every other read (the code page,
/// which lies outside the window, and unmapped memory) faults on the host into its slow path. Results,
/// exits and retired counts must equal the IL tier's, which checks every read in software.
/// </summary>
public unsafe partial class HostReadFaultTests
{
    private static Action<Assembler> Program(ulong lastRead) => a =>
    {
        var loop = a.CreateLabel();
        a.mov(rsi, TestGuest.RamBase);
        a.mov(rdi, TestGuest.CodeBase);
        a.mov(ecx, 64);
        a.xor(eax, eax);
        a.pxor(xmm1, xmm1);
        a.Label(ref loop);
        a.add(rax, __qword_ptr[rsi + rcx * 8]);
        a.add(rax, __qword_ptr[rdi + rcx * 8]);          // the code page: outside the window
        a.movzx(edx, __byte_ptr[rsi + rcx]);
        a.add(rax, rdx);
        a.movzx(edx, __word_ptr[rsi + rcx * 2 + 0x1FF]);
        a.add(rax, rdx);
        a.add(eax, __dword_ptr[rdi + rcx * 4 + 2]);
        a.movdqu(xmm0, __xmmword_ptr[rsi + rcx * 8 + 3]);
        a.paddq(xmm1, xmm0);
        a.mov(__qword_ptr[rsi + rcx * 8 + 0x1000], rax);
        a.add(rax, __qword_ptr[rsi + rcx * 8 + 0x1000]); // reads back what it stored
        a.dec(ecx);
        a.jnz(loop);
        a.movq(rbx, xmm1);
        a.mov(rdx, lastRead + 16);
        a.mov(rdx, __qword_ptr[rdx - 16]); // a negative displacement: with lastRead near 2^64 the register is small
        a.hlt();
    };

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(nint addr, nuint length, int prot);

    /// <summary>Moves RAM into a fresh flat window (inaccessible but for RAM) and turns host-fault reads on.</summary>
    private static void Window(TestGuest g) => Window(g, 0);

    /// <summary>
    /// <see cref="Window(TestGuest)"/>, with <paramref name="beyond"/> bytes of readable host memory right after the
    /// upper guard, filled with 0x5A: what a read above the window would find on the host if nothing stopped it.
    /// </summary>
    private static void Window(TestGuest g, ulong beyond)
    {
        // Left reserved for the life of the test process: code compiled against it may still be referenced.
        ulong size = VirtualMachine.FlatWindow + 2 * VirtualMachine.FlatWindowGuard;
        nint reservation = Mmap(0, unchecked((nuint)(size + beyond)), 0, 0x22 | 0x4000, -1, 0);
        Assert.NotEqual(-1, reservation);
        if (beyond != 0)
        {
            nint after = reservation + unchecked((nint)size);
            Assert.Equal(0, Mprotect(after, (nuint)beyond, 3));
            new Span<byte>((void*)after, (int)beyond).Fill(0x5A);
        }
        nint window = reservation + unchecked((nint)VirtualMachine.FlatWindowGuard);
        var ram = g.Vm.MemoryRegions.Single(r => r.GuestPhysicalAddress == TestGuest.RamBase);
        nint at = window + (nint)TestGuest.RamBase;
        Assert.Equal(0, Mprotect(at, (nuint)TestGuest.RamSize, 3));
        Buffer.MemoryCopy((void*)ram.HostAddress, (void*)at, TestGuest.RamSize, TestGuest.RamSize);
        g.Vm.Unmap(ram);
        g.Vm.MapHostMemory(TestGuest.RamBase, TestGuest.RamSize, at, MemoryPermissions.ReadWrite);
        g.Vm.FlatAddend = window;
        g.Vm.HostReadFaults = true;
    }

    [Theory]
    [InlineData(TestGuest.RamBase + 0x800, LlvmOptLevel.O2)]                 // the run ends at HLT
    [InlineData(TestGuest.RamBase + 0x800, LlvmOptLevel.O0)]                 // O0 code checks in software
    [InlineData(0x4000_0000UL, LlvmOptLevel.O1)]
    [InlineData(0x4000_0000UL, LlvmOptLevel.O2)]                              // unmapped, inside the window
    [InlineData(TestGuest.RamBase + TestGuest.RamSize - 4, LlvmOptLevel.O2)] // straddles RAM's end
    [InlineData(0x30_0000_0000UL, LlvmOptLevel.O2)]                           // far above every mapping
    [InlineData(0x7F00_0000_1000UL, LlvmOptLevel.O2)]                         // above the window
    [InlineData(0xFFFF_FFFF_FFFF_FFF0UL, LlvmOptLevel.O2)]                    // wraps: below the window's start
    public void ReadsThatFaultOnTheHostEndAsTheSoftwareCheckSays(ulong lastRead, LlvmOptLevel level)
    {
        var (il, ll) = Tiers.Compare(Program(lastRead), g => g.Cpu.Run(), Window, level);
        if (lastRead == TestGuest.RamBase + 0x800) Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        else Assert.NotEqual(ExitReason.Hlt, ll.Exit.Reason);
        Assert.NotEqual(0UL, ll.State.Rbx);
    }

    [Theory]
    [InlineData(LlvmOptLevel.O1)]
    [InlineData(LlvmOptLevel.O2)]
    public void EveryReadThroughARegisterAboveTheWindowTakesTheSoftwarePath(LlvmOptLevel level)
    {
        // Guest RAM above the window, elsewhere on the host: the first read's slow path succeeds, and the
        // second read through the same register must not then read the host at FlatAddend + address.
        const ulong high = VirtualMachine.FlatWindow + VirtualMachine.FlatWindowGuard;
        Action<Assembler> code = a =>
        {
            a.mov(rsi, TestGuest.RamBase);
            a.mov(rbx, __qword_ptr[rsi]); // not a constant the lifter could fold into each address
            a.mov(rax, __qword_ptr[rbx]);
            a.mov(rcx, __qword_ptr[rbx + 8]);
            a.movzx(edx, __word_ptr[rbx + 16]);
            a.hlt();
        };
        void Setup(TestGuest g)
        {
            Window(g, 0x2000);
            g.Vm.MapMemory(high, 0x2000, MemoryPermissions.ReadWrite);
            var span = g.Vm.GetSpan(high, 24);
            BitConverter.TryWriteBytes(span, 0x1111_2222_3333_4444UL);
            BitConverter.TryWriteBytes(span[8..], 0x5555_6666_7777_8888UL);
            BitConverter.TryWriteBytes(span[16..], 0x9999_AAAA_BBBB_CCCCUL);
            BitConverter.TryWriteBytes(g.Vm.GetSpan(TestGuest.RamBase, 8), high);
        }
        // The reads share their root (RBX): its compare fails, and the dispatcher steps each of them in the IL tier.
        var (_, ll) = Tiers.Compare(code, g => g.Cpu.Run(), Setup, level, allLlvm: false);
        Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        Assert.Equal(0x1111_2222_3333_4444UL, ll.State.Rax);
        Assert.Equal(0x5555_6666_7777_8888UL, ll.State.Rcx);
        Assert.Equal(0xCCCCUL, ll.State.Rdx);
    }

    [Fact]
    public void TheObjectListsEveryReadWithItsSlowPath()
    {
        using var g = new TestGuest(Program(TestGuest.RamBase));
        Window(g);
        var (ir, obj, symbol, reads) = ListedSites(g, "host_reads");
        Assert.True(ir.HostReadFaults);
        // Six or seven reads in the loop (the read-back may be forwarded from the store), one after it;
        // duplication by the code generator may add copies.
        Assert.InRange(reads.Count, 7, 40);
        ulong size = PerfMap.SymbolSize(obj!, symbol)!.Value;
        foreach (var r in reads)
        {
            Assert.InRange(r.FaultOffset, 0u, (uint)size - 1);
            Assert.InRange(r.HandlerOffset, 0u, (uint)size - 1);
            Assert.NotEqual(r.FaultOffset, r.HandlerOffset);
        }
        Assert.False(HostReadMap.TryRead(obj.AsSpan(0, 100), symbol, out _, out _));
    }

    /// <summary>Compiles the region at the code's start at O2 and reads the host-fault sites its object lists.</summary>
    internal static (Ir.IrRegion Ir, byte[] Obj, string Symbol, List<FaultMapEntry> Sites) ListedSites(TestGuest g, string name)
    {
        var ir = Lifting.Translator.Translate(g.Cpu, TestGuest.CodeBase, Lifting.RegionLimits.Default, out _)!;
        Ir.Passes.Run(ir);
        string symbol = LlvmJit.Instance.UniqueName(name);
        Assert.True(LlvmBackend.TryEmitObject(ir, LlvmOptLevel.O2, symbol, out var obj, out _, out _, out var reason), reason);
        Assert.True(HostReadMap.TryRead(obj, symbol, out var sites, out var why), why);
        return (ir, obj!, symbol, sites);
    }

    [Fact]
    public void AnObjectLoadedAgainListsItsReadsInTheNewProcessTable()
    {
        // Compiled in one VM, written out and read back, installed in another: its faulting read must still land in its slow path.
        using var from = new TestGuest(Program(0x4000_0000));
        Window(from);
        byte[] bytes = RegionObject.Compile(from.Cpu, TestGuest.CodeBase, LlvmOptLevel.O2).ToBytes();
        var obj = RegionObject.Read(bytes);

        using var plain = new TestGuest(Program(0x4000_0000));
        var flatOnly = plain.Vm.MemoryRegions.Single(r => r.GuestPhysicalAddress == TestGuest.RamBase);
        plain.Vm.FlatAddend = flatOnly.HostAddress - (long)TestGuest.RamBase;
        Assert.Throws<RegionObjectException>(() => obj.Install(plain.Cpu)); // no host-fault reads there

        var il = Tiers.Run(Program(0x4000_0000), g => g.Cpu.Run());
        var ll = Tiers.Run(Program(0x4000_0000), g =>
        {
            obj.Install(g.Cpu);
            Assert.True(Tiers.IsLlvm(g.Vm.Cache.Find(TestGuest.CodeBase, false)!));
            return g.Cpu.Run();
        }, Window);
        Assert.NotEqual(ExitReason.Hlt, ll.Exit.Reason);
        Tiers.Same(il, ll);
    }

    [Fact]
    public void FaultsOutsideTranslatedCodeStillReachTheRuntime()
    {
        HostFaults.EnsureInstalled();
        int[]? none = Environment.TickCount == int.MinValue ? [1] : null;
        Assert.Throws<NullReferenceException>(() => none![0]);
        Assert.Equal(0UL, HostFaults.Lookup(0x1234));
    }
}
