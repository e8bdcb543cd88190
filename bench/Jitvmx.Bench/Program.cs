// SPDX-License-Identifier: MIT
using BenchmarkDotNet.Running;

namespace Jitvmx.Bench;

internal static class Program
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
