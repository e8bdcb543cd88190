// SPDX-License-Identifier: MIT
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Cli.Demo;

/// <summary>
/// The demo guest: a flat long-mode program assembled with Iced. It asks CPUID for the vendor,
/// reads a device ID from an MMIO page, fills a buffer with xorshift data, computes its CRC-32
/// bit by bit, prints everything on a 16550 serial port at 0x3F8 and halts.
/// </summary>
internal static class DemoGuest
{
    public const ulong CodeBase = 0x10000;
    public const ulong StackTop = 0x80000;
    public const ulong Scratch = 0x20000;
    public const ulong Buffer = 0x100000;
    public const ulong MmioBase = 0xFEC00000;
    public const ushort Com1 = 0x3F8;

    public static byte[] Build(int bufferBytes, int rounds)
    {
        var a = new Assembler(64);
        var print = a.CreateLabel();
        var hex32 = a.CreateLabel();
        var putc = a.CreateLabel();
        var sVendor = a.CreateLabel();
        var sDevice = a.CreateLabel();
        var sCrc = a.CreateLabel();
        var sRounds = a.CreateLabel();
        var sBye = a.CreateLabel();

        a.mov(rsp, StackTop);

        // "vendor: " + the 12 bytes CPUID leaf 0 returns in EBX, EDX, ECX.
        a.lea(rsi, __[sVendor]);
        a.call(print);
        a.xor(eax, eax);
        a.cpuid();
        a.mov(rdi, Scratch);
        a.mov(__dword_ptr[rdi], ebx);
        a.mov(__dword_ptr[rdi + 4], edx);
        a.mov(__dword_ptr[rdi + 8], ecx);
        a.mov(__byte_ptr[rdi + 12], 10);
        a.mov(__byte_ptr[rdi + 13], 0);
        a.mov(rsi, rdi);
        a.call(print);

        // Device ID from the MMIO page, and a command written back to it.
        a.lea(rsi, __[sDevice]);
        a.call(print);
        a.mov(rbx, MmioBase);
        a.mov(eax, __dword_ptr[rbx]);
        a.call(hex32);
        a.mov(__dword_ptr[rbx + 4], 1);
        a.mov(al, 10);
        a.call(putc);

        // Fill the buffer with xorshift32.
        a.mov(rdi, Buffer);
        a.mov(ecx, bufferBytes / 4);
        a.mov(eax, 0x2545F491);
        var fill = a.CreateLabel();
        a.Label(ref fill);
        a.mov(edx, eax); a.shl(edx, 13); a.xor(eax, edx);
        a.mov(edx, eax); a.shr(edx, 17); a.xor(eax, edx);
        a.mov(edx, eax); a.shl(edx, 5); a.xor(eax, edx);
        a.mov(__dword_ptr[rdi], eax);
        a.add(rdi, 4);
        a.dec(ecx);
        a.jnz(fill);

        // CRC-32 (reflected, polynomial 0xEDB88320), bit by bit, over the buffer, `rounds` times chained.
        a.mov(r8d, rounds);
        a.mov(eax, 0xFFFFFFFF);
        var round = a.CreateLabel();
        var bytes = a.CreateLabel();
        var bits = a.CreateLabel();
        var noXor = a.CreateLabel();
        a.Label(ref round);
        a.mov(rsi, Buffer);
        a.mov(ecx, bufferBytes);
        a.Label(ref bytes);
        a.movzx(edx, __byte_ptr[rsi]);
        a.xor(eax, edx);
        a.mov(r9d, 8);
        a.Label(ref bits);
        a.shr(eax, 1);
        a.jnc(noXor);
        a.xor(eax, 0xEDB88320);
        a.Label(ref noXor);
        a.dec(r9d);
        a.jnz(bits);
        a.inc(rsi);
        a.dec(ecx);
        a.jnz(bytes);
        a.dec(r8d);
        a.jnz(round);
        a.not(eax);
        a.mov(r12d, eax);

        a.lea(rsi, __[sRounds]);
        a.call(print);
        a.mov(eax, rounds);
        a.call(hex32);
        a.mov(al, 10);
        a.call(putc);
        a.lea(rsi, __[sCrc]);
        a.call(print);
        a.mov(eax, r12d);
        a.call(hex32);
        a.mov(al, 10);
        a.call(putc);
        a.lea(rsi, __[sBye]);
        a.call(print);
        a.mov(eax, r12d); // the VMM reads the result from EAX at the HLT
        a.hlt();

        // print: RSI = NUL-terminated string.
        var pDone = a.CreateLabel();
        a.Label(ref print);
        a.mov(al, __byte_ptr[rsi]);
        a.test(al, al);
        a.jz(pDone);
        a.call(putc);
        a.inc(rsi);
        a.jmp(print);
        a.Label(ref pDone);
        a.ret();

        // hex32: EAX as eight hex digits.
        var hLoop = a.CreateLabel();
        var hDigit = a.CreateLabel();
        a.Label(ref hex32);
        a.push(rcx);
        a.push(rdx);
        a.mov(edx, eax);
        a.mov(ecx, 8);
        a.Label(ref hLoop);
        a.rol(edx, 4);
        a.mov(eax, edx);
        a.and(eax, 15);
        a.cmp(al, 10);
        a.jb(hDigit);
        a.add(al, (byte)('a' - '0' - 10));
        a.Label(ref hDigit);
        a.add(al, (byte)'0');
        a.call(putc);
        a.dec(ecx);
        a.jnz(hLoop);
        a.pop(rdx);
        a.pop(rcx);
        a.ret();

        // putc: AL to COM1 once the line status register says the transmitter is empty.
        var wait = a.CreateLabel();
        a.Label(ref putc);
        a.push(rdx);
        a.push(rax);
        a.mov(dx, (ushort)(Com1 + 5));
        a.Label(ref wait);
        a.@in(al, dx);
        a.test(al, 0x20);
        a.jz(wait);
        a.pop(rax);
        a.mov(dx, Com1);
        a.@out(dx, al);
        a.pop(rdx);
        a.ret();

        a.Label(ref sVendor); a.db("vendor: "u8.ToArray()); a.db(0);
        a.Label(ref sDevice); a.db("mmio device id: "u8.ToArray()); a.db(0);
        a.Label(ref sRounds); a.db("crc-32 rounds: "u8.ToArray()); a.db(0);
        a.Label(ref sCrc); a.db("crc-32: "u8.ToArray()); a.db(0);
        a.Label(ref sBye); a.db("guest: done, halting\n"u8.ToArray()); a.db(0);

        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), CodeBase);
        return ms.ToArray();
    }

    /// <summary>The CRC the guest must print, computed on the host.</summary>
    public static uint ExpectedCrc(int bufferBytes, int rounds)
    {
        var buf = new byte[bufferBytes];
        uint x = 0x2545F491;
        for (int i = 0; i < bufferBytes / 4; i++)
        {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            BitConverter.TryWriteBytes(buf.AsSpan(i * 4), x);
        }
        uint crc = 0xFFFFFFFF;
        for (int r = 0; r < rounds; r++)
            foreach (byte b in buf)
            {
                crc ^= b;
                for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        return ~crc;
    }
}
