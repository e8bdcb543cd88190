// SPDX-License-Identifier: MIT
using Jitvmx.Lifting;

namespace Jitvmx.Tests.Engine;

/// <summary>Guest code for the translator straight from a byte array at <see cref="GuestBuilder.CodeBase"/>, without a VM.</summary>
internal sealed class CodeBytes(byte[] code) : ICodeSource
{
    public int FetchCode(ulong address, Span<byte> buffer)
    {
        long off = (long)(address - GuestBuilder.CodeBase);
        if (off < 0 || off >= code.Length) return 0;
        int n = Math.Min(buffer.Length, code.Length - (int)off);
        code.AsSpan((int)off, n).CopyTo(buffer);
        return n;
    }
}
