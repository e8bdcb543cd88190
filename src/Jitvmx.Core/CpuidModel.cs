// SPDX-License-Identifier: MIT
namespace Jitvmx;

/// <summary>
/// A default CPUID model a VMM can answer CPUID exits from: a single-core "GenuineIntel" family-6
/// CPU that reports exactly the features Jitvmx executes, so that feature dispatch in guest software
/// (glibc's ifuncs, musl, compilers' runtime checks) picks code paths Jitvmx can run.
/// </summary>
/// <remarks>
/// <para>The vendor is "GenuineIntel" because glibc takes its cache sizes from Intel's leaves 2/4 only
/// for Intel (or AMD) CPUs; an unknown vendor leaves them unset.</para>
/// <para>Reported (each instruction bit is checked against the emitter table by a test):
/// leaf 1 EDX: FPU, TSC, CX8, CMOV, CLFSH, MMX, FXSR, SSE, SSE2; leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3,
/// CX16, SSE4.1, SSE4.2, MOVBE, POPCNT, AES, XSAVE, OSXSAVE (mirrors the guest's CR4.OSXSAVE, as
/// hardware does), RDRAND, hypervisor; leaf 7 EBX: BMI1, BMI2, ERMS, FCS/FDS deprecation (FNSTENV
/// and FXSAVE store zero selectors), RDSEED, ADX, CLFLUSHOPT, CLWB; leaf 0xD: the x87 and SSE state
/// components only (XCR0 may hold 3), XSAVEOPT and XSAVEC; extended: LAHF/SAHF, LZCNT (ABM),
/// PREFETCHW, SYSCALL, NX, RDTSCP, LM.</para>
/// <para>Not implemented and not reported: AVX and everything VEX/EVEX-encoded beyond BMI1/BMI2
/// (AVX2, FMA, F16C, AVX-512), FSGSBASE, XSAVES, SHA, RDPID. Cache and topology leaves describe one
/// core with one thread. Leaves beyond the maximum return zeros.</para>
/// </remarks>
public sealed class CpuidModel
{
    /// <summary>The model described above.</summary>
    public static CpuidModel Default { get; } = new();

    /// <summary>Highest basic leaf.</summary>
    public const uint MaxBasicLeaf = 0xD;

    /// <summary>Highest extended leaf.</summary>
    public const uint MaxExtendedLeaf = 0x80000008;

    /// <summary>CR4.OSXSAVE: CPUID.1:ECX.OSXSAVE reports it.</summary>
    public const ulong Cr4OsXsave = 1UL << 18;

    /// <summary>CPUID.1:ECX.OSXSAVE (bit 27), not part of <see cref="Leaf1Ecx"/>: it follows the guest's CR4.</summary>
    public const uint OsXsaveBit = 1u << 27;

    /// <summary>XCR0 bits the model supports (x87 and SSE state): CPUID.(0xD,0):EAX.</summary>
    public const uint SupportedXcr0 = 3;

    /// <summary>Size of an XSAVE area holding x87 and SSE state: the 512-byte legacy region and the 64-byte header.</summary>
    public const uint XsaveAreaSize = 576;

    /// <summary>CPUID.1:EDX, which Linux reports as AT_HWCAP on x86-64.</summary>
    public uint Leaf1Edx { get; init; } =
        Bit(0) | Bit(4) | Bit(8) | Bit(15) | Bit(19) | Bit(23) | Bit(24) | Bit(25) | Bit(26); // FPU TSC CX8 CMOV CLFSH MMX FXSR SSE SSE2

    /// <summary>CPUID.1:ECX without OSXSAVE (which follows CR4).</summary>
    public uint Leaf1Ecx { get; init; } =
        Bit(0) | Bit(1) | Bit(9) | Bit(13) | Bit(19) | Bit(20) | Bit(22) | Bit(23) | Bit(25) | Bit(26) | Bit(30) | Bit(31);
        // SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2 MOVBE POPCNT AES XSAVE RDRAND hypervisor

    /// <summary>CPUID.(7,0):EBX.</summary>
    public uint Leaf7Ebx { get; init; } =
        Bit(3) | Bit(8) | Bit(9) | Bit(13) | Bit(18) | Bit(19) | Bit(23) | Bit(24); // BMI1 BMI2 ERMS FCS/FDS-deprecated RDSEED ADX CLFLUSHOPT CLWB

    /// <summary>CPUID.(0xD,1):EAX: XSAVEOPT and XSAVEC (no XGETBV with ECX = 1, no XSAVES).</summary>
    public uint LeafDSub1Eax { get; init; } = Bit(0) | Bit(1);

    /// <summary>CPUID.80000001H:ECX.</summary>
    public uint ExtLeaf1Ecx { get; init; } = Bit(0) | Bit(5) | Bit(8); // LAHF/SAHF ABM(LZCNT) PREFETCHW

