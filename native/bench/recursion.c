// SPDX-License-Identifier: MIT
// Deep recursion (call/ret): Fibonacci, Ackermann and a non-tail recursion 100 000 frames deep.
#include "bench.h"

__attribute__((noipa)) static uint64_t fib(int n)
{
    return n < 2 ? (uint64_t)n : fib(n - 1) + fib(n - 2);
}

__attribute__((noipa)) static uint64_t ack(uint64_t m, uint64_t n)
{
    if (m == 0)
        return n + 1;
    if (n == 0)
        return ack(m - 1, 1);
    return ack(m - 1, ack(m, n - 1));
}

// Not a tail call: the result is combined after the call returns, in a way gcc cannot turn into
// an accumulator loop.
__attribute__((noipa)) static uint64_t deep(uint64_t n, uint64_t salt)
{
    if (n == 0)
        return salt;
    uint64_t below = deep(n - 1, salt);
    return (below << 1 | below >> 63) ^ n;
}

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    int fn = scale >= 1 ? 36 : scale >= 0.1 ? 30 : 18;
    long fib_rounds = bench_scaled(4, scale > 1 ? scale : 1, 1);
    uint64_t an = scale >= 1 ? 9 : scale >= 0.1 ? 7 : 3;
    long depth = bench_scaled(100000, scale > 1 ? 1 : scale, 100);
    long deep_rounds = bench_scaled(1500, scale > 1 ? scale : (scale < 0.01 ? 0.01 : scale), 1);

    uint64_t sum = BENCH_SUM_INIT, f = 0, a = 0, d = 0;
    for (long r = 0; r < fib_rounds; r++) {
        f = fib(fn - (int)(r & 1));
        sum = bench_mix(sum, f);
    }
    for (long r = 0; r < fib_rounds; r++) {
        a = ack(3, an);
        sum = bench_mix(sum, a);
    }
    for (long r = 0; r < deep_rounds; r++) {
        d = deep((uint64_t)depth, (uint64_t)r);
        sum = bench_mix(sum, d);
    }
    printf("fib(%d) = %llu, ack(3, %llu) = %llu, deep(%ld) = %016llx\n", fn - (int)((fib_rounds - 1) & 1),
           (unsigned long long)f, (unsigned long long)an, (unsigned long long)a, depth, (unsigned long long)d);
    bench_report("recursion", sum);
    return 0;
}
