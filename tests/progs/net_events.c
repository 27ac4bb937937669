/* epoll over a pipe, a socket and an eventfd (level-triggered, EPOLLET,
 * EPOLLONESHOT), eventfd semaphore mode, timerfd, signalfd. Prints one
 * line per check; the output must match a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHOW(label, expr) do { errno = 0; long r_ = (long)(expr); \
    printf("%s: %ld %s\n", label, r_, r_ < 0 ? strerrorname_np(errno) : "ok"); } while (0)
#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static int ep;

/* The ready fds of one epoll_wait, by the tag in data.u32 (sorted). */
static void wait_show(const char *label, int timeout) {
    struct epoll_event ev[8];
    int n = epoll_wait(ep, ev, 8, timeout);
    CHECK(n >= 0);
    unsigned tags = 0;
    for (int i = 0; i < n; i++) tags |= 1u << ev[i].data.u32;
    printf("%s: %d ready:", label, n);
    for (int i = 0; i < 8; i++) if (tags & (1u << i)) printf(" %d", i);
    printf("\n");
}

static void add(int fd, uint32_t events, uint32_t tag) {
    struct epoll_event e = {.events = events, .data.u32 = tag};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0);
}

static void *late_writer(void *arg) {
    usleep(50000);
    uint64_t one = 1;
    CHECK(write(*(int *)arg, &one, 8) == 8);
    return NULL;
}

static void epoll_tests(void) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    int p[2], sv[2];
    CHECK(pipe(p) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int efd = eventfd(0, EFD_NONBLOCK);
    add(p[0], EPOLLIN, 1);
    add(sv[0], EPOLLIN | EPOLLET, 2);
    add(efd, EPOLLIN | EPOLLONESHOT, 3);
    wait_show("nothing yet", 0);
    CHECK(write(p[1], "a", 1) == 1);
    CHECK(write(sv[1], "b", 1) == 1);
    uint64_t v = 5;
    CHECK(write(efd, &v, 8) == 8);
    wait_show("all three", 0);
    wait_show("level pipe only (ET consumed, ONESHOT disabled)", 0);
    CHECK(write(sv[1], "c", 1) == 1);
    wait_show("new socket data re-arms ET", 0);
    struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT, .data.u32 = 3};
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, efd, &e) == 0);
    wait_show("MOD re-arms ONESHOT", 0);
    char buf[8];
    CHECK(read(p[0], buf, 1) == 1);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, sv[0], NULL) == 0);
    SHOW("DEL again", epoll_ctl(ep, EPOLL_CTL_DEL, sv[0], NULL));
    SHOW("ADD twice", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    wait_show("after read and DEL", 0);
    /* a blocking wait woken by another thread */
    int efd2 = eventfd(0, 0);
    add(efd2, EPOLLIN, 4);
    pthread_t th;
    pthread_create(&th, NULL, late_writer, &efd2);
    wait_show("woken by a thread", -1);
    pthread_join(th, NULL);
    /* closing a file removes it */
    close(efd2);
    wait_show("closed fd gone", 0);
    /* hangup */
    add(p[1], EPOLLOUT, 5);
    close(p[0]);
    struct epoll_event ev;
    CHECK(epoll_wait(ep, &ev, 1, 0) == 1);
    printf("write end after reader closed: tag %u ERR %d\n", ev.data.u32, !!(ev.events & EPOLLERR));
    close(p[1]); close(sv[0]); close(sv[1]); close(efd);
    /* epoll files watching epoll files: no loops, limited depth */
    int inner = epoll_create1(0);
    add(inner, EPOLLIN, 6);
    SHOW("loop", epoll_ctl(inner, EPOLL_CTL_ADD, ep, &e));
    SHOW("itself", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e));
    int chain[8];
    chain[0] = epoll_create1(0);
    for (int i = 1; i < 8; i++) {
        chain[i] = epoll_create1(0);
        if (epoll_ctl(chain[i], EPOLL_CTL_ADD, chain[i - 1], &e)) {
            printf("nesting stops at depth %d: %s\n", i, strerrorname_np(errno));
            break;
        }
    }
    close(inner); close(ep);
}

