/* Real-time signals queue, one siginfo per instance, standard ones
 * coalesce (Linux: kernel/signal.c __send_signal_locked): sigtimedwait,
 * handlers, signalfd and sigpending see the queue; lowest number first,
 * FIFO within one number, thread-directed before process-directed;
 * pthread_sigqueue (rt_tgsigqueueinfo) and its permission rule;
 * RLIMIT_SIGPENDING. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RT0 SIGRTMIN
#define RT1 (SIGRTMIN + 1)

static void queue(pid_t pid, int sig, int value) {
    union sigval v = {.sival_int = value};
    if (sigqueue(pid, sig, v)) printf("sigqueue(%d, %d): %s\n", sig - (sig >= SIGRTMIN ? SIGRTMIN : 0), value, strerror(errno));
}

static const char *name(int sig) {
    static char buf[16];
    if (sig >= SIGRTMIN) snprintf(buf, sizeof buf, "RTMIN+%d", sig - SIGRTMIN);
    else snprintf(buf, sizeof buf, "%s", sig == SIGUSR1 ? "USR1" : sig == SIGUSR2 ? "USR2" : "?");
    return buf;
}

/* Take everything in `set` without waiting; print it. */
static int drain(const sigset_t *set) {
    struct timespec zero = {0, 0};
    siginfo_t si;
    int n = 0, sig;
    while ((sig = sigtimedwait(set, &si, &zero)) > 0) {
        printf("  %s value=%d code=%d\n", name(sig), si.si_value.sival_int, si.si_code);
        n++;
    }
    printf("  then %s, count=%d\n", strerror(errno), n);
    return n;
}

static void show_pending(const char *when) {
    sigset_t p;
    sigpending(&p);
    printf("%s pending: USR1=%d RTMIN=%d RTMIN+1=%d\n", when, sigismember(&p, SIGUSR1), sigismember(&p, RT0),
           sigismember(&p, RT1));
}

static int order[32][2], norder;
static void record(int sig, siginfo_t *si, void *uc) {
    order[norder][0] = sig;
    order[norder++][1] = si->si_value.sival_int;
}

static sigset_t all;
static pthread_t main_thread;
static volatile int worker_ready;

static void *worker(void *arg) {
    pthread_sigmask(SIG_BLOCK, &all, 0);
    worker_ready = 1;
    siginfo_t si;
    for (int i = 0; i < 3; i++) {
        int sig = sigwaitinfo(&all, &si);
        printf("worker: %s value=%d code=%d\n", name(sig), si.si_value.sival_int, si.si_code);
    }
    /* rt_tgsigqueueinfo with a kill()-style si_code (or SI_TKILL) only to the caller itself */
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = RT0;
    info.si_code = SI_USER;
    long r = syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), RT0, &info);
    printf("worker: SI_USER to itself: %ld\n", r);
    errno = 0;
    r = syscall(SYS_rt_tgsigqueueinfo, getpid(), getpid(), RT0, &info);
    printf("worker: SI_USER to main: %ld %s\n", r, strerror(errno));
    info.si_code = SI_TKILL;
    errno = 0;
    r = syscall(SYS_rt_sigqueueinfo, getpid(), RT0, &info);
    printf("worker: rt_sigqueueinfo SI_TKILL to its process: %ld %s\n", r, strerror(errno));
    sigwaitinfo(&all, &si);
    printf("worker: %s code=%d\n", name(si.si_signo), si.si_code);
    return 0;
}

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    sigemptyset(&all);
    sigaddset(&all, SIGUSR1);
    sigaddset(&all, RT0);
    sigaddset(&all, RT1);
    sigprocmask(SIG_BLOCK, &all, 0);
    pid_t me = getpid();

    printf("sigtimedwait:\n");
    queue(me, RT0, 1);
    queue(me, RT1, 10);
    queue(me, RT0, 2);
    queue(me, SIGUSR1, 100);
    queue(me, SIGUSR1, 101); /* coalesces: the first siginfo stays */
    queue(me, RT0, 3);
    show_pending("queued");
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, RT0);
    struct timespec zero = {0, 0};
    siginfo_t si;
    int sig = sigtimedwait(&one, &si, &zero);
    printf("  took %s value=%d\n", name(sig), si.si_value.sival_int);
    show_pending("two left");
    drain(&all);
    show_pending("drained");

    printf("thread before process:\n");
    queue(me, RT0, 5);
    union sigval v = {.sival_int = 6};
    printf("  pthread_sigqueue: %d\n", pthread_sigqueue(pthread_self(), RT1, v));
    v.sival_int = 7;
    pthread_sigqueue(pthread_self(), RT1, v);
    drain(&all);

    printf("handlers:\n");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = record;
    sa.sa_flags = SA_SIGINFO;
    sigaction(RT0, &sa, 0);
    sigaction(RT1, &sa, 0);
    queue(me, RT1, 20);
    queue(me, RT0, 21);
    queue(me, RT1, 22);
    queue(me, RT0, 23);
    sigprocmask(SIG_UNBLOCK, &all, 0);
    for (int i = 0; i < norder; i++) printf("  %s value=%d\n", name(order[i][0]), order[i][1]);
    sigprocmask(SIG_BLOCK, &all, 0);

    printf("signalfd:\n");
    int fd = signalfd(-1, &all, SFD_NONBLOCK);
    queue(me, RT0, 30);
    queue(me, RT0, 31);
    queue(me, SIGUSR1, 32);
    queue(me, RT0, 33);
    struct signalfd_siginfo ssi[8];
    ssize_t got = read(fd, ssi, sizeof ssi);
    for (int i = 0; i < got / (ssize_t)sizeof ssi[0]; i++)
        printf("  %s int=%d code=%d\n", name(ssi[i].ssi_signo), ssi[i].ssi_int, ssi[i].ssi_code);
    got = read(fd, ssi, sizeof ssi);
    printf("  then %zd %s\n", got, strerror(errno));
    close(fd);

    printf("SIG_IGN discards the queue:\n");
    queue(me, RT0, 40);
    queue(me, RT0, 41);
    signal(RT0, SIG_IGN);
    sigaction(RT0, &sa, 0);
    show_pending("  after SIG_IGN");

    printf("threads:\n");
    main_thread = pthread_self();
    pthread_t th;
    pthread_create(&th, 0, worker, 0);
    while (!worker_ready) sched_yield();
    for (int i = 0; i < 3; i++) {
        v.sival_int = 50 + i;
        pthread_sigqueue(th, RT0, v);
    }
    pthread_join(th, 0);
    drain(&all); /* the worker's refused sends left nothing */

    printf("RLIMIT_SIGPENDING:\n");
    struct rlimit rl = {8, 8};
    setrlimit(RLIMIT_SIGPENDING, &rl);
    int sent = 0, eagain = 0;
    for (int i = 0; i < 20; i++) {
        v.sival_int = i;
        if (sigqueue(me, RT0, v) == 0) sent++;
        else if (errno == EAGAIN) eagain++;
    }
    kill(me, RT1); /* kill() of a real-time signal never fails: pending, maybe without its siginfo */
    struct timespec z = {0, 0};
    int n = 0;
    while (sigtimedwait(&one, &si, &z) == RT0) n++;
    printf("  eagain=%d sent<=8=%d got==sent=%d\n", eagain > 0, sent <= 8, n == sent);
    sigemptyset(&one);
    sigaddset(&one, RT1);
    printf("  kill: %d\n", sigtimedwait(&one, &si, &z) == RT1);
    return 0;
}
