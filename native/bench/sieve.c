// SPDX-License-Identifier: MIT
// Integer work: the sieve of Eratosthenes over a byte array, repeated; prints the prime count and
// a checksum of the primes found.
#include <string.h>
#include "bench.h"

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    long limit = bench_scaled(4L << 20, scale > 1 ? 1 : scale, 1000);
    long rounds = bench_scaled(64, scale > 1 ? scale : 1, 1);
    unsigned char *composite = malloc((size_t)limit + 1);
    if (!composite)
        return 1;
    uint64_t sum = BENCH_SUM_INIT;
    long count = 0;
    for (long r = 0; r < rounds; r++) {
        // Each round sieves a slightly different range so no round can be skipped.
        long n = limit - (r & 7);
        memset(composite, 0, (size_t)n + 1);
        count = 0;
        uint64_t total = 0;
        for (long i = 2; i <= n; i++) {
            if (composite[i])
                continue;
            count++;
            total += (uint64_t)i;
            for (long j = i * i; j <= n; j += i)
                composite[j] = 1;
        }
        sum = bench_mix(sum, (uint64_t)count);
        sum = bench_mix(sum, total);
    }
    printf("primes up to %ld: %ld\n", limit - ((rounds - 1) & 7), count);
    bench_report("sieve", sum);
    free(composite);
    return 0;
}
