/* A seeded random system-call fuzzer, run inside the sandbox.
 *
 * usage: fuzz_syscalls SEED CALLS [PER_CHILD]
 *
 * The parent (which stays out of harm's way) forks children one after
 * another; each child takes a slice of the seeded sequence and makes
 * PER_CHILD (default 200) random calls: a random number (0..460, a few
 * excluded: see skip()) with arguments drawn from values that find bugs:
 * 0, -1, small and huge integers, page sizes, its own file descriptors,
 * pointers into a buffer of random bytes (with strings and paths in it),
 * NULL+1, unmapped, stub and kernel addresses. Children have /dev/null as
 * stdio. Two threads of each child make calls at once, each its own
 * seeded sequence. A child that blocks or loops is killed after 2 s. Each child
 * counts its calls in shared memory; the parent prints the totals:
 *   "calls N children C killed K signalled S".
 * The same SEED and CALLS give the same sequence of calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_NR 460
#define BUF_SIZE (64 << 10)

static __thread uint64_t rng;
static uint64_t next(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned char *buf;
static int fds[8];

/* Calls that would end or stall the fuzzing child without finding
 * anything (its exit is counted instead), or aim at the parent. */
static int skip(long nr) {
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_kill: case SYS_tkill: case SYS_tgkill:
    case SYS_rt_sigqueueinfo: case SYS_rt_tgsigqueueinfo: case SYS_pidfd_send_signal:
    case SYS_vfork: case SYS_fork: case SYS_clone: case SYS_clone3:
    case SYS_rt_sigreturn: case SYS_pause: case SYS_setsid: case SYS_setpgid:
        return 1;
    }
    return 0;
}

static long arg(void) {
    uint64_t r = next();
    switch (r % 16) {
    case 0: return 0;
    case 1: return -1;
    case 2: return (long)(r >> 8) % 64;
    case 3: return fds[(r >> 8) % 8];
    case 4: case 5: return (long)(buf + (r >> 8) % BUF_SIZE);
    case 6: return (long)(buf + 4096 * ((r >> 8) % 8)); /* aligned: strings and structs */
    case 7: return 4096 << ((r >> 8) % 12);
    case 8: return 1;
    case 9: return (long)0x7f7f00000000UL + (long)((r >> 8) % 0x10000); /* stub code */
    case 10: return (long)0xffffffff81000000UL;
    case 11: return (long)(r >> 4);
    case 12: return (long)(int)(r >> 8);
    case 13: return (long)((r >> 8) & 0xffff);
    case 14: return (long)(buf + BUF_SIZE - 8); /* a struct running off the end */
    default: return (long)r;
    }
}

static void fill_buffer(void) {
    for (size_t i = 0; i < BUF_SIZE; i += 8) {
        uint64_t v = next();
        memcpy(buf + i, &v, 8);
    }
    /* Strings and paths at page starts; NULs here and there. */
    static const char *strings[] = {"/tmp/fz", ".", "/", "/proc/self/mem", "/dev/null", "..", "/tmp/fz/a",
                                    "/proc/self/fd/0", "/etc/passwd"};
    for (int p = 0; p < 8; p++)
        strcpy((char *)buf + 4096 * p, strings[next() % 9]);
    for (int i = 0; i < 64; i++)
        buf[next() % BUF_SIZE] = 0;
}

static volatile uint64_t *count;
static int per_thread;

static void *calls_loop(void *seed) {
    rng = (uint64_t)seed;
    for (int i = 0; i < per_thread; i++) {
        long nr;
        do
            nr = (long)(next() % MAX_NR);
        while (skip(nr));
        long a[6];
        for (int j = 0; j < 6; j++)
            a[j] = arg();
        __atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    return NULL;
}

static void child(int calls) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    buf = mmap(NULL, BUF_SIZE + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(buf + BUF_SIZE, 4096, PROT_NONE); /* a guard page right after */
    int p[2], s[2];
    pipe(p);
    socketpair(AF_UNIX, SOCK_STREAM, 0, s);
    mkdir("/tmp/fz", 0700);
    fds[0] = 0, fds[1] = p[0], fds[2] = p[1], fds[3] = s[0], fds[4] = s[1];
    fds[5] = eventfd(0, 0), fds[6] = open("/tmp/fz/f", O_RDWR | O_CREAT, 0600), fds[7] = 1000;
    struct sigaction sa = {.sa_handler = SIG_IGN};
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGSEGV && sig != SIGBUS && sig != SIGILL && sig != SIGFPE && sig != SIGSYS)
            sigaction(sig, &sa, NULL);
    fill_buffer();
    per_thread = calls / 2;
    uint64_t second = next();
    pthread_t t;
    int threaded = pthread_create(&t, NULL, calls_loop, (void *)second) == 0;
    calls_loop((void *)next());
    if (threaded)
        pthread_join(t, NULL);
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: fuzz_syscalls SEED CALLS [PER_CHILD]\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[1], NULL, 0);
    long calls = atol(argv[2]);
    int per_child = argc > 3 ? atoi(argv[3]) : 200;
    count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long children = 0, killed = 0, signalled = 0;
    for (long done = 0; done < calls; done += per_child, children++) {
        rng = seed * 1000003 + (uint64_t)children;
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            child(per_child);
        int status = 0;
        struct timespec tick = {0, 10 * 1000 * 1000};
        int waited = 0;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (++waited == 200) { /* 2 s: blocked or looping */
                kill(pid, SIGKILL);
                killed++;
            }
            nanosleep(&tick, NULL);
        }
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
            signalled++;
    }
    printf("calls %llu children %ld killed %ld signalled %ld\n", (unsigned long long)*count, children, killed,
           signalled);
    return 0;
}
