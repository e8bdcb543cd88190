// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Llvm.Tests;

/// <summary>
/// Writes that rely on host faults (<see cref="VirtualMachine.HostWriteFaults"/>): code and RAM in a flat window
/// that is writable only where the guest may write, and a page holding translated code read-only on the host,
/// so LLVM code writes with plain stores and every other write (a read-only page, unmapped memory, the code
/// itself) faults on the host into its slow path. Results, exits and retired counts must equal the IL tier's,
/// which checks every write in software.
/// </summary>
public unsafe partial class HostWriteFaultTests
{
    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(nint addr, nuint length, int prot);

    // A read-only page right after RAM, for writes the guest may not make.
    private const ulong ReadOnlyPage = TestGuest.RamBase + TestGuest.RamSize;

    /// <summary>
    /// Moves code and RAM into a fresh flat window (inaccessible elsewhere) with the host protection their
    /// permissions call for, adds a read-only page after RAM, and turns host-fault reads and writes on.
    /// </summary>
    private static void Window(TestGuest g)
    {
        // Left reserved for the life of the test process: code compiled against it may still be referenced.
        ulong size = VirtualMachine.FlatWindow + 2 * VirtualMachine.FlatWindowGuard;
        nint reservation = Mmap(0, unchecked((nuint)size), 0, 0x22 | 0x4000, -1, 0);
        Assert.NotEqual(-1, reservation);
        nint window = reservation + unchecked((nint)VirtualMachine.FlatWindowGuard);
        foreach (var r in g.Vm.MemoryRegions.ToList())
        {
            nint at = window + (nint)r.GuestPhysicalAddress;
            Assert.Equal(0, Mprotect(at, (nuint)r.Size, 3));
            Buffer.MemoryCopy((void*)r.HostAddress, (void*)at, r.Size, r.Size);
            ulong gpa = r.GuestPhysicalAddress, length = r.Size;
            var perms = r.Permissions;
            g.Vm.Unmap(r);
            g.Vm.MapHostMemory(gpa, length, at, perms);
            if ((perms & MemoryPermissions.Write) == 0) Assert.Equal(0, Mprotect(at, (nuint)length, 1));
        }
        Assert.Equal(0, Mprotect(window + (nint)ReadOnlyPage, 0x1000, 1));
        g.Vm.MapHostMemory(ReadOnlyPage, 0x1000, window + (nint)ReadOnlyPage, MemoryPermissions.Read);
        g.Vm.FlatAddend = window;
        g.Vm.HostReadFaults = true;
        g.Vm.HostWriteFaults = true;
    }

    // Stores of every width and kind in a loop, then one more at lastWrite.
    private static Action<Assembler> Program(ulong lastWrite) => a =>
    {
        var loop = a.CreateLabel();
        a.mov(rsi, TestGuest.RamBase);
        a.mov(ecx, 64);
        a.mov(rax, 0x0102_0304_0506_0708);
        a.pxor(xmm1, xmm1);
        a.Label(ref loop);
        a.add(rax, __qword_ptr[rsi + rcx * 8]);
        a.mov(__qword_ptr[rsi + rcx * 8 + 0x800], rax);
        a.mov(__dword_ptr[rsi + rcx * 4 + 0x1001], eax);
        a.mov(__word_ptr[rsi + rcx * 2 + 0x1203], ax);
        a.mov(__byte_ptr[rsi + rcx + 0x1305], al);
        a.mov(__dword_ptr[rsi + rcx * 4 + 0x1400], 0x7F00_1234);     // immediates
        a.mov(__qword_ptr[rsi + rcx * 8 + 0x1600], -2);
        a.mov(__byte_ptr[rsi + rcx + 0x1900], 0x99);
        a.movdqu(xmm0, __xmmword_ptr[rsi + rcx * 8]);
        a.paddq(xmm1, xmm0);
        a.movdqu(__xmmword_ptr[rsi + rcx * 8 + 0x1A03], xmm1);
        a.add(rax, __qword_ptr[rsi + rcx * 8 + 0x800]);               // reads back what it stored
        a.dec(ecx);
        a.jnz(loop);
        a.mov(rdx, lastWrite + 16);
        a.mov(__qword_ptr[rdx - 16], rax); // a negative displacement: with lastWrite near 2^64 the register is small
        a.hlt();
    };

