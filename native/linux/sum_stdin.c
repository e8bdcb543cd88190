// SPDX-License-Identifier: MIT
// scanf of integers from standard input.
#include <stdio.h>

int main(void)
{
    long long x, sum = 0;
    int n = 0;
    while (scanf("%lld", &x) == 1) { sum += x; n++; }
    printf("%d numbers, sum %lld\n", n, sum);
    return 0;
}
