// SPDX-License-Identifier: MIT
// libc string functions on large buffers: memcpy, strlen, memcmp, strchr, memset over 4 MiB.
#include <string.h>
#include "bench.h"

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    size_t size = (size_t)bench_scaled(4L << 20, scale > 1 ? 1 : scale, 8192);
    long rounds = bench_scaled(1000, scale > 1 ? scale : 1, 1);
    char *src = malloc(size + 64), *dst = malloc(size + 64);
    if (!src || !dst)
        return 1;
    uint64_t seed = 7;
    for (size_t i = 0; i < size; i++)
        src[i] = (char)('a' + bench_rand(&seed) % 25); // never 'z' and never 0
    src[size] = 0;

    uint64_t sum = BENCH_SUM_INIT;
    for (long r = 0; r < rounds; r++) {
        size_t off = (size_t)(r * 37) % 64;
        size_t len = size - off;
        memcpy(dst, src + off, len + 1);
        size_t slen = strlen(dst);
        int same = memcmp(dst, src + off, len);
        size_t at = len - 1 - (size_t)(r * 4099) % (len / 4);
        char saved = dst[at];
        dst[at] = 'z';
        const char *z = strchr(dst, 'z');
        int diff = memcmp(dst, src + off, len);
        dst[at] = saved;
        memset(dst + len / 2, 'y', len / 4);
        int tail = memcmp(dst, src + off, len);
        sum = bench_mix(sum, slen);
        sum = bench_mix(sum, (uint64_t)(same == 0));
        sum = bench_mix(sum, z ? (uint64_t)(z - dst) : ~0ULL);
        sum = bench_mix(sum, (uint64_t)((diff > 0) - (diff < 0)) + 2 * (uint64_t)((tail > 0) - (tail < 0)));
    }
    printf("%ld rounds over %zu bytes\n", rounds, size);
    bench_report("strings", sum);
    free(src);
    free(dst);
    return 0;
}