    [Theory]
    [InlineData(TestGuest.RamBase + 0x3000, LlvmOptLevel.O2)]                 // the run ends at HLT
    [InlineData(TestGuest.RamBase + 0x3000, LlvmOptLevel.O0)]                 // O0 code checks in software
    [InlineData(ReadOnlyPage + 8, LlvmOptLevel.O1)]                            // the guest may only read there
    [InlineData(ReadOnlyPage - 4, LlvmOptLevel.O2)]                            // straddles into it
    [InlineData(0x4000_0000UL, LlvmOptLevel.O2)]                               // unmapped, inside the window
    [InlineData(0x30_0000_0000UL, LlvmOptLevel.O2)]                            // far above every mapping
    [InlineData(0x7F00_0000_1000UL, LlvmOptLevel.O2)]                          // above the window
    [InlineData(0xFFFF_FFFF_FFFF_FFF0UL, LlvmOptLevel.O2)]                     // wraps: below the window's start
    public void WritesThatFaultOnTheHostEndAsTheSoftwareCheckSays(ulong lastWrite, LlvmOptLevel level)
    {
        var (_, ll) = Tiers.Compare(Program(lastWrite), g => g.Cpu.Run(), Window, level);
        if (lastWrite == TestGuest.RamBase + 0x3000) Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        else Assert.NotEqual(ExitReason.Hlt, ll.Exit.Reason);
    }

    [Theory]
    [InlineData(LlvmOptLevel.O1)]
    [InlineData(LlvmOptLevel.O2)]
    public void StoresIntoTranslatedCodeDiscardItAndRunTheNewBytes(LlvmOptLevel level)
    {
        // A hot loop stores into RAM, then into its own code page: the immediate of an instruction further on,
        // in the same region. The page is read-only on the host while it holds code, so the plain store faults,
        // the slow path discards the code and the store is done again; the new bytes then run.
        Action<Assembler> code = a =>
        {
            var loop = a.CreateLabel();
            var target = a.CreateLabel();
            a.mov(rsi, TestGuest.RamBase);
            a.mov(ecx, 100);
            a.Label(ref loop);
            a.mov(__qword_ptr[rsi + rcx * 8], rcx);
            a.dec(ecx);
            a.jnz(loop);
            a.lea(rdi, __[target]);
            a.mov(__byte_ptr[rdi + 1], 0x42);  // mov eax, imm32: the immediate's low byte
            a.mov(__word_ptr[rdi + 3], 0x7788); // and its high half
            a.Label(ref target);
            a.mov(eax, 0x1111_1111);
            a.mov(__qword_ptr[rsi + 0x200], rax);
            a.hlt();
        };
        var (il, ll) = Tiers.Compare(code, g => g.Cpu.Run(), Window, level, MemoryPermissions.All, allLlvm: false);
        Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        Assert.Equal(0x7788_1142UL, ll.State.Rax);
        Assert.Equal(0x7788_1142UL, BitConverter.ToUInt64(ll.Ram, 0x200));
        Assert.Equal(il.State.Rax, ll.State.Rax);
    }

    [Fact]
    public void APageIsReadOnlyOnTheHostOnlyWhileItHoldsCode()
    {
        using var g = new TestGuest(a => { a.nop(); a.hlt(); }, MemoryPermissions.All);
        Window(g);
        var page = g.Vm.MemoryRegions.Single(r => r.GuestPhysicalAddress == TestGuest.CodeBase);
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.False(HostWritable(page.HostAddress));
        // Writing through the VM discards the code first; the page is writable again.
        g.Vm.WritePhysical(TestGuest.CodeBase, [0x90, 0xF4]);
        Assert.True(HostWritable(page.HostAddress));
        g.Cpu.State.Rip = TestGuest.CodeBase;
        Assert.Equal(ExitReason.Hlt, g.Cpu.Run().Reason);
        Assert.False(HostWritable(page.HostAddress));
    }

