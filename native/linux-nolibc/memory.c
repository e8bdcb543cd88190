// SPDX-License-Identifier: MIT
// The guest's address space and the system calls that shape it: brk, mmap, munmap, mprotect,
// mremap, madvise, arch_prctl; and the calls passed to the host: files in the directory given
// as argv[1], time, identity.
#include "nolibc.h"

static long check(const char *what, long r) { put(1, what); put(1, r < 0 ? " failed " : " ok "); putnum(1, r < 0 ? r : 0); put(1, "\n"); return r; }

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    /* brk */
    unsigned long b0 = (unsigned long)sys(12, 0, 0, 0);
    unsigned long b1 = (unsigned long)sys(12, b0 + 100000, 0, 0);
    show("brk grew", b1 == b0 + 100000);
    char *heap = (char *)b0;
    for (long i = 0; i < 100000; i++) heap[i] = (char)i;
    long s = 0;
    for (long i = 0; i < 100000; i += 1000) s += heap[i];
    show("heap sum", s);
    show("brk shrank", (unsigned long)sys(12, b0 + 10, 0, 0) == b0 + 10);

    /* anonymous mmap: zeroed, usable, unmappable */
    char *m = (char *)sys6(9, 0, 1 << 20, 3, 0x22, -1, 0);
    show("mmap page aligned", ((unsigned long)m & 4095) == 0);
    long z = 0;
    for (long i = 0; i < (1 << 20); i += 4096) z += m[i];
    show("mmap zeroed", z == 0);
    for (long i = 0; i < (1 << 20); i++) m[i] = (char)(i * 7);
    check("munmap middle", sys(11, m + 4096, 4096, 0));
    check("mprotect read-only", sys(10, m, 4096, 1));
    show("read after mprotect", m[1] == 7);
    char *r = (char *)sys6(25, (long)(m + 8192), 8192, 65536, 1, 0, 0);
    show("mremap kept data", r[1] == (char)(8193 * 7));
    char *fixed = (char *)sys6(9, (long)m, 4096, 3, 0x32, -1, 0); /* MAP_FIXED over the read-only page */
    show("MAP_FIXED replaced and zeroed", fixed == m && m[1] == 0);
    m[2] = 5;
    check("madvise DONTNEED", sys(28, m, 4096, 4));
    show("zero after DONTNEED", m[2] == 0);
    show("munmap unaligned EINVAL", sys(11, m + 1, 10, 0));

    /* arch_prctl and %fs */
    static unsigned long tls[4] = { 0, 0x1234, 0, 0 };
    tls[0] = (unsigned long)tls;
    check("arch_prctl SET_FS", sys(158, 0x1002, tls, 0));
    unsigned long v;
    __asm__ volatile("mov %%fs:8, %0" : "=r"(v));
    show("fs:8", (long)v);

    /* files */
    if (argc > 1)
    {
        check("chdir", sys(80, argv[1], 0, 0));
        long fd = check("openat create", sys6(257, -100, (long)"f.txt", 0101 | 01000, 0644, 0, 0));
        show("write", sys(1, fd, "0123456789", 10));
        struct { unsigned long a, b; } iov[2] = { { (unsigned long)"ab", 2 }, { (unsigned long)"cde", 3 } };
        show("writev", sys(20, fd, iov, 2));
        check("close", sys(3, fd, 0, 0));
        fd = sys6(257, -100, (long)"f.txt", 0, 0, 0, 0);
        char buf[64];
        long n = sys(0, fd, buf, sizeof buf);
        show("read", n);
        buf[n] = 0;
        put(1, "content "); put(1, buf); put(1, "\n");
        show("lseek", sys(8, fd, 3, 0));
        show("pread64", sys6(17, fd, (long)buf, 4, 11, 0, 0));
        unsigned long st[18];
        check("fstat", sys(5, fd, st, 0));
        show("st_size", (long)st[6]);
        show("read into unmapped EFAULT", sys(0, fd, m + 4096, 10));
        show("read into read-only-text EFAULT", sys(0, fd, (char *)main, 10));
        sys(3, fd, 0, 0);
        check("mkdirat", sys6(258, -100, (long)"d", 0755, 0, 0, 0));
        check("renameat", sys6(264, -100, (long)"f.txt", -100, (long)"d/g.txt", 0, 0));
        fd = sys6(257, -100, (long)"d", 0200000, 0, 0, 0);
        char dents[1024];
        long dn = sys(217, fd, dents, sizeof dents);
        int names = 0, found = 0;
        for (long off = 0; off < dn;)
        {
            unsigned short reclen = *(unsigned short *)(dents + off + 16);
            names++;
            if (seq(dents + off + 19, "g.txt")) found = 1;
            off += reclen;
        }
        show("getdents64 entries", names);
        show("found g.txt", found);
        sys(3, fd, 0, 0);
        check("unlinkat file", sys6(263, -100, (long)"d/g.txt", 0, 0, 0, 0));
        check("unlinkat dir", sys6(263, -100, (long)"d", 0x200, 0, 0, 0));
        show("open missing", sys6(257, -100, (long)"missing", 0, 0, 0, 0));
        show("close unknown fd", sys(3, 1000, 0, 0));
        char link[256];
        long ln = sys(89, "/proc/self/exe", link, sizeof link);
        show("readlink /proc/self/exe absolute", ln > 0 && link[0] == '/');
    }

    /* identity, time, randomness */
    show("gettid == getpid", sys(186, 0, 0, 0) == sys(39, 0, 0, 0));
    long ts[2] = { 0, 0 };
    check("clock_gettime", sys(228, 1, ts, 0));
    show("clock positive", ts[0] > 0 || ts[1] > 0);
    unsigned char rnd[16] = { 0 };
    show("getrandom", sys(318, rnd, 16, 0));
    char uts[390];
    check("uname", sys(63, uts, 0, 0));
    put(1, "machine "); put(1, uts + 4 * 65); put(1, "\n");
    show("unknown syscall", sys(1000, 0, 0, 0));
    return 0;
}
