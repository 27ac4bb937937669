/* Interrupted waits and their time, as Linux: a stop and continue (no
 * handler) resumes nanosleep and poll through restart_syscall, keeping
 * their deadline; ppoll and select write the time left back into their
 * timeout, so the restarted call waits for what was left at the stop;
 * epoll_wait is never restarted: EINTR (man 7 signal);
 * after a handler, restart_syscall has nothing to resume (EINTR). Prints
 * only facts with wide margins (the machine may be slow). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *const kinds[] = {"nanosleep", "clock_nanosleep", "poll", "ppoll", "select", "epoll_wait"};
enum { KINDS = sizeof kinds / sizeof *kinds };

/* Sleeps 3 s the way `how` does; exits with how long it took, in
 * tenths of a second, or 254 if it failed with EINTR. */
static void sleeper(const char *how, int ready) {
    double t0 = now();
    write(ready, "s", 1);
    int r;
    if (!strcmp(how, "nanosleep")) {
        struct timespec ts = {3, 0};
        r = nanosleep(&ts, NULL);
    } else if (!strcmp(how, "clock_nanosleep")) {
        struct timespec ts = {3, 0};
        r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    } else if (!strcmp(how, "poll")) {
        r = poll(NULL, 0, 3000);
    } else if (!strcmp(how, "ppoll")) {
        struct timespec ts = {3, 0};
        r = ppoll(NULL, 0, &ts, NULL);
    } else if (!strcmp(how, "select")) {
        struct timeval tv = {3, 0};
        r = select(0, NULL, NULL, NULL, &tv);
    } else {
        struct epoll_event ev;
        r = epoll_wait(epoll_create1(0), &ev, 1, 3000);
    }
    _exit(r == 0 ? (int)((now() - t0) * 10) : r < 0 && errno == EINTR ? 254 : 255);
}

/* Each kind sleeps 3 s in a child that is stopped at 1 s for 1.5 s:
 * keeping its deadline it takes 3 s; going on with what was left at the
 * stop 4.5 s; starting over 5.5 s (wide margins: the machine may be busy). */
static void stopped_midway(void) {
    int p[2];
    pipe(p);
    pid_t kids[KINDS];
    for (int i = 0; i < KINDS; i++)
        if ((kids[i] = fork()) == 0) sleeper(kinds[i], p[1]);
    char x;
    for (int i = 0; i < KINDS; i++) read(p[0], &x, 1);
    usleep(1000000);
    for (int i = 0; i < KINDS; i++) kill(kids[i], SIGSTOP);
    usleep(1500000);
    for (int i = 0; i < KINDS; i++) kill(kids[i], SIGCONT);
    for (int i = 0; i < KINDS; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        int tenths = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
        printf("%s stopped midway: %s\n", kinds[i],
               tenths == 255 ? "failed" : tenths == 254 ? "interrupted (EINTR)" : tenths < 38 ? "kept its deadline"
               : tenths < 50 ? "went on with the time left at the stop" : "started over");
    }
    close(p[0]);
    close(p[1]);
}

static void on_alarm(int s) { (void)s; }

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    stopped_midway();

    /* select and ppoll write back what is left, also when they succeed */
    int p[2];
    pipe(p);
    write(p[1], "x", 1);
    struct timeval tv = {5, 0};
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    int r = select(p[0] + 1, &rd, NULL, NULL, &tv);
    printf("select ready %d, time left written: %d\n", r, tv.tv_sec == 4 && tv.tv_usec > 500000);
    /* the system call itself (glibc's ppoll hides it behind a copy) */
    struct timespec ts = {0, 200000000};
    struct pollfd pf = {p[0], POLLIN, 0};
    r = syscall(SYS_ppoll, &pf, 1, &ts, NULL, 8);
    printf("ppoll ready %d, time left written: %d\n", r, ts.tv_sec == 0 && ts.tv_nsec > 100000000 && ts.tv_nsec < 200000000);
    char x;
    read(p[0], &x, 1);
    ts.tv_nsec = 100000000;
    r = syscall(SYS_ppoll, &pf, 1, &ts, NULL, 8);
    printf("ppoll timed out %d, left %ld.%09ld\n", r, (long)ts.tv_sec, ts.tv_nsec);
    tv.tv_sec = 0;
    tv.tv_usec = 100000;
    r = select(0, NULL, NULL, NULL, &tv);
    printf("select timed out %d, left %ld.%06ld\n", r, (long)tv.tv_sec, (long)tv.tv_usec);

    /* A handler runs: EINTR, the time left in rem; restart_syscall then
     * has nothing to resume. */
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    struct timespec req = {3, 0}, rem = {0, 0};
    r = nanosleep(&req, &rem);
    printf("nanosleep with a handler: %d %s, rem in (1.5 s, 2.5 s): %d\n", r, strerror(errno),
           rem.tv_sec == 2 || (rem.tv_sec == 1 && rem.tv_nsec >= 500000000));
    long rr = syscall(SYS_restart_syscall);
    printf("restart_syscall after a handler: %ld %s\n", rr, strerror(errno));
    return 0;
}
