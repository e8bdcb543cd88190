// SPDX-License-Identifier: MIT
using Jitvmx.Cli.Demo;

namespace Jitvmx.Cli;

internal static class Program
{
    private const string Usage = """
        usage: jitvmx <command> [options]

        commands:
          demo [--kib N] [--rounds N]   run the built-in flat long-mode guest under a small VMM:
                                        serial output, CPUID, MMIO, and the exits it handled
          run [--tier interp|il|llvm|auto] [--strace] [--stats] [--profile] PROGRAM [ARGS...]
                                        run a static Linux x86-64 executable under Jitvmx;
                                        --profile adds the hottest regions to --stats
          bench [--runs N] [--filter SUBSTR] [--runners native,il,auto,llvm,qemu] [--scale X]
                                        time the native/bench programs natively, under each tier
                                        and under qemu-x86_64; checks every output against native,
                                        writes bench/results/ (CSV, JSON, SVG chart, latest.md)
          version                       print the version
          help                          show this text
        """;

    private static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        try
        {
            switch (args[0])
            {
                case "demo": return DemoCommand.Run(args[1..]);
                case "run": return RunCommand.Run(args[1..]);
                case "bench": return BenchCommand.Run(args[1..]);
                case "version" or "--version":
                    Console.WriteLine($"jitvmx {typeof(VirtualMachine).Assembly.GetName().Version}");
                    return 0;
                case "help" or "--help" or "-h":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    Console.Error.WriteLine($"jitvmx: unknown command '{args[0]}'");
                    Console.Error.WriteLine(Usage);
                    return 2;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            Console.Error.WriteLine($"jitvmx: {e.Message}");
            return 1;
        }
    }
}
