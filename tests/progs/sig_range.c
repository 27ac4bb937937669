/* Signal numbers outside 1..64 (0 where it means "just check") are EINVAL
 * in every call that takes one, after the target is found (ESRCH first,
 * as Linux): kill, tkill, tgkill, rt_sigqueueinfo, rt_sigaction,
 * rt_tgsigqueueinfo, prctl(PR_SET_PDEATHSIG); a clone child with an
 * invalid exit signal exits with no signal to its parent. rt_sigqueueinfo
 * may not pose as kill() (si_code >= 0) towards another process: EPERM.
 * Prints one line per call; the output must match a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Print " name=result" for one call (errno read at once). */
#define TRY(name, call) do { long r_ = (call); printf(" %s=%s", name, r_ == 0 ? "0" : r_ > 0 ? "positive" \
                                                         : strerrorname_np(errno)); } while (0)

static volatile sig_atomic_t chld;
static void on_chld(int s) { (void)s; chld++; }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t me = getpid(), tid = syscall(SYS_gettid);
    const int bad[] = {65, 100, 255, 1000, -1, -64};
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        int s = bad[i];
        siginfo_t si;
        memset(&si, 0, sizeof si);
        si.si_code = SI_QUEUE;
        si.si_pid = me;
        si.si_uid = getuid();
        struct sigaction sa = {.sa_handler = SIG_IGN};
        printf("sig %d:", s);
        TRY("kill", kill(me, s));
        TRY("kill(none)", kill(999999, s));
        TRY("tkill", syscall(SYS_tkill, tid, s));
        TRY("tgkill", syscall(SYS_tgkill, me, tid, s));
        TRY("sigqueueinfo", syscall(SYS_rt_sigqueueinfo, me, s, &si));
        TRY("tgsigqueueinfo", syscall(SYS_rt_tgsigqueueinfo, me, tid, s, &si));
        TRY("sigaction", syscall(SYS_rt_sigaction, s, &sa, NULL, 8));
        TRY("pdeathsig", prctl(PR_SET_PDEATHSIG, s));
        printf("\n");
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_code = SI_QUEUE;
    printf("sig 0:");
    TRY("kill", kill(me, 0));
    TRY("tkill", syscall(SYS_tkill, tid, 0));
    TRY("sigqueueinfo", syscall(SYS_rt_sigqueueinfo, me, 0, &si));
    TRY("sigqueueinfo(none)", syscall(SYS_rt_sigqueueinfo, 999999, 100, &si));
    TRY("sigaction", syscall(SYS_rt_sigaction, 0, NULL, NULL, 8));
    printf("\n");

    /* rt_sigqueueinfo posing as kill() or tkill() to another process: EPERM; SI_QUEUE is fine. */
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    printf("sigqueueinfo to child:");
    si.si_code = SI_USER;
    TRY("SI_USER", syscall(SYS_rt_sigqueueinfo, child, 0, &si));
    si.si_code = SI_TKILL;
    TRY("SI_TKILL", syscall(SYS_rt_sigqueueinfo, child, 0, &si));
    si.si_code = SI_QUEUE;
    TRY("SI_QUEUE", syscall(SYS_rt_sigqueueinfo, child, 0, &si));
    si.si_code = SI_USER;
    TRY("to self SI_USER", syscall(SYS_rt_sigqueueinfo, me, 0, &si));
    printf("\n");
    kill(child, SIGKILL);
    waitpid(child, 0, 0);

    /* A clone child whose exit signal is not a signal: no signal, still reaped. */
    signal(SIGCHLD, on_chld);
    child = syscall(SYS_clone, 100, 0, 0, 0, 0);
    if (child == 0) _exit(4);
    int status;
    pid_t got;
    while ((got = waitpid(child, &status, __WALL)) < 0 && errno == EINTR) {}
    printf("clone exit signal 100: reaped %d, exited %d status %d, SIGCHLD %d\n", got == child, WIFEXITED(status),
           WEXITSTATUS(status), chld);
    return 0;
}
