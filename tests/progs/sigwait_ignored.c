/* rt_sigtimedwait for a blocked SIGCHLD (default action: ignore) gets the
 * child's exit: a signal the wait lifts from the mask is still blocked for
 * "is it ignored?" (Linux real_blocked). trinity waits like this. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <time.h>
#include <sys/wait.h>
int main(void) {
    sigset_t s; sigemptyset(&s); sigaddset(&s, SIGCHLD);
    sigprocmask(SIG_BLOCK, &s, 0);
    pid_t p = fork();
    if (p == 0) { usleep(200000); _exit(0); }
    struct timespec ts = {3, 0};
    siginfo_t si;
    int r = sigtimedwait(&s, &si, &ts);
    printf("r=%d pid_ok=%d\n", r, si.si_pid == p);
    return 0;
}
