// SPDX-License-Identifier: MIT
// Pointer chasing: a linked list of 512 Ki nodes (8 MiB) linked in a random order (fixed seed),
// walked end to end several times. Bound by the memory path and cache misses.
#include "bench.h"

struct node {
    struct node *next;
    uint64_t value;
};

int main(int argc, char **argv)
{
    double scale = bench_scale(argc, argv);
    long n = bench_scaled(1L << 19, scale > 1 ? 1 : scale, 64);
    long rounds = bench_scaled(6, scale > 1 ? scale : 1, 1);
    struct node *nodes = malloc((size_t)n * sizeof *nodes);
    uint32_t *order = malloc((size_t)n * sizeof *order);
    if (!nodes || !order)
        return 1;
    uint64_t seed = 0xC0FFEE;
    for (long i = 0; i < n; i++) {
        order[i] = (uint32_t)i;
        nodes[i].value = bench_rand(&seed) & 0xFFFF;
    }
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(bench_rand(&seed) % (uint64_t)(i + 1));
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (long i = 0; i + 1 < n; i++)
        nodes[order[i]].next = &nodes[order[i + 1]];
    nodes[order[n - 1]].next = NULL;

    uint64_t sum = BENCH_SUM_INIT;
    long visited = 0;
    for (long r = 0; r < rounds; r++) {
        uint64_t total = 0, pos = 0, mixed = 0;
        for (const struct node *p = &nodes[order[0]]; p; p = p->next) {
            total += p->value;
            mixed = (mixed ^ p->value) * 3 + pos++;
            visited++;
        }
        sum = bench_mix(bench_mix(sum, total), mixed);
    }
    printf("%ld rounds over %ld nodes: %ld visits\n", rounds, n, visited);
    bench_report("listwalk", sum);
    free(nodes);
    free(order);
    return 0;
}