/* A unix datagram sender is writable again once its peer reads. */
static void epoll_dgram_room(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    char buf[1024] = {0};
    int n = 0;
    while (send(sv[0], buf, sizeof buf, MSG_DONTWAIT) > 0) n++;
    printf("dgram queue full after sends: %d (%s)\n", n > 0, strerrorname_np(errno));
    ep = epoll_create1(0);
    add(sv[0], EPOLLOUT, 7);
    wait_show("sender writable while full", 0);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(20000);
        for (int i = 0; i < n; i++) CHECK(recv(sv[1], buf, sizeof buf, 0) == sizeof buf);
        _exit(0);
    }
    wait_show("sender writable after the reader drains", -1);
    CHECK(waitpid(pid, NULL, 0) == pid);
    close(ep); close(sv[0]); close(sv[1]);
}

static void eventfd_tests(void) {
    int e = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    uint64_t v;
    for (int i = 0; i < 3; i++) {
        CHECK(read(e, &v, 8) == 8);
        printf("semaphore read %llu\n", (unsigned long long)v);
    }
    SHOW("semaphore empty", read(e, &v, 8));
    SHOW("short read", read(e, &v, 4));
    close(e);
    e = eventfd(0, 0);
    v = 7; CHECK(write(e, &v, 8) == 8);
    v = 8; CHECK(write(e, &v, 8) == 8);
    CHECK(read(e, &v, 8) == 8);
    printf("counter read %llu\n", (unsigned long long)v);
    close(e);
}

static void timerfd_tests(void) {
    int t = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = {.it_value = {0, 20000000}, .it_interval = {0, 20000000}};
    CHECK(timerfd_settime(t, 0, &its, NULL) == 0);
    uint64_t n = 0, total = 0;
    while (total < 3) {
        CHECK(read(t, &n, 8) == 8);
        total += n;
    }
    printf("timerfd expired at least 3 times: %d\n", total >= 3);
    struct itimerspec cur;
    CHECK(timerfd_gettime(t, &cur) == 0);
    printf("interval kept: %ld\n", cur.it_interval.tv_nsec);
    struct itimerspec off = {0};
    CHECK(timerfd_settime(t, 0, &off, NULL) == 0);
    CHECK(timerfd_gettime(t, &cur) == 0);
    printf("disarmed: %ld\n", cur.it_value.tv_sec + cur.it_value.tv_nsec);
    close(t);
    t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    SHOW("nonblocking unarmed read", read(t, &n, 8));
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    its = (struct itimerspec){.it_value = now};
    its.it_value.tv_nsec += 10000000;
    if (its.it_value.tv_nsec >= 1000000000) { its.it_value.tv_sec++; its.it_value.tv_nsec -= 1000000000; }
    CHECK(timerfd_settime(t, TFD_TIMER_ABSTIME, &its, NULL) == 0);
    struct pollfd pf = {t, POLLIN, 0};
    CHECK(poll(&pf, 1, -1) == 1);
    CHECK(read(t, &n, 8) == 8);
    printf("absolute timer fired once: %llu\n", (unsigned long long)n);
    close(t);
}

static void signalfd_tests(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGCHLD);
    CHECK(sigprocmask(SIG_BLOCK, &m, NULL) == 0);
    int s = signalfd(-1, &m, SFD_CLOEXEC);
    CHECK(s >= 0);
    struct signalfd_siginfo si;
    int ns = signalfd(-1, &m, SFD_NONBLOCK);
    SHOW("nothing pending", read(ns, &si, sizeof si));
    close(ns);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK(read(s, &si, sizeof si) == sizeof si);
    printf("signalfd got %s from self: %d\n", sigabbrev_np(si.ssi_signo), si.ssi_pid == (uint32_t)getpid());
    pid_t pid = fork();
    if (pid == 0) _exit(7);
    /* epoll over the signalfd, woken by SIGCHLD */
    ep = epoll_create1(0);
    add(s, EPOLLIN, 6);
    wait_show("signalfd readable after the child exits", -1);
    CHECK(read(s, &si, sizeof si) == sizeof si);
    printf("signalfd got %s status %d pid ok %d\n", sigabbrev_np(si.ssi_signo), si.ssi_status, si.ssi_pid == (uint32_t)pid);
    waitpid(pid, NULL, 0);
    close(ep); close(s);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "all";
    if (!strcmp(what, "all") || !strcmp(what, "epoll")) { epoll_tests(); epoll_dgram_room(); }
    if (!strcmp(what, "all") || !strcmp(what, "eventfd")) eventfd_tests();
    if (!strcmp(what, "all") || !strcmp(what, "timerfd")) timerfd_tests();
    if (!strcmp(what, "all") || !strcmp(what, "signalfd")) signalfd_tests();
    printf("done\n");
    return 0;
}
