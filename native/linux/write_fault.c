// SPDX-License-Identifier: MIT
// Writes from a loop hot enough to be compiled, then makes the same loop write where it may not:
// memory made read-only (readonly), unmapped (unmapped), past the last mapped page (edge, a write
// that straddles it), far above the guest's mappings (high) and above 1 TiB (huge). Each dies of
// SIGSEGV after printing the sum; "none" writes only good memory. "code" patches the immediate of
// generated code (mov eax, imm32; ret) that has run many times, once through the hot loop and once
// through read() (the kernel writing into it), and calls it after each: self-modifying code.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void __attribute__((noinline)) fill(volatile unsigned char *p, long n, long stride, uint32_t v)
{
    for (long i = 0; i < n; i++) *(volatile uint32_t *)(p + (i * stride & 4095)) = v + (uint32_t)i;
}

static long sum(const unsigned char *p)
{
    long s = 0;
    for (int i = 0; i < PAGE; i++) s = s * 31 + p[i];
    return s;
}

static long calls(int (*f)(void), int n)
{
    long t = 0;
    for (int i = 0; i < n; i++) t += f();
    return t;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "none";
    unsigned char *a = mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 2;
    for (int k = 0; k < 2000; k++) fill(a, 10000, 12, (uint32_t)k);
    printf("%ld\n", sum(a));
    fflush(stdout);
    volatile unsigned char *bad = a;
    long stride = 12;
    if (!strcmp(mode, "code")) {
        unsigned char *code = mmap(0, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (code == MAP_FAILED) return 2;
        const unsigned char body[] = { 0xb8, 1, 0, 0, 0, 0xc3 }; // mov eax, 1; ret
        memcpy(code, body, sizeof body);
        int (*f)(void) = (int (*)(void))code;
        printf("before: %ld\n", calls(f, 300000));
        fill(code + 1, 1, 0, 40); // the hot loop's store: mov eax, 40
        printf("patched: %ld\n", calls(f, 300000));
        int fds[2];
        if (pipe(fds) != 0) return 2;
        uint32_t imm = 7;
        if (write(fds[1], &imm, 4) != 4 || read(fds[0], code + 1, 4) != 4) return 2;
        printf("read: %ld\n", calls(f, 300000));
        return 0;
    }
    if (!strcmp(mode, "readonly")) mprotect(a, 2 * PAGE, PROT_READ);
    else if (!strcmp(mode, "unmapped")) munmap(a, 2 * PAGE);
    else if (!strcmp(mode, "edge")) { munmap(a + PAGE, PAGE); stride = 4093; }
    else if (!strcmp(mode, "high")) bad = (volatile unsigned char *)(uintptr_t)0x3000000000ull;
    else if (!strcmp(mode, "huge")) bad = (volatile unsigned char *)(uintptr_t)0x7f0000001000ull;
    fill(bad, 100, stride, 5);
    printf("%s: %ld\n", mode, sum(a));
    return 0;
}
