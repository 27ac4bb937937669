/* vmexec platform: the layout shared by the stub (stub/stub-vmexec.c,
 * freestanding) and the Sentry's native side (vmexec.c), and the Sentry-side
 * API of process_vm_exec() implemented in user space.
 *
 * Stub address space (above Platform.max_user_address = 0x7f0000000000):
 *
 *   VMEXEC_TEXT     stub code and read-only data (the trusted range)
 *   VMEXEC_GLOBAL   one page shared by every stub of a sandbox (spin policy)
 *   VMEXEC_MBOX     this stub's mailbox memfd: the command page (read-only
 *                   in the stub), the result page, then one slot per stub
 *                   thread: a struct vmexec_msg page, then its signal stack.
 *
 * Everything in the mailbox and global pages is writable by guest code of
 * that address space (except the command page), so the Sentry reads it as
 * untrusted input: every pointer is bounds-checked against its slot.
 *
 * IfChange: the struct layouts below are checked by _Static_assert here and
 * by tests/test_vmexec_platform.py::test_layout. */
#ifndef SENTRY_VMEXEC_H
#define SENTRY_VMEXEC_H
#include <stdint.h>
#include <stddef.h>

#define VMEXEC_TEXT 0x7f7f00000000UL
#define VMEXEC_TEXT_SIZE 0x10000UL
#define VMEXEC_GLOBAL 0x7f7f10000000UL
#define VMEXEC_MBOX 0x7f7f20000000UL
#define VMEXEC_SLOT_SIZE 0x10000UL /* power of two: the handler finds its slot by masking */
#define VMEXEC_SLOTS_OFF 0x10000UL /* slots start here in the mailbox memfd */
#define VMEXEC_MAX_THREADS 1024
#define VMEXEC_MBOX_SIZE (VMEXEC_SLOTS_OFF + VMEXEC_MAX_THREADS * VMEXEC_SLOT_SIZE)
#define VMEXEC_TOP 0x7ffffffff000UL

/* The control channel. The Sentry writes a command (nr, args, then seq)
 * into the command page, which the stub can only read, and wakes the
 * futex on cmd.seq. The control thread runs it, stores the result and
 * sleeps in FUTEX_WAIT on cmd.seq again. The result page is guest-writable,
 * so its seq cannot say when a command is done; instead the Sentry polls
 * FUTEX_WAKE on cmd.seq until it wakes one waiter: only the control thread
 * can wait there (filter B forbids futex calls on the control pages), and
 * it does so only once it has run every command up to cmd.seq. So a guest
 * can never make the Sentry write a command over one still being read. */

/* Fixed fd numbers in the stub at start-up; it keeps only the MemoryFile. */
#define VMEXEC_FD_MEMORY 3
#define VMEXEC_FD_MBOX 4
#define VMEXEC_FD_GLOBAL 5

/* The signal the Sentry sends a stub thread to interrupt guest code. */
#define VMEXEC_SIG_INTERRUPT 23 /* SIGURG: ignored by default, never sent by anyone else */

/* Stub threads: clone flags (the control thread's filter allows only these). */
#define VMEXEC_CLONE_FLAGS 0x00250f00UL /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|CHILD_CLEARTID */

/* struct vmexec_msg.state: the futex both sides wait on. */
#define VMEXEC_DEAD 0  /* the thread exited (CLONE_CHILD_CLEARTID wrote 0) */
#define VMEXEC_EVENT 1 /* the stub stored an event and waits for the Sentry */
#define VMEXEC_RUN 2   /* the Sentry released the stub */

/* struct vmexec_msg.cmd, read by the stub when released. */
#define VMEXEC_CMD_RESUME 0
#define VMEXEC_CMD_EXIT 1

/* The control thread's command page (read-only in the stub). */
struct vmexec_cmd {
    uint32_t seq; /* futex: the Sentry bumps it for each command */
    uint32_t pad;
    uint64_t nr, args[6];
    uint64_t ss_sp, ss_flags, ss_size; /* stack_t for the next clone'd thread */
};
/* A batch: cmd.nr = VMEXEC_NR_BATCH (no system call has that number) and
 * cmd.args[0] = n runs the n calls at VMEXEC_BATCH_OFF of the command page
 * in order (mmap, munmap, mprotect: clone is refused), stopping at the
 * first that fails; ret = n when all succeeded, else that call's -errno.
 * One doorbell for a whole address space's mappings. */
#define VMEXEC_NR_BATCH 0x10000
#define VMEXEC_BATCH_OFF 128
#define VMEXEC_BATCH_MAX 64
struct vmexec_call {
    uint64_t nr, args[6];
};
/* The control thread's answers (result page). */
struct vmexec_result {
    uint32_t seq; /* futex: = cmd.seq once that command is done */
    uint32_t pad;
    int64_t ret;
};
/* The sandbox-wide page: how many stub/Sentry pairs have a side spinning
 * right now, on how many CPUs. A side may start to spin if its pair already
 * spins (the hand-over) or if spinners < ncpu - 1 (a CPU is free besides the
 * one that does the work). Guests can corrupt it: it only steers spinning,
 * and every spin is bounded. */
