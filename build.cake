// SPDX-License-Identifier: MIT
//
// Build script, run through ./build.sh (which restores the pinned Cake tool).
//
//   ./build.sh --target=Test                      restore, build, run all tests (the default)
//   ./build.sh --target=Build --configuration=Debug
//   ./build.sh --target=Native                    only the C programs under native/
//   ./build.sh --target=Bench --bench-args="--filter *Decoder*"
//   ./build.sh --target=Bench --harness-args="--runs 3 --filter sha"
//   ./build.sh --target=Clean
//
// Options:
//   --target=NAME              task to run (Default = Test)
//   --configuration=NAME       .NET build configuration (Release)
//   --bench-args="..."         extra arguments for the BenchmarkDotNet program (bench/Jitvmx.Bench)
//   --harness-args="..."       arguments for the whole-program harness (jitvmx bench --help)
//   --skip-system-packages     do not check or install Debian packages

using System.Xml.Linq;

var target = Argument("target", "Default");
var configuration = Argument("configuration", "Release");
var benchArgs = Argument("bench-args", "");
var harnessArgs = Argument("harness-args", "");
var skipSystemPackages = HasArgument("skip-system-packages");

var root = Context.Environment.WorkingDirectory;
var solution = root.CombineWithFilePath("Jitvmx.sln");
var artifacts = root.Combine("artifacts");

// Debian packages the build and the tests use. Required ones must be present
// (installed when running as root); optional ones are installed when possible
// and only warn when they cannot be. Add a package with one line here.
var systemPackages = new (string Name, bool Required)[]
{
    ("gcc", true),
    ("make", true),
    ("libc6-dev", true),
    ("musl-tools", false),
    ("qemu-user", false),
    ("busybox-static", true),
    ("libllvm19", true),
};

// An optional package that failed to install is not tried again for this long,
// so that repeated local builds do not run apt-get every time.
var optionalRetryAfter = TimeSpan.FromHours(12);

//////////////////////////////////////////////////////////////////////
// Helpers
//////////////////////////////////////////////////////////////////////

int Run(string tool, string arguments, IDictionary<string, string> env = null)
{
    var settings = new ProcessSettings
    {
        Arguments = arguments,
        WorkingDirectory = root,
    };
    if (env != null)
    {
        settings.EnvironmentVariables = env;
    }
    return StartProcess(tool, settings);
}

void RunChecked(string tool, string arguments)
{
    var exitCode = Run(tool, arguments);
    if (exitCode != 0)
    {
        throw new Exception($"'{tool} {arguments}' failed with exit code {exitCode}.");
    }
}

List<string> Capture(string tool, string arguments)
{
    try
    {
        StartProcess(tool, new ProcessSettings
        {
            Arguments = arguments,
            WorkingDirectory = root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }, out IEnumerable<string> output);
        return output.ToList();
    }
    catch (Exception)
    {
        return null; // tool not found
    }
}

bool IsRoot()
{
    var output = Capture("id", "-u");
    return output != null && output.FirstOrDefault()?.Trim() == "0";
}

HashSet<string> InstalledDebianPackages(IEnumerable<string> names)
{
    // No shell is involved: the format is one argument, in double quotes.
    var output = Capture("dpkg-query", "-W \"--showformat=${Package} ${db:Status-Abbrev}\\n\" " + string.Join(" ", names));
    if (output == null)
    {
        return null;
    }
    return output
        .Select(line => line.Split(' ', 2))
        .Where(parts => parts.Length == 2 && parts[1].StartsWith("ii"))
        .Select(parts => parts[0])
        .ToHashSet();
}

//////////////////////////////////////////////////////////////////////
// Tasks
//////////////////////////////////////////////////////////////////////

Task("Clean")
    .Does(() =>
{
    var deleteSettings = new DeleteDirectorySettings { Recursive = true, Force = true };
    foreach (var dir in new[] { "src", "tests", "bench" })
    {
        foreach (var name in new[] { "bin", "obj", "TestResults" })
        {
            DeleteDirectories(GetDirectories($"./{dir}/**/{name}"), deleteSettings);
        }
    }
    foreach (var dir in new[] { "artifacts", "native/build", "bench/results", "BenchmarkDotNet.Artifacts" })
    {
        if (DirectoryExists(dir))
        {
            DeleteDirectory(dir, deleteSettings);
        }
    }
});

