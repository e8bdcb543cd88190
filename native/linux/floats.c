// SPDX-License-Identifier: MIT
// printf/scanf of floating-point numbers (SSE2 and, for long double, x87).
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    double d = 0;
    printf("%.3f %g %e\n", 3.14159, 1e-5, 12345.678);
    sscanf("2.5 -0.125", "%lf", &d);
    printf("parsed %.4f\n", d);
    double acc = 1;
    for (int i = 1; i <= 10; i++) acc *= i / 2.0;
    printf("acc %.6f strtod %.2f\n", acc, strtod("6.02e23", NULL) / 1e23);
    return 0;
}
