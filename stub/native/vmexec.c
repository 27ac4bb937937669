/* vmexec platform, Sentry side: process_vm_exec() in user space.
 *
 * A stub thread (stub/stub-vmexec.c) stopped in its signal handler leaves
 * the kernel's signal frame (ucontext, XSAVE area, siginfo) in its slot,
 * which the Sentry maps too. process_vm_exec() edits that frame in place,
 * releases the stub (state RUN; wake it if it sleeps), and waits for the
 * next event (spin while a CPU is free, then futex). All slot contents are
 * guest-writable: every pointer is read once, bounds-checked against the
 * slot, then used; a corrupt slot yields an error, never a wild access.
 *
 * Every function may be called from any thread; one Context (caller) is
 * driven by one thread at a time, and sentry_vmexec_interrupt is the only
 * function meant to race with the others. */
#define _GNU_SOURCE
#include "vmexec.h"
#include "arch.h"
#include "stubns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

_Static_assert(offsetof(struct vmexec_sigcontext, rip) ==
                   offsetof(mcontext_t, gregs) + REG_RIP * sizeof(greg_t), "sigcontext rip");
_Static_assert(offsetof(struct vmexec_sigcontext, r8) == offsetof(mcontext_t, gregs) + REG_R8 * sizeof(greg_t),
               "sigcontext r8");
_Static_assert(offsetof(struct vmexec_sigcontext, cr2) == offsetof(mcontext_t, gregs) + REG_CR2 * sizeof(greg_t),
               "sigcontext cr2");
_Static_assert(offsetof(struct vmexec_ucontext, uc_mcontext) == offsetof(ucontext_t, uc_mcontext), "ucontext");
_Static_assert(sizeof(siginfo_t) == sizeof(struct vmexec_siginfo), "siginfo size");
_Static_assert(offsetof(siginfo_t, si_addr) == offsetof(struct vmexec_siginfo, addr), "si_addr");
_Static_assert(offsetof(siginfo_t, si_syscall) == offsetof(struct vmexec_siginfo, syscall_nr), "si_syscall");

#define FP_XSTATE_MAGIC1 0x46505853U
#define FX_SW_OFF 464 /* struct _fpx_sw_bytes in the legacy area's software bytes */
#define XSAVE_HDR_OFF 512
#define NR_uretprobe 335 /* x86-64; not in every libc header yet */
#define USER_CS 0x33
#define USER32_CS 0x23 /* the guest may run 32-bit code (it can far-jump there itself) */
#define USER_DS 0x2b
#define WAIT_SLICE_NS 50000000L /* how often a sleeping waiter checks that the stub lives */

static long futex(uint32_t *w, int op, uint32_t v, const struct timespec *ts) {
    return syscall(SYS_futex, w, op, v, ts, 0, 0) < 0 ? -errno : 0;
}

static int alive(int pidfd) {
    struct pollfd p = {pidfd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

/* ---- stub processes and the control channel ------------------------------ */

struct spawn_args {
    const char *path;
    int fds[3];
    int sentry_pid;
    const int *shared_ns;
};

/* The parent process of the caller as the host sees it (getppid() says 0
 * across a pid namespace), from /proc/self/stat; -1 if unreadable. */
static int host_ppid(void) {
    char buf[512];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* "pid (comm) state ppid ..." */
    if (!p || p[1] != ' ' || !p[2] || p[3] != ' ') return -1;
    int ppid = 0;
    for (p += 4; *p >= '0' && *p <= '9'; p++) ppid = ppid * 10 + (*p - '0');
    return ppid;
}

/* The child, until execve: it shares the Sentry's memory (CLONE_VM, the
 * parent is suspended as by vfork), so only plain system calls here. */
static int spawn_child(void *arg) {
    struct spawn_args *a = arg;
    char *argv[] = {"sentry-vmexec-stub", 0}, *envp[] = {0};
    int fds[3];
    if (sentry_stub_join(a->shared_ns)) _exit(124);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* If the Sentry died before that prctl, nobody will kill us: we were
     * reparented already, so leave. (After it, its death kills us.) */
    if (host_ppid() != a->sentry_pid) _exit(126);
    for (int i = 0; i < 3; i++)
        if ((fds[i] = fcntl(a->fds[i], F_DUPFD, 16)) < 0) _exit(125);
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], VMEXEC_FD_MEMORY + i) < 0) _exit(125);
    syscall(SYS_close_range, 0, VMEXEC_FD_MEMORY - 1, 0);
    syscall(SYS_close_range, VMEXEC_FD_GLOBAL + 1, ~0U, 0);
    execve(a->path, argv, envp);
    _exit(127);
}