Task("SystemPackages")
    .Does(() =>
{
    if (skipSystemPackages)
    {
        Information("Skipping the Debian package check (--skip-system-packages).");
        return;
    }

    var installed = InstalledDebianPackages(systemPackages.Select(p => p.Name));
    if (installed == null)
    {
        Warning("dpkg-query not found: not a Debian system, the system packages are not checked.");
        return;
    }

    var stampDir = artifacts.Combine("system-packages");
    bool RecentlyFailed(string name)
    {
        var stamp = stampDir.CombineWithFilePath(name + ".failed");
        return FileExists(stamp)
            && DateTime.UtcNow - System.IO.File.GetLastWriteTimeUtc(stamp.FullPath) < optionalRetryAfter;
    }

    var missingRequired = systemPackages.Where(p => p.Required && !installed.Contains(p.Name)).Select(p => p.Name).ToList();
    var missingOptional = systemPackages.Where(p => !p.Required && !installed.Contains(p.Name)).Select(p => p.Name).ToList();
    var toTryOptional = missingOptional.Where(name => !RecentlyFailed(name)).ToList();
    foreach (var name in missingOptional.Except(toTryOptional))
    {
        Warning($"Optional package {name} is not installed (its last install failed; not retried before {optionalRetryAfter.TotalHours:0} hours pass or artifacts/ is cleaned).");
    }

    if (missingRequired.Count == 0 && toTryOptional.Count == 0)
    {
        Information(missingOptional.Count == 0
            ? "System packages: all present."
            : "System packages: the required ones are present.");
        return;
    }

    if (!IsRoot())
    {
        if (missingRequired.Count > 0)
        {
            throw new Exception(
                "Missing required Debian packages: " + string.Join(" ", missingRequired) + ". " +
                "Install them with: sudo apt-get install " + string.Join(" ", missingRequired));
        }
        Warning("Optional Debian packages are missing (some tests may be skipped): " + string.Join(" ", toTryOptional) +
                ". Install them with: sudo apt-get install " + string.Join(" ", toTryOptional));
        return;
    }

    var aptEnv = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
    const string aptOptions = "-y -q --no-install-recommends -o DPkg::Lock::Timeout=300";

    Information("Running apt-get update...");
    if (Run("apt-get", "-q update", aptEnv) != 0)
    {
        Warning("apt-get update failed; trying to install from the existing package lists.");
    }

    if (missingRequired.Count > 0)
    {
        Information("Installing required packages: " + string.Join(" ", missingRequired));
        if (Run("apt-get", $"install {aptOptions} {string.Join(" ", missingRequired)}", aptEnv) != 0)
        {
            throw new Exception("apt-get could not install the required packages: " + string.Join(" ", missingRequired));
        }
    }

    // One at a time, so that one unavailable package does not stop the others.
    foreach (var name in toTryOptional)
    {
        Information("Installing optional package: " + name);
        if (Run("apt-get", $"install {aptOptions} {name}", aptEnv) != 0)
        {
            Warning($"Optional package {name} could not be installed; the features that need it are unavailable.");
            EnsureDirectoryExists(stampDir);
            System.IO.File.WriteAllText(stampDir.CombineWithFilePath(name + ".failed").FullPath, DateTime.UtcNow.ToString("o") + "\n");
        }
    }
});

Task("Native")
    .IsDependentOn("SystemPackages")
    .Does(() =>
{
    RunChecked("make", $"-C native -j{Environment.ProcessorCount}");
});

Task("Build")
    .IsDependentOn("SystemPackages")
    .IsDependentOn("Native")
    .Does(() =>
{
    DotNetBuild(solution.FullPath, new DotNetBuildSettings
    {
        Configuration = configuration,
        NoLogo = true,
    });
});

