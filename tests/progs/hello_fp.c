/* Floating point mixed with system calls: every printf is a write(2), so
 * the FPU/SSE state must survive each switch into the Sentry exactly. */
#include <math.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    double x = 1.0;
    long double ld = 1.0L;
    float f = 0.1f;
    for (int i = 0; i < 20; i++) {
        x = x * 1.5 + sqrt(x) / (i + 1);
        ld = ld * 1.25L + 1.0L / (i + 3);
        f = f * 1.1f + (float)getppid() * 0.0f;
        printf("%2d %.17g %.21Lg %.9g\n", i, x, ld, f);
    }
    printf("argc=%d pid>0=%d\n", argc, getpid() > 0);
    return 7;
}
