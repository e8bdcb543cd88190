// SPDX-License-Identifier: MIT
namespace Jitvmx.Bench;
internal static class Program { private static int Main() => 0; }
