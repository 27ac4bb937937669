/* The micro-benchmarks of `sentry bench`, timed inside the guest (so the
 * same binary measures native, Sentry and runsc alike).
 *
 * usage: micro RUNS OP:N [OP:N...]     (and `micro exit`, the fork+exec child)
 * OP: getppid (raw `syscall`), orc (open/read/close of /etc/passwd, 256 B),
 *     forkexec (fork, execve of this binary, waitpid), mmap (mmap+munmap of
 *     64 KiB anonymous), pipe (1-byte ping-pong between two processes),
 *     thread (pthread_create + pthread_join), bigread (1 MiB reads of the
 *     file named by $MICRO_BIGFILE, from its start again at its end; ns
 *     per MiB, so native/this is the fraction of native throughput).
 * For each OP: N/10+1 warm-up operations, then RUNS runs of N; prints
 * "OP MEDIAN" in ns per operation. Every result is checked; a failure
 * prints "OP error WHAT" and the exit status is 1. argv[0] must be a path
 * this process can execve (forkexec). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *self;

static long raw_getppid(void) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(110L) : "rcx", "r11", "memory");
    return r;
}

static int op_getppid(long n) {
    long expect = getppid();
    for (long i = 0; i < n; i++)
        if (raw_getppid() != expect) return -1;
    return 0;
}

static int op_orc(long n) {
    char buf[256];
    for (long i = 0; i < n; i++) {
        int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf) <= 0 || close(fd)) return -1;
    }
    return 0;
}

static int op_forkexec(long n) {
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            execl(self, self, "exit", (char *)0);
            _exit(127);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    }
    return 0;
}

static int op_mmap(long n) {
    for (long i = 0; i < n; i++) {
        void *p = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || munmap(p, 65536)) return -1;
    }
    return 0;
}

static int op_pipe(long n) {
    int to[2], from[2];
    if (pipe(to) || pipe(from)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    char c = 'x';
    if (pid == 0) {
        close(to[1]);
        close(from[0]);
        while (read(to[0], &c, 1) == 1)
            if (write(from[1], &c, 1) != 1) _exit(1);
        _exit(0);
    }
    close(to[0]);
    close(from[1]);
    int bad = 0;
    for (long i = 0; i < n && !bad; i++)
        bad = write(to[1], &c, 1) != 1 || read(from[0], &c, 1) != 1;
    close(to[1]);
    int st;
    bad |= waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st);
    close(from[0]);
    return bad ? -1 : 0;
}

static void *empty(void *arg) { return arg; }

static int op_thread(long n) {
    for (long i = 0; i < n; i++) {
        pthread_t t;
        void *r;
        if (pthread_create(&t, 0, empty, (void *)i) || pthread_join(t, &r) || r != (void *)i) return -1;
    }
    return 0;
}

static int op_bigread(long n) {
    static char buf[1 << 20];
    static int fd = -1;
    const char *path = getenv("MICRO_BIGFILE");
    if (fd < 0 && (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)) return -1;
    for (long i = 0; i < n; i++) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got == 0) {
            if (lseek(fd, 0, SEEK_SET)) return -1;
            got = read(fd, buf, sizeof buf);
        }
        if (got != sizeof buf) return -1;
    }
    return 0;
}

static const struct { const char *name; int (*fn)(long); } OPS[] = {
    {"getppid", op_getppid}, {"orc", op_orc}, {"forkexec", op_forkexec},
    {"mmap", op_mmap}, {"pipe", op_pipe}, {"thread", op_thread}, {"bigread", op_bigread},
};

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "exit")) return 0;
    if (argc < 3) { fprintf(stderr, "usage: micro RUNS OP:N...\n"); return 2; }
    self = argv[0];
    int runs = atoi(argv[1]), status = 0;
    if (runs < 1 || runs > 64) { fprintf(stderr, "micro: RUNS must be 1..64\n"); return 2; }
    for (int a = 2; a < argc; a++) {
        char name[32];
        long n;
        if (sscanf(argv[a], "%31[a-z]:%ld", name, &n) != 2 || n < 1) { fprintf(stderr, "micro: bad %s\n", argv[a]); return 2; }
        int (*fn)(long) = 0;
        for (size_t i = 0; i < sizeof OPS / sizeof *OPS; i++)
            if (!strcmp(OPS[i].name, name)) fn = OPS[i].fn;
        if (!fn) { fprintf(stderr, "micro: unknown op %s\n", name); return 2; }
        double v[64];
        int failed = fn(n / 10 + 1);
        for (int r = 0; r < runs && !failed; r++) {
            double t0 = now_ns();
            failed = fn(n);
            v[r] = (now_ns() - t0) / n;
        }
        if (failed) { printf("%s error\n", name); status = 1; continue; }
        qsort(v, runs, sizeof *v, cmp);
        printf("%s %.1f\n", name, v[runs / 2]);
        fflush(stdout);
    }
    return status;
}
