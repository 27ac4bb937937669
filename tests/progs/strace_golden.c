/* A fixed sequence of system calls whose strace lines are golden
 * (tests/test_strace.py). Raw syscall(2) calls only, on static buffers,
 * so that libc cannot add or reorder anything; getppid() marks where the
 * golden part starts (what static glibc does before main is not ours). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static char long_text[] = "0123456789abcdefghijklmnopqrstuvwxyz\n";
static struct timespec ts;
static struct utsname uts;
static uint64_t set, old;
static struct {
    uint64_t handler, flags, restorer, mask;
} act;
static char rnd[4];

int main(void) {
    syscall(SYS_getppid); /* marker */
    syscall(SYS_write, 1, "hello \"strace\"\n", 15);
    syscall(SYS_write, 1, long_text, sizeof long_text - 1); /* cut at --strace-log-size */
    syscall(SYS_write, 99, "x", 1);                           /* EBADF */
    syscall(SYS_openat, AT_FDCWD, "/nonexistent/file", O_RDONLY | O_CLOEXEC, 0);
    syscall(SYS_clock_getres, CLOCK_MONOTONIC, &ts);
    syscall(SYS_getrandom, rnd, 0, GRND_NONBLOCK);
    set = 1ull << (SIGUSR1 - 1);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, &old, 8);
    act.handler = 1; /* SIG_IGN */
    act.mask = 1ull << (SIGTERM - 1);
    syscall(SYS_rt_sigaction, SIGUSR2, &act, NULL, 8);
    void *p = (void *)syscall(SYS_mmap, 0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    syscall(SYS_munmap, p, 8192);
    ts.tv_sec = 0;
    ts.tv_nsec = 1000;
    syscall(SYS_nanosleep, &ts, NULL);
    syscall(SYS_uname, &uts);
    /* Bad pointers: decoded as errors, never a Sentry crash. */
    syscall(SYS_write, 1, (void *)16, 4);
    syscall(SYS_openat, AT_FDCWD, (char *)16, O_RDONLY, 0);
    syscall(SYS_rt_sigaction, SIGUSR2, (void *)16, NULL, 8);
    syscall(SYS_execve, "/bin/sh", (void *)16, NULL);
    syscall(SYS_exit_group, 3);
    return 1;
}