    [Fact]
    public void TheObjectListsEveryWriteWithItsSlowPath()
    {
        using var g = new TestGuest(Program(TestGuest.RamBase));
        Window(g);
        var (ir, _, _, sites) = HostReadFaultTests.ListedSites(g, "host_writes");
        Assert.True(ir.HostWriteFaults);
        // Eight stores in the loop and one after it, three reads; duplication by the code generator may add copies.
        Assert.InRange(sites.Count, 11, 60);
    }

    // Reads and writes at constant addresses (absolute and RIP-relative) in a loop, then one write at lastWrite's constant address.
    private static Action<Assembler> Constants(ulong lastWrite) => a =>
    {
        var loop = a.CreateLabel();
        var near = a.CreateLabel();
        a.mov(ecx, 64);
        a.xor(eax, eax);
        a.Label(ref loop);
        a.add(rax, __qword_ptr[(long)TestGuest.RamBase + 0x100]);
        a.add(eax, __dword_ptr[near]);                               // RIP-relative: the code page
        a.mov(__qword_ptr[(long)TestGuest.RamBase + 0x200], rax);
        a.mov(__dword_ptr[(long)TestGuest.RamBase + 0x300], 0x1234_5678);
        a.movdqu(xmm0, __xmmword_ptr[(long)TestGuest.RamBase + 0x400]);
        a.movdqu(__xmmword_ptr[(long)TestGuest.RamBase + 0x500], xmm0);
        a.add(rax, __qword_ptr[(long)TestGuest.RamBase + 0x200]);    // reads back what it stored
        a.dec(ecx);
        a.jnz(loop);
        a.mov(__qword_ptr[(long)lastWrite], rax);
        a.add(rax, __qword_ptr[(long)lastWrite]);
        a.hlt();
        a.Label(ref near);
        a.dd(0x0BAD_F00D);
    };

    [Theory]
    [InlineData(TestGuest.RamBase + 0x3000)]   // the run ends at HLT
    [InlineData(ReadOnlyPage + 8)]             // the guest may only read there
    [InlineData(0x4000_0000UL)]                // unmapped
    [InlineData(0x7FFF_FF00UL)]                // unmapped, near the largest address a displacement holds
    public void AccessesAtConstantAddressesEndAsTheSoftwareCheckSays(ulong lastWrite)
    {
        var (_, ll) = Tiers.Compare(Constants(lastWrite), g => g.Cpu.Run(), Window, LlvmOptLevel.O2);
        if (lastWrite == TestGuest.RamBase + 0x3000) Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        else Assert.NotEqual(ExitReason.Hlt, ll.Exit.Reason);

        // The loop's accesses compare nothing: their addresses are in the window's displacement range.
        using var g = new TestGuest(Constants(lastWrite));
        Window(g);
        var (_, obj, _, sites) = HostReadFaultTests.ListedSites(g, "constants");
        Assert.InRange(sites.Count, 9, 40);
        using var stream = new MemoryStream(obj);
        using var elf = ELFSharp.ELF.ELFReader.Load(stream, shouldOwnStream: false);
        byte[] text = elf.Sections.First(x => x.Name == ".text").GetContents();
        var decoder = Iced.Intel.Decoder.Create(64, text);
        var faulting = sites.Select(x => (ulong)x.FaultOffset).ToHashSet();
        int listed = 0;
        while (decoder.IP < (ulong)text.Length)
        {
            var insn = decoder.Decode();
            if (!faulting.Contains(insn.IP)) continue;
            listed++;
            Assert.Equal(OpKind.Memory, insn.Op0Kind == OpKind.Memory ? insn.Op0Kind : insn.Op1Kind);
            Assert.Equal(Register.None, insn.MemoryIndex); // base + displacement only
        }
        Assert.Equal(faulting.Count, listed);
    }

    // Pushes and pops through RSP = stack in a loop: the accesses of each block share the compare of RSP (their root).
    private static Action<Assembler> Stack(ulong stack) => a =>
    {
        var loop = a.CreateLabel();
        a.mov(rsp, stack);
        a.mov(ecx, 64);
        a.mov(rax, 0x1111);
        a.mov(rbx, 0x2222);
        a.Label(ref loop);
        a.push(rax);
        a.push(rbx);
        a.push(rcx);
        a.add(__qword_ptr[rsp + 8], rcx);
        a.pop(rdx);
        a.pop(rbx);
        a.pop(rax);
        a.add(rax, rdx);
        a.dec(ecx);
        a.jnz(loop);
        a.hlt();
    };

