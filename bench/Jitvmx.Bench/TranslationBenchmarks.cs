// SPDX-License-Identifier: MIT
using BenchmarkDotNet.Attributes;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Jitvmx.Bench;

/// <summary>Translation cost per tier: guest code of compiler-like shape, translated from scratch each time.</summary>
public class TranslationBenchmarks
{
    /// <summary>"il": the IL tier (RyuJIT); "llvm": every region compiled by LLVM at O2 (<c>--tier llvm</c>).</summary>
    [Params("il", "llvm")]
    public string Tier { get; set; } = "il";

    private const ulong Code = 0x10000;
    private byte[] _image = [];
    private int _instructions;
    private readonly List<ulong> _entries = [];

    [GlobalSetup]
    public void Setup()
    {
        // 64 small functions: loads, ALU work, a compare and branch, a store, a return.
        var a = new Assembler(64);
        var rng = new Random(1);
        var labels = new List<Label>();
        for (int f = 0; f < 64; f++)
        {
            var entry = a.CreateLabel();
            a.Label(ref entry);
            labels.Add(entry);
            var skip = a.CreateLabel();
            a.mov(rax, __qword_ptr[rdi + 8 * rng.Next(16)]);
            a.add(rax, rsi);
            a.imul(rcx, rax, rng.Next(1, 100));
            a.xor(rdx, rcx);
            a.shl(rdx, 3);
            a.cmp(rdx, rax);
            a.jl(skip);
            a.sub(rax, rdx);
            a.lea(r8, __[rax + rcx * 4 + 16]);
            a.Label(ref skip);
            a.and(rax, 0xFFFF);
            a.mov(__qword_ptr[rdi + 8 * rng.Next(16)], rax);
            a.ret();
            _instructions += 12;
        }
        using var ms = new MemoryStream();
        var result = a.Assemble(new StreamCodeWriter(ms), Code, BlockEncoderOptions.ReturnNewInstructionOffsets);
        _image = ms.ToArray();
        foreach (var l in labels) _entries.Add(result.GetLabelRIP(l));
    }

    /// <summary>Translating all 64 functions (768 guest instructions): divide by 768 for the time per instruction.</summary>
    [Benchmark]
    public long TranslateFunctions()
    {
        using var vm = new VirtualMachine();
        if (Tier == "llvm" && !Jitvmx.Llvm.LlvmTier.TryAttach(vm, Jitvmx.Llvm.LlvmOptLevel.O2, out string? whyNot))
            throw new InvalidOperationException(whyNot);
        vm.MapMemory(Code, 0x10000, MemoryPermissions.ReadExecute);
        vm.MapMemory(0x100000, 0x10000, MemoryPermissions.ReadWrite);
        vm.WritePhysical(Code, _image);
        vm.WritePhysical(0x108000, BitConverter.GetBytes(0xDEAD0000UL));
        var cpu = vm.CreateCpu();
        foreach (ulong entry in _entries)
        {
            // Each function is one region; its RET to an unmapped address ends the run.
            cpu.State.Rip = entry;
            cpu.State.Rdi = 0x100000;
            cpu.State.Rsp = 0x108000;
            cpu.Run();
        }
        return vm.Statistics.InstructionsTranslated;
    }
}
