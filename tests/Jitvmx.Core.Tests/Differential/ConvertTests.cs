// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Tests.Oracle;

namespace Jitvmx.Tests.Differential;

public sealed class ConvertTests
{
    [Fact]
    public void SignExtensionsMatchHost()
    {
        var rng = DiffHarness.Rng(out int seed);
        Action<Assembler>[] forms = [a => a.cbw(), a => a.cwde(), a => a.cdqe(), a => a.cwd(), a => a.cdq(), a => a.cqo()];
        // Values either side of each sign bit, with garbage above it.
        ulong[] edges = [0, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue];
        var cases = new List<OracleCase>();
        foreach (var form in forms)
        {
            foreach (ulong v in edges)
            {
                ulong garbage = (ulong)rng.NextInt64();
                cases.Add(CaseGen.Case(rng, form).With(Gpr.Rax, v).With(Gpr.Rdx, garbage));
                cases.Add(CaseGen.Case(rng, form).With(Gpr.Rax, v | (garbage & 0xFFFF_FF00_0000_0000)));
            }
            for (int k = 0; k < 10; k++) cases.Add(CaseGen.Case(rng, form));
        }
        DiffHarness.Check(cases, 0, "convert", seed);
    }
}
