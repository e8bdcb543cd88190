// SPDX-License-Identifier: MIT
// File and directory I/O inside the directory given as argv[1].
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: files DIR\n"); return 2; }
    if (chdir(argv[1]) != 0) { perror("chdir"); return 1; }
    if (mkdir("sub", 0755) != 0) { perror("mkdir"); return 1; }
    int fd = open("sub/data.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) { perror("open"); return 1; }
    for (int i = 0; i < 100; i++) { char line[32]; int n = snprintf(line, sizeof line, "line %d\n", i); write(fd, line, n); }
    close(fd);
    struct stat st;
    stat("sub/data.txt", &st);
    printf("size %lld regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    FILE *f = fopen("sub/data.txt", "r");
    char line[64];
    int count = 0;
    while (fgets(line, sizeof line, f)) count++;
    fseek(f, 7 * 8, SEEK_SET);
    fgets(line, sizeof line, f);
    printf("lines %d, at 56: %s", count, line);
    fclose(f);
    fd = open("sub/data.txt", O_RDWR);
    printf("lseek end %lld\n", (long long)lseek(fd, 0, SEEK_END));
    char b[6];
    pread(fd, b, 5, 10);
    b[5] = 0;
    printf("pread [%s]\n", b);
    ftruncate(fd, 20);
    fstat(fd, &st);
    printf("truncated %lld\n", (long long)st.st_size);
    close(fd);
    for (int i = 0; i < 5; i++) { char name[32]; snprintf(name, sizeof name, "sub/f%d", 4 - i); close(open(name, O_CREAT | O_WRONLY, 0600)); }
    rename("sub/f0", "sub/renamed");
    DIR *d = opendir("sub");
    char *names[32];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 32) if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    for (int i = 0; i < n; i++) printf("entry %s\n", names[i]);
    printf("open missing: %s\n", open("nope", O_RDONLY) < 0 && errno == ENOENT ? "ENOENT" : "?");
    printf("rmdir non-empty: %s\n", rmdir("sub") < 0 && errno == ENOTEMPTY ? "ENOTEMPTY" : "?");
    for (int i = 0; i < n; i++) { char p[64]; snprintf(p, sizeof p, "sub/%s", names[i]); unlink(p); free(names[i]); }
    printf("rmdir: %d\n", rmdir("sub"));
    char cwd[4096];
    printf("getcwd ends with dir: %d\n", getcwd(cwd, sizeof cwd) != NULL && strstr(cwd, "/") != NULL);
    return 0;
}
