/* Signal delivery as Linux does it: SA_SIGINFO handlers with si_code and
 * si_pid, a SIGSEGV handler that reads si_addr and escapes with
 * siglongjmp, an alternate stack, masks, SA_RESTART vs EINTR on a pipe
 * read, SIGCHLD, sigsuspend, and the FPU state surviving a handler. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, chld;
static volatile int code, from_pid, on_altstack;
static volatile void *fault_addr;
static sigjmp_buf jump;
static char altstack[65536];

static void on_usr1(int s, siginfo_t *si, void *uc) {
    usr1++;
    code = si->si_code;
    from_pid = si->si_pid;
    char here;
    on_altstack = &here >= altstack && &here < altstack + sizeof altstack;
    volatile double x = 0.1;
    for (int i = 0; i < 10; i++) x = x * 3.7 + 1.0; /* clobber the FPU in the handler */
}
static void on_segv(int s, siginfo_t *si, void *uc) { fault_addr = si->si_addr; siglongjmp(jump, 1); }
static void on_chld(int s) { chld++; }
static void on_alrm(int s) {}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGUSR1, &sa, 0);
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, 0);
    double before = 1.0 / 3.0;
    kill(getpid(), SIGUSR1);
    printf("usr1=%d code=%d self=%d altstack=%d fp=%d\n", usr1, code, from_pid == getpid(), on_altstack,
           before == 1.0 / 3.0);

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    raise(SIGUSR1);
    sigset_t pend;
    sigpending(&pend);
    printf("blocked: usr1=%d pending=%d\n", usr1, sigismember(&pend, SIGUSR1));
    sigprocmask(SIG_SETMASK, &old, 0);
    printf("unblocked: usr1=%d\n", usr1);

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    if (sigsetjmp(jump, 1) == 0) {
        *(volatile int *)0x1234 = 1;
        printf("no fault?\n");
    }
    printf("segv at %p\n", (void *)fault_addr);

    signal(SIGCHLD, on_chld);
    pid_t pid = fork();
    if (pid == 0) _exit(3);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    printf("chld=%d status=%d\n", chld, WEXITSTATUS(status));

    int fds[2];
    pipe(fds);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alrm; /* no SA_RESTART: the read fails with EINTR */
    sigaction(SIGALRM, &sa, 0);
    alarm(1);
    char c;
    ssize_t r = read(fds[0], &c, 1);
    printf("read=%zd errno=%s\n", r, r < 0 && errno == EINTR ? "EINTR" : "?");

    sigprocmask(SIG_BLOCK, &block, &old);
    if (fork() == 0) { kill(getppid(), SIGUSR1); _exit(0); }
    int before_usr1 = usr1;
    sigsuspend(&old);
    printf("sigsuspend woke: %d\n", usr1 == before_usr1 + 1);
    return 0;
}
