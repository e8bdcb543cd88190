// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Jitvmx.Memory;

/// <summary>
/// Random bytes from the host kernel (getrandom). <see cref="RandomNumberGenerator"/> gives the same
/// bytes on Linux but loads and initialises OpenSSL on first use, which a short guest run would pay
/// for at start-up (every glibc program asks for random bytes before <c>main</c>).
/// </summary>
internal static unsafe partial class HostRandom
{
    [LibraryImport("libc", SetLastError = true)]
    private static partial nint getrandom(byte* buffer, nuint length, uint flags);

    /// <summary>Fills <paramref name="buffer"/>; falls back to <see cref="RandomNumberGenerator"/> where getrandom fails.</summary>
    public static void Fill(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                nint n = getrandom(p + done, (nuint)(buffer.Length - done), 0);
                if (n <= 0)
                {
                    if (n < 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */) continue;
                    RandomNumberGenerator.Fill(buffer[done..]);
                    return;
                }
                done += (int)n;
            }
        }
    }
}
