// SPDX-License-Identifier: MIT
// The initial process state: argv, envp, the auxiliary vector and the stack alignment, then exit
// with the status given as the first argument.
#include "nolibc.h"

int main(int argc, char **argv, char **envp)
{
    put(1, "hello from a program without libc\n");
    show("argc", argc);
    for (int i = 0; i < argc; i++) { put(1, "argv: "); put(1, i == 0 ? "(argv0)" : argv[i]); put(1, "\n"); }
    for (char **e = envp; *e; e++) if (sprefix(*e, "JVT_")) { put(1, "env: "); put(1, *e); put(1, "\n"); }
    show("sp aligned to 16", ((unsigned long)initial_sp & 15) == 0);
    char **e = envp;
    while (*e) e++;
    unsigned long *aux = (unsigned long *)(e + 1);
    unsigned long pagesz = 0, phdr = 0, phent = 0, phnum = 0, entry = 0, random = 0, execfn = 0, platform = 0, hwcap = 0, clktck = 0, secure = 9;
    for (; aux[0] != 0; aux += 2)
    {
        switch (aux[0])
        {
        case 6: pagesz = aux[1]; break;
        case 3: phdr = aux[1]; break;
        case 4: phent = aux[1]; break;
        case 5: phnum = aux[1]; break;
        case 9: entry = aux[1]; break;
        case 25: random = aux[1]; break;
        case 31: execfn = aux[1]; break;
        case 15: platform = aux[1]; break;
        case 16: hwcap = aux[1]; break;
        case 17: clktck = aux[1]; break;
        case 23: secure = aux[1]; break;
        }
    }
    show("AT_PAGESZ", (long)pagesz);
    show("AT_PHENT", (long)phent);
    show("AT_PHDR has PT_LOAD or PT_PHDR first entries", phdr != 0 && (*(unsigned *)phdr == 6 || *(unsigned *)phdr == 1 || *(unsigned *)(phdr + phent) == 1));
    show("AT_PHNUM > 1", phnum > 1);
    extern char _start[];
    show("AT_ENTRY is _start", entry == (unsigned long)_start);
    show("AT_RANDOM set", random != 0);
    show("AT_EXECFN is argv[0]", execfn != 0 && seq((char *)execfn, argv[0]));
    put(1, "AT_PLATFORM "); put(1, platform ? (char *)platform : "(none)"); put(1, "\n");
    show("AT_HWCAP has SSE2", (hwcap >> 26) & 1);
    show("AT_CLKTCK", (long)clktck);
    show("AT_SECURE", (long)secure);
    put(2, "a line on stderr\n");
    int status = 0;
    if (argc > 1) for (const char *p = argv[1]; *p >= '0' && *p <= '9'; p++) status = status * 10 + (*p - '0');
    return status;
}
