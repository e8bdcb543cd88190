// SPDX-License-Identifier: MIT
using Iced.Intel;
using Jitvmx.Lifting;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Tests.Engine;

/// <summary>
/// The default CPUID model reports only what Jitvmx executes: every feature bit it sets is either
/// backed by representative instructions that the lifters translate (no #UD) or listed here as a
/// feature without instructions of its own.
/// </summary>
public class CpuidModelTests
{
    private static readonly AssemblerMemoryOperand M = __[rbx + 0x40];

    /// <summary>Where a feature bit lives.</summary>
    public enum Reg { Leaf1Ecx, Leaf1Edx, Leaf7Ebx, LeafDSub1Eax, Ext1Ecx, Ext1Edx }

    /// <summary>Representative instructions of each reported instruction-set feature.</summary>
    private static readonly Dictionary<(Reg, int), (string Name, Action<Assembler>[] Insns)> s_features = new()
    {
        [(Reg.Leaf1Edx, 0)] = ("FPU", [a => a.fld(__qword_ptr[rbx]), a => a.faddp(st1, st0), a => a.fsin(), a => a.fnstenv(M)]),
        [(Reg.Leaf1Edx, 4)] = ("TSC", [a => a.rdtsc()]),
        [(Reg.Leaf1Edx, 8)] = ("CX8", [a => a.cmpxchg8b(__qword_ptr[rbx])]),
        [(Reg.Leaf1Edx, 15)] = ("CMOV", [a => a.cmove(rax, rcx), a => a.fcmovb(st0, st1)]),
        [(Reg.Leaf1Edx, 19)] = ("CLFSH", [a => a.clflush(__byte_ptr[rbx])]),
        [(Reg.Leaf1Edx, 23)] = ("MMX", [a => a.paddb(mm0, mm1), a => a.movq(mm0, rax), a => a.emms(), a => a.pmaddwd(mm1, __qword_ptr[rbx])]),
        [(Reg.Leaf1Edx, 24)] = ("FXSR", [a => a.fxsave(M), a => a.fxrstor64(M)]),
        [(Reg.Leaf1Edx, 25)] = ("SSE", [a => a.addps(xmm0, xmm1), a => a.sqrtss(xmm0, xmm1), a => a.cvttss2si(eax, xmm0), a => a.ldmxcsr(__dword_ptr[rbx]),
            a => a.shufps(xmm0, xmm1, 0x1B), a => a.pavgb(mm0, mm1), a => a.maskmovq(mm0, mm1), a => a.movntps(M, xmm0), a => a.sfence()]),
        [(Reg.Leaf1Edx, 26)] = ("SSE2", [a => a.addpd(xmm0, xmm1), a => a.paddq(xmm0, xmm1), a => a.cvtsd2si(rax, xmm1), a => a.pshufd(xmm0, xmm1, 0x4E),
            a => a.pmovmskb(eax, xmm1), a => a.maskmovdqu(xmm0, xmm1), a => a.movnti(__dword_ptr[rbx], eax), a => a.lfence(), a => a.mfence()]),
        [(Reg.Leaf1Ecx, 0)] = ("SSE3", [a => a.addsubps(xmm0, xmm1), a => a.haddpd(xmm0, xmm1), a => a.lddqu(xmm0, M), a => a.movddup(xmm0, xmm1),
            a => a.movshdup(xmm0, xmm1), a => a.fisttp(__dword_ptr[rbx])]),
        [(Reg.Leaf1Ecx, 1)] = ("PCLMULQDQ", [a => a.pclmulqdq(xmm0, xmm1, 0x11)]),
        [(Reg.Leaf1Ecx, 9)] = ("SSSE3", [a => a.pshufb(xmm0, xmm1), a => a.palignr(xmm0, xmm1, 5), a => a.phaddw(xmm0, xmm1), a => a.pmaddubsw(xmm0, xmm1),
            a => a.pmulhrsw(xmm0, xmm1), a => a.psignd(xmm0, xmm1), a => a.pabsb(xmm0, xmm1), a => a.pshufb(mm0, mm1), a => a.palignr(mm0, mm1, 3)]),
        [(Reg.Leaf1Ecx, 13)] = ("CX16", [a => a.cmpxchg16b(__xmmword_ptr[rbx])]),
        [(Reg.Leaf1Ecx, 19)] = ("SSE4.1", [a => a.ptest(xmm0, xmm1), a => a.pblendvb(xmm0, xmm1), a => a.roundsd(xmm0, xmm1, 1), a => a.dpps(xmm0, xmm1, 0xFF),
            a => a.insertps(xmm0, xmm1, 0x10), a => a.pmovzxbw(xmm0, xmm1), a => a.phminposuw(xmm0, xmm1), a => a.mpsadbw(xmm0, xmm1, 5),
            a => a.pextrb(eax, xmm1, 3), a => a.blendvps(xmm0, xmm1), a => a.pmulld(xmm0, xmm1), a => a.packusdw(xmm0, xmm1), a => a.movntdqa(xmm0, M),
            a => a.extractps(eax, xmm1, 2), a => a.pminud(xmm0, xmm1), a => a.pcmpeqq(xmm0, xmm1)]),
        [(Reg.Leaf1Ecx, 20)] = ("SSE4.2", [a => a.pcmpistri(xmm0, xmm1, 0x0C), a => a.pcmpestrm(xmm0, M, 0x44), a => a.pcmpgtq(xmm0, xmm1),
            a => a.crc32(eax, __byte_ptr[rbx]), a => a.crc32(rax, rcx)]),
        [(Reg.Leaf1Ecx, 22)] = ("MOVBE", [a => a.movbe(eax, __dword_ptr[rbx]), a => a.movbe(__qword_ptr[rbx], rax)]),
        [(Reg.Leaf1Ecx, 23)] = ("POPCNT", [a => a.popcnt(rax, rcx)]),
        [(Reg.Leaf1Ecx, 25)] = ("AES", [a => a.aesenc(xmm0, xmm1), a => a.aesdeclast(xmm0, xmm1), a => a.aesimc(xmm0, xmm1), a => a.aeskeygenassist(xmm0, xmm1, 1)]),
        [(Reg.Leaf1Ecx, 26)] = ("XSAVE", [a => a.xsave(M), a => a.xrstor64(M), a => a.xgetbv(), a => a.xsetbv()]),
        [(Reg.Leaf1Ecx, 30)] = ("RDRAND", [a => a.rdrand(rax)]),
        [(Reg.Leaf7Ebx, 3)] = ("BMI1", [a => a.andn(rax, rcx, rdx), a => a.bextr(eax, ecx, edx), a => a.blsi(rax, rcx), a => a.blsmsk(eax, ecx),
            a => a.blsr(rax, rcx), a => a.tzcnt(rax, rcx)]),
        [(Reg.Leaf7Ebx, 8)] = ("BMI2", [a => a.bzhi(rax, rcx, rdx), a => a.mulx(rax, rcx, rdx), a => a.pdep(eax, ecx, edx), a => a.pext(rax, rcx, rdx),
            a => a.rorx(rax, rcx, 5), a => a.sarx(eax, ecx, edx), a => a.shlx(rax, rcx, rdx), a => a.shrx(eax, ecx, edx)]),
        [(Reg.Leaf7Ebx, 9)] = ("ERMS", [a => a.rep.movsb(), a => a.rep.stosb()]),
        [(Reg.Leaf7Ebx, 18)] = ("RDSEED", [a => a.rdseed(rax)]),
        [(Reg.Leaf7Ebx, 19)] = ("ADX", [a => a.adcx(rax, rcx), a => a.adox(eax, ecx)]),
        [(Reg.Leaf7Ebx, 23)] = ("CLFLUSHOPT", [a => a.clflushopt(__byte_ptr[rbx])]),
        [(Reg.Leaf7Ebx, 24)] = ("CLWB", [a => a.clwb(__byte_ptr[rbx])]),
        [(Reg.LeafDSub1Eax, 0)] = ("XSAVEOPT", [a => a.xsaveopt64(M)]),
        [(Reg.LeafDSub1Eax, 1)] = ("XSAVEC", [a => a.xsavec(M), a => a.xsavec64(M)]),
        [(Reg.Ext1Ecx, 0)] = ("LAHF/SAHF", [a => a.lahf(), a => a.sahf()]),
        [(Reg.Ext1Ecx, 5)] = ("ABM", [a => a.lzcnt(rax, rcx)]),
        [(Reg.Ext1Ecx, 8)] = ("PREFETCHW", [a => a.prefetchw(__byte_ptr[rbx])]),
        [(Reg.Ext1Edx, 11)] = ("SYSCALL", [a => a.syscall(), a => a.sysretq()]),
        [(Reg.Ext1Edx, 27)] = ("RDTSCP", [a => a.rdtscp()]),
    };

