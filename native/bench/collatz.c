// SPDX-License-Identifier: MIT
// Integer work: Collatz sequence lengths (shifts, adds, data-dependent branches) for 1..N.
#include "bench.h"

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    long n = bench_scaled(3000000, scale, 100);
    uint64_t sum = BENCH_SUM_INIT, total = 0;
    long longest = 1, longest_steps = 0;
    for (long start = 1; start <= n; start++) {
        uint64_t x = (uint64_t)start;
        long steps = 0;
        while (x != 1) {
            x = (x & 1) ? 3 * x + 1 : x >> 1;
            steps++;
        }
        total += (uint64_t)steps;
        if (steps > longest_steps) {
            longest_steps = steps;
            longest = start;
        }
        if ((start & 0xFFFF) == 0)
            sum = bench_mix(sum, total);
    }
    sum = bench_mix(sum, total);
    printf("1..%ld: %llu steps, longest %ld (%ld steps)\n", n, (unsigned long long)total, longest, longest_steps);
    bench_report("collatz", sum);
    return 0;
}
