/* ppoll, pselect6, epoll_pwait, epoll_pwait2 (and rt_sigsuspend) with a temporary signal
 * mask (the race-free wait: block SIGUSR1, then wait with it unblocked).
 * The temporary mask stays until the signal is delivered: the handler runs
 * under it (SIGUSR2, blocked outside, is not blocked there), the call
 * returns EINTR, and the caller's mask is back afterwards. A call that
 * finds a ready fd returns it and leaves the signal pending. Prints one
 * line per case; the output must match a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static volatile sig_atomic_t got, usr2_blocked_in_handler;
static int pipefd[2], ep;

static void on_usr1(int sig) {
    (void)sig;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr2_blocked_in_handler = sigismember(&cur, SIGUSR2);
    got++;
}

/* One wait on the (empty or not) pipe's read end under ``mask``. */
static int wait_once(const char *how, const sigset_t *mask, int timeout_ms) {
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    struct timespec *tsp = timeout_ms < 0 ? NULL : &ts;
    if (!strcmp(how, "ppoll")) {
        struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
        return ppoll(&p, 1, tsp, mask);
    }
    if (!strcmp(how, "pselect6")) {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(pipefd[0], &rd);
        struct { const sigset_t *set; size_t size; } arg = {mask, 8};
        return syscall(SYS_pselect6, pipefd[0] + 1, &rd, NULL, NULL, tsp, &arg);
    }
    struct epoll_event ev;
    if (!strcmp(how, "epoll_pwait"))
        return epoll_pwait(ep, &ev, 1, timeout_ms, mask);
    return syscall(SYS_epoll_pwait2, ep, &ev, 1, tsp, mask, 8);
}

static void *late_kill(void *arg) {
    (void)arg;
    usleep(50000);
    CHECK(kill(getpid(), SIGUSR1) == 0);  /* every thread blocks it but the waiter's temporary mask */
    return NULL;
}

static void show(const char *how, const char *when, int r) {
    int e = errno;
    sigset_t cur, pend;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    sigpending(&pend);
    printf("%s %s: r=%d %s got=%d usr2_in_handler=%d after: usr1_blocked=%d usr2_blocked=%d usr1_pending=%d\n",
           how, when, r, r < 0 ? strerrorname_np(e) : "ok", got, usr2_blocked_in_handler,
           sigismember(&cur, SIGUSR1), sigismember(&cur, SIGUSR2), sigismember(&pend, SIGUSR1));
}

static void drain_usr1(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, NULL, &zero) == SIGUSR1) {}
}

int main(void) {
    const char *hows[] = {"ppoll", "pselect6", "epoll_pwait", "epoll_pwait2"};
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    sigset_t block, empty, only_usr1;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    sigemptyset(&empty);
    sigemptyset(&only_usr1);
    sigaddset(&only_usr1, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
    CHECK(pipe(pipefd) == 0);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev) == 0);

    for (int i = 0; i < 4; i++) {
        const char *how = hows[i];
        /* Pending before the call. */
        got = 0, usr2_blocked_in_handler = -1;
        CHECK(raise(SIGUSR1) == 0);
        errno = 0;
        show(how, "pending", wait_once(how, &empty, -1));
        /* Arriving during the wait, sent to the process. */
        got = 0, usr2_blocked_in_handler = -1;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, late_kill, NULL) == 0);
        errno = 0;
        show(how, "arriving", wait_once(how, &empty, 5000));
        CHECK(pthread_join(th, NULL) == 0);
        /* The temporary mask still blocks it: a timeout; it stays pending. */
        got = 0, usr2_blocked_in_handler = -1;
        CHECK(raise(SIGUSR1) == 0);
        errno = 0;
        show(how, "masked", wait_once(how, &only_usr1, 20));
        drain_usr1();
        /* A ready fd wins: the call returns it and the signal stays pending. */
        got = 0, usr2_blocked_in_handler = -1;
        CHECK(write(pipefd[1], "x", 1) == 1);
        CHECK(raise(SIGUSR1) == 0);
        errno = 0;
        show(how, "ready", wait_once(how, &empty, -1));
        char c;
        CHECK(read(pipefd[0], &c, 1) == 1);
        drain_usr1();
    }
    /* rt_sigsuspend, the same way. */
    got = 0, usr2_blocked_in_handler = -1;
    CHECK(raise(SIGUSR1) == 0);
    errno = 0;
    show("sigsuspend", "pending", sigsuspend(&empty));
    /* Delivered once the caller unblocks it itself. */
    got = 0;
    CHECK(raise(SIGUSR1) == 0);
    CHECK(sigprocmask(SIG_UNBLOCK, &only_usr1, NULL) == 0);
    printf("unblocked: got=%d\n", got);
    return 0;
}