int sentry_vmexec_spawn(const char *stub_path, int memfd, int mboxfd, int globalfd, const int *shared_ns,
                        int *pid_out, int *pidfd_out) {
    /* vfork-style: copying the Sentry's page tables (the MemoryFile mapping,
     * the Python heap) would cost milliseconds per stub. */
    const int flags = CLONE_VM | CLONE_VFORK | sentry_stub_clone_flags(shared_ns) | SIGCHLD;
    const size_t stack_size = 64 << 10;
    struct spawn_args args = {stub_path, {memfd, mboxfd, globalfd}, getpid(), shared_ns};
    char *stack = mmap(0, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -errno;
    int pid = clone(spawn_child, stack + stack_size, flags, &args);
    int e = errno;
    munmap(stack, stack_size);
    if (pid < 0) return -e;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        e = errno;
        sentry_vmexec_kill(pid, -1);
        return -e;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    return 0;
}

void sentry_vmexec_kill(int pid, int pidfd) {
    if (pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, 0, 0);
        close(pidfd);
    } else {
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, 0, __WALL) < 0 && errno == EINTR) {
    }
}

long sentry_vmexec_command(struct vmexec_cmd *cmd, struct vmexec_result *res, int pidfd, long nr, long a0, long a1,
                           long a2, long a3, long a4, long a5, long *ret) {
    const struct timespec nap = {0, 20000};
    cmd->nr = nr;
    cmd->args[0] = a0, cmd->args[1] = a1, cmd->args[2] = a2;
    cmd->args[3] = a3, cmd->args[4] = a4, cmd->args[5] = a5;
    __atomic_store_n(&cmd->seq, cmd->seq + 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &cmd->seq, FUTEX_WAKE, 1, 0, 0, 0); /* the doorbell */
    /* Done once the control thread waits on cmd.seq again (see vmexec.h). */
    for (uint32_t i = 0; syscall(SYS_futex, &cmd->seq, FUTEX_WAKE, 1, 0, 0, 0) != 1; i++) {
        if (i < 256) {
            for (int j = 0; j < 8; j++) __asm__ volatile("pause" ::: "memory");
        } else if (i % 256 == 0 && !alive(pidfd)) {
            return -ESRCH;
        } else {
            nanosleep(&nap, 0);
        }
    }
    *ret = __atomic_load_n(&res->ret, __ATOMIC_ACQUIRE);
    return 0;
}

/* ---- stub threads --------------------------------------------------------- */

static uint32_t mxcsr_mask;

