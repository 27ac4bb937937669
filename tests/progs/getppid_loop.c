/* The getppid round trip, timed inside the guest: N raw `syscall`
 * instructions (not libc's wrapper), after a warm-up. Prints
 * "ns_per_call MEDIAN" over RUNS runs; usage: getppid_loop [N] [RUNS]. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long raw_getppid(void) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(110L) : "rcx", "r11", "memory");
    return r;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    double v[64];
    long expect = raw_getppid();
    for (long i = 0; i < n / 10; i++) raw_getppid();
    for (int r = 0; r < runs && r < 64; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++)
            if (raw_getppid() != expect) { printf("wrong result\n"); return 1; }
        clock_gettime(CLOCK_MONOTONIC, &b);
        v[r] = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
    }
    qsort(v, runs, sizeof *v, cmp);
    printf("ns_per_call %.1f\n", v[runs / 2]);
    return 0;
}