Task("Test")
    .IsDependentOn("Build")
    .Does(() =>
{
    // Each test project writes its TRX file to its own TestResults folder;
    // the summary below is made from those files.
    var trxGlob = "./**/TestResults/*.trx";
    var globberSettings = new GlobberSettings
    {
        Predicate = entry => !entry.Path.FullPath.Contains("/.git") && !entry.Path.FullPath.Contains("/node_modules"),
    };
    DeleteFiles(GetFiles(trxGlob, globberSettings));

    var stopwatch = System.Diagnostics.Stopwatch.StartNew();
    Exception testFailure = null;
    // LLVM's code cache (JITVMX_CACHE_DIR) starts empty and stays out of the user's home: the first
    // suite compiles and stores, the later ones (the same programs under --tier llvm) also load.
    var codeCache = root.Combine("artifacts/test-code-cache");
    if (DirectoryExists(codeCache)) DeleteDirectory(codeCache, new DeleteDirectorySettings { Recursive = true, Force = true });
    void RunTests(string path, string trxName = null, string filter = null, Dictionary<string, string> env = null)
    {
        env = new Dictionary<string, string>(env ?? new Dictionary<string, string>()) { ["JITVMX_CACHE_DIR"] = codeCache.FullPath };
        try
        {
            DotNetTest(path, new DotNetTestSettings
            {
                Configuration = configuration,
                NoBuild = true,
                NoLogo = true,
                Filter = filter,
                EnvironmentVariables = env,
                // minimal: every failed test with its message and stack, then one
                // "Passed!/Failed! - Failed: N, Passed: N, ..." line per test assembly.
                Loggers = new List<string> { "console;verbosity=minimal", trxName == null ? "trx" : $"trx;LogFileName={trxName}.trx" },
                ArgumentCustomization = args => args
                    // A test that hangs is killed (and the run fails) instead of blocking CI.
                    .Append("--blame-hang-timeout").Append("10m")
                    .Append("--blame-hang-dump-type").Append("none"),
            });
        }
        catch (Exception e)
        {
            testFailure ??= e;
        }
    }
    RunTests(solution.FullPath);
    // The differential and whole-program suites again with every region compiled by LLVM
    // (--tier llvm): cases at O0, one in 8 at O2; whole programs as `jitvmx run --tier llvm` runs
    // them (O0 first, hot regions again at O1 in the background). Results are labelled [llvm] below.
    Information("The differential and whole-program tests under the LLVM tier:");
    RunTests(root.CombineWithFilePath("tests/Jitvmx.Core.Tests/Jitvmx.Core.Tests.csproj").FullPath, "llvm", "FullyQualifiedName~Jitvmx.Tests.Differential",
        new Dictionary<string, string> { ["JITVMX_TEST_TIER"] = "llvm", ["JITVMX_TEST_LLVM_LEVEL"] = "mixed" });
    RunTests(root.CombineWithFilePath("tests/Jitvmx.Linux.Tests/Jitvmx.Linux.Tests.csproj").FullPath, "llvm", null,
        new Dictionary<string, string> { ["JITVMX_TEST_TIER"] = "llvm" });
    // And with the interpreter tier alone (--tier interp); labelled [interp].
    Information("The differential and whole-program tests under the interpreter tier:");
    RunTests(root.CombineWithFilePath("tests/Jitvmx.Core.Tests/Jitvmx.Core.Tests.csproj").FullPath, "interp", "FullyQualifiedName~Jitvmx.Tests.Differential",
        new Dictionary<string, string> { ["JITVMX_TEST_TIER"] = "interp" });
    RunTests(root.CombineWithFilePath("tests/Jitvmx.Linux.Tests/Jitvmx.Linux.Tests.csproj").FullPath, "interp", null,
        new Dictionary<string, string> { ["JITVMX_TEST_TIER"] = "interp" });
    stopwatch.Stop();

    var trxFiles = GetFiles(trxGlob, globberSettings).ToList();
    var resultsDir = artifacts.Combine("test-results");
    EnsureDirectoryExists(resultsDir);
    CleanDirectory(resultsDir);

    int passed = 0, failed = 0, skipped = 0, total = 0;
    var failedNames = new List<string>();
    XNamespace ns = "http://microsoft.com/schemas/VisualStudio/TeamTest/2010";
    foreach (var trx in trxFiles)
    {
        var project = trx.GetDirectory().GetParent().GetDirectoryName();
        string pass = trx.GetFilenameWithoutExtension().FullPath;
        if (pass is "llvm" or "interp") project += $"[{pass}]";
        CopyFile(trx, resultsDir.CombineWithFilePath(project + ".trx"));

        // Counted from the individual results: the TRX counters leave skipped tests out.
        var doc = XDocument.Load(trx.FullPath);
        var results = doc.Descendants(ns + "Results").Elements(ns + "UnitTestResult").ToList();
        foreach (var result in results)
        {
            switch ((string)result.Attribute("outcome"))
            {
                case "Passed":
                    passed++;
                    break;
                case "Failed" or "Error" or "Timeout" or "Aborted":
                    failed++;
                    failedNames.Add($"{project}: {(string)result.Attribute("testName")}");
                    break;
                default:
                    skipped++;
                    break;
            }
        }
        total += results.Count;

        // A crashed or hung test host ends the run without a failed result for
        // the test that brought it down: count the aborted run as one failure.
        var outcome = (string)doc.Descendants(ns + "ResultSummary").FirstOrDefault()?.Attribute("outcome");
        var resultsFailed = results.Count(r => (string)r.Attribute("outcome") is "Failed" or "Error" or "Timeout" or "Aborted");
        if (outcome is not ("Completed" or "Passed") && resultsFailed == 0)
        {
            failed++;
            total++;
            failedNames.Add($"{project}: test run {outcome?.ToLowerInvariant() ?? "aborted"} (a test crashed or hung; see the log above)");
        }
    }
    if (testFailure != null && failed == 0)
    {
        failed++;
        failedNames.Add("dotnet test failed without a failed test result (see the log above)");
    }

    Console.WriteLine();
    if (failedNames.Count > 0)
    {
        Console.WriteLine($"Failed tests ({failedNames.Count}):");
        foreach (var name in failedNames.OrderBy(n => n, StringComparer.Ordinal))
        {
            Console.WriteLine("  " + name);
        }
    }
    Console.WriteLine($"Test results: {trxFiles.Count} test assemblies, {total} tests, {stopwatch.Elapsed.TotalSeconds:0.0} s; TRX files in {artifacts.GetDirectoryName()}/test-results/");
    // The totals line, alone on its line.
    Console.WriteLine($"Tests: {passed} passed, {failed} failed, {skipped} skipped");
    if (total == 0 && testFailure == null)
    {
        Warning("No tests were found.");
    }

    if (testFailure != null)
    {
        throw new Exception("Tests failed.", testFailure);
    }
    if (failed > 0)
    {
        throw new Exception($"{failed} tests failed.");
    }
});