int sentry_vmexec_thread_init(struct sentry_vmexec_thread *t, uint8_t *mbox, int slot, struct vmexec_global *global,
                              int pid, int pidfd) {
    if (slot < 0 || slot >= VMEXEC_MAX_THREADS) return -EINVAL;
    if (!mxcsr_mask) {
        uint8_t fx[512] __attribute__((aligned(64)));
        memset(fx, 0, sizeof fx);
        __asm__ volatile("fxsave64 %0" : "=m"(fx));
        memcpy(&mxcsr_mask, fx + 28, 4);
        if (!mxcsr_mask) mxcsr_mask = 0xffbf;
    }
    memset(t, 0, sizeof *t);
    t->msg = (struct vmexec_msg *)(mbox + VMEXEC_SLOTS_OFF + (size_t)slot * VMEXEC_SLOT_SIZE);
    t->stub_slot = VMEXEC_MBOX + VMEXEC_SLOTS_OFF + (uint64_t)slot * VMEXEC_SLOT_SIZE;
    t->global = global;
    t->pid = pid;
    t->pidfd = pidfd;
    t->xsave_size = sentry_xsave_size();
    t->spin = VMEXEC_SPIN_MAX;
    memset(t->msg, 0, 4096);
    t->msg->state = VMEXEC_RUN; /* until the new thread's first event */
    t->msg->stub_spin = VMEXEC_SPIN_MAX;
    return 0;
}

/* Wait until the stub leaves RUN; returns the new state or -ESRCH.
 * stub_was_awake: it was not asleep when released (see vmexec_spin).
 * A guest must never be able to hang the Sentry, so a stub thread that
 * keeps it waiting too long is killed, with its process:
 * - pending (or NULL) is set while an interrupt is asked for; ignoring one
 *   for PATIENCE slices means the guest blocked the signal (with a forged
 *   rt_sigreturn);
 * - bounded: the wait is for the stub's own code (its first event, its
 *   exit), which other guest threads could only delay by scribbling on
 *   its slot. */
#define PATIENCE 20          /* slices of WAIT_SLICE_NS: one second */
#define PATIENCE_BOUNDED 100 /* five seconds: a stub thread's own code is quick */
static int wait_state(struct sentry_vmexec_thread *t, int stub_was_awake, const int *pending, int bounded) {
    const struct timespec slice = {0, WAIT_SLICE_NS};
    struct vmexec_msg *m = t->msg;
    struct vmexec_global *g = t->global;
    uint32_t s = __atomic_load_n(&m->state, __ATOMIC_ACQUIRE);
    if (s != VMEXEC_RUN || (s = vmexec_spin(g, m, &t->spin, &m->state, VMEXEC_RUN, stub_was_awake)) != VMEXEC_RUN)
        return s;
    for (int ignored = 0;;) {
        __atomic_store_n(&m->sentry_sleeping, 1, __ATOMIC_SEQ_CST);
        long r = 0;
        if ((s = __atomic_load_n(&m->state, __ATOMIC_SEQ_CST)) == VMEXEC_RUN)
            r = futex(&m->state, FUTEX_WAIT, VMEXEC_RUN, &slice);
        __atomic_store_n(&m->sentry_sleeping, 0, __ATOMIC_RELAXED);
        if ((s = __atomic_load_n(&m->state, __ATOMIC_ACQUIRE)) != VMEXEC_RUN) return s;
        if (r != -ETIMEDOUT) continue;
        if (!alive(t->pidfd)) return -ESRCH;
        ignored = bounded || (pending && __atomic_load_n(pending, __ATOMIC_RELAXED)) ? ignored + 1 : 0;
        if (ignored == (bounded ? PATIENCE_BOUNDED : PATIENCE)) syscall(SYS_pidfd_send_signal, t->pidfd, SIGKILL, 0, 0);
    }
}

/* Locate the event's frame in the slot; everything is guest-writable, so
 * each pointer is read once and checked before use. */
