// SPDX-License-Identifier: MIT
namespace Jitvmx.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.Error.WriteLine("jitvmx: not built yet");
        return 1;
    }
}