    /// <summary>CPUID.80000001H:EDX.</summary>
    public uint ExtLeaf1Edx { get; init; } = Bit(11) | Bit(20) | Bit(27) | Bit(29); // SYSCALL NX RDTSCP LM

    /// <summary>Family/model/stepping (CPUID.1:EAX): family 6, model 0x2A, stepping 7.</summary>
    public uint Signature { get; init; } = 0x000206A7;

    /// <summary>Brand string (at most 47 characters).</summary>
    public string Brand { get; init; } = "Jitvmx virtual CPU";

    private static uint Bit(int n) => 1u << n;

    /// <summary>
    /// The register values CPUID returns for <paramref name="leaf"/> (EAX) and <paramref name="subleaf"/> (ECX)
    /// given the guest's <paramref name="cr4"/>, whose OSXSAVE bit CPUID.1:ECX reports (0: the OS has not enabled XSAVE).
    /// </summary>
    public (uint Eax, uint Ebx, uint Ecx, uint Edx) Query(uint leaf, uint subleaf, ulong cr4 = 0)
    {
        switch (leaf)
        {
            case 0: return (MaxBasicLeaf, 0x756E6547, 0x6C65746E, 0x49656E69); // "Genu" "ntel" "ineI"
            case 1:
                // CLFLUSH line 64, one logical processor, APIC ID 0.
                return (Signature, 0x00010800, Leaf1Ecx | ((cr4 & Cr4OsXsave) != 0 ? OsXsaveBit : 0), Leaf1Edx);
            case 2: return (0x00FF0001, 0, 0, 0); // descriptor 0xFF: "see leaf 4"
            case 4:
                return subleaf switch
                {
                    0 => Cache(1, 1, 8, 64, 64),      // L1d 32 KiB
                    1 => Cache(2, 1, 8, 64, 64),      // L1i 32 KiB
                    2 => Cache(3, 2, 8, 64, 512),     // L2 256 KiB
                    3 => Cache(3, 3, 16, 64, 8192),   // L3 8 MiB
                    _ => (0, 0, 0, 0),
                };
            case 7: return subleaf == 0 ? (0u, Leaf7Ebx, 0u, 0u) : (0u, 0u, 0u, 0u);
            case 0xB:
                return subleaf switch
                {
                    0 => (0, 1, 0x100, 0),           // SMT level: one thread
                    1 => (0, 1, 0x201, 0),           // core level: one core
                    _ => (0u, 0u, subleaf & 0xFF, 0u),
                };
            case 0xD:
                // Components 0 (x87) and 1 (SSE) live in the legacy region, so every size (for what XCR0
                // enables, for everything supported, compacted) is 512 + 64; components 2 and up have no sub-leaves.
                return subleaf switch
                {
                    0 => (SupportedXcr0, XsaveAreaSize, XsaveAreaSize, 0u),
                    1 => (LeafDSub1Eax, XsaveAreaSize, 0u, 0u),
                    _ => (0u, 0u, 0u, 0u),
                };
            case 0x80000000: return (MaxExtendedLeaf, 0, 0, 0);
            case 0x80000001: return (0, 0, ExtLeaf1Ecx, ExtLeaf1Edx);
            case 0x80000002 or 0x80000003 or 0x80000004: return BrandPart((int)(leaf - 0x80000002));
            case 0x80000006: return (0, 0, (256u << 16) | (6u << 12) | 64, 0); // L2: 256 KiB, 8-way, 64-byte lines
            case 0x80000008: return (0x3030, 0, 0, 0); // 48-bit physical and linear addresses
            default: return (0, 0, 0, 0);
        }
    }

    /// <summary>Answers the CPUID exit <paramref name="cpu"/> stopped at (from its EAX, ECX and CR4) and advances RIP.</summary>
    public void Complete(VirtualCpu cpu)
    {
        ref var s = ref cpu.State;
        var (a, b, c, d) = Query((uint)s.Rax, (uint)s.Rcx, s.Cr4);
        cpu.CompleteCpuid(a, b, c, d);
    }

    private static (uint, uint, uint, uint) Cache(uint type, uint level, uint ways, uint line, uint sets) =>
        (type | (level << 5) | (1u << 8), ((ways - 1) << 22) | (line - 1), sets - 1, 0);

    private (uint, uint, uint, uint) BrandPart(int part)
    {
        Span<byte> b = stackalloc byte[48];
        b.Clear();
        System.Text.Encoding.ASCII.GetBytes(Brand.AsSpan(0, Math.Min(Brand.Length, 47)), b);
        var s = b.Slice(part * 16, 16);
        return (BitConverter.ToUInt32(s), BitConverter.ToUInt32(s[4..]), BitConverter.ToUInt32(s[8..]), BitConverter.ToUInt32(s[12..]));
    }
}