static int validate(struct sentry_vmexec_thread *t) {
    struct vmexec_msg *m = t->msg;
    const uint64_t lo = t->stub_slot + 4096, hi = t->stub_slot + VMEXEC_SLOT_SIZE;
    uint64_t uc = __atomic_load_n(&m->uc, __ATOMIC_RELAXED), info = __atomic_load_n(&m->info, __ATOMIC_RELAXED);
    if (uc < lo || uc > hi - sizeof(struct vmexec_ucontext) || info < lo || info > hi - sizeof(struct vmexec_siginfo))
        return -EPROTO;
    t->uc = (struct vmexec_ucontext *)((uint8_t *)m + (uc - t->stub_slot));
    t->info = (struct vmexec_siginfo *)((uint8_t *)m + (info - t->stub_slot));
    uint64_t fp = __atomic_load_n(&t->uc->uc_mcontext.fpstate, __ATOMIC_RELAXED);
    if (fp < lo || fp > hi - 512 || (fp & 63)) return t->uc = NULL, -EPROTO;
    t->fp = (uint8_t *)m + (fp - t->stub_slot);
    uint32_t sw[4]; /* magic1, extended_size, xfeatures (2 words) */
    uint32_t xsize;
    memcpy(sw, t->fp + FX_SW_OFF, sizeof sw);
    memcpy(&xsize, t->fp + FX_SW_OFF + 16, 4);
    t->fp_size = 512;
    t->fp_xfeatures = 0;
    if (sw[0] == FP_XSTATE_MAGIC1 && xsize >= 576 && xsize <= hi - fp - 4) {
        t->fp_size = (int)xsize < t->xsave_size ? (int)xsize : t->xsave_size;
        t->fp_xfeatures = (uint64_t)sw[3] << 32 | sw[2];
    }
    return 0;
}

static int wait_event(struct sentry_vmexec_thread *t, int stub_was_awake, const int *pending, int bounded) {
    int s = wait_state(t, stub_was_awake, pending, bounded);
    if (s < 0) return s;
    return s == VMEXEC_EVENT ? validate(t) : -ESRCH;
}

int sentry_vmexec_wait_event(struct sentry_vmexec_thread *t) { return wait_event(t, 0, 0, 1); }

/* Load an XSAVE area into the frame: the kernel's software bytes stay, and
 * whatever XRSTOR would refuse (reserved MXCSR bits, a compacted or
 * reserved header, features the frame lacks) is cleared. */
static void write_fp(struct sentry_vmexec_thread *t, const uint8_t *src, int len) {
    uint8_t sw[48];
    uint32_t mxcsr;
    int n = len < t->fp_size ? len : t->fp_size;
    memcpy(sw, t->fp + FX_SW_OFF, sizeof sw);
    memcpy(t->fp, src, n);
    memcpy(t->fp + FX_SW_OFF, sw, sizeof sw);
    memcpy(&mxcsr, t->fp + 24, 4);
    mxcsr &= mxcsr_mask;
    memcpy(t->fp + 24, &mxcsr, 4);
    if (t->fp_xfeatures && n >= 576) {
        uint64_t bv;
        memcpy(&bv, t->fp + XSAVE_HDR_OFF, 8);
        bv &= t->fp_xfeatures;
        memcpy(t->fp + XSAVE_HDR_OFF, &bv, 8);
        memset(t->fp + XSAVE_HDR_OFF + 8, 0, 56);
    }
}

/* Each operation on a thread holds t->in_use: a stub being recycled (its
 * threads told to exit) must never race with a switch into one of them. */
static int claim(struct sentry_vmexec_thread *t) { return !__atomic_exchange_n(&t->in_use, 1, __ATOMIC_ACQUIRE); }
static void unclaim(struct sentry_vmexec_thread *t) { __atomic_store_n(&t->in_use, 0, __ATOMIC_RELEASE); }

static int fpstate(struct sentry_vmexec_thread *t, uint8_t *buf, int len, int set) {
    if (!t->uc) return -EBADFD; /* not stopped in an event */
    if (set) {
        write_fp(t, buf, len);
        return len;
    }
    int n = len < t->fp_size ? len : t->fp_size;
    memcpy(buf, t->fp, n);
    return n;
}

static int canonical(uint64_t a) { return (uint64_t)((int64_t)(a << 16) >> 16) == a; }

int sentry_vmexec_fpstate(struct sentry_vmexec_thread *t, uint8_t *buf, int len, int set) {
    if (!claim(t)) return -EBUSY;
    int r = fpstate(t, buf, len, set);
    unclaim(t);
    return r;
}

