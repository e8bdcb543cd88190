// SPDX-License-Identifier: MIT
// argv and the environment (only JVT_* variables, so the launcher's own do not matter).
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv)
{
    printf("argc=%d\n", argc);
    for (int i = 1; i < argc; i++) printf("argv[%d]=[%s]\n", i, argv[i]);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "JVT_", 4) == 0) printf("env %s\n", *e);
    const char *v = getenv("JVT_ONE");
    printf("getenv(JVT_ONE)=%s\n", v ? v : "(null)");
    printf("argv[argc]=%s\n", argv[argc] == NULL ? "NULL" : "set");
    return 0;
}
