// SPDX-License-Identifier: MIT
// setjmp/longjmp out of nested calls.
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;
static int depth_reached;

static void dive(int depth)
{
    volatile char pad[64];
    pad[0] = (char)depth;
    depth_reached = depth + pad[0] - depth;
    if (depth == 50) longjmp(env, depth);
    if (depth < 1000) dive(depth + 1);
}

int main(void)
{
    volatile int rounds = 0;
    int r = setjmp(env);
    printf("setjmp returned %d\n", r);
    if (rounds++ < 3) dive(0);
    printf("rounds %d depth %d\n", rounds, depth_reached);
    return 0;
}
