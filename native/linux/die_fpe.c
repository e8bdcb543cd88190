// SPDX-License-Identifier: MIT
// Dies of SIGFPE: integer division by zero.
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argv;
    volatile int zero = argc - 1;
    printf("dividing\n");
    fflush(stdout);
    printf("%d\n", 100 / zero);
    return 0;
}
