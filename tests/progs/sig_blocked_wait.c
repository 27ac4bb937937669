/* Only a signal that can be delivered now ends a wait (Linux's
 * signal_pending): a blocked one stays pending and the wait goes on. A
 * periodic blocked SIGALRM never stops a 300 ms nanosleep; a blocked
 * SIGUSR2 in the middle of a 1 s sleep neither restarts nor ends it;
 * sigtimedwait for SIGUSR1 waits on through a blocked SIGUSR2; a handled,
 * unblocked signal still ends a sleep with EINTR. Durations are printed
 * as coarse buckets; the output must match a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static volatile sig_atomic_t handled;
static void on_sig(int s) { (void)s; handled++; }

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "ok" if ms lies in [lo, hi), else how it missed. */
static const char *within(long ms, long lo, long hi) { return ms < lo ? "early" : ms >= hi ? "late" : "ok"; }

/* A child that sends ``sig`` to the parent after ``delay_ms``. */
static pid_t send_later(int sig, int delay_ms) {
    pid_t parent = getpid(), pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        usleep(delay_ms * 1000);
        kill(parent, sig);
        _exit(0);
    }
    return pid;
}

static void reap(pid_t pid) { while (waitpid(pid, 0, 0) < 0 && errno == EINTR) {} }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa = {.sa_handler = on_sig};
    sigaction(SIGALRM, &sa, 0);
    sigaction(SIGUSR1, &sa, 0);
    sigaction(SIGUSR2, &sa, 0);
    sigset_t alrm, usr2, usr1, pend;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);

    /* A blocked SIGALRM every 20 ms: the 300 ms sleep ends on time. */
    sigprocmask(SIG_BLOCK, &alrm, 0);
    struct itimerval it = {{0, 20000}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, 0);
    long t0 = now_ms();
    struct timespec ts = {0, 300000000};
    int r = nanosleep(&ts, 0);
    long ms = now_ms() - t0;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, 0);
    sigpending(&pend);
    printf("periodic blocked SIGALRM: nanosleep=%d time %s, pending=%d, handled=%d\n", r, within(ms, 300, 800),
           sigismember(&pend, SIGALRM), handled);
    sigprocmask(SIG_UNBLOCK, &alrm, 0);
    printf("unblocked: handled=%d\n", handled);
    handled = 0;

    /* A blocked SIGUSR2 half-way through a 1 s sleep: it still takes 1 s. */
    sigprocmask(SIG_BLOCK, &usr2, 0);
    pid_t child = send_later(SIGUSR2, 400);
    t0 = now_ms();
    ts = (struct timespec){1, 0};
    r = nanosleep(&ts, 0);
    ms = now_ms() - t0;
    reap(child);
    sigpending(&pend);
    printf("blocked SIGUSR2 mid-sleep: nanosleep=%d time %s, pending=%d\n", r, within(ms, 1000, 1400),
           sigismember(&pend, SIGUSR2));

    /* sigtimedwait for SIGUSR1 (blocked, as it should be): SIGUSR2 is
     * still blocked and pending-again; it must not end the wait. */
    sigprocmask(SIG_UNBLOCK, &usr2, 0); /* deliver the pending one first */
    sigprocmask(SIG_BLOCK, &usr2, 0);
    sigprocmask(SIG_BLOCK, &usr1, 0);
    handled = 0;
    child = send_later(SIGUSR2, 200);
    pid_t child2 = send_later(SIGUSR1, 600);
    t0 = now_ms();
    ts = (struct timespec){2, 0};
    siginfo_t si;
    r = sigtimedwait(&usr1, &si, &ts);
    ms = now_ms() - t0;
    reap(child);
    reap(child2);
    printf("sigtimedwait(USR1) through blocked USR2: %s time %s, handled=%d\n",
           r == SIGUSR1 ? "SIGUSR1" : strerrorname_np(errno), within(ms, 550, 1500), handled);
    sigprocmask(SIG_UNBLOCK, &usr2, 0);
    printf("unblocked USR2: handled=%d\n", handled);

    /* ...and with nothing wanted arriving, it times out (EAGAIN) on time. */
    sigprocmask(SIG_BLOCK, &usr2, 0);
    child = send_later(SIGUSR2, 100);
    t0 = now_ms();
    ts = (struct timespec){0, 500000000};
    r = sigtimedwait(&usr1, &si, &ts);
    ms = now_ms() - t0;
    reap(child);
    printf("sigtimedwait timeout: %d %s time %s\n", r, r < 0 ? strerrorname_np(errno) : "", within(ms, 500, 1000));
    sigprocmask(SIG_UNBLOCK, &usr2, 0);

    /* A handled signal that is not blocked still ends the sleep. */
    handled = 0;
    child = send_later(SIGUSR2, 200);
    t0 = now_ms();
    ts = (struct timespec){3, 0};
    r = nanosleep(&ts, 0);
    int e = errno;
    ms = now_ms() - t0;
    reap(child);
    printf("unblocked handled SIGUSR2: nanosleep=%d %s time %s, handled=%d\n", r, r < 0 ? strerrorname_np(e) : "",
           within(ms, 150, 1500), handled);

    /* pause() under a blocked signal waits for the unblocked one only. */
    handled = 0;
    sigprocmask(SIG_BLOCK, &usr2, 0);
    child = send_later(SIGUSR2, 100);
    pid_t usr1_child = fork();
    if (usr1_child == 0) {
        usleep(400000);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    sigprocmask(SIG_UNBLOCK, &usr1, 0);
    t0 = now_ms();
    r = pause();
    ms = now_ms() - t0;
    reap(child);
    reap(usr1_child);
    sigpending(&pend);
    printf("pause with USR2 blocked: %d time %s, handled=%d, usr2 pending=%d\n", r, within(ms, 350, 1500), handled,
           sigismember(&pend, SIGUSR2));
    return 0;
}
