// SPDX-License-Identifier: MIT
// String and memory functions of the C library.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char buf[256], other[256];
    strcpy(buf, "The quick brown fox");
    strcat(buf, " jumps over the lazy dog");
    printf("len %zu\n", strlen(buf));
    printf("strchr %s\n", strchr(buf, 'q'));
    printf("strrchr %s\n", strrchr(buf, 'o'));
    printf("strstr %s\n", strstr(buf, "lazy"));
    printf("cmp %d %d %d\n", strcmp("abc", "abd") < 0, strcmp("b", "a") > 0, strncmp("abcx", "abcy", 3));
    memcpy(other, buf, strlen(buf) + 1);
    memmove(other + 4, other, 10);
    printf("memmove %s\n", other);
    memset(other, '*', 5);
    printf("memset %.12s\n", other);
    printf("memcmp %d\n", memcmp(buf, other, 5) != 0);
    for (char *p = buf; *p; p++) *p = (char)toupper((unsigned char)*p);
    printf("upper %s\n", buf);
    char tok[] = "a,b;;c,dd";
    for (char *t = strtok(tok, ",;"); t; t = strtok(NULL, ",;")) printf("tok [%s]\n", t);
    printf("strtol %ld %ld %lu\n", strtol("-12345", NULL, 10), strtol("0x7fff", NULL, 16), strtoul("777", NULL, 8));
    snprintf(other, sizeof other, "%5d|%-5d|%05x|%c|%10s|%-3s|%%", 42, 42, 255, 'z', "right", "l");
    printf("snprintf %s\n", other);
    printf("strspn %zu strcspn %zu\n", strspn("aaabbc", "ab"), strcspn("hello world", " "));
    char *dup = strdup("duplicate");
    printf("strdup %s\n", dup);
    free(dup);
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    printf("big strlen %zu\n", strlen(big));
    return 0;
}
