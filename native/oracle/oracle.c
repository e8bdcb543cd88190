// SPDX-License-Identifier: MIT
//
// Host-CPU oracle for Jitvmx differential tests.
//
// Reads a stream of cases from stdin, runs each case's x86-64 code on the real
// CPU at a fixed address, and writes the resulting architectural state to
// stdout. See the protocol below; the C# side is
// tests/Jitvmx.Core.Tests/Oracle/HostOracle.cs.
//
//   case:   u32 magic 'JVOC' (0x434F564A), u32 code_len,
//           u64 gpr[16] (RAX RCX RDX RBX RSP RBP RSI RDI R8..R15),
//           u64 rflags (only CF PF AF ZF SF OF DF are used),
//           u8 mem[4096] (initial data window at DATA_BASE),
//           u8 code[code_len] (placed at CODE_BASE)
//   result: u32 magic 'JVOR' (0x524F564A), i32 signal (0 = ran to the end),
//           u64 rip (offset from CODE_BASE: code_len, or where the fault was
//           reported), u64 gpr[16], u64 rflags (as read), u8 mem[4096]
//
// All values are little-endian and packed. Usage: oracle [-t TIMEOUT_MS]
// (default 1000 ms per case; a case that runs longer reports SIGALRM).
//
// How a case runs: oracle_enter (below) saves the host callee-saved registers
// and RSP in globals, loads RFLAGS and all 16 guest GPRs (RSP included) and
// jumps to CODE_BASE. The guest code is followed by an absolute indirect jump
// to oracle_exit, which stores every GPR with RIP-relative moves (no register
// is needed for that), switches back to the host stack, reads RFLAGS, clears
// DF/AC/TF and the arithmetic flags and returns to C. Faults are caught on an
// alternate signal stack (so the guest stack is never touched), the guest
// state is taken from the signal's ucontext and siglongjmp resumes the loop.
//
// What the results show besides the guest's own doing:
// - RFLAGS always has bit 1 and IF set (user mode); the RFLAGS image of a
//   fault (#DE, #UD, #PF seen so far) also has RF set by the CPU; traps and
//   timeouts do not. TF/AC appear only if the code sets them itself (with
//   AC set, a misaligned access reports SIGBUS).
// - rip is where the CPU reports the event: the faulting instruction for
//   faults, the next instruction for traps (INT3, single step), the current
//   one for a timeout. A single-step trap right after the last instruction
//   reports code_len.
// - The code window is RX: stores into it fault. Bytes after the code (and
//   the exit jump) are INT3, so a jump past the end reports SIGTRAP.
// - The data and code windows have unmapped guard pages on both sides.
// - Only GPRs, RFLAGS and the data window are reported. x87/SSE control
//   state is reset after each case; FS/GS bases and segment registers must
//   not be changed by the code, and system calls are not filtered.

#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

#define DATA_BASE 0x10000000UL
#define DATA_SIZE 4096UL
#define CODE_BASE 0x20000000UL
#define CODE_MAX 65536UL
#define CODE_MAP (CODE_MAX + 4096UL) // room for the exit jump after the code
#define GUARD 4096UL                 // PROT_NONE page kept on each side

#define CASE_MAGIC 0x434F564AU   // "JVOC"
#define RESULT_MAGIC 0x524F564AU // "JVOR"

// CF PF AF ZF SF OF DF: the RFLAGS bits a case may choose.
#define RFLAGS_INPUT_MASK 0xCD5UL

struct __attribute__((packed)) case_header {
    uint32_t magic;
    uint32_t code_len;
    uint64_t gpr[16];
    uint64_t rflags;
};

struct __attribute__((packed)) result {
    uint32_t magic;
    int32_t signal;
    uint64_t rip;
    uint64_t gpr[16];
    uint64_t rflags;
    uint8_t mem[DATA_SIZE];
};

// Shared with the trampolines, which address them RIP-relatively.
// guest_state: gpr[0..15] in protocol order, [16] = RFLAGS, [17] = entry RIP.
#define SHARED __attribute__((used, visibility("hidden")))
SHARED uint64_t guest_state[18];
SHARED uint64_t host_rsp;
SHARED uint32_t host_mxcsr;

void oracle_enter(void);
void oracle_reset_flags(void);
extern const char oracle_exit[], oracle_exit_end[];

