/* prctl(PR_SET_CHILD_SUBREAPER): orphans go to the nearest live subreaper
 * ancestor, which waits for them (a zombie orphan wakes its wait), not to
 * init; the flag is not inherited. Only the top process prints; the others
 * report through exit statuses. Output is the same natively and in the
 * sandbox (where the top process is init: there the last case holds either way). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int subreaper(void) {
    int v = -1;
    if (prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0)) return -2;
    return v;
}

static int status_of(pid_t pid) {
    int st;
    pid_t got = waitpid(pid, &st, 0);
    if (got < 0) return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void await_parent_change(pid_t from) {
    while (getppid() == from) usleep(1000);
}


/* M, a subreaper, forks A, which forks B and exits: B is now M's child. */
static int middle_subreaper(void) {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) return 10;
    pid_t m = getpid();
    int p[2];
    pipe(p);
    pid_t a = fork();
    if (a == 0) {
        pid_t a_pid = getpid();
        pid_t b = fork();
        if (b == 0) {
            await_parent_change(a_pid);
            _exit(getppid() == m ? 7 : 8);
        }
        write(p[1], &b, sizeof b);
        _exit(0);
    }
    pid_t b;
    read(p[0], &b, sizeof b);
    if (status_of(a) != 0) return 11;
    int st = status_of(b); /* ECHILD unless B was reparented here */
    if (st != 7) return st < 0 ? 12 : 13;
    return status_of(-1) == -ECHILD ? 0 : 14;
}

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    printf("initially: %d\n", subreaper());
    printf("set: %d\n", prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
    printf("now: %d\n", subreaper());
    printf("clear: %d\n", prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0));
    printf("now: %d\n", subreaper());
    printf("set 5: %d\n", prctl(PR_SET_CHILD_SUBREAPER, 5, 0, 0, 0));
    printf("now: %d\n", subreaper());

    pid_t c = fork();
    if (c == 0) _exit(subreaper() + 40);
    printf("a child's flag: %d\n", status_of(c) - 40);

    c = fork();
    if (c == 0) _exit(middle_subreaper());
    printf("middle subreaper reaps its grandchild: %d\n", status_of(c));

    /* The top (a subreaper) gets a zombie grandchild whose parent died while
     * its own parent M lives: the top's wait must wake for it. */
    int p[2], go[2];
    pipe(p);
    pipe(go);
    pid_t m = fork();
    if (m == 0) {
        pid_t a = fork();
        if (a == 0) {
            pid_t b = fork();
            if (b == 0) _exit(9);
            siginfo_t si;
            waitid(P_PID, b, &si, WEXITED | WNOWAIT); /* B is a zombie */
            write(p[1], &b, sizeof b);
            usleep(20000); /* the top is waiting by now */
            _exit(0);
        }
        int st = status_of(a);
        char x;
        read(go[0], &x, 1);
        _exit(st);
    }
    pid_t b;
    read(p[0], &b, sizeof b);
    int st;
    pid_t got = waitpid(-1, &st, 0);
    printf("top waits: got the zombie orphan %d status %d\n", got == b, WEXITSTATUS(st));
    write(go[1], "g", 1);
    printf("M status %d\n", status_of(m));

    /* A subreaper that exits passes its orphans up to the next one. */
    pid_t top = getpid();
    pipe(p);
    m = fork();
    if (m == 0) {
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        pid_t mm = getpid();
        pid_t a = fork();
        if (a == 0) {
            pid_t a_pid = getpid();
            pid_t b = fork();
            if (b == 0) {
                await_parent_change(a_pid); /* A gone */
                int under_m = getppid() == mm;
                write(p[1], "x", 1);
                await_parent_change(mm); /* M gone */
                _exit(under_m * 10 + (getppid() == top));
            }
            _exit(0);
        }
        status_of(a);
        char x;
        read(p[0], &x, 1);
        _exit(0); /* B is left to the top */
    }
    printf("M status %d\n", status_of(m));
    got = waitpid(-1, &st, 0);
    printf("then the orphan: %d (under M %d, then under top %d)\n", got > 0, WEXITSTATUS(st) / 10,
           WEXITSTATUS(st) % 10);
    printf("no more children: %d\n", waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD);
    return 0;
}