struct vmexec_global {
    int32_t spinners, ncpu;
};
/* One per stub thread, at the start of its slot. */
struct vmexec_msg {
    uint32_t state;           /* futex, VMEXEC_DEAD/EVENT/RUN */
    uint32_t stub_sleeping;   /* the stub waits in FUTEX_WAIT: wake it */
    uint32_t sentry_sleeping; /* the Sentry waits in FUTEX_WAIT: wake it */
    int32_t signo;            /* the event's signal */
    uint64_t uc, info;        /* stub addresses of the frame's ucontext and siginfo */
    uint64_t fs_base, gs_base;
    uint32_t cmd;       /* VMEXEC_CMD_*, valid when state becomes RUN */
    uint32_t spinning;  /* how many of the two sides spin now (the pair holds
                           one vmexec_global.spinners while it is > 0) */
    uint32_t stub_spin; /* the stub side's adaptive spin budget (vmexec_spin) */
    uint32_t pad;
};
static inline int vmexec_spin_begin(struct vmexec_global *g, struct vmexec_msg *m) {
    if (__atomic_load_n(&m->spinning, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&g->spinners, __ATOMIC_SEQ_CST) >= __atomic_load_n(&g->ncpu, __ATOMIC_RELAXED) - 1)
        return 0;
    if (__atomic_fetch_add(&m->spinning, 1, __ATOMIC_SEQ_CST) == 0) __atomic_add_fetch(&g->spinners, 1, __ATOMIC_SEQ_CST);
    return 1;
}
static inline void vmexec_spin_end(struct vmexec_global *g, struct vmexec_msg *m) {
    if (__atomic_sub_fetch(&m->spinning, 1, __ATOMIC_SEQ_CST) == 0) __atomic_sub_fetch(&g->spinners, 1, __ATOMIC_SEQ_CST);
}
/* One step of a spin wait: `pause`, and every VMEXEC_YIELD_EVERY steps a
 * sched_yield, so that a partner queued on this very CPU (a wake-up placed
 * it here, or other processes keep the other CPUs busy) gets to run instead
 * of waiting for the spin to end. The raw instruction keeps it inside the
 * stub's trusted code when the stub runs it (both allowlists permit it). */
#define VMEXEC_YIELD_EVERY 128
static inline void vmexec_relax(uint32_t i) {
    if (i % VMEXEC_YIELD_EVERY == VMEXEC_YIELD_EVERY - 1) {
        long r;
        __asm__ volatile("syscall" : "=a"(r) : "a"(24 /* sched_yield */) : "rcx", "r11", "memory");
    } else {
        __asm__ volatile("pause" ::: "memory");
    }
}

/* Spin while *w == v, within *budget, and only while a CPU is free (see
 * vmexec_global); returns *w. The budget adapts: a spin that ends in time
 * sets it to four times that wait (plus VMEXEC_SPIN_MIN), so it follows the
 * rhythm of the workload; one that runs out while the partner was awake
 * halves it, down to VMEXEC_SPIN_MIN (under load from other processes
 * spinning only steals CPU time). A partner that had to be woken
 * from its futex first does not count: on this kind of host (a VM) waking
 * an idle CPU takes tens of microseconds, and counting it would push both
 * sides into sleeping for good. Shared by both sides. */
#define VMEXEC_SPIN_MIN 800    /* `pause`s, ~25 ns each here */
#define VMEXEC_SPIN_MAX 20000  /* half a millisecond */
static inline uint32_t vmexec_spin(struct vmexec_global *g, struct vmexec_msg *m, uint32_t *budget,
                                   uint32_t *w, uint32_t v, int partner_was_awake) {
    uint32_t s = v, n = 0, b = *budget;
    if (b > VMEXEC_SPIN_MAX) b = VMEXEC_SPIN_MAX;
    if (b < VMEXEC_SPIN_MIN) b = VMEXEC_SPIN_MIN;
    if (vmexec_spin_begin(g, m)) {
        for (; n < b && (s = __atomic_load_n(w, __ATOMIC_ACQUIRE)) == v; n++) vmexec_relax(n);
        vmexec_spin_end(g, m);
        if (s != v)
            b = 4 * n + VMEXEC_SPIN_MIN;
        else if (partner_was_awake)
            b /= 2;
    }
    *budget = b > VMEXEC_SPIN_MAX ? VMEXEC_SPIN_MAX : b;
    return s == v ? __atomic_load_n(w, __ATOMIC_ACQUIRE) : s;
}

_Static_assert(offsetof(struct vmexec_cmd, ss_sp) == 64, "vmexec_cmd layout");
_Static_assert(sizeof(struct vmexec_result) == 16, "vmexec_result layout");
_Static_assert(sizeof(struct vmexec_call) == 56 && sizeof(struct vmexec_cmd) <= VMEXEC_BATCH_OFF &&
               VMEXEC_BATCH_OFF + VMEXEC_BATCH_MAX * sizeof(struct vmexec_call) <= 4096, "vmexec batch layout");
