// SPDX-License-Identifier: MIT

using System.Buffers.Binary;
using System.Diagnostics;
using Iced.Intel;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;
using F = Jitvmx.Tests.Oracle.OracleFlags;

namespace Jitvmx.Tests.Oracle;

public sealed class HostOracleTests(ITestOutputHelper output)
{
    private const ulong DataBase = HostOracle.DataBase;

    private static ulong[] DistinctGprs()
    {
        var gprs = new ulong[16];
        for (int i = 0; i < 16; i++)
            gprs[i] = 0x0101_0101_0101_0101UL * (ulong)(i + 1) ^ 0xA5;
        gprs[(int)Gpr.Rsp] = DataBase + 0x800;
        return gprs;
    }

    private static byte[] Pattern()
    {
        var mem = new byte[HostOracle.MemorySize];
        for (int i = 0; i < mem.Length; i++)
            mem[i] = (byte)(i * 7 + 3);
        return mem;
    }

    private static int Length(Action<Assembler> emit) => OracleCase.Assemble(emit).Length;

    [Theory]
    [InlineData(1UL, 2UL, 3UL, F.PF)]
    [InlineData(ulong.MaxValue, 1UL, 0UL, F.CF | F.PF | F.AF | F.ZF)]
    [InlineData(0x7FFF_FFFF_FFFF_FFFFUL, 1UL, 0x8000_0000_0000_0000UL, F.PF | F.AF | F.SF | F.OF)]
    [InlineData(0x8000_0000_0000_0000UL, 0x8000_0000_0000_0000UL, 0UL, F.CF | F.PF | F.ZF | F.OF)]
    public void AddComputesResultAndFlags(ulong a, ulong b, ulong sum, ulong flags)
    {
        var gprs = DistinctGprs();
        gprs[(int)Gpr.Rax] = a;
        gprs[(int)Gpr.Rbx] = b;
        var c = OracleCase.FromAssembler(asm => asm.add(rax, rbx), gprs, memory: Pattern());

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.None, r.Signal);
        Assert.Equal((ulong)c.Code.Length, r.RipOffset);
        Assert.Equal(sum, r[Gpr.Rax]);
        Assert.Equal(flags | F.HostForced, r.Rflags);
        var expected = (ulong[])gprs.Clone();
        expected[(int)Gpr.Rax] = sum;
        Assert.Equal(expected, r.Gprs);
        Assert.Equal(Pattern(), r.Memory);
    }

    [Fact]
    public void AddKeepsDirectionFlagAndReplacesStatusFlags()
    {
        var c = OracleCase.FromAssembler(asm => asm.add(rax, rbx), rflags: F.Input)
            .With(Gpr.Rax, 1).With(Gpr.Rbx, 2);

        var r = HostOracle.Run(c);

        Assert.Equal(F.PF | F.DF | F.HostForced, r.Rflags);
    }

    [Fact]
    public void EachInputFlagIsLoadedAndOthersAreIgnored()
    {
        ulong[] bits = [F.CF, F.PF, F.AF, F.ZF, F.SF, F.OF, F.DF, 0, 0xFFFF_FFFFUL];
        var cases = bits.Select(b => new OracleCase([], new ulong[16], b, new byte[HostOracle.MemorySize])).ToList();
        // ADC sees the incoming CF.
        cases.Add(OracleCase.FromAssembler(asm => asm.adc(rax, rbx), rflags: F.CF).With(Gpr.Rax, 1).With(Gpr.Rbx, 2));

        var results = HostOracle.Run(cases);

        for (int i = 0; i < bits.Length; i++)
            Assert.Equal((bits[i] & F.Input) | F.HostForced, results[i].Rflags);
        Assert.Equal(4UL, results[^1][Gpr.Rax]);
    }

    [Fact]
    public void AllSixteenRegistersRoundTrip()
    {
        var gprs = DistinctGprs();
        var values = Enumerable.Range(0, 16).Select(i => 0xF00D_0000_0000_0000UL + (ulong)i * 0x1111_1111).ToArray();
        var set = OracleCase.FromAssembler(asm =>
        {
            var regs = new[] { rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15 };
            for (int i = 0; i < 16; i++)
                asm.mov(regs[i], values[i]);
        }, gprs);
        var untouched = new OracleCase([], gprs, 0, new byte[HostOracle.MemorySize]);

        var results = HostOracle.Run([untouched, set]);

        Assert.Equal(gprs, results[0].Gprs);
        Assert.Equal(0UL, results[0].RipOffset);
        Assert.Equal(values, results[1].Gprs);
    }

    [Fact]
    public void CodeRunsAtCodeBase()
    {
        var c = OracleCase.FromAssembler(asm =>
        {
            var here = asm.CreateLabel();
            asm.lea(rax, __[here]);
            asm.Label(ref here);
            asm.nop();
        });

        var r = HostOracle.Run(c);

        Assert.Equal(HostOracle.CodeBase + (ulong)c.Code.Length - 1, r[Gpr.Rax]);
    }

    [Fact]
    public void PushAndPopUseTheDataWindow()
    {
        var c = OracleCase.FromAssembler(asm =>
        {
            asm.push(rax);
            asm.push(rcx);
            asm.pop(rdx);
            asm.mov(__qword_ptr[rsp - 16], rbx);
        }, memory: Pattern())
            .With(Gpr.Rsp, DataBase + 0x100)
            .With(Gpr.Rax, 0x1122_3344_5566_7788)
            .With(Gpr.Rcx, 0x99AA_BBCC_DDEE_FF00)
            .With(Gpr.Rbx, 0x0BAD_F00D_DEAD_BEEF);

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.None, r.Signal);
        Assert.Equal(DataBase + 0xF8, r[Gpr.Rsp]);
        Assert.Equal(0x99AA_BBCC_DDEE_FF00UL, r[Gpr.Rdx]);
        var expected = Pattern();
        BinaryPrimitives.WriteUInt64LittleEndian(expected.AsSpan(0xF8), 0x1122_3344_5566_7788);
        BinaryPrimitives.WriteUInt64LittleEndian(expected.AsSpan(0xF0), 0x99AA_BBCC_DDEE_FF00);
        BinaryPrimitives.WriteUInt64LittleEndian(expected.AsSpan(0xE8), 0x0BAD_F00D_DEAD_BEEF);
        Assert.Equal(expected, r.Memory);
    }

    [Fact]
    public void DivideByZeroReportsSigfpeAtTheDivWithTheStateBeforeIt()
    {
        Action<Assembler> before = asm =>
        {
            asm.mov(rbx, 0x1234);
            asm.mov(__qword_ptr[rsp], rbx);
        };
        var gprs = DistinctGprs();
        gprs[(int)Gpr.Rcx] = 0;
        var c = OracleCase.FromAssembler(asm =>
        {
            before(asm);
            asm.div(rcx);
            asm.mov(rbx, 0);
        }, gprs, F.CF | F.ZF, Pattern());

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.Sigfpe, r.Signal);
        Assert.Equal((ulong)Length(before), r.RipOffset);
        var expected = (ulong[])gprs.Clone();
        expected[(int)Gpr.Rbx] = 0x1234;
        Assert.Equal(expected, r.Gprs);
        Assert.Equal(F.CF | F.ZF | F.HostForced, r.Rflags & ~F.RF);
        Assert.Equal(0x1234UL, BinaryPrimitives.ReadUInt64LittleEndian(r.Memory.AsSpan(0x800)));
    }

    [Fact]
    public void Ud2ReportsSigillAndLeavesTheGuestStackAlone()
    {
        var c = OracleCase.FromAssembler(asm =>
        {
            asm.nop();
            asm.nop();
            asm.ud2();
        }, DistinctGprs(), memory: Pattern());

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.Sigill, r.Signal);
        Assert.Equal(2UL, r.RipOffset);
        Assert.Equal(DistinctGprs(), r.Gprs);
        // RSP points into the window: a signal frame there would show up here.
        Assert.Equal(Pattern(), r.Memory);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(DataBase + HostOracle.MemorySize)]
    [InlineData(DataBase - 8)]
    [InlineData(0x0000_8000_0000_0000UL)] // non-canonical: #GP rather than #PF
    public void LoadFromUnmappedAddressReportsSigsegv(ulong address)
    {
        var c = OracleCase.FromAssembler(asm =>
        {
            asm.inc(rcx);
            asm.mov(rax, __qword_ptr[rbx]);
        }).With(Gpr.Rbx, address).With(Gpr.Rax, 77);

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.Sigsegv, r.Signal);
        Assert.Equal((ulong)Length(asm => asm.inc(rcx)), r.RipOffset);
        Assert.Equal(77UL, r[Gpr.Rax]);
        Assert.Equal(1UL, r[Gpr.Rcx]);
    }

    [Fact]
    public void LoadAtTheEndOfTheDataWindowWorks()
    {
        var mem = Pattern();
        var c = OracleCase.FromAssembler(asm => asm.mov(rax, __qword_ptr[rbx]), memory: mem)
            .With(Gpr.Rbx, DataBase + HostOracle.MemorySize - 8);

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.None, r.Signal);
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(mem.AsSpan(HostOracle.MemorySize - 8)), r[Gpr.Rax]);
    }

    [Fact]
    public void StoreIntoTheCodeReportsSigsegv()
    {
        var c = OracleCase.FromAssembler(asm => asm.mov(__byte_ptr[rbx], 0x90))
            .With(Gpr.Rbx, HostOracle.CodeBase);

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.Sigsegv, r.Signal);
        Assert.Equal(0UL, r.RipOffset);
    }

    [Fact]
    public void Int3ReportsSigtrapAfterTheInstruction()
    {
        var c = OracleCase.FromAssembler(asm =>
        {
            asm.nop();
            asm.int3();
            asm.nop();
        });

        var r = HostOracle.Run(c);

        Assert.Equal(OracleSignal.Sigtrap, r.Signal);
        Assert.Equal(2UL, r.RipOffset);
    }

    [Fact]
    public void TrapFlagSetByTheCodeReportsSigtrap()
    {
        Action<Assembler> setTf = asm =>
        {
            asm.push((int)(F.TF | F.Reserved1));
            asm.popfq();
        };
        var middle = OracleCase.FromAssembler(asm =>
        {
            setTf(asm);
            asm.inc(rax);
            asm.inc(rax);
        }).With(Gpr.Rsp, DataBase + 0x800);
        var atEnd = OracleCase.FromAssembler(setTf).With(Gpr.Rsp, DataBase + 0x800);

        var results = HostOracle.Run([middle, atEnd]);

        // The trap comes after the first instruction that runs with TF set.
        Assert.Equal(OracleSignal.Sigtrap, results[0].Signal);
        Assert.Equal((ulong)Length(setTf) + 3, results[0].RipOffset);
        Assert.Equal(1UL, results[0][Gpr.Rax]);
        Assert.Equal(F.TF | F.HostForced, results[0].Rflags);
        Assert.Equal(OracleSignal.Sigtrap, results[1].Signal);
        Assert.Equal((ulong)atEnd.Code.Length, results[1].RipOffset);
    }

    [Fact]
    public void AlignmentCheckReportsSigbusAndTheNextCaseStillRuns()
    {
        Action<Assembler> setAc = asm =>
        {
            asm.push((int)(F.AC | F.Reserved1));
            asm.popfq();
        };
        var misaligned = OracleCase.FromAssembler(asm =>
        {
            setAc(asm);
            asm.mov(rax, __qword_ptr[rbx]);
        }).With(Gpr.Rsp, DataBase + 0x800).With(Gpr.Rbx, DataBase + 1);
        var next = OracleCase.FromAssembler(asm => asm.add(rax, rbx)).With(Gpr.Rax, 40).With(Gpr.Rbx, 2);

        var results = HostOracle.Run([misaligned, next]);

        Assert.Equal(OracleSignal.Sigbus, results[0].Signal);
        Assert.Equal((ulong)Length(setAc), results[0].RipOffset);
        Assert.Equal(F.AC | F.HostForced, results[0].Rflags & ~F.RF);
        Assert.Equal(OracleSignal.None, results[1].Signal);
        Assert.Equal(42UL, results[1][Gpr.Rax]);
        Assert.Equal(F.HostForced, results[1].Rflags);
    }

    [Fact]
    public void InfiniteLoopReportsSigalrmAndTheNextCaseStillRuns()
    {
        var loop = OracleCase.FromAssembler(asm =>
        {
            asm.inc(rax);
            var self = asm.CreateLabel();
            asm.Label(ref self);
            asm.jmp(self);
        });
        var next = OracleCase.FromAssembler(asm => asm.add(rax, rbx)).With(Gpr.Rax, 40).With(Gpr.Rbx, 2);

        var sw = Stopwatch.StartNew();
        var results = HostOracle.Run([loop, next], timeoutMs: 200);
        sw.Stop();

        Assert.Equal(OracleSignal.Sigalrm, results[0].Signal);
        Assert.Equal((ulong)Length(asm => asm.inc(rax)), results[0].RipOffset);
        Assert.Equal(1UL, results[0][Gpr.Rax]);
        Assert.True(sw.Elapsed >= TimeSpan.FromMilliseconds(150), $"timed out too early: {sw.Elapsed}");
        Assert.Equal(OracleSignal.None, results[1].Signal);
        Assert.Equal(42UL, results[1][Gpr.Rax]);
    }

    [Fact]
    public void CasesDoNotInterfere()
    {
        // The first case dirties memory, leaves DF set and has long code; the second checks none of it leaks.
        var first = OracleCase.FromAssembler(asm =>
        {
            asm.mov(__qword_ptr[rbx], rbx);
            asm.std();
            for (int i = 0; i < 200; i++)
                asm.nop();
        }).With(Gpr.Rbx, DataBase);
        var second = OracleCase.FromAssembler(asm =>
        {
            asm.mov(rax, __qword_ptr[rbx]);
            asm.pushfq();
            asm.pop(rcx);
            asm.mov(rdx, HostOracle.CodeBase + 150); // where the first case had NOPs: now INT3 filler
            asm.jmp(rdx);
        }, memory: Pattern()).With(Gpr.Rbx, DataBase).With(Gpr.Rsp, DataBase + 0x800);

        var results = HostOracle.Run([first, second]);

        Assert.Equal(OracleSignal.None, results[0].Signal);
        Assert.Equal(DataBase, BinaryPrimitives.ReadUInt64LittleEndian(results[0].Memory));
        Assert.Equal(F.DF | F.HostForced, results[0].Rflags);

        Assert.Equal(OracleSignal.Sigtrap, results[1].Signal);
        Assert.Equal(151UL, results[1].RipOffset);
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(Pattern()), results[1][Gpr.Rax]);
        Assert.Equal(F.HostForced, results[1][Gpr.Rcx]);
        var mem = Pattern();
        BinaryPrimitives.WriteUInt64LittleEndian(mem.AsSpan(0x7F8), F.HostForced); // from PUSHFQ
        Assert.Equal(mem, results[1].Memory);
    }

    [Fact]
    public void ThousandCasesRunInOneProcessQuickly()
    {
        var rng = new Random(1234);
        var cases = new List<OracleCase>();
        var expected = new List<(ulong Sum, ulong Product)>();
        for (int i = 0; i < 1000; i++)
        {
            ulong a = (ulong)rng.NextInt64() * 3, b = (ulong)rng.NextInt64() ^ (ulong)i;
            cases.Add(OracleCase.FromAssembler(asm =>
            {
                asm.add(rax, rbx);
                asm.mov(rcx, rax);
                asm.imul(rcx, rbx);
                asm.push(rcx);
            }).With(Gpr.Rax, a).With(Gpr.Rbx, b).With(Gpr.Rsp, DataBase + 8 + (ulong)(i % 512) * 8));
            expected.Add((a + b, unchecked((a + b) * b)));
        }

        var sw = Stopwatch.StartNew();
        var results = HostOracle.Run(cases);
        sw.Stop();
        output.WriteLine($"1000 cases: {sw.Elapsed.TotalMilliseconds:0.0} ms");

        Assert.Equal(1000, results.Count);
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(OracleSignal.None, results[i].Signal);
            Assert.Equal(expected[i].Sum, results[i][Gpr.Rax]);
            Assert.Equal(expected[i].Product, results[i][Gpr.Rcx]);
            Assert.Equal(expected[i].Product, BinaryPrimitives.ReadUInt64LittleEndian(results[i].Memory.AsSpan((i % 512) * 8)));
        }
    }

    [Fact]
    public void OracleDyingIsReportedAsAnError()
    {
        var exit = OracleCase.FromAssembler(asm =>
        {
            asm.mov(eax, 231); // exit_group
            asm.mov(edi, 3);
            asm.syscall();
        });

        // Enough cases to fill the pipe, so that feeding them fails too.
        var e = Assert.Throws<InvalidOperationException>(() => HostOracle.Run(Enumerable.Repeat(exit, 100).ToList()));
        Assert.Contains("case 0", e.Message);
        Assert.Contains("exit code 3", e.Message);
    }

    [Fact]
    public void MalformedCasesAreRejected()
    {
        var ok = OracleCase.FromAssembler(asm => asm.nop());
        Assert.Throws<ArgumentException>(() => HostOracle.Run([ok with { Gprs = new ulong[15] }]));
        Assert.Throws<ArgumentException>(() => HostOracle.Run([ok with { Memory = new byte[100] }]));
        Assert.Throws<ArgumentException>(() => HostOracle.Run([ok with { Code = new byte[HostOracle.MaxCodeSize + 1] }]));
    }
}
