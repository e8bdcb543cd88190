// SPDX-License-Identifier: MIT
//
// Shared by the benchmark programs: the optional scale factor (argv[1]), a seeded generator and
// the checksum line that `jitvmx bench` compares with the native run's.
#ifndef JITVMX_BENCH_H
#define JITVMX_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// argv[1], when given, multiplies the amount of work (default 1.0 = about one second natively).
static double bench_scale(int argc, char **argv)
{
    if (argc < 2)
        return 1.0;
    char *end;
    double s = strtod(argv[1], &end);
    if (argc > 2 || *end != '\0' || !(s > 0) || s > 1000) {
        fprintf(stderr, "usage: %s [SCALE]   (0 < SCALE <= 1000, default 1)\n", argv[0]);
        exit(2);
    }
    return s;
}

// base * scale, and at least min, so that a tiny scale still does some of every kind of work.
static long bench_scaled(long base, double scale, long min)
{
    double v = (double)base * scale;
    return v < (double)min ? min : (long)v;
}

// xorshift64*: the same sequence on every run and under every runner.
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

// Folds a value into a running checksum (FNV-1a over the eight bytes).
static inline uint64_t bench_mix(uint64_t sum, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        sum ^= (v >> (8 * i)) & 0xFF;
        sum *= 0x100000001B3ULL;
    }
    return sum;
}

#define BENCH_SUM_INIT 0xCBF29CE484222325ULL

static void bench_report(const char *name, uint64_t checksum)
{
    printf("%s checksum %016llx\n", name, (unsigned long long)checksum);
}

#endif
