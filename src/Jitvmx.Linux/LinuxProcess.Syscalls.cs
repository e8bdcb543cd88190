// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;
using System.Text;

namespace Jitvmx.Linux;

public sealed unsafe partial class LinuxProcess
{
    private readonly ulong[] _args = new ulong[6];
    private readonly HashSet<int> _fds = [0, 1, 2];   // host descriptors the guest owns; the runtime's own are off limits
    private readonly byte[][] _sigactions = new byte[65][];
    private ulong _sigmask, _sigpending;
    private int _pendingSignal;
    private int? _exitStatus;
    private ulong _brkStart, _brk;
    private long _pid;

    internal long Pid => _pid != 0 ? _pid : _pid = Native.Syscall(39);

    /// <summary>Handles the SYSCALL exit the vCPU stopped at; returns the exit status when the process ended.</summary>
    private int? HandleSyscall()
    {
        ref var s = ref Cpu.State;
        long nr = (long)s.Rax;
        var a = _args;
        a[0] = s.Rdi; a[1] = s.Rsi; a[2] = s.Rdx; a[3] = s.R10; a[4] = s.R8; a[5] = s.R9;
        var e = (ulong)nr < (ulong)Syscalls.Table.Length ? Syscalls.Table[nr] : null;
        long result;
        string name;
        if (e is null)
        {
            name = $"syscall_{nr}";
            UnknownSyscalls[nr] = UnknownSyscalls.GetValueOrDefault(nr) + 1;
            result = -Errno.ENOSYS;
        }
        else
        {
            name = e.Name;
            result = CheckFds(e, a) ?? (e.Handler is null ? Passthrough(e, a) : e.Handler(this, a));
            if (e.ReturnsFd && result >= 0) _fds.Add((int)result);
        }
        SyscallCounts[name] = SyscallCounts.GetValueOrDefault(name) + 1;

        if (Options.Strace) Trace(e, name, a, result);
        if (_exitStatus is int status)
        {
            if (Options.Strace) Diagnostics.WriteLine($"+++ exited with {status} +++");
            return status;
        }
        if (_pendingSignal != 0)
        {
            if (Options.Strace) Diagnostics.WriteLine($"+++ killed by {Signals.Name(_pendingSignal)} +++");
            return Die(_pendingSignal, s.Rip);
        }
        // What the kernel's SYSCALL/SYSRET path leaves: result in RAX, RCX = return address, R11 = RFLAGS.
        s.Rax = (ulong)result;
        s.Rcx = s.Rip + 2;
        s.R11 = s.Rflags;
        Cpu.SkipInstruction();
        return null;
    }

    private long? CheckFds(SyscallEntry e, ulong[] a)
    {
        for (int i = 0; i < e.Args.Length; i++)
        {
            if (e.Args[i].Kind == ArgKind.Fd && (int)a[i] >= 0 && !_fds.Contains((int)a[i])) return -Errno.EBADF;
        }
        return null;
    }

    // ===================== pointers =====================

    /// <summary>Host pointer for a guest buffer the call reads or writes, or null when the guest may not (EFAULT). Guest NULL stays NULL.</summary>
    internal long? Buffer(ulong guest, ulong length, bool write)
    {
        if (guest == 0) return 0;
        if (!_mem.CanAccess(guest, length, write)) return null;
        return (long)_mem.Host(guest);
    }

    /// <summary>Length of the readable NUL-terminated string at <paramref name="guest"/>, or −1.</summary>
    internal int StringLength(ulong guest, int max = 4096)
    {
        for (int n = 0; n <= max; n++)
        {
            ulong at = guest + (ulong)n;
            if (n == 0 || (at & 0xFFF) == 0)
            {
                if (!_mem.CanAccess(at, 1, write: false)) return -1;
            }
            if (*_mem.Host(at) == 0) return n;
        }
        return -1;
    }

    internal string? ReadString(ulong guest)
    {
        int n = StringLength(guest);
        return n < 0 ? null : Encoding.UTF8.GetString(_mem.Host(guest), n);
    }

    internal bool Write<T>(ulong guest, T value) where T : unmanaged
    {
        if (!_mem.CanAccess(guest, (ulong)sizeof(T), write: true)) return false;
        *(T*)_mem.Host(guest) = value;
        return true;
    }

