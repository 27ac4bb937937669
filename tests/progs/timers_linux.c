/* Timers and clocks as Linux has them. Prints only facts that hold
 * natively on any machine (no raw times):
 * - a CLOCK_REALTIME POSIX timer armed with TIMER_ABSTIME fires;
 * - timer_getoverrun and si_overrun count the expirations while the
 *   signal was blocked; re-arming or deleting a timer drops its pending
 *   signal (Linux >= 6.13);
 * - ITIMER_VIRTUAL and ITIMER_PROF fire on a busy loop; getitimer reads them;
 * - nanosleep, clock_nanosleep and sleep(3) interrupted by a handler say
 *   how much time was left (an absolute clock_nanosleep leaves rem alone);
 * - CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID are the guest's
 *   own CPU time: small at start, growing with a busy loop, still while
 *   asleep; clock_getcpuclockid and pthread_getcpuclockid clocks work.
 * With the argument "exec" it runs itself again ("after-exec") with a
 * POSIX timer and ITIMER_REAL armed: the POSIX timer is gone in the new
 * program, ITIMER_REAL fires there. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000L

static long ns_of(struct timespec t) { return t.tv_sec * NS + t.tv_nsec; }

static long now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return ns_of(t);
}

static volatile sig_atomic_t fired[65];
static volatile int seen_overrun, getoverrun_in_handler = -2, overrun_signo, last_code;
static timer_t overrun_timer;

static void on_signal(int signo, siginfo_t *si, void *uc) {
    if (signo == overrun_signo && !fired[signo]) { /* the first delivery (more may follow: the timer runs on) */
        seen_overrun = si->si_overrun;
        getoverrun_in_handler = timer_getoverrun(overrun_timer);
    }
    fired[signo]++;
    last_code = si->si_code;
}

static void handle(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: sleeps return EINTR */
    sigaction(signo, &sa, NULL);
}

static void block(int signo, int how) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, signo);
    sigprocmask(how, &s, NULL);
}

/* Sleep in 5 ms steps until signo fired or 5 s passed. */
static int await_signal(int signo) {
    for (int i = 0; i < 1000 && !fired[signo]; i++) {
        struct timespec d = {0, 5000000};
        nanosleep(&d, NULL);
    }
    return fired[signo] > 0;
}

static timer_t make_timer(clockid_t clock, int signo) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = signo;
    timer_t t;
    if (timer_create(clock, &ev, &t)) perror("timer_create");
    return t;
}

static void realtime_abstime(void) {
    handle(SIGUSR1);
    timer_t t = make_timer(CLOCK_REALTIME, SIGUSR1);
    struct itimerspec its = {{0, 0}, {0, 0}};
    long at = now(CLOCK_REALTIME) + 50000000L;
    its.it_value.tv_sec = at / NS;
    its.it_value.tv_nsec = at % NS;
    timer_settime(t, TIMER_ABSTIME, &its, NULL);
    printf("CLOCK_REALTIME TIMER_ABSTIME timer fired: %d\n", await_signal(SIGUSR1));
    /* one in the past fires at once */
    fired[SIGUSR1] = 0;
    its.it_value.tv_sec -= 10;
    timer_settime(t, TIMER_ABSTIME, &its, NULL);
    printf("past TIMER_ABSTIME fires: %d\n", await_signal(SIGUSR1));
    timer_delete(t);
}

