// SPDX-License-Identifier: MIT
// Heap churn: many malloc/realloc/free of mixed sizes (small ones from brk, large ones from mmap).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long state = 88172645463325252ULL;
static unsigned next(void)
{
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return (unsigned)state;
}

int main(void)
{
    enum { SLOTS = 512 };
    static unsigned char *slot[SLOTS];
    static size_t size[SLOTS];
    unsigned long long sum = 0;
    for (int round = 0; round < 20000; round++)
    {
        int i = next() % SLOTS;
        if (slot[i])
        {
            for (size_t k = 0; k < size[i]; k += 61) sum += slot[i][k] ^ (unsigned char)i;
            if (next() % 3 == 0)
            {
                size_t n = size[i] * 2 + 1;
                unsigned char *p = realloc(slot[i], n);
                if (!p) return 2;
                memset(p + size[i], (int)(i & 0xFF), n - size[i]);
                slot[i] = p; size[i] = n;
                continue;
            }
            free(slot[i]);
            slot[i] = NULL;
            continue;
        }
        unsigned r = next();
        size_t n = (r % 16 == 0) ? 100000 + r % 300000 : 1 + r % 2000;
        slot[i] = malloc(n);
        if (!slot[i]) return 3;
        memset(slot[i], (int)(i & 0xFF), n);
        size[i] = n;
    }
    for (int i = 0; i < SLOTS; i++) free(slot[i]);
    void *big = calloc(1, 8 << 20);
    printf("calloc zeroed: %s\n", ((char *)big)[(8 << 20) - 1] == 0 ? "yes" : "no");
    free(big);
    printf("checksum %llu\n", sum);
    return 0;
}
