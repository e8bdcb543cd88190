// SPDX-License-Identifier: MIT
// A few lines of C runtime for guest programs that must not depend on a C library: raw system
// calls, _start, and integer-only output. Compiled with -mgeneral-regs-only, so these programs
// use only the integer instruction set.
#pragma once

typedef unsigned long size_t;
typedef long ssize_t;

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}
#define sys(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

void *memset(void *d, int c, size_t n) { unsigned char *p = d; while (n--) *p++ = (unsigned char)c; return d; }
void *memcpy(void *d, const void *s, size_t n) { unsigned char *p = d; const unsigned char *q = s; while (n--) *p++ = *q++; return d; }
__attribute__((unused)) static size_t slen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
__attribute__((unused)) static int sprefix(const char *s, const char *p) { while (*p) if (*s++ != *p++) return 0; return 1; }
__attribute__((unused)) static int seq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }

static void put(int fd, const char *s) { sys(1, fd, s, slen(s)); }
static void putnum(int fd, long v)
{
    char b[24];
    int i = 23;
    unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
    b[i] = 0;
    do b[--i] = (char)('0' + u % 10); while (u /= 10);
    if (v < 0) b[--i] = '-';
    put(fd, b + i);
}
__attribute__((unused)) static void puthex(int fd, unsigned long v)
{
    char b[20];
    int i = 19;
    b[i] = 0;
    do b[--i] = "0123456789abcdef"[v & 15]; while (v >>= 4);
    put(fd, b + i);
}
/* "label value\n" on stdout */
__attribute__((unused)) static void show(const char *label, long v) { put(1, label); put(1, " "); putnum(1, v); put(1, "\n"); }

static __attribute__((noreturn)) void exit_group(int status) { sys(231, status, 0, 0); __builtin_unreachable(); }

int main(int argc, char **argv, char **envp);
unsigned long *initial_sp;

__attribute__((used)) static void start_c(unsigned long *sp)
{
    initial_sp = sp;
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    exit_group(main(argc, argv, argv + argc + 1));
}

__asm__(".text\n.global _start\n_start:\n xor %ebp,%ebp\n mov %rsp,%rdi\n and $-16,%rsp\n call start_c\n hlt\n");
