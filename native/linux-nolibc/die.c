// SPDX-License-Identifier: MIT
// Dies the way argv[1] says: segv, ill, fpe, abort, exec-stack, write-text.
#include "nolibc.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    const char *how = argc > 1 ? argv[1] : "segv";
    put(1, "dying: "); put(1, how); put(1, "\n");
    if (seq(how, "segv")) { volatile int *volatile p = (int *)8; *p = 1; }
    if (seq(how, "ill")) __asm__ volatile("ud2");
    if (seq(how, "fpe")) { volatile int zero = 0, n = 100; show("q", n / zero); }
    if (seq(how, "abort")) { long pid = sys(39, 0, 0, 0); sys(234, pid, sys(186, 0, 0, 0), 6); }
    if (seq(how, "exec-stack")) { unsigned char code[4] = { 0xc3 }; ((void (*)(void))code)(); }
    if (seq(how, "write-text")) *(volatile char *)main = 0;
    if (seq(how, "ignored")) { unsigned long act[4] = { 1, 0, 0, 0 }; sys6(13, 6, (long)act, 0, 8, 0, 0); sys(62, sys(39, 0, 0, 0), 6, 0); put(1, "SIGABRT ignored\n"); }
    return 3;
}