static long vm_exec(struct sentry_vmexec_caller *self, struct sentry_vmexec_thread *t, struct vmexec_context *ctx,
                    unsigned long flags, struct vmexec_siginfo *info) {
    struct vmexec_msg *m = t->msg;
    if (!t->uc) return -EBADFD;
    if (!canonical(ctx->fs_base) || !canonical(ctx->gs_base)) return -EINVAL;
    self->pid = t->pid;
    self->tid = t->tid;
    __atomic_store_n(&self->running, 1, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&self->pending, 0, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&self->running, 0, __ATOMIC_RELAXED);
        return -EINTR;
    }
    struct vmexec_sigcontext *sc = &t->uc->uc_mcontext;
    memcpy(sc, &ctx->sc, offsetof(struct vmexec_sigcontext, cs));
    sc->cs = ctx->sc.cs == USER32_CS ? USER32_CS : USER_CS;
    sc->ss = USER_DS;
    t->uc->uc_sigmask = 0;
    m->fs_base = ctx->fs_base;
    m->gs_base = ctx->gs_base;
    if (flags & VMEXEC_FPSTATE_IN) write_fp(t, (const uint8_t *)ctx->sc.fpstate, t->xsave_size);
    m->cmd = VMEXEC_CMD_RESUME;
    t->uc = NULL;
    __atomic_store_n(&m->state, VMEXEC_RUN, __ATOMIC_SEQ_CST);
    int stub_awake = !__atomic_load_n(&m->stub_sleeping, __ATOMIC_SEQ_CST);
    if (!stub_awake) futex(&m->state, FUTEX_WAKE, 1, 0);
    int r = wait_event(t, stub_awake, &self->pending, 0);
    __atomic_store_n(&self->running, 0, __ATOMIC_SEQ_CST);
    if (r) return r;
    uint64_t fpstate = ctx->sc.fpstate;
    memcpy(&ctx->sc, &t->uc->uc_mcontext, sizeof ctx->sc);
    ctx->sc.fpstate = fpstate;
    ctx->fs_base = m->fs_base;
    ctx->gs_base = m->gs_base;
    if (flags & VMEXEC_FPSTATE_OUT) memcpy((uint8_t *)fpstate, t->fp, t->fp_size);
    memcpy(info, t->info, sizeof *info);
    if (info->signo == VMEXEC_SIG_INTERRUPT) {
        __atomic_store_n(&self->pending, 0, __ATOMIC_SEQ_CST);
        return -EINTR;
    }
    return 0;
}

long sentry_process_vm_exec(struct sentry_vmexec_caller *self, struct sentry_vmexec_thread *t,
                            struct vmexec_context *ctx, unsigned long flags, struct vmexec_siginfo *info) {
    info->signo = 0;
    if (!claim(t)) return -EBUSY;
    long r = vm_exec(self, t, ctx, flags, info);
    unclaim(t);
    return r;
}

void sentry_vmexec_interrupt(struct sentry_vmexec_caller *self) {
    __atomic_store_n(&self->pending, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&self->running, __ATOMIC_SEQ_CST))
        syscall(SYS_tgkill, self->pid, self->tid, VMEXEC_SIG_INTERRUPT);
}

/* ---- the platform's Context.switch: user_regs_struct <-> sigcontext ------ */

