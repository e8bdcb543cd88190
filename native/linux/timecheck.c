// SPDX-License-Identifier: MIT
// Clocks and sleeping; prints only what does not depend on the moment it runs.
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void)
{
    struct timespec a, b, req = { 0, 2000000 };
    clock_gettime(CLOCK_MONOTONIC, &a);
    nanosleep(&req, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    printf("slept at least 2 ms: %s\n", ns >= 2000000 ? "yes" : "no");
    struct timeval tv;
    gettimeofday(&tv, NULL);
    time_t now = time(NULL);
    printf("time and gettimeofday agree: %s\n", now - tv.tv_sec <= 1 && now >= tv.tv_sec ? "yes" : "no");
    printf("after 2020: %s\n", now > 1577836800 ? "yes" : "no");
    time_t fixed = 1700000000;
    struct tm tm;
    gmtime_r(&fixed, &tm);
    char s[64];
    strftime(s, sizeof s, "%Y-%m-%d %H:%M:%S %A %j", &tm);
    printf("gmtime %s\n", s);
    struct timespec res;
    printf("clock_getres: %d\n", clock_getres(CLOCK_REALTIME, &res));
    return 0;
}
