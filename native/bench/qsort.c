// SPDX-License-Identifier: MIT
// libc qsort with comparators (indirect calls): random integers, then records by two keys.
#include <string.h>
#include "bench.h"

struct record {
    uint32_t key;
    uint32_t tie;
    char name[8];
};

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_record(const void *a, const void *b)
{
    const struct record *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->tie != y->tie)
        return x->tie < y->tie ? -1 : 1;
    return memcmp(x->name, y->name, sizeof x->name);
}

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    long n = bench_scaled(1 << 20, scale > 1 ? 1 : scale, 100);
    long rounds = bench_scaled(3, scale > 1 ? scale : 1, 1);
    int *ints = malloc((size_t)n * sizeof *ints);
    struct record *recs = malloc((size_t)n / 2 * sizeof *recs);
    if (!ints || !recs)
        return 1;
    uint64_t seed = 42, sum = BENCH_SUM_INIT;
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < n; i++)
            ints[i] = (int)bench_rand(&seed);
        qsort(ints, (size_t)n, sizeof *ints, cmp_int);
        for (long i = 1; i < n; i++)
            if (ints[i - 1] > ints[i]) {
                printf("not sorted at %ld\n", i);
                return 1;
            }
        for (long i = 0; i < n; i += n / 64)
            sum = bench_mix(sum, (uint64_t)(uint32_t)ints[i]);

        for (long i = 0; i < n / 2; i++) {
            uint64_t v = bench_rand(&seed);
            recs[i].key = (uint32_t)(v & 0x3FF);
            recs[i].tie = (uint32_t)(v >> 40) & 0xFF;
            for (int k = 0; k < 8; k++)
                recs[i].name[k] = (char)('a' + (v >> (10 + 3 * k)) % 26);
        }
        qsort(recs, (size_t)n / 2, sizeof *recs, cmp_record);
        for (long i = 0; i < n / 2; i += n / 128) {
            uint64_t v;
            memcpy(&v, recs[i].name, 8);
            sum = bench_mix(sum, (uint64_t)recs[i].key << 32 | recs[i].tie);
            sum = bench_mix(sum, v);
        }
    }
    printf("%ld rounds of %ld ints and %ld records: min %d max %d\n", rounds, n, n / 2, ints[0], ints[n - 1]);
    bench_report("qsort", sum);
    free(ints);
    free(recs);
    return 0;
}