__asm__(
    "    .text\n"
    "    .globl oracle_enter\n"
    "    .type oracle_enter, @function\n"
    "oracle_enter:\n"
    "    push %rbx\n"
    "    push %rbp\n"
    "    push %r12\n"
    "    push %r13\n"
    "    push %r14\n"
    "    push %r15\n"
    "    mov %rsp, host_rsp(%rip)\n"
    "    stmxcsr host_mxcsr(%rip)\n"
    "    pushq guest_state+128(%rip)\n"
    "    popfq\n"
    "    mov guest_state+8(%rip), %rcx\n"
    "    mov guest_state+16(%rip), %rdx\n"
    "    mov guest_state+24(%rip), %rbx\n"
    "    mov guest_state+40(%rip), %rbp\n"
    "    mov guest_state+48(%rip), %rsi\n"
    "    mov guest_state+56(%rip), %rdi\n"
    "    mov guest_state+64(%rip), %r8\n"
    "    mov guest_state+72(%rip), %r9\n"
    "    mov guest_state+80(%rip), %r10\n"
    "    mov guest_state+88(%rip), %r11\n"
    "    mov guest_state+96(%rip), %r12\n"
    "    mov guest_state+104(%rip), %r13\n"
    "    mov guest_state+112(%rip), %r14\n"
    "    mov guest_state+120(%rip), %r15\n"
    "    mov guest_state+32(%rip), %rsp\n"
    "    mov guest_state+0(%rip), %rax\n"
    "    jmp *guest_state+136(%rip)\n"
    "    .size oracle_enter, .-oracle_enter\n"
    "\n"
    "    .globl oracle_exit\n"
    "    .globl oracle_exit_end\n"
    "    .type oracle_exit, @function\n"
    "oracle_exit:\n"
    "    mov %rax, guest_state+0(%rip)\n"
    "    mov %rcx, guest_state+8(%rip)\n"
    "    mov %rdx, guest_state+16(%rip)\n"
    "    mov %rbx, guest_state+24(%rip)\n"
    "    mov %rsp, guest_state+32(%rip)\n"
    "    mov %rbp, guest_state+40(%rip)\n"
    "    mov %rsi, guest_state+48(%rip)\n"
    "    mov %rdi, guest_state+56(%rip)\n"
    "    mov %r8, guest_state+64(%rip)\n"
    "    mov %r9, guest_state+72(%rip)\n"
    "    mov %r10, guest_state+80(%rip)\n"
    "    mov %r11, guest_state+88(%rip)\n"
    "    mov %r12, guest_state+96(%rip)\n"
    "    mov %r13, guest_state+104(%rip)\n"
    "    mov %r14, guest_state+112(%rip)\n"
    "    mov %r15, guest_state+120(%rip)\n"
    "    mov host_rsp(%rip), %rsp\n"
    "    pushfq\n"
    "    popq guest_state+128(%rip)\n"
    "    pushq $2\n" // clear DF, AC, TF and the status flags for C code
    "    popfq\n"
    "    fninit\n"
    "    ldmxcsr host_mxcsr(%rip)\n"
    "    pop %r15\n"
    "    pop %r14\n"
    "    pop %r13\n"
    "    pop %r12\n"
    "    pop %rbp\n"
    "    pop %rbx\n"
    "    ret\n"
    "oracle_exit_end:\n"
    "    .size oracle_exit, .-oracle_exit\n"
    "\n"
    "    .globl oracle_reset_flags\n"
    "    .type oracle_reset_flags, @function\n"
    "oracle_reset_flags:\n" // for signal handlers: the kernel clears DF and TF, not AC
    "    pushq $2\n"
    "    popfq\n"
    "    ret\n"
    "    .size oracle_reset_flags, .-oracle_reset_flags\n");

