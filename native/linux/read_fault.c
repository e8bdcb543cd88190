// SPDX-License-Identifier: MIT
// Reads from a loop hot enough to be compiled, then makes the same loop read where it may not:
// memory unmapped (unmapped), made inaccessible (prot_none), past the last mapped page (edge, a
// read that straddles it), far above the guest's mappings (high) and above 1 TiB (huge). Each
// dies of SIGSEGV after printing the sum; "none" reads only good memory.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096

static long __attribute__((noinline)) sum(const volatile unsigned char *p, long n, long stride)
{
    long s = 0;
    for (long i = 0; i < n; i++) s += *(const volatile uint64_t *)(p + (i * stride & 4095));
    return s;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "none";
    unsigned char *a = mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 2;
    for (int i = 0; i < PAGE; i++) a[i] = (unsigned char)(i * 7);
    long s = 0;
    for (int k = 0; k < 2000; k++) s += sum(a, 10000, 8);
    printf("%ld\n", s);
    fflush(stdout);
    const volatile unsigned char *bad = a;
    long stride = 8;
    if (!strcmp(mode, "unmapped")) munmap(a, 2 * PAGE);
    else if (!strcmp(mode, "prot_none")) mprotect(a, 2 * PAGE, PROT_NONE);
    else if (!strcmp(mode, "edge")) { munmap(a + PAGE, PAGE); bad = a + PAGE - 4096; stride = 4093; }
    else if (!strcmp(mode, "high")) bad = (const volatile unsigned char *)(uintptr_t)0x3000000000ull;
    else if (!strcmp(mode, "huge")) bad = (const volatile unsigned char *)(uintptr_t)0x7f0000001000ull;
    s += sum(bad, 100, stride);
    printf("%s: %ld\n", mode, s);
    return 0;
}
