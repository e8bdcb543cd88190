// SPDX-License-Identifier: MIT
// madvise(2): advice on real mappings works, and bad ranges get the kernel's errors.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static void show(const char *what, int r)
{
    printf("%s: %d %s\n", what, r, r == 0 ? "" : errno == EINVAL ? "EINVAL" : errno == ENOMEM ? "ENOMEM" : strerror(errno));
}

int main(void)
{
    size_t size = 8u << 20;
    unsigned char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    memset(p, 0x5A, size);
    show("hugepage", madvise(p, size, MADV_HUGEPAGE));
    show("nohugepage", madvise(p, size, MADV_NOHUGEPAGE));
    show("dontneed", madvise(p + 4096, 4096, MADV_DONTNEED));
    printf("after dontneed: %d %d %d\n", p[0], p[4096], p[8191]);
    show("unaligned", madvise(p + 1, 4096, MADV_HUGEPAGE));
    munmap(p, size);
    show("unmapped", madvise(p, size, MADV_HUGEPAGE));
    show("wraps", madvise((void *)(uintptr_t)0xFFFFFFFFFFFFF000ull, 0x2000, MADV_HUGEPAGE));
    show("wraps dontneed", madvise((void *)(uintptr_t)0xFFFFFFFFFFFFF000ull, 0x2000, MADV_DONTNEED));
    show("huge length", madvise(p, (size_t)-1, MADV_DONTNEED));
    return 0;
}
