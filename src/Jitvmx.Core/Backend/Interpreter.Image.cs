// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace Jitvmx.Backend;

// Prepared code as bytes, for the prepared-region cache (Runtime/PreparedRegionCache.cs). The
// instruction array is written as it is in memory: the cache file names the Jitvmx build it was
// written by and is ignored by any other, so the layout and the state offsets in it cannot differ.
internal sealed unsafe partial class Interpreter
{
    /// <summary>Writes this code; helpers by their stable symbols, since registered helpers are numbered per process.</summary>
    public void Write(BinaryWriter w)
    {
        w.Write(_code.Length);
        w.Write(MemoryMarshal.AsBytes(_code.AsSpan()));
        w.Write(_consts.Length);
        w.Write(MemoryMarshal.AsBytes(_consts.AsSpan()));
        w.Write(_scalars);
        w.Write(_vectors);
        w.Write(_maxArgs);
        w.Write(_callArgs.Length);
        w.Write(MemoryMarshal.AsBytes(_callArgs.AsSpan()));
        foreach (bool b in _callArgIsVector) w.Write(b);
        w.Write(_thunkHelpers.Length);
        foreach (int id in _thunkHelpers)
        {
            w.Write(Helpers.Symbol(id));
            w.Write(Helpers.IsPure(id));
        }
        w.Write(_successors.Length);
        w.Write(MemoryMarshal.AsBytes(_successors.AsSpan()));
    }

    /// <summary>
    /// Reads code written by <see cref="Write"/> by this build; null when a helper it calls cannot be
    /// found or called. Throws <see cref="EndOfStreamException"/> or <see cref="InvalidDataException"/>
    /// on a record that does not hold together. The operands are not checked against the frame: the
    /// cache file is checksummed and trusted as LLVM's code cache is.
    /// </summary>
    public static Interpreter? Read(BinaryReader r)
    {
        var code = new Insn[Count(r, sizeof(Insn))];
        Fill(r, MemoryMarshal.AsBytes(code.AsSpan()));
        var consts = new ulong[Count(r, 8)];
        Fill(r, MemoryMarshal.AsBytes(consts.AsSpan()));
        int scalars = r.ReadInt32(), vectors = r.ReadInt32(), maxArgs = r.ReadInt32();
        var callArgs = new int[Count(r, 4)];
        Fill(r, MemoryMarshal.AsBytes(callArgs.AsSpan()));
        var isVector = new bool[callArgs.Length];
        for (int i = 0; i < isVector.Length; i++) isVector[i] = r.ReadBoolean();
        var helpers = new int[Count(r, 2)];
        var thunks = new HelperThunk[helpers.Length];
        for (int i = 0; i < helpers.Length; i++)
        {
            string symbol = r.ReadString();
            bool pure = r.ReadBoolean();
            if (!Helpers.TryResolveSymbol(symbol, pure, out helpers[i], out _) || Helpers.Method(helpers[i]) is not { } m) return null;
            if (HelperThunks.Get(helpers[i], m) is not { } thunk) return null;
            thunks[i] = thunk;
        }
        var successors = new ulong[Count(r, 8)];
        Fill(r, MemoryMarshal.AsBytes(successors.AsSpan()));
        if (scalars < 0 || vectors < 0 || maxArgs < 0) throw new InvalidDataException("negative slot count");
        return new Interpreter(code, consts, scalars, vectors, callArgs, isVector, thunks, helpers, maxArgs, successors);
    }

    /// <summary>Reads an image written by <see cref="Write"/>; null when it is damaged or calls a helper this build cannot call.</summary>
    public static Interpreter? TryLoad(byte[] image)
    {
        try
        {
            using var r = new BinaryReader(new MemoryStream(image, writable: false));
            return Read(r);
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            return null;
        }
    }

    private static int Count(BinaryReader r, int elementSize)
    {
        int n = r.ReadInt32();
        if (n < 0 || (long)n * elementSize > r.BaseStream.Length - r.BaseStream.Position) throw new InvalidDataException("bad length");
        return n;
    }

    private static void Fill(BinaryReader r, Span<byte> into)
    {
        if (r.Read(into) != into.Length) throw new EndOfStreamException();
    }
}