    internal long Pass(long nr, params long?[] args)
    {
        Span<long> h = stackalloc long[6];
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] is not long v) return -Errno.EFAULT;
            h[i] = v;
        }
        return Native.Syscall(nr, h[0], h[1], h[2], h[3], h[4], h[5]);
    }

    private long Passthrough(SyscallEntry e, ulong[] a)
    {
        Span<long> h = stackalloc long[6];
        for (int i = 0; i < 6; i++) h[i] = (long)a[i];
        for (int i = 0; i < e.Args.Length; i++)
        {
            var spec = e.Args[i];
            ulong p = a[i];
            long? host = spec.Kind switch
            {
                ArgKind.String => p == 0 ? 0 : StringLength(p) < 0 ? null : (long)_mem.Host(p),
                ArgKind.In => Buffer(p, a[spec.Param], write: false),
                ArgKind.Out => Buffer(p, a[spec.Param], write: true),
                ArgKind.InFixed => Buffer(p, (ulong)spec.Param, write: false),
                ArgKind.OutFixed or ArgKind.InOutFixed => Buffer(p, (ulong)spec.Param, write: true),
                ArgKind.InOutArray => Buffer(p, a[spec.Param] * (ulong)spec.Scale, write: true),
                ArgKind.Pointer => throw new InvalidOperationException($"{e.Name}: pointer argument without a handler"),
                _ => (long)p,
            };
            if (host is not long v) return -Errno.EFAULT;
            h[i] = v;
        }
        return Native.Syscall(e.Number, h[0], h[1], h[2], h[3], h[4], h[5]);
    }

    // ===================== files =====================

    internal long Close(ulong[] a)
    {
        int fd = (int)a[0];
        long r = Native.Syscall(3, fd);
        if (r == 0 || r == -Errno.EINTR) _fds.Remove(fd);
        return r;
    }

    internal long Dup2(long nr, ulong[] a)
    {
        int newfd = (int)a[1];
        if (newfd >= 0 && !_fds.Contains(newfd) && Native.Syscall(72, newfd, 1) >= 0) return -Errno.EBUSY; // the runtime's own descriptor
        long r = Native.Syscall(nr, (long)a[0], newfd, (long)a[2]);
        if (r >= 0) _fds.Add((int)r);
        return r;
    }

    internal long Pipe(ulong fds, int flags)
    {
        if (Buffer(fds, 8, write: true) is not long host || host == 0) return -Errno.EFAULT;
        long r = Native.Syscall(293, host, flags);
        if (r == 0)
        {
            _fds.Add(((int*)host)[0]);
            _fds.Add(((int*)host)[1]);
        }
        return r;
    }

    internal long Fcntl(ulong[] a)
    {
        int cmd = (int)a[1];
        switch (cmd)
        {
            case 0 or 1030: // F_DUPFD, F_DUPFD_CLOEXEC
                long r = Native.Syscall(72, (long)a[0], cmd, (long)a[2]);
                if (r >= 0) _fds.Add((int)r);
                return r;
            case 1 or 2 or 3 or 4 or 1032 or 1033: // F_GETFD F_SETFD F_GETFL F_SETFL F_GETPIPE_SZ F_SETPIPE_SZ
                return Native.Syscall(72, (long)a[0], cmd, (long)a[2]);
            case 5 or 6 or 7 or 36 or 37 or 38: // F_GETLK F_SETLK F_SETLKW and the OFD forms: struct flock
                return Pass(72, (long)a[0], cmd, Buffer(a[2], 32, write: true));
            default:
                return -Errno.EINVAL;
        }
    }

    internal long Ioctl(ulong[] a)
    {
        uint req = (uint)a[1];
        return req switch
        {
            0x5401 => Pass(16, (long)a[0], req, Buffer(a[2], 36, write: true)),            // TCGETS (kernel struct termios)
            0x5402 or 0x5403 or 0x5404 => Pass(16, (long)a[0], req, Buffer(a[2], 36, write: false)), // TCSETS*
            0x5413 => Pass(16, (long)a[0], req, Buffer(a[2], 8, write: true)),             // TIOCGWINSZ
            0x5414 => Pass(16, (long)a[0], req, Buffer(a[2], 8, write: false)),            // TIOCSWINSZ
            0x541B => Pass(16, (long)a[0], req, Buffer(a[2], 4, write: true)),             // FIONREAD
            0x540F => Pass(16, (long)a[0], req, Buffer(a[2], 4, write: true)),             // TIOCGPGRP
            0x5450 or 0x5451 => Native.Syscall(16, (long)a[0], req),                      // FIONCLEX FIOCLEX
            _ => -Errno.ENOTTY,
        };
    }

    internal long Vectored(long nr, ulong[] a, bool write)
    {
        int count = (int)a[2];
        if (count < 0 || count > 1024) return -Errno.EINVAL;
        if (Buffer(a[1], (ulong)count * 16, write: false) is not long iovHost) return -Errno.EFAULT;
        var iov = new long[Math.Max(count, 1) * 2];
        for (int i = 0; i < count; i++)
        {
            ulong b = ((ulong*)iovHost)[i * 2], len = ((ulong*)iovHost)[i * 2 + 1];
            // writev reads guest memory, readv writes it.
            if (Buffer(b, len, write: !write) is not long hb) return -Errno.EFAULT;
            iov[i * 2] = hb;
            iov[i * 2 + 1] = (long)len;
        }
        fixed (long* p = iov) return Native.Syscall(nr, (long)a[0], (long)p, count, (long)a[3], (long)a[4]);
    }

    internal long Readlink(int dirfd, ulong path, ulong buf, ulong size)
    {
        string? p = ReadString(path);
        if (p is null) return -Errno.EFAULT;
        if (p is "/proc/self/exe" || p == $"/proc/{Pid}/exe")
        {
            byte[] target = Encoding.UTF8.GetBytes(ExecutablePath);
            int n = (int)Math.Min((ulong)target.Length, size);
            if (Buffer(buf, (ulong)n, write: true) is not long hb) return -Errno.EFAULT;
            target.AsSpan(0, n).CopyTo(new Span<byte>((void*)hb, n));
            return n;
        }
        if (dirfd >= 0 && !_fds.Contains(dirfd)) return -Errno.EBADF;
        return Pass(267, dirfd, (long)_mem.Host(path), Buffer(buf, size, write: true), (long)size);
    }

    // ===================== memory =====================

    private static MemoryPermissions Perms(ulong prot)
    {
        var p = MemoryPermissions.None;
        if ((prot & 1) != 0) p |= MemoryPermissions.Read;
        if ((prot & 2) != 0) p |= MemoryPermissions.ReadWrite;      // x86: writable implies readable
        if ((prot & 4) != 0) p |= MemoryPermissions.ReadExecute;
        return p;
    }

    internal long Brk(ulong[] a)
    {
        ulong want = a[0];
        if (want < _brkStart) return (long)_brk;
        ulong oldEnd = AddressSpace.PageUp(_brk), newEnd = AddressSpace.PageUp(want);
        if (newEnd > oldEnd)
        {
            if (newEnd > AddressSpace.MmapTop || !_mem.IsFree(oldEnd, newEnd)) return (long)_brk;
            _mem.Map(oldEnd, newEnd, MemoryPermissions.ReadWrite);
        }
        else if (newEnd < oldEnd)
        {
            _mem.Unmap(newEnd, oldEnd);
        }
        _brk = want;
        return (long)_brk;
    }

    internal long Mmap(ulong[] a)
    {
        ulong addr = a[0], len = a[1], prot = a[2], flags = a[3];
        int fd = (int)a[4];
        long offset = (long)a[5];
        const ulong Fixed = 0x10, Anonymous = 0x20, FixedNoReplace = 0x100000;
        if (len == 0 || (offset & 0xFFF) != 0 || (flags & 3) == 0) return -Errno.EINVAL;
        len = AddressSpace.PageUp(len);
        if (len == 0 || len > AddressSpace.Size) return -Errno.ENOMEM;
        bool anonymous = (flags & Anonymous) != 0;
        if (!anonymous && !_fds.Contains(fd)) return -Errno.EBADF;
        if ((flags & (Fixed | FixedNoReplace)) != 0)
        {
            if ((addr & 0xFFF) != 0) return -Errno.EINVAL;
            if (!AddressSpace.InRange(addr, addr + len) || addr < AddressSpace.MinAddress) return -Errno.ENOMEM;
            if ((flags & FixedNoReplace) != 0 && (flags & Fixed) == 0 && !_mem.IsFree(addr, addr + len)) return -Errno.EEXIST;
        }
        else
        {
            addr = AddressSpace.PageDown(addr);
            if (addr < AddressSpace.MinAddress || !_mem.IsFree(addr, addr + len))
            {
                if (_mem.FindFree(len) is not ulong free) return -Errno.ENOMEM;
                addr = free;
            }
        }
        if (anonymous)
        {
            _mem.Map(addr, addr + len, Perms(prot));
            return (long)addr;
        }
        long r = _mem.MapFile(addr, addr + len, Perms(prot), fd, offset, shared: (flags & 3) == 1);
        return r < 0 ? r : (long)addr;
    }

    internal long Munmap(ulong[] a)
    {
        ulong addr = a[0], len = AddressSpace.PageUp(a[1]);
        if ((addr & 0xFFF) != 0 || len == 0 || !AddressSpace.InRange(addr, addr + len)) return -Errno.EINVAL;
        _mem.Unmap(addr, addr + len);
        return 0;
    }

    internal long Mprotect(ulong[] a)
    {
        ulong addr = a[0], len = AddressSpace.PageUp(a[1]);
        if ((addr & 0xFFF) != 0) return -Errno.EINVAL;
        if (len == 0) return 0;
        if (!AddressSpace.InRange(addr, addr + len)) return -Errno.ENOMEM;
        return _mem.Protect(addr, addr + len, Perms(a[2])) ? 0 : -Errno.ENOMEM;
    }

    internal long Mremap(ulong[] a)
    {
        ulong old = a[0], oldLen = AddressSpace.PageUp(a[1]), newLen = AddressSpace.PageUp(a[2]), flags = a[3], target = a[4];
        const ulong MayMove = 1, Fixed = 2;
        if ((old & 0xFFF) != 0 || newLen == 0 || ((flags & Fixed) != 0 && (flags & MayMove) == 0)) return -Errno.EINVAL;
        if (!AddressSpace.InRange(old, old + oldLen) || !_mem.IsMapped(old, old + Math.Max(oldLen, AddressSpace.PageSize))) return -Errno.EFAULT;
        var perms = _mem.PermissionsAt(old) ?? MemoryPermissions.None;
        if ((flags & Fixed) == 0)
        {
            if (newLen <= oldLen)
            {
                if (newLen < oldLen) _mem.Unmap(old + newLen, old + oldLen);
                return (long)old;
            }
            if (old + newLen <= AddressSpace.MmapTop && _mem.IsFree(old + oldLen, old + newLen))
            {
                _mem.Map(old + oldLen, old + newLen, perms);
                return (long)old;
            }
            if ((flags & MayMove) == 0) return -Errno.ENOMEM;
            if (_mem.FindFree(newLen) is not ulong free) return -Errno.ENOMEM;
            target = free;
        }
        else if ((target & 0xFFF) != 0 || !AddressSpace.InRange(target, target + newLen)) return -Errno.EINVAL;
        _mem.Map(target, target + newLen, perms);
        _mem.Copy(old, target, Math.Min(oldLen, newLen), perms);
        _mem.Unmap(old, old + oldLen);
        return (long)target;
    }

    internal long Madvise(ulong[] a)
    {
        ulong addr = a[0], len = AddressSpace.PageUp(a[1]);
        if ((addr & 0xFFF) != 0 || len < a[1] || addr + len < addr) return -Errno.EINVAL;
        // Beyond the reservation (or wrapping around) nothing is mapped; the host call must never see it.
        if (len != 0 && !AddressSpace.InRange(addr, addr + len)) return -Errno.ENOMEM;
        // Passed on for mapped memory: DONTNEED zero-fills on next touch, as for the guest; the huge-page
        // advice is the guest's own choice of page size, which the host may refuse as it would natively.
        if (a[2] is Native.MadvDontNeed or Native.MadvHugePage or Native.MadvNoHugePage && len != 0)
        {
            if (!_mem.IsMapped(addr, addr + len)) return -Errno.ENOMEM;
            return Native.Syscall(28, (long)_mem.Host(addr), (long)len, (long)a[2]);
        }
        return 0;
    }

    // ===================== process =====================

    internal long Exit(int status)
    {
        _exitStatus = status & 0xFF;
        return 0;
    }

    internal long ArchPrctl(ulong[] a)
    {
        ref var s = ref Cpu.State;
        switch (a[0])
        {
            case 0x1001: s.Gs.Base = a[1]; return 0; // ARCH_SET_GS
            case 0x1002: s.Fs.Base = a[1]; return 0; // ARCH_SET_FS
            case 0x1003: return Write(a[1], s.Fs.Base) ? 0 : -Errno.EFAULT;
            case 0x1004: return Write(a[1], s.Gs.Base) ? 0 : -Errno.EFAULT;
            default: return -Errno.EINVAL;
        }
    }

    internal long GetRlimit(int resource, ulong ptr)
    {
        if (Buffer(ptr, 16, write: true) is not long host || host == 0) return -Errno.EFAULT;
        long r = Native.Syscall(302, 0, resource, 0, host);
        if (r == 0 && resource == 3) // RLIMIT_STACK: the guest's stack is 8 MiB
        {
            ((ulong*)host)[0] = AddressSpace.StackSize;
            ((ulong*)host)[1] = ulong.MaxValue;
        }
        return r;
    }

    internal long Prlimit64(ulong[] a)
    {
        if (a[0] != 0 && (long)a[0] != Pid) return -Errno.EPERM;
        if (a[2] != 0 && !_mem.CanAccess(a[2], 16, write: false)) return -Errno.EFAULT;
        // New limits are accepted and not applied: they would constrain the host process, runtime included.
        return a[3] == 0 ? 0 : GetRlimit((int)a[1], a[3]);
    }

    internal long SchedGetaffinity(ulong[] a)
    {
        if (a[1] < 8) return -Errno.EINVAL;
        return Write(a[2], 1UL) ? 8 : -Errno.EFAULT; // one CPU, as the CPUID model says
    }

    internal long Getrandom(ulong[] a)
    {
        ulong len = Math.Min(a[1], 1 << 25);
        if (Buffer(a[0], len, write: true) is not long host) return -Errno.EFAULT;
        // The host's own call: the same flags (GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE), blocking and errors.
        return Native.Syscall(318, host, (long)len, (long)a[2]);
    }

    internal long Futex(ulong[] a)
    {
        ulong cmd = a[1] & ~0x180UL; // without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME
        switch (cmd)
        {
            case 0 or 9: // FUTEX_WAIT, FUTEX_WAIT_BITSET: one thread, nobody can wake it
                if (!_mem.CanAccess(a[0], 4, write: false)) return -Errno.EFAULT;
                return *(uint*)_mem.Host(a[0]) != (uint)a[2] ? -Errno.EAGAIN : -Errno.ETIMEDOUT;
            case 1 or 10: return 0; // FUTEX_WAKE, FUTEX_WAKE_BITSET: nobody waits
            default: return -Errno.ENOSYS;
        }
    }

    // ===================== signals (bookkeeping; handlers are not delivered) =====================

    private const ulong Unblockable = (1UL << (Signals.SIGKILL - 1)) | (1UL << (Signals.SIGSTOP - 1));

    internal long RtSigaction(ulong[] a)
    {
        int sig = (int)a[0];
        if (sig < 1 || sig > 64 || a[3] != 8) return -Errno.EINVAL;
        if (a[1] != 0 && sig is Signals.SIGKILL or Signals.SIGSTOP) return -Errno.EINVAL;
        if (a[1] != 0 && !_mem.CanAccess(a[1], 32, write: false)) return -Errno.EFAULT;
        if (a[2] != 0)
        {
            if (!_mem.CanAccess(a[2], 32, write: true)) return -Errno.EFAULT;
            (_sigactions[sig] ?? new byte[32]).CopyTo(new Span<byte>(_mem.Host(a[2]), 32));
        }
        if (a[1] != 0) _sigactions[sig] = new ReadOnlySpan<byte>(_mem.Host(a[1]), 32).ToArray();
        return 0;
    }

    internal long RtSigprocmask(ulong[] a)
    {
        if (a[3] != 8) return -Errno.EINVAL;
        if (a[2] != 0 && !Write(a[2], _sigmask)) return -Errno.EFAULT;
        if (a[1] != 0)
        {
            if (!_mem.CanAccess(a[1], 8, write: false)) return -Errno.EFAULT;
            ulong set = *(ulong*)_mem.Host(a[1]);
            _sigmask = a[0] switch { 0 => _sigmask | set, 1 => _sigmask & ~set, 2 => set, _ => ulong.MaxValue };
            if (_sigmask == ulong.MaxValue && a[0] > 2) return -Errno.EINVAL;
            _sigmask &= ~Unblockable;
            ulong deliverable = _sigpending & ~_sigmask;
            if (deliverable != 0) _pendingSignal = System.Numerics.BitOperations.TrailingZeroCount(deliverable) + 1;
        }
        return 0;
    }

    internal long SigAltStack(ulong[] a)
    {
        if (a[1] != 0)
        {
            if (!_mem.CanAccess(a[1], 24, write: true)) return -Errno.EFAULT;
            new Span<byte>(_mem.Host(a[1]), 24).Clear();
            *(int*)_mem.Host(a[1] + 8) = 2; // SS_DISABLE
        }
        return 0;
    }

    /// <summary>A signal the guest sends itself: ignored, left pending while blocked, or fatal (handlers are not delivered yet).</summary>
    internal long RaiseSignal(int sig)
    {
        if (sig == 0) return 0;
        if (sig < 1 || sig > 64) return -Errno.EINVAL;
        ulong handler = _sigactions[sig] is byte[] act ? BitConverter.ToUInt64(act, 0) : 0;
        if (handler == 1 || (handler == 0 && Signals.IgnoredByDefault(sig))) return 0; // SIG_IGN, or ignored by default
        ulong bit = 1UL << (sig - 1);
        if ((_sigmask & bit) != 0)
        {
            _sigpending |= bit;
            return 0;
        }
        _pendingSignal = sig;
        return 0;
    }

    // ===================== --strace =====================

    private void Trace(SyscallEntry? e, string name, ulong[] a, long result)
    {
        var sb = new StringBuilder(name).Append('(');
        if (e is null)
        {
            sb.Append(string.Join(", ", a.Select(v => $"0x{v:x}")));
        }
        else
        {
            for (int i = 0; i < e.Args.Length; i++)
            {
                if (i > 0) sb.Append(", ");
                sb.Append(FormatArg(e.Args[i], a, i, result));
            }
        }
        sb.Append(") = ");
        if (_exitStatus is not null) sb.Append('?');
        else if (result < 0 && result >= -4095) sb.Append("-1 ").Append(Errno.Describe(-result));
        else if (e?.HexResult == true) sb.Append($"0x{result:x}");
        else sb.Append(result);
        Diagnostics.WriteLine(sb.ToString());
    }

    private string FormatArg(ArgSpec spec, ulong[] a, int i, long result)
    {
        ulong v = a[i];
        switch (spec.Kind)
        {
            case ArgKind.Int: return ((long)v).ToString(System.Globalization.CultureInfo.InvariantCulture);
            case ArgKind.Fd: return (int)v == -100 ? "AT_FDCWD" : ((int)v).ToString(System.Globalization.CultureInfo.InvariantCulture);
            case ArgKind.Octal: return "0" + Convert.ToString((long)(v & 0xFFFFFFFF), 8);
            case ArgKind.String:
                if (v == 0) return "NULL";
                int n = StringLength(v);
                return n < 0 ? $"0x{v:x}" : StraceFormat.Quote(new ReadOnlySpan<byte>(_mem.Host(v), n), 256);
            case ArgKind.In when v != 0 && _mem.CanAccess(v, Math.Min(a[spec.Param], 32), write: false):
                return StraceFormat.Quote(new ReadOnlySpan<byte>(_mem.Host(v), (int)Math.Min(a[spec.Param], 4096)));
            case ArgKind.Out when v != 0 && result > 0 && _mem.CanAccess(v, (ulong)Math.Min(result, 32), write: false):
                return StraceFormat.Quote(new ReadOnlySpan<byte>(_mem.Host(v), (int)Math.Min(result, 4096)));
            default:
                return v == 0 && spec.Kind is not (ArgKind.Hex) ? "NULL" : $"0x{v:x}";
        }
    }
}
