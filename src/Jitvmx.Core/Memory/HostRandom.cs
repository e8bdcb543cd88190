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
    // Through syscall(): a libc without a getrandom wrapper still has the call. glibc's syscall() only
    // moves its integer arguments into the kernel's registers, so fixed arguments are exact on x86-64.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial nint Syscall(nint number, byte* buffer, nuint length, nuint flags);

    /// <summary>Fills <paramref name="buffer"/>; falls back to <see cref="RandomNumberGenerator"/> where getrandom fails.</summary>
    public static void Fill(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                nint n = Syscall(318 /* getrandom */, p + done, (nuint)(buffer.Length - done), 0);
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