int sentry_vmexec_switch(struct sentry_vmexec_caller *self, struct sentry_vmexec_thread *t, void *vregs,
                         uint8_t *fp_in, struct sentry_vmexec_stop *stop) {
    struct user_regs_struct *regs = vregs;
    struct vmexec_context c;
    struct vmexec_siginfo si;
    struct vmexec_sigcontext *sc = &c.sc;
    sc->r8 = regs->r8, sc->r9 = regs->r9, sc->r10 = regs->r10, sc->r11 = regs->r11;
    sc->r12 = regs->r12, sc->r13 = regs->r13, sc->r14 = regs->r14, sc->r15 = regs->r15;
    sc->rdi = regs->rdi, sc->rsi = regs->rsi, sc->rbp = regs->rbp, sc->rbx = regs->rbx;
    sc->rdx = regs->rdx, sc->rax = regs->rax, sc->rcx = regs->rcx, sc->rsp = regs->rsp;
    sc->rip = regs->rip, sc->eflags = regs->eflags, sc->cs = (uint16_t)regs->cs;
    sc->fpstate = (uint64_t)fp_in;
    c.fs_base = regs->fs_base, c.gs_base = regs->gs_base;
    long r = sentry_process_vm_exec(self, t, &c, fp_in ? VMEXEC_FPSTATE_IN : 0, &si);
    if (r == -EINTR && !si.signo) return 2; /* interrupted before the guest ran */
    if (r && r != -EINTR) return (int)r;
    regs->r8 = sc->r8, regs->r9 = sc->r9, regs->r10 = sc->r10, regs->r11 = sc->r11;
    regs->r12 = sc->r12, regs->r13 = sc->r13, regs->r14 = sc->r14, regs->r15 = sc->r15;
    regs->rdi = sc->rdi, regs->rsi = sc->rsi, regs->rbp = sc->rbp, regs->rbx = sc->rbx;
    regs->rdx = sc->rdx, regs->rax = sc->rax, regs->rcx = sc->rcx, regs->rsp = sc->rsp;
    regs->rip = sc->rip, regs->eflags = sc->eflags;
    regs->cs = sc->cs, regs->ss = USER_DS;
    regs->fs_base = c.fs_base, regs->gs_base = c.gs_base;
    regs->orig_rax = (unsigned long)-1;
    if (r == -EINTR) return 2;
    if (si.signo == SIGSYS && si.code == 1 /* SYS_SECCOMP */) {
        regs->orig_rax = sc->rax; /* seccomp rolled rax back to the number */
        return 0;
    }
    if (si.signo == SIGILL && si.code == SI_KERNEL) {
        /* Linux >= 6.11 lets uretprobe (and, from 6.16, uprobe) past every
         * seccomp filter; uretprobe called from outside the kernel's
         * trampoline raises this SIGILL (force_sig: the only SI_KERNEL
         * SIGILL on x86), with RIP after the `syscall` and RAX = -1. It is
         * still the guest's system call: hand it to the Sentry as one
         * (ENOSYS there, as on the other platforms). uprobe itself
         * returns ENXIO on the host without a trace (docs/SECURITY.md). */
        regs->orig_rax = regs->rax = NR_uretprobe;
        return 0;
    }
    memset(stop, 0, sizeof *stop);
    stop->signo = si.signo;
    stop->code = si.code;
    stop->trapno = -1;
    switch (si.signo) {
    case SIGSEGV: case SIGBUS: case SIGFPE: case SIGILL: case SIGTRAP:
        stop->addr = si.addr;
        stop->trapno = (int)sc->trapno;
        if (sc->trapno == 14) /* #PF error code: bit 1 write, bit 4 instruction fetch */
            stop->access = sc->err & 2 ? 2 : sc->err & 16 ? 4 : 1;
    }
    return 1;
}

int sentry_vmexec_exit_thread(struct sentry_vmexec_thread *t) {
    struct vmexec_msg *m = t->msg;
    if (!claim(t)) return -EBUSY;
    if (!t->uc) return -EBUSY; /* only a stopped thread can be told to exit; stays claimed */
    t->uc = NULL;
    m->cmd = VMEXEC_CMD_EXIT;
    __atomic_store_n(&m->state, VMEXEC_RUN, __ATOMIC_SEQ_CST);
    futex(&m->state, FUTEX_WAKE, 1, 0);
    int s = wait_state(t, 0, 0, 1);
    return s == VMEXEC_DEAD || s == -ESRCH ? 0 : -EPROTO;
}
