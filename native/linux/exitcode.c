// SPDX-License-Identifier: MIT
// Exits with the status given as argv[1]; prints to both streams first (buffered stdout must be flushed by exit).
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int status = argc > 1 ? atoi(argv[1]) : 0;
    printf("exiting with %d\n", status);
    fprintf(stderr, "bye\n");
    if (argc > 2) _Exit(status);   /* without flushing: nothing of the stdout line if it is a pipe */
    exit(status);
}
