// SPDX-License-Identifier: MIT
// Dies of SIGILL: UD2.
#include <stdio.h>

int main(void)
{
    printf("before ud2\n");
    fflush(stdout);
    __builtin_trap();
}