Task("Bench")
    .IsDependentOn("Build")
    .Does(() =>
{
    // The whole-program harness first (jitvmx bench, through the CLI just built): native, every
    // Jitvmx tier and qemu-x86_64 on the native/bench programs. A runner whose output differs from
    // native fails the target, after the micro-benchmarks have run.
    var cli = root.CombineWithFilePath($"src/Jitvmx.Cli/bin/{configuration}/net10.0/jitvmx.dll");
    var harnessExit = Run("dotnet", $"\"{cli.FullPath}\" bench {harnessArgs.Trim()}");

    var extra = benchArgs.Trim();
    var args = new ProcessArgumentBuilder()
        .Append("run")
        .Append("--configuration").Append(configuration)
        .Append("--no-build")
        .Append("--project").Append("bench/Jitvmx.Bench")
        .Append("--");
    // Defaults, each dropped when --bench-args gives its own.
    if (!System.Text.RegularExpressions.Regex.IsMatch(extra, @"(^|\s)(--filter|-f)(\s|=|$)"))
    {
        args.Append("--filter").Append("*");
    }
    if (!System.Text.RegularExpressions.Regex.IsMatch(extra, @"(^|\s)(--job|-j)(\s|=|$)"))
    {
        args.Append("--job").Append("short");
    }
    if (extra.Length > 0)
    {
        args.Append(extra);
    }
    RunChecked("dotnet", args.Render());

    if (harnessExit != 0)
    {
        throw new Exception($"jitvmx bench failed with exit code {harnessExit} (a runner's output differed from native, or bad --harness-args).");
    }
});

Task("Default")
    .IsDependentOn("Test");

RunTarget(target);
