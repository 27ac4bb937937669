/* The core-dump bit (WCOREDUMP, CLD_DUMPED) of a process killed by a
 * signal whose default action dumps core: Linux sets it only when a core
 * was written, never with RLIMIT_CORE's soft limit at 0 (the host's
 * default here). RLIMIT_CORE is the host's, inherited and settable.
 * "nonzero" (run in an empty directory) raises the limit first: the core
 * bit is set then. Prints one line per case; the output must match a
 * native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(int how) {
    if (how == 0) abort();
    if (how == 1) *(volatile int *)8 = 1;
    raise(how);
    _exit(0);
}

static void child_case(const char *name, int how, long core_soft) {
    pid_t pid = fork();
    if (pid == 0) {
        if (core_soft >= 0) {
            struct rlimit rl;
            getrlimit(RLIMIT_CORE, &rl);
            rl.rlim_cur = core_soft;
            if (setrlimit(RLIMIT_CORE, &rl)) printf("setrlimit: %s\n", strerrorname_np(errno));
        }
        die(how);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    waitid(P_PID, pid, &si, WEXITED | WNOWAIT);
    int status;
    waitpid(pid, &status, 0);
    printf("%s: signaled %d sig %d coredump %d; waitid %s\n", name, WIFSIGNALED(status), WTERMSIG(status),
           WCOREDUMP(status) ? 1 : 0, si.si_code == CLD_DUMPED ? "CLD_DUMPED" : si.si_code == CLD_KILLED ? "CLD_KILLED" : "?");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && !strcmp(argv[1], "nonzero")) {
        child_case("abort, RLIMIT_CORE 1 MiB", 0, 1 << 20);
        return 0;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_CORE, &rl);
    printf("RLIMIT_CORE soft %s hard %s\n", rl.rlim_cur == 0 ? "0" : rl.rlim_cur == RLIM_INFINITY ? "unlimited" : "other",
           rl.rlim_max == 0 ? "0" : rl.rlim_max == RLIM_INFINITY ? "unlimited" : "other");
    child_case("abort, inherited limit", 0, -1);
    child_case("abort, RLIMIT_CORE 0", 0, 0);
    child_case("segv, RLIMIT_CORE 0", 1, 0);
    child_case("SIGQUIT, RLIMIT_CORE 0", SIGQUIT, 0);
    child_case("SIGTERM (no core action)", SIGTERM, -1);
    return 0;
}