static void overruns(int signo) {
    printf("signal %s:\n", signo == SIGUSR2 ? "SIGUSR2" : "SIGRTMIN+2");
    overrun_signo = signo;
    handle(signo);
    overrun_timer = make_timer(CLOCK_MONOTONIC, signo);
    printf("overrun before any expiry: %d\n", timer_getoverrun(overrun_timer));
    block(signo, SIG_BLOCK);
    struct itimerspec its = {{0, 1000000}, {0, 1000000}}; /* every 1 ms */
    timer_settime(overrun_timer, 0, &its, NULL);
    struct timespec d = {0, 100000000};
    nanosleep(&d, NULL); /* ~100 expirations, one signal pending */
    block(signo, SIG_UNBLOCK);
    printf("overrun signal delivered: %d\n", fired[signo] > 0);
    printf("si_overrun > 10: %d, timer_getoverrun in the handler equals it: %d\n",
           seen_overrun > 10, getoverrun_in_handler == seen_overrun);
    /* disarming drops the pending signal */
    block(signo, SIG_BLOCK);
    fired[signo] = 0;
    nanosleep(&d, NULL);
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(overrun_timer, 0, &off, NULL);
    printf("overrun after disarming: %d\n", timer_getoverrun(overrun_timer));
    block(signo, SIG_UNBLOCK);
    printf("signal pending at disarm delivered: %d\n", fired[signo]);
    /* deleting drops it too */
    block(signo, SIG_BLOCK);
    timer_settime(overrun_timer, 0, &its, NULL);
    nanosleep(&d, NULL);
    timer_delete(overrun_timer);
    block(signo, SIG_UNBLOCK);
    printf("signal pending at delete delivered: %d\n", fired[signo]);
    if (signo < SIGRTMIN) return;
    /* a real-time timer signal queued behind a sigqueue()d one: dropped alone */
    overrun_timer = make_timer(CLOCK_MONOTONIC, signo);
    block(signo, SIG_BLOCK);
    union sigval v = {.sival_int = 7};
    sigqueue(getpid(), signo, v);
    timer_settime(overrun_timer, 0, &its, NULL);
    nanosleep(&d, NULL);
    timer_settime(overrun_timer, 0, &off, NULL);
    fired[signo] = 0;
    block(signo, SIG_UNBLOCK);
    printf("queued ahead of the timer's: delivered %d, SI_QUEUE: %d\n", fired[signo], last_code == SI_QUEUE);
    timer_delete(overrun_timer);
}

/* Busy in guest code until signo fired, at most 5 s of wall time (the
 * monotonic clock is read once per 1M iterations). */
static int spin_until(int signo) {
    long end = now(CLOCK_MONOTONIC) + 5 * NS;
    volatile unsigned long x = 0;
    while (!fired[signo] && now(CLOCK_MONOTONIC) < end)
        for (unsigned long i = 0; i < 1000000UL && !fired[signo]; i++) x += i;
    return fired[signo] > 0;
}

static void cpu_itimers(void) {
    handle(SIGVTALRM);
    handle(SIGPROF);
    struct itimerval v = {{0, 0}, {10, 0}}, got;
    printf("setitimer ITIMER_VIRTUAL: %d\n", setitimer(ITIMER_VIRTUAL, &v, NULL));
    getitimer(ITIMER_VIRTUAL, &got);
    /* Linux adds a tick to a CPU timer's value */
    printf("getitimer ITIMER_VIRTUAL in (9 s, 10.1 s]: %d\n",
           got.it_value.tv_sec == 9 || (got.it_value.tv_sec == 10 && got.it_value.tv_usec <= 100000));
    v.it_value.tv_sec = 0;
    v.it_value.tv_usec = 50000;
    setitimer(ITIMER_VIRTUAL, &v, NULL);
    printf("ITIMER_VIRTUAL fired on a busy loop: %d\n", spin_until(SIGVTALRM));
    getitimer(ITIMER_VIRTUAL, &got);
    printf("one-shot ITIMER_VIRTUAL disarmed after: %d\n", got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0);
    struct itimerval p = {{0, 20000}, {0, 20000}};
    printf("setitimer ITIMER_PROF: %d\n", setitimer(ITIMER_PROF, &p, NULL));
    printf("ITIMER_PROF fired on a busy loop: %d\n", spin_until(SIGPROF));
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, &got);
    printf("ITIMER_PROF interval kept: %d\n", got.it_interval.tv_sec == 0 && got.it_interval.tv_usec == 20000);
    int r = setitimer(3, &off, NULL);
    printf("setitimer(3): %d %s\n", r, strerror(errno));
}

static void interrupted_sleeps(void) {
    handle(SIGALRM);
    struct itimerval a = {{0, 0}, {0, 100000}};
    struct timespec req = {2, 0}, rem = {-1, -1};
    setitimer(ITIMER_REAL, &a, NULL);
    int r = nanosleep(&req, &rem);
    printf("nanosleep: %d %s, rem in (1 s, 2 s): %d\n", r, strerror(errno), ns_of(rem) > NS && ns_of(rem) < 2 * NS);
    rem.tv_sec = rem.tv_nsec = -1;
    setitimer(ITIMER_REAL, &a, NULL);
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
    printf("clock_nanosleep: %s, rem in (1 s, 2 s): %d\n", strerror(r), ns_of(rem) > NS && ns_of(rem) < 2 * NS);
    rem.tv_sec = rem.tv_nsec = -1;
    setitimer(ITIMER_REAL, &a, NULL);
    struct timespec until = {0, 0};
    long at = now(CLOCK_REALTIME) + 2 * NS;
    until.tv_sec = at / NS;
    until.tv_nsec = at % NS;
    r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, &rem);
    printf("absolute clock_nanosleep: %s, rem untouched: %d\n", strerror(r), rem.tv_sec == -1 && rem.tv_nsec == -1);
    struct itimerval half = {{0, 0}, {0, 500000}};
    setitimer(ITIMER_REAL, &half, NULL);
    printf("sleep(3) interrupted after 0.5 s: %u\n", sleep(3));
    printf("clock_nanosleep(CLOCK_THREAD_CPUTIME_ID): %s\n", strerror(clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &req, NULL)));
}