    /// <summary>Reported bits that name no instructions: why each is true of Jitvmx.</summary>
    private static readonly Dictionary<(Reg, int), string> s_nonInstruction = new()
    {
        [(Reg.Leaf1Ecx, 31)] = "hypervisor present",
        [(Reg.Leaf7Ebx, 13)] = "FCS/FDS deprecated: FNSTENV/FXSAVE store zero selectors (X87PointerTests, X87Tests)",
        [(Reg.Ext1Edx, 20)] = "NX: execute permission is enforced on fetch",
        [(Reg.Ext1Edx, 29)] = "long mode",
    };

    private static uint Value(CpuidModel m, Reg r) => r switch
    {
        Reg.Leaf1Ecx => m.Query(1, 0).Ecx,
        Reg.Leaf1Edx => m.Query(1, 0).Edx,
        Reg.Leaf7Ebx => m.Query(7, 0).Ebx,
        Reg.LeafDSub1Eax => m.Query(0xD, 1).Eax,
        Reg.Ext1Ecx => m.Query(0x80000001, 0).Ecx,
        _ => m.Query(0x80000001, 0).Edx,
    };

    public static TheoryData<Reg, int> ReportedBits()
    {
        var d = new TheoryData<Reg, int>();
        foreach (var r in Enum.GetValues<Reg>())
        {
            uint v = Value(CpuidModel.Default, r);
            for (int bit = 0; bit < 32; bit++)
                if ((v >> bit & 1) != 0) d.Add(r, bit);
        }
        return d;
    }

