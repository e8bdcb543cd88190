// SPDX-License-Identifier: MIT
// float, double and long double arithmetic and libm, printed exactly (%a, %.17g, %Lg, %La).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    // Inputs from argv so the compiler cannot fold the arithmetic away.
    double x = argc > 1 ? strtod(argv[1], NULL) : 0.7;
    float f = (float)x * 3.1f;
    long double l = (long double)x / 3.0L;

    printf("float  %a %.9g %.9g\n", f, f / 7.0f, sqrtf(f));
    printf("double %a %.17g %.17g %.17g\n", x * x, x / 3.0, sqrt(x), fma(x, x, -0.49));
    printf("libm   %.17g %.17g %.17g %.17g\n", sin(x), cos(x), tan(x), atan2(x, 1.5));
    printf("libm   %.17g %.17g %.17g %.17g\n", exp(x), log(x), pow(x, 2.5), cbrt(x));
    printf("libm   %.17g %.17g %.17g %.17g\n", log10(x * 1000), expm1(1e-10 * x), log1p(x), hypot(x, 2.0));
    printf("round  %.17g %.17g %.17g %ld\n", floor(-x), ceil(x), rint(2.5 + x), lround(x * 10));
    printf("long   %La %Lg %.21Lg\n", l, l * l, sqrtl(l));
    printf("long   %.21Lg %.21Lg %.21Lg\n", sinl(l), expl(l), logl(l + 1));
    printf("long   %.21Lg %.21Lg\n", powl(l, 3.5L), atan2l(l, 0.25L));
    printf("conv   %d %lld %u %.17g %Lg\n", (int)(x * 1e9), (long long)(l * 1e18), (unsigned)(f * 100), (double)f, (long double)f);
    printf("special %g %g %g %Lg %a\n", 1.0 / (x - x), -1.0 / (x - x), sqrt(-x), (long double)NAN, -0.0 * x);
    double acc = 0;
    for (int i = 1; i <= 1000; i++) acc += 1.0 / ((double)i * i);
    long double lacc = 0;
    for (int i = 1; i <= 1000; i++) lacc += 1.0L / ((long double)i * i);
    printf("sum    %.17g %.21Lg\n", acc, lacc);
    return 0;
}