static void *thread_clock(void *p) {
    clockid_t *c = p;
    pthread_getcpuclockid(pthread_self(), c);
    return NULL;
}

static void cpu_clocks(long start_process_ns) {
    printf("process CPU time at start < 250 ms: %d\n", start_process_ns < 250000000L);
    struct timespec res;
    clock_getres(CLOCK_PROCESS_CPUTIME_ID, &res);
    printf("clock_getres(CLOCK_PROCESS_CPUTIME_ID) <= 1 ms: %d\n", res.tv_sec == 0 && res.tv_nsec <= 1000000);
    long p0 = now(CLOCK_PROCESS_CPUTIME_ID), t0 = now(CLOCK_THREAD_CPUTIME_ID);
    struct timespec d = {0, 300000000};
    nanosleep(&d, NULL);
    long p1 = now(CLOCK_PROCESS_CPUTIME_ID), t1 = now(CLOCK_THREAD_CPUTIME_ID);
    printf("asleep 300 ms: process CPU +< 100 ms: %d, thread +< 100 ms: %d\n", p1 - p0 < 100000000L,
           t1 - t0 < 100000000L);
    long end = now(CLOCK_MONOTONIC) + 5 * NS;
    volatile unsigned long x = 0;
    while (now(CLOCK_THREAD_CPUTIME_ID) - t1 < 100000000L && now(CLOCK_MONOTONIC) < end)
        for (unsigned long i = 0; i < 1000000UL; i++) x += i;
    long p2 = now(CLOCK_PROCESS_CPUTIME_ID), t2 = now(CLOCK_THREAD_CPUTIME_ID);
    printf("busy: thread CPU +>= 100 ms: %d, process >= thread: %d\n", t2 - t1 >= 100000000L, p2 - p1 >= t2 - t1 - 1000000L);
    clockid_t pc;
    printf("clock_getcpuclockid(getpid()): %d", clock_getcpuclockid(getpid(), &pc));
    printf(", reads >= the process clock before: %d\n", now(pc) >= p2);
    clockid_t tc;
    pthread_t th;
    pthread_create(&th, NULL, thread_clock, &tc);
    pthread_join(th, NULL);
    clockid_t mine;
    pthread_getcpuclockid(pthread_self(), &mine);
    printf("pthread_getcpuclockid(self) reads >= thread clock: %d\n", now(mine) >= t2);
    int r = clock_gettime(-(1 << 20) * 8 + 3, &res);
    printf("a bad CPU clock id: %d %s\n", r, strerror(errno));
}

static void after_exec(void) {
    /* SIGUSR1's disposition is default again: the old POSIX timer (due at
     * 150 ms) would kill this program if it still ran. ITIMER_REAL (due at
     * 300 ms) comes here. */
    handle(SIGALRM);
    int alarm_fired = await_signal(SIGALRM);
    struct timespec d = {0, 200000000};
    nanosleep(&d, NULL);
    printf("after exec: ITIMER_REAL fired: %d, POSIX timer gone: %d\n", alarm_fired, timer_getoverrun((timer_t)0) == -1);
}

int main(int argc, char **argv) {
    long start = now(CLOCK_PROCESS_CPUTIME_ID);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "after-exec")) {
        after_exec();
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "exec")) {
        struct timespec warm = {0, 20000000};
        nanosleep(&warm, NULL); /* (the sandbox's first wait starts its timer loop: not with timers armed) */
        timer_t t = make_timer(CLOCK_MONOTONIC, SIGUSR1);
        struct itimerspec its = {{0, 0}, {0, 150000000}};
        timer_settime(t, 0, &its, NULL);
        struct itimerval a = {{0, 0}, {0, 300000}};
        setitimer(ITIMER_REAL, &a, NULL);
        char *args[] = {argv[0], "after-exec", NULL};
        execv(argv[0], args);
        perror("execv");
        return 1;
    }
    cpu_clocks(start);
    realtime_abstime();
    overruns(SIGUSR2);
    overruns(SIGRTMIN + 2);
    cpu_itimers();
    interrupted_sleeps();
    return 0;
}
