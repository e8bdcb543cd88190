// SPDX-License-Identifier: MIT
// Dies of SIGABRT through abort() (glibc: tgkill, musl: tkill).
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    printf("aborting\n");
    fflush(stdout);
    abort();
}