// ucontext register index for each protocol GPR slot.
static const int gpr_reg[16] = {
    REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
    REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

static sigjmp_buf resume;
static volatile sig_atomic_t in_guest;
static struct result out;
static long timeout_ms = 1000;
static uint32_t code_len; // of the running case

static void die(const char *msg)
{
    fprintf(stderr, "oracle: %s\n", msg);
    exit(2);
}

static void on_signal(int sig, siginfo_t *info, void *ctx)
{
    (void)info;
    oracle_reset_flags(); // before any unaligned access with the guest's AC

    const greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    uint64_t rip = (uint64_t)g[REG_RIP];
    int in_trampoline = (rip >= (uint64_t)oracle_enter && rip < (uint64_t)oracle_exit_end);

    // A single-step trap (TF set by the guest) after the exit jump: the guest is at its end.
    if (sig == SIGTRAP && in_guest && rip == (uint64_t)oracle_exit) {
        rip = CODE_BASE + code_len;
        in_trampoline = 0;
    }

    if (sig == SIGALRM) {
        // The interval timer fires again if this tick is ignored.
        if (!in_guest || in_trampoline)
            return;
    } else if (!in_guest || in_trampoline) {
        // A fault in the oracle itself: die with the default action.
        signal(sig, SIG_DFL);
        return;
    }
    out.signal = sig;
    out.rip = rip - CODE_BASE;
    for (int i = 0; i < 16; i++)
        out.gpr[i] = (uint64_t)g[gpr_reg[i]];
    out.rflags = (uint64_t)g[REG_EFL];
    siglongjmp(resume, 1);
}

// The per-case timeout: alarm(2)'s timer (ITIMER_REAL, SIGALRM) with
// millisecond resolution, re-armed periodically so a tick that lands outside
// the guest code is simply retried.
static void set_timer(long ms)
{
    struct itimerval t = {{ms / 1000, (ms % 1000) * 1000}, {ms / 1000, (ms % 1000) * 1000}};
    if (setitimer(ITIMER_REAL, &t, NULL) != 0)
        die("setitimer failed");
}

// Runs the loaded code with the case's registers and fills `out` (but for mem).
static void run_case(const struct case_header *h)
{
    code_len = h->code_len;
    memcpy(guest_state, h->gpr, sizeof h->gpr);
    guest_state[16] = (h->rflags & RFLAGS_INPUT_MASK) | 2;
    guest_state[17] = CODE_BASE;

    memset(&out, 0, offsetof(struct result, mem));
    out.magic = RESULT_MAGIC;
    if (sigsetjmp(resume, 1) != 0) { // came back from on_signal
        in_guest = 0;
        set_timer(0);
        return;
    }
    set_timer(timeout_ms);
    in_guest = 1;
    oracle_enter();
    in_guest = 0;
    set_timer(0);
    out.rip = h->code_len;
    memcpy(out.gpr, guest_state, sizeof out.gpr);
    out.rflags = guest_state[16];
}

// Reserves [base - GUARD, base + size + GUARD) and makes the middle accessible.
static void map_window(uint64_t base, size_t size, int prot)
{
    void *want = (void *)(base - GUARD);
    void *p = mmap(want, size + 2 * GUARD, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != want) {
        fprintf(stderr, "oracle: cannot map %#lx: %s\n", (unsigned long)base, strerror(errno));
        exit(2);
    }
    if (mprotect((void *)base, size, prot) != 0)
        die("mprotect failed");
}

// Reads exactly n bytes; returns 0 on EOF before the first byte, dies on a short read.
static int read_all(void *buf, size_t n)
{
    size_t got = fread(buf, 1, n, stdin);
    if (got == n)
        return 1;
    if (got == 0 && feof(stdin))
        return 0;
    die("truncated case on stdin");
    return 0;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "t:")) != -1) {
        if (opt != 't' || (timeout_ms = strtol(optarg, NULL, 10)) <= 0) {
            fprintf(stderr, "usage: %s [-t TIMEOUT_MS] < cases > results\n", argv[0]);
            return 2;
        }
    }

    uint8_t *data = (uint8_t *)DATA_BASE;
    uint8_t *code = (uint8_t *)CODE_BASE;
    map_window(DATA_BASE, DATA_SIZE, PROT_READ | PROT_WRITE);
    map_window(CODE_BASE, CODE_MAP, PROT_READ | PROT_WRITE);
    memset(code, 0xCC, CODE_MAP);

    static uint8_t altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        die("sigaltstack failed");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGFPE, SIGSEGV, SIGILL, SIGBUS, SIGTRAP, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            die("sigaction failed");

    static uint8_t inbuf[1 << 20], outbuf[1 << 16];
    setvbuf(stdin, (char *)inbuf, _IOFBF, sizeof inbuf);
    setvbuf(stdout, (char *)outbuf, _IOFBF, sizeof outbuf);

    size_t dirty = 0; // bytes of the code window written by the previous case
    struct case_header h;
    while (read_all(&h, sizeof h)) {
        if (h.magic != CASE_MAGIC)
            die("bad case magic");
        if (h.code_len > CODE_MAX)
            die("code_len exceeds 64 KiB");
        if (!read_all(data, DATA_SIZE))
            die("truncated case on stdin");

        // Code, then `jmp qword [rip+0]` with the absolute address of oracle_exit.
        if (mprotect(code, CODE_MAP, PROT_READ | PROT_WRITE) != 0)
            die("mprotect failed");
        memset(code, 0xCC, dirty);
        if (h.code_len > 0 && !read_all(code, h.code_len))
            die("truncated case on stdin");
        static const uint8_t jmp_abs[6] = {0xFF, 0x25, 0, 0, 0, 0};
        uint64_t exit_addr = (uint64_t)oracle_exit;
        memcpy(code + h.code_len, jmp_abs, sizeof jmp_abs);
        memcpy(code + h.code_len + sizeof jmp_abs, &exit_addr, sizeof exit_addr);
        dirty = h.code_len + sizeof jmp_abs + sizeof exit_addr;
        if (mprotect(code, CODE_MAP, PROT_READ | PROT_EXEC) != 0)
            die("mprotect failed");

        run_case(&h);
        memcpy(out.mem, data, DATA_SIZE);
        if (fwrite(&out, sizeof out, 1, stdout) != 1 || fflush(stdout) != 0)
            die("cannot write result");
    }
    if (ferror(stdin))
        die("error reading stdin");
    return 0;
}