    [Theory]
    [InlineData(TestGuest.RamBase + 0x800)]          // the run ends at HLT
    [InlineData(TestGuest.RamBase + 0x10)]           // the third push reaches below RAM
    [InlineData(ReadOnlyPage + 0x18)]                // the guest may only read there
    [InlineData(0x4000_0000UL)]                      // unmapped, inside the window
    [InlineData(VirtualMachine.FlatWindow + 0x10)]   // above the window: the root's compare leaves the region
    [InlineData(VirtualMachine.FlatWindow - 0x8)]    // inside, but its accesses are not all
    [InlineData(0x10UL)]                             // the pushes wrap below address 0
    public void AccessesSharingTheirRootsCompareEndAsTheSoftwareCheckSays(ulong stack)
    {
        var (_, ll) = Tiers.Compare(Stack(stack), g => g.Cpu.Run(), Window, LlvmOptLevel.O2);
        if (stack == TestGuest.RamBase + 0x800) Assert.Equal(ExitReason.Hlt, ll.Exit.Reason);
        else Assert.NotEqual(ExitReason.Hlt, ll.Exit.Reason);
    }

    [Fact]
    public void StoresInCodeThatSwitchesMxcsrAreNotFollowedByFwait()
    {
        // Native SSE arithmetic and an MXCSR write of the region's own: the function is strictfp.
        static void Sse(Assembler a)
        {
            var loop = a.CreateLabel();
            a.mov(rsi, TestGuest.RamBase);
            a.mov(ecx, 64);
            a.mov(__dword_ptr[rsi + 0x800], 0x1F80);
            a.ldmxcsr(__dword_ptr[rsi + 0x800]);
            a.Label(ref loop);
            a.addsd(xmm0, xmm1);
            a.mulsd(xmm0, xmm2);
            a.movsd(__qword_ptr[rsi + rcx * 8], xmm0);
            a.mov(__qword_ptr[rsi + rcx * 8 + 0x400], rcx);
            a.dec(ecx);
            a.jnz(loop);
            a.hlt();
        }
        using var g = new TestGuest(Sse);
        Window(g);
        var (ir, obj, symbol, sites) = HostReadFaultTests.ListedSites(g, "strictfp_writes");
        Assert.True(ir.HostWriteFaults);
        Assert.NotEmpty(sites);
        using var stream = new MemoryStream(obj);
        using var elf = ELFSharp.ELF.ELFReader.Load(stream, shouldOwnStream: false);
        byte[] text = elf.Sections.First(x => x.Name == ".text").GetContents();
        Assert.True(LlvmBackend.SwitchesFpEnv(ir), "the region does not switch MXCSR: the test tests nothing");
        var decoder = Iced.Intel.Decoder.Create(64, text);
        int stores = 0, waits = 0;
        while (decoder.IP < (ulong)text.Length)
        {
            var insn = decoder.Decode();
            if (insn.Mnemonic == Mnemonic.Wait) waits++;
            if (insn.Op0Kind == OpKind.Memory && insn.Mnemonic is Mnemonic.Mov or Mnemonic.Movdqu or Mnemonic.Movq or Mnemonic.Movsd) stores++;
        }
        Assert.True(stores > 0);
        // LLVM followed each of the region's stores (inline assembly) with an FWAIT in such code.
        Assert.Equal(0, waits);
    }

    // Whether the host page at `host` is writable, from /proc/self/maps.
    private static bool HostWritable(nint host)
    {
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            ulong start = Convert.ToUInt64(line[..dash], 16), end = Convert.ToUInt64(line[(dash + 1)..space], 16);
            if ((ulong)host >= start && (ulong)host < end) return line[space + 2] == 'w';
        }
        throw new InvalidOperationException($"0x{host:x} is not mapped");
    }
}