    [Theory]
    [MemberData(nameof(ReportedBits))]
    public void EveryReportedBitIsImplemented(Reg reg, int bit)
    {
        if (s_nonInstruction.ContainsKey((reg, bit))) return;
        Assert.True(s_features.TryGetValue((reg, bit), out var feature), $"{reg} bit {bit} is reported but has no representative instruction here");
        foreach (var emit in feature.Insns)
        {
            var asm = new Assembler(64);
            emit(asm);
            using var ms = new MemoryStream();
            asm.Assemble(new StreamCodeWriter(ms), GuestBuilder.CodeBase);
            var bytes = ms.ToArray();
            var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(bytes), GuestBuilder.CodeBase);
            decoder.Decode(out var insn);
            Assert.NotNull(EmitterTable.Instance.Lookup(insn));
            var unsupported = new List<Mnemonic>();
            var errors = new List<string>();
            var ir = Translator.Translate(new CodeBytes(bytes), GuestBuilder.CodeBase, RegionLimits.SingleInstruction, out _, unsupported, errors);
            Assert.NotNull(ir);
            Assert.True(unsupported.Count == 0 && errors.Count == 0, $"{feature.Name}: {insn} is not lifted ({string.Join(", ", errors)})");
        }
    }

    /// <summary>Every representative in the table belongs to a bit the model reports (the table stays honest).</summary>
    [Fact]
    public void TableListsOnlyReportedBits()
    {
        foreach (var (reg, bit) in s_features.Keys.Concat(s_nonInstruction.Keys))
            Assert.True((Value(CpuidModel.Default, reg) >> bit & 1) != 0, $"{reg} bit {bit} is not reported");
    }

    [Fact]
    public void NoAvxAndOsXsaveFollowsCr4()
    {
        var m = CpuidModel.Default;
        Assert.Equal(0u, m.Query(1, 0).Ecx & ((1u << 28) | (1u << 12) | (1u << 29))); // AVX FMA F16C
        Assert.Equal(0u, m.Query(7, 0).Ebx & ((1u << 5) | (1u << 16))); // AVX2 AVX512F
        Assert.Equal(0u, m.Query(1, 0).Ecx & CpuidModel.OsXsaveBit);
        Assert.NotEqual(0u, m.Query(1, 0, CpuidModel.Cr4OsXsave).Ecx & CpuidModel.OsXsaveBit);
        Assert.Equal((3u, 576u, 576u, 0u), m.Query(0xD, 0));
        Assert.Equal((0u, 0u, 0u, 0u), m.Query(0xD, 2)); // no AVX state component
    }

    /// <summary>A guest's CPUID sees OSXSAVE once its CR4 enables XSAVE.</summary>
    [Fact]
    public void CompleteReadsTheGuestCr4()
    {
        using var g = new GuestBuilder(a => { a.mov(eax, 1); a.cpuid(); a.hlt(); });
        g.Cpu.Controls.HltExiting = true;
        g.Cpu.State.Cr4 |= CpuidModel.Cr4OsXsave;
        var exit = g.Cpu.Run();
        Assert.Equal(ExitReason.Cpuid, exit.Reason);
        CpuidModel.Default.Complete(g.Cpu);
        Assert.NotEqual(0UL, g.Cpu.State.Rcx & CpuidModel.OsXsaveBit);
    }
}
