// SPDX-License-Identifier: MIT
// getrandom(2) and AT_RANDOM: the bytes are random, the results and errors are the kernel's.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>

static int nonzero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 1;
    return 0;
}

int main(void)
{
    unsigned char a[256], b[256];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    ssize_t na = getrandom(a, sizeof a, 0);
    ssize_t nb = getrandom(b, sizeof b, GRND_NONBLOCK);
    printf("sizes %zd %zd\n", na, nb);
    printf("filled %d %d, differ %d\n", nonzero(a, sizeof a), nonzero(b, sizeof b), memcmp(a, b, sizeof a) != 0);

    errno = 0;
    ssize_t bad = getrandom(a, sizeof a, 0x80);
    printf("bad flags: %zd errno %s\n", bad, errno == EINVAL ? "EINVAL" : strerror(errno));
    errno = 0;
    void *volatile unmapped = (void *)16; // hidden from the compiler's bounds checks
    bad = getrandom(unmapped, 8, 0);
    printf("bad buffer: %zd errno %s\n", bad, errno == EFAULT ? "EFAULT" : strerror(errno));
    printf("zero length: %zd\n", getrandom(a, 0, 0));

    const unsigned char *at = (const unsigned char *)getauxval(AT_RANDOM);
    printf("AT_RANDOM %s\n", at && nonzero(at, 16) ? "set" : "missing");
    return 0;
}
