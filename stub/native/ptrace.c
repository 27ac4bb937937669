#define _GNU_SOURCE
#include "ptrace.h"
#include "stubns.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif

static int wait_stop(int pid, int *status) {
    for (;;) {
        int r = waitpid(pid, status, __WALL);
        if (r == pid) return 0;
        if (r < 0 && errno == EINTR) continue;
        return r < 0 ? -errno : -ECHILD;
    }
}

static int expect_trap(int pid) {
    int st, r = wait_stop(pid, &st);
    if (r) return r;
    if (!WIFSTOPPED(st)) return -ESRCH;
    return WSTOPSIG(st) == SIGTRAP ? 0 : -EPROTO;
}

struct spawn_args {
    const char *path;
    int memfd;
    const int *shared_ns;
};

/* The child, on its own small stack, sharing the Sentry's memory until
 * execve (CLONE_VM|CLONE_VFORK: no copy of the Sentry's page tables, which
 * costs ~1.7 ms for a plain fork here). Only async-signal-safe calls. */
static int spawn_child(void *arg) {
    const struct spawn_args *a = arg;
    char *argv[] = {"sentry-stub", 0}, *envp[] = {0};
    if (sentry_stub_join(a->shared_ns)) _exit(124);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (ptrace(PTRACE_TRACEME, 0, 0, 0)) _exit(125);
    if ((a->memfd == SENTRY_STUB_MEMFD ? fcntl(a->memfd, F_SETFD, 0) : dup2(a->memfd, SENTRY_STUB_MEMFD)) < 0)
        _exit(125);
    syscall(SYS_close_range, 0, SENTRY_STUB_MEMFD - 1, 0);
    syscall(SYS_close_range, SENTRY_STUB_MEMFD + 1, ~0U, 0);
    execve(a->path, argv, envp);
    _exit(127);
}

int sentry_ptrace_spawn(const char *stub_path, int memfd, const int *shared_ns, int *pid_out,
                        unsigned long *gadget) {
    const int flags = sentry_stub_clone_flags(shared_ns) | CLONE_VM | CLONE_VFORK | SIGCHLD;
    enum { STACK = 64 * 1024 };
    char *stack = malloc(STACK);
    if (!stack) return -ENOMEM;
    struct spawn_args args = {stub_path, memfd, shared_ns};
    int pid = clone(spawn_child, stack + STACK, flags, &args);
    int saved = errno;
    free(stack); /* the child has exec'd or died: CLONE_VFORK waited for it */
    if (pid < 0) return -saved;
    int r = expect_trap(pid); /* the exec stop */
    if (!r && ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL | PTRACE_O_TRACESYSGOOD)) r = -errno;
    if (!r && ptrace(PTRACE_CONT, pid, 0, 0)) r = -errno;
    if (!r) r = expect_trap(pid); /* the stub's ready int3 */
    struct user_regs_struct regs;
    if (!r && ptrace(PTRACE_GETREGS, pid, 0, &regs)) r = -errno;
    if (r) {
        kill(pid, SIGKILL);
        waitpid(pid, 0, __WALL);
        return r;
    }
    *pid_out = (int)pid;
    *gadget = regs.rip;
    return 0;
}

long sentry_ptrace_switch(int pid, struct user_regs_struct *regs, struct sentry_stop *stop) {
    if (ptrace(PTRACE_SETREGS, pid, 0, regs)) return -errno;
    if (ptrace(PTRACE_SYSEMU, pid, 0, 0)) return -errno;
    int st, r = wait_stop(pid, &st);
    if (r) return r;
    if (!WIFSTOPPED(st)) return -ESRCH;
    if (ptrace(PTRACE_GETREGS, pid, 0, regs)) return -errno;
    int sig = WSTOPSIG(st);
    if (sig == (SIGTRAP | 0x80)) return 0;
    if (sig == SIGSTOP) return 2;
    siginfo_t si;
    memset(stop, 0, sizeof *stop);
    stop->signo = sig;
    stop->trapno = -1;
    if (ptrace(PTRACE_GETSIGINFO, pid, 0, &si) == 0) {
        stop->code = si.si_code;
        stop->errno_ = si.si_errno;
        if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP)
            stop->addr = (unsigned long)si.si_addr;
    }
    return 1;
}

long sentry_ptrace_inject(int pid, unsigned long gadget, long nr, long a0, long a1, long a2,
                          long a3, long a4, long a5) {
    struct user_regs_struct saved, regs;
    if (ptrace(PTRACE_GETREGS, pid, 0, &saved)) return -errno;
    regs = saved;
    regs.rip = gadget;
    regs.rax = nr;
    regs.orig_rax = -1;
    regs.rdi = a0, regs.rsi = a1, regs.rdx = a2, regs.r10 = a3, regs.r8 = a4, regs.r9 = a5;
    if (ptrace(PTRACE_SETREGS, pid, 0, &regs)) return -errno;
    if (ptrace(PTRACE_CONT, pid, 0, 0)) return -errno;
    for (;;) {
        /* An interrupt (SIGSTOP) may be pending: swallow it; the Python
         * side keeps its own flag, so no interrupt is lost. */
        int st, r = wait_stop(pid, &st);
        if (r) return r;
        if (!WIFSTOPPED(st)) return -ESRCH;
        if (WSTOPSIG(st) == SIGTRAP) break;
        if (WSTOPSIG(st) != SIGSTOP) return -EPROTO;
        if (ptrace(PTRACE_CONT, pid, 0, 0)) return -errno;
    }
    if (ptrace(PTRACE_GETREGS, pid, 0, &regs)) return -errno;
    if (ptrace(PTRACE_SETREGS, pid, 0, &saved)) return -errno;
    return (long)regs.rax;
}

long sentry_ptrace_xstate(int pid, unsigned char *buf, int len, int set) {
    struct iovec iov = {buf, (size_t)len};
    if (ptrace(set ? PTRACE_SETREGSET : PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov)) return -errno;
    return (long)iov.iov_len;
}

void sentry_ptrace_kill(int pid) {
    kill(pid, SIGKILL);
    waitpid(pid, 0, __WALL);
}

int sentry_ptrace_interrupt(int pid) { return kill(pid, SIGSTOP) ? -errno : 0; }
