// SPDX-License-Identifier: MIT
// qsort and bsearch over integers and strings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void)
{
    enum { N = 5000 };
    static int v[N];
    unsigned s = 12345;
    for (int i = 0; i < N; i++) { s = s * 1103515245u + 12345u; v[i] = (int)(s >> 8) % 100000 - 50000; }
    qsort(v, N, sizeof v[0], cmp_int);
    long long acc = 0;
    for (int i = 0; i < N; i++) acc = acc * 31 + v[i];
    printf("min %d max %d median %d hash %lld\n", v[0], v[N - 1], v[N / 2], acc);
    int found = 0;
    for (int k = -50000; k < 50000; k += 37) found += bsearch(&k, v, N, sizeof v[0], cmp_int) != NULL;
    printf("found %d\n", found);

    const char *words[] = { "pear", "apple", "fig", "banana", "cherry", "date", "elderberry", "grape", "kiwi", "lemon" };
    enum { W = sizeof words / sizeof words[0] };
    char *w[W];
    for (int i = 0; i < W; i++) w[i] = (char *)words[i];
    qsort(w, W, sizeof w[0], cmp_str);
    for (int i = 0; i < W; i++) printf("%s%c", w[i], i + 1 < W ? ' ' : '\n');
    const char *key = "grape";
    char **hit = bsearch(&key, w, W, sizeof w[0], cmp_str);
    printf("grape at %d\n", hit ? (int)(hit - w) : -1);
    return 0;
}
