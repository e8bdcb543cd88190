// SPDX-License-Identifier: MIT
// Smallest stdio program: stdout, puts, and stderr.
#include <stdio.h>

int main(void)
{
    printf("hello, world\n");
    puts("second line");
    fprintf(stderr, "to stderr: %d %s\n", 42, "ok");
    return 0;
}
