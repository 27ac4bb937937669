/* ptrace platform hot path: PTRACE_SYSEMU -> waitpid -> registers, in C so
 * the Python side pays one cffi call (GIL released) per guest system call.
 * Every function here must be called from the tracer thread (the OS thread
 * that spawned the stub), except sentry_ptrace_interrupt and _kill. */
#ifndef SENTRY_PTRACE_H
#define SENTRY_PTRACE_H
#include "arch.h"

#define SENTRY_STUB_MEMFD 3 /* the MemoryFile's fd number inside every stub */

/* IfChange(platforms/ptrace/__init__.py) */
struct sentry_stop {
    int signo, code, errno_, trapno;
    unsigned long addr;
};
/* ThenChange */

/* Start stub_path in fresh user/pid/net/mount/ipc namespaces (shared_ns
 * non-NULL: a fresh pid namespace, the others joined, see stubns.h), traced
 * by the calling thread, with memfd as its fd 3 and no other fd. On success 0 and
 * *pid, *gadget (address of the stub's `syscall; int3`); else -errno. */
int sentry_ptrace_spawn(const char *stub_path, int memfd, const int *shared_ns, int *pid, unsigned long *gadget);
/* Load regs, resume under PTRACE_SYSEMU, wait for the next stop, store
 * regs. Returns 0 for a system call, 1 for a signal (*stop filled), 2 for
 * an interrupt (SIGSTOP from sentry_ptrace_interrupt), -errno if the stub
 * is gone or ptrace failed. */
long sentry_ptrace_switch(int pid, struct user_regs_struct *regs, struct sentry_stop *stop);
/* Run one system call of the Sentry's choosing in the stopped stub through
 * the gadget; the stub's registers are preserved. Returns the call's result
 * (-errno on failure), or -ESRCH-style errors from ptrace itself. */
long sentry_ptrace_inject(int pid, unsigned long gadget, long nr, long a0, long a1, long a2,
                          long a3, long a4, long a5);
/* Read (set=0) or write (set=1) the XSAVE area; returns bytes or -errno. */
long sentry_ptrace_xstate(int pid, unsigned char *buf, int len, int set);
void sentry_ptrace_kill(int pid);
int sentry_ptrace_interrupt(int pid);
#endif
