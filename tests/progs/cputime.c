/* CPU time accounting: getrusage (self, children, thread), times, wait4's
 * rusage and /proc/self/stat. Prints only facts that hold natively too;
 * with the argument "calls" it prints its system time after 5000 getppid
 * calls instead (the test checks it is non-zero in the sandbox). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MS(tv) ((tv).tv_sec * 1000L + (tv).tv_usec / 1000)

/* Busy until the process has used 250 ms of CPU (a fixed count of
 * iterations takes under 50 ms on a fast CPU, and wall time on a loaded
 * host may hold little CPU): the clock is read once per 1M iterations. */
static long cpu_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return now.tv_sec * 1000L + now.tv_nsec / 1000000L;
}

static void burn(void) {
    long start = cpu_ms();
    volatile unsigned long x = 0;
    do {
        for (unsigned long i = 0; i < 1000000UL; i++) x += i;
    } while (cpu_ms() - start < 250);
}

static void *thread_usage(void *out) {
    getrusage(RUSAGE_THREAD, out);
    return NULL;
}

static long proc_stat_utime(void) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f || !fgets(buf, sizeof buf, f)) return -1;
    fclose(f);
    char *p = strrchr(buf, ')');
    long utime = -1;
    /* after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime */
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld", &utime);
    return utime;
}

int main(int argc, char **argv) {
    struct rusage self, children, child, thread;
    if (argc > 1 && !strcmp(argv[1], "calls")) {
        for (int i = 0; i < 5000; i++) syscall(SYS_getppid);
        getrusage(RUSAGE_SELF, &self);
        printf("%ld\n", self.ru_stime.tv_sec * 1000000L + self.ru_stime.tv_usec);
        return 0;
    }
    getrusage(RUSAGE_CHILDREN, &children);
    printf("children before any: %d\n", MS(children.ru_utime) == 0 && MS(children.ru_stime) == 0);

    burn();
    getrusage(RUSAGE_SELF, &self);
    printf("self user after a busy loop >= 50 ms: %d\n", MS(self.ru_utime) >= 50);
    printf("/proc/self/stat utime >= 5 ticks: %d\n", proc_stat_utime() >= 5);

    pthread_t th;
    pthread_create(&th, NULL, thread_usage, &thread);
    pthread_join(th, NULL);
    printf("idle thread's own user < the process's: %d\n", MS(thread.ru_utime) < MS(self.ru_utime));

    pid_t p = fork();
    if (p == 0) { burn(); _exit(0); }
    int st;
    wait4(p, &st, 0, &child);
    printf("wait4: busy child user >= 50 ms: %d\n", MS(child.ru_utime) >= 50);
    getrusage(RUSAGE_CHILDREN, &children);
    printf("children >= the reaped child: %d\n", MS(children.ru_utime) >= MS(child.ru_utime));

    p = fork();
    if (p == 0) { usleep(300000); _exit(0); }
    wait4(p, &st, 0, &child);
    printf("wait4: sleeping child used < 150 ms: %d\n", MS(child.ru_utime) + MS(child.ru_stime) < 150);

    struct tms t;
    times(&t);
    printf("times: cutime >= 5 ticks: %d, utime >= 5 ticks: %d\n",
           t.tms_cutime >= 5 * sysconf(_SC_CLK_TCK) / 100, t.tms_utime >= 5 * sysconf(_SC_CLK_TCK) / 100);
    return 0;
}
