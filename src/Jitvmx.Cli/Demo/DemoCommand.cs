// SPDX-License-Identifier: MIT
using System.Diagnostics;
using System.Text;

namespace Jitvmx.Cli.Demo;

/// <summary>
/// `jitvmx demo`: a small VMM around the demo guest. It emulates a 16550 UART on I/O exits,
/// answers CPUID with its own vendor string, emulates one MMIO device page on EPT violations,
/// and prints the guest's output, the exits it handled and the guest's instruction rate.
/// </summary>
internal static class DemoCommand
{
    private const string Vendor = "JitvmxJitvmx";
    private const uint DeviceId = 0x4A564D58; // "JVMX"

    public static int Run(string[] args)
    {
        int kib = 256, rounds = 4;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--kib" when i + 1 < args.Length && int.TryParse(args[i + 1], out int k) && k is > 0 and <= 65536: kib = k; i++; break;
                case "--rounds" when i + 1 < args.Length && int.TryParse(args[i + 1], out int r) && r > 0: rounds = r; i++; break;
                default:
                    Console.Error.WriteLine($"jitvmx demo: unknown or invalid option '{args[i]}' (options: --kib N, --rounds N)");
                    return 2;
            }
        }
        int bytes = kib * 1024;
        byte[] image = DemoGuest.Build(bytes, rounds);

        using var vm = new VirtualMachine();
        vm.MapMemory(DemoGuest.CodeBase, (ulong)((image.Length + 0xFFF) & ~0xFFF), MemoryPermissions.ReadExecute);
        vm.WritePhysical(DemoGuest.CodeBase, image);
        vm.MapMemory(0x20000, DemoGuest.StackTop - 0x20000, MemoryPermissions.ReadWrite);
        vm.MapMemory(DemoGuest.Buffer, (ulong)((bytes + 0xFFF) & ~0xFFF), MemoryPermissions.ReadWrite);
        var cpu = vm.CreateCpu();
        cpu.State.Rip = DemoGuest.CodeBase;
        cpu.Controls.ExceptionBitmap = 0xFFFFFFFF;

        Console.WriteLine($"jitvmx demo: flat long-mode guest, {image.Length} bytes of code, CRC-32 over {kib} KiB x {rounds}");
        Console.WriteLine("---- guest serial output ----");
        var serial = new StringBuilder();
        var sw = Stopwatch.StartNew();
        int status = 0;
        while (true)
        {
            var exit = cpu.Run();
            switch (exit.Reason)
            {
                case ExitReason.IoInstruction:
                    HandleIo(cpu, exit, serial);
                    continue;
                case ExitReason.Cpuid:
                    uint ebx = BitConverter.ToUInt32(Encoding.ASCII.GetBytes(Vendor), 0);
                    uint edx = BitConverter.ToUInt32(Encoding.ASCII.GetBytes(Vendor), 4);
                    uint ecx = BitConverter.ToUInt32(Encoding.ASCII.GetBytes(Vendor), 8);
                    cpu.CompleteCpuid(1, ebx, ecx, edx);
                    continue;
                case ExitReason.EptViolation when exit.GuestPhysicalAddress - DemoGuest.MmioBase < 0x1000:
                    if ((exit.Qualification & ExitQualification.EptWrite) != 0)
                    {
                        Console.Out.Flush();
                        cpu.CompleteMmioWrite();
                    }
                    else
                    {
                        cpu.CompleteMmioRead(exit.GuestPhysicalAddress == DemoGuest.MmioBase ? DeviceId : 0);
                    }
                    continue;
                case ExitReason.Hlt:
                    break;
                default:
                    Console.Error.WriteLine($"jitvmx demo: unexpected exit {exit}");
                    status = 1;
                    break;
            }
            break;
        }
        sw.Stop();
        Console.Out.Flush();
        Console.WriteLine("---- end of guest output ----");
        uint expected = DemoGuest.ExpectedCrc(bytes, rounds);
        uint got = (uint)cpu.State.Rax;
        bool ok = status == 0 && got == expected;
        Console.WriteLine($"result check: guest CRC {got:x8}, host CRC {expected:x8}: {(ok ? "match" : "MISMATCH")}");
        Console.WriteLine();
        Console.WriteLine("exits handled by the VMM:");
        Console.WriteLine("  reason                        number  count");
        foreach (var (reason, count) in cpu.ExitCounts.OrderByDescending(kv => kv.Value))
            Console.WriteLine($"  {reason,-28} {(uint)reason,7}  {count,5}");
        double secs = sw.Elapsed.TotalSeconds;
        var st = vm.Statistics;
        Console.WriteLine();
        Console.WriteLine($"guest instructions: {cpu.InstructionsRetired:N0} in {secs * 1000:F1} ms = {cpu.InstructionsRetired / secs / 1e6:F1} million/s (translation included)");
        Console.WriteLine($"translation: {st.RegionsTranslated} regions, {st.BlocksTranslated} blocks, {st.InstructionsTranslated} instructions in {st.TranslationTime.TotalMilliseconds:F1} ms");
        return ok ? 0 : 1;
    }

    private static void HandleIo(VirtualCpu cpu, VmExit exit, StringBuilder serial)
    {
        ulong q = exit.Qualification;
        ushort port = ExitQualification.IoPort(q);
        if (ExitQualification.IoIsString(q))
        {
            Console.Error.WriteLine("jitvmx demo: string I/O is not emulated by this VMM");
            cpu.SkipInstruction();
            return;
        }
        if (ExitQualification.IoIsIn(q))
        {
            // Line status: transmitter holding register empty and idle.
            cpu.CompleteIoIn(port == DemoGuest.Com1 + 5 ? 0x60u : 0xFFu);
            return;
        }
        if (port == DemoGuest.Com1)
        {
            char c = (char)(byte)cpu.State.Rax;
            serial.Append(c);
            Console.Write(c);
        }
        cpu.CompleteIoOut();
    }
}
