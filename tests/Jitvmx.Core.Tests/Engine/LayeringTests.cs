// SPDX-License-Identifier: MIT
using System.Text.RegularExpressions;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// The layers inside Jitvmx.Core may only use the layers below them: the IR knows nothing of x86
/// lifting or of a backend, the lifter knows nothing of a backend, and a backend nothing of the lifter.
/// </summary>
public partial class LayeringTests
{
    [GeneratedRegex(@"^\s*using\s+(?:static\s+)?(Jitvmx\.[A-Za-z.]+)\s*;", RegexOptions.Multiline)]
    private static partial Regex UsingDirective();

    private static string CoreDir()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Jitvmx.sln"))) dir = dir.Parent;
        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root not found"), "src", "Jitvmx.Core");
    }

    [Theory]
    [InlineData("Ir", "Jitvmx.Lifting", "Jitvmx.Backend")]
    [InlineData("Lifting", "Jitvmx.Backend")]
    [InlineData("Backend", "Jitvmx.Lifting")]
    [InlineData("Memory", "Jitvmx.Lifting", "Jitvmx.Backend", "Jitvmx.Ir")]
    public void FolderDoesNotUseForbiddenLayers(string folder, params string[] forbidden)
    {
        foreach (var file in Directory.EnumerateFiles(Path.Combine(CoreDir(), folder), "*.cs", SearchOption.AllDirectories))
        {
            foreach (Match m in UsingDirective().Matches(File.ReadAllText(file)))
            {
                string ns = m.Groups[1].Value;
                Assert.False(forbidden.Any(f => ns == f || ns.StartsWith(f + ".", StringComparison.Ordinal)),
                    $"{Path.GetFileName(file)} in {folder}/ uses {ns}");
            }
        }
    }
}