_Static_assert(offsetof(struct vmexec_msg, uc) == 16 && offsetof(struct vmexec_msg, cmd) == 48,
               "vmexec_msg layout");

/* The kernel's 64-bit struct sigcontext (asm/sigcontext.h), the register
 * state process_vm_exec() takes and returns, plus the FS/GS bases that the
 * RFC kept in the task; fpstate is the Sentry address of an XSAVE area. */
struct vmexec_sigcontext {
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
    uint16_t cs, gs, fs, ss;
    uint64_t err, trapno, oldmask, cr2, fpstate;
    uint64_t reserved1[8];
};
struct vmexec_context {
    struct vmexec_sigcontext sc;
    uint64_t fs_base, gs_base;
};
/* The kernel's struct ucontext (not glibc's larger ucontext_t). */
struct vmexec_ucontext {
    uint64_t uc_flags, uc_link;
    uint64_t ss_sp;
    int32_t ss_flags, ss_pad;
    uint64_t ss_size;
    struct vmexec_sigcontext uc_mcontext;
    uint64_t uc_sigmask;
};
/* siginfo_t, with the fields of faults and of SIGSYS (they overlap). */
struct vmexec_siginfo {
    int32_t signo, errno_, code, pad;
    uint64_t addr; /* faults: the address; SIGSYS: after the syscall */
    int32_t syscall_nr;
    uint32_t arch;
    uint8_t rest[96];
};
_Static_assert(sizeof(struct vmexec_sigcontext) == 256, "sigcontext layout");
_Static_assert(offsetof(struct vmexec_ucontext, uc_mcontext) == 40, "ucontext layout");
_Static_assert(sizeof(struct vmexec_ucontext) == 304, "ucontext size");
_Static_assert(sizeof(struct vmexec_siginfo) == 128, "siginfo size");

/* ---- Sentry side (stub/native/vmexec.c) --------------------------------- */

/* process_vm_exec() flags. */
#define VMEXEC_FPSTATE_IN 1  /* load the XSAVE area at ctx->sc.fpstate first */
#define VMEXEC_FPSTATE_OUT 2 /* store the guest's XSAVE area there on return */

/* A stub thread, as the Sentry sees it. Created by sentry_vmexec_thread_init. */
struct sentry_vmexec_thread {
    struct vmexec_msg *msg;        /* Sentry address of the slot */
    struct vmexec_global *global;  /* Sentry address of the global page */
    uint64_t stub_slot;            /* stub address of the slot */
    int pid, tid, pidfd;           /* host ids of the stub process and thread */
    int xsave_size;                /* the Sentry's XSAVE area size */
    uint32_t spin;                 /* the Sentry side's adaptive spin budget */
    int in_use;                    /* an operation on it is in progress (claim()) */
    /* The validated frame of the last event (Sentry addresses), or NULL. */
    struct vmexec_ucontext *uc;
    struct vmexec_siginfo *info;
    uint8_t *fp;
    int fp_size;            /* bytes of it we use: min(frame's, xsave_size) */
    uint64_t fp_xfeatures;  /* features the frame holds (0: legacy FXSAVE frame) */
};
/* The calling side of process_vm_exec: one per Context (the RFC's caller
 * thread). pending/running make interrupt() race-free. */
struct sentry_vmexec_caller {
    int pending, running, pid, tid;
};
/* What a switch stopped on, decoded. */
struct sentry_vmexec_stop {
    int signo, code, trapno, access;
    uint64_t addr;
};

int sentry_vmexec_spawn(const char *stub_path, int memfd, int mboxfd, int globalfd, const int *shared_ns, int *pid,
                        int *pidfd);
long sentry_vmexec_command(struct vmexec_cmd *cmd, struct vmexec_result *res, int pidfd, long nr,
                           long a0, long a1, long a2, long a3, long a4, long a5, long *ret);
int sentry_vmexec_thread_init(struct sentry_vmexec_thread *t, uint8_t *mbox, int slot,
                              struct vmexec_global *global, int pid, int pidfd);
int sentry_vmexec_wait_event(struct sentry_vmexec_thread *t);
long sentry_process_vm_exec(struct sentry_vmexec_caller *self, struct sentry_vmexec_thread *t,
                            struct vmexec_context *ctx, unsigned long flags, struct vmexec_siginfo *info);
int sentry_vmexec_switch(struct sentry_vmexec_caller *self, struct sentry_vmexec_thread *t, void *regs,
                         uint8_t *fp_in, struct sentry_vmexec_stop *stop);
int sentry_vmexec_fpstate(struct sentry_vmexec_thread *t, uint8_t *buf, int len, int set);
void sentry_vmexec_interrupt(struct sentry_vmexec_caller *self);
int sentry_vmexec_exit_thread(struct sentry_vmexec_thread *t);
void sentry_vmexec_kill(int pid, int pidfd);
#endif
