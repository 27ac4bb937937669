/* The vmexec platform's stub process: guest code runs in its threads under a
 * seccomp filter that traps every system call; a signal handler hands each
 * event to the Sentry through shared memory.
 *
 * In a nutshell:
 * - The Sentry starts this program in fresh namespaces with fds 3 (the
 *   MemoryFile), 4 (this stub's mailbox memfd) and 5 (the sandbox's global
 *   page). stub_main maps 4 and 5 at fixed addresses (the command page
 *   read-only), closes both, unmaps everything else, and installs the signal
 *   handlers.
 * - The main thread becomes the control thread (ctl_loop): stackless code
 *   that waits on the command page, runs the system call it names (mmap,
 *   munmap, mprotect of MemoryFile ranges; clone of a stub thread), stores
 *   the result and sleeps on the command page again, which is how the
 *   Sentry learns the command is done (vmexec.h, "control channel"). It
 *   runs under filter A: trusted instructions may make only the calls the
 *   stub needs; any other call from them fails with EPERM.
 * - A stub thread (thread_start) sets its signal stack (its slot), installs
 *   filter B on itself (trusted instructions may make only futex off the
 *   control pages, rt_sigreturn, exit and sched_yield) and executes int3:
 *   from then on it lives in the handler. Filters stack, so guest code that
 *   jumps into this file's `syscall` instructions gets at most B's calls,
 *   and the command page is read-only to it: a guest can never map
 *   anything itself, nor touch another address space.
 * - handler: for SIGSYS (a guest system call), SIGSEGV, SIGBUS, SIGFPE,
 *   SIGILL, SIGTRAP and the interrupt signal, it records where the kernel put
 *   the signal frame (ucontext with the registers, XSAVE area, siginfo: all
 *   in the slot, which the Sentry also maps), marks the slot EVENT, and waits
 *   (spin while a CPU is free, then futex) until the Sentry, having edited
 *   the frame in place, marks it RUN; returning resumes the guest through
 *   rt_sigreturn.
 *
 * No libc, no data or bss: constants only. Everything the guest can write
 * (slots, global page, result page) is untrusted input to the Sentry.
 */
#include <asm/unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stddef.h>

#include "vmexec.h"

#define PR_SET_NO_NEW_PRIVS 38
#define PR_SET_PDEATHSIG 1
#define SIGKILL 9
#define SA_SIGINFO 4
#define SA_ONSTACK 0x08000000
#define SA_RESTORER 0x04000000
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_FIXED 0x10

static inline long sys6(long nr, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys3(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* ---- seccomp filters ------------------------------------------------------ */

/* Untrusted instruction pointer (or a foreign arch) -> TRAP; trusted -> the
 * allowlist, anything else EPERM. */
#define PROLOGUE                                                                            \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),                \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),                          \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),                                            \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4), \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)(VMEXEC_TEXT >> 32), 1, 0),              \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),                                            \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)), \
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)(VMEXEC_TEXT + VMEXEC_TEXT_SIZE), 0, 1), \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),                                            \
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)VMEXEC_TEXT, 1, 0),                      \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),                                            \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define DENY BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */)
#define ARG_LO(i) offsetof(struct seccomp_data, args) + 8 * (i)

/* A: the control thread (inherited by stub threads, which add B). */
__attribute__((section(".rodata.stub"))) static const struct sock_filter filter_a[] = {
    PROLOGUE,
    ALLOW(__NR_mmap), ALLOW(__NR_munmap), ALLOW(__NR_mprotect), ALLOW(__NR_futex),
    ALLOW(__NR_rt_sigreturn), ALLOW(__NR_exit), ALLOW(__NR_sigaltstack), ALLOW(__NR_seccomp),
    ALLOW(__NR_sched_yield),
    /* clone: only stub threads (exact flags) */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)VMEXEC_CLONE_FLAGS, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    DENY,
    DENY,
};
/* B: stub threads, which run guest code. futex: only plain WAIT and WAKE,
 * and never on the control pages (the Sentry reads "the control thread is
 * waiting there" as "the command is done", so no one else may wait there). */
__attribute__((section(".rodata.stub"))) static const struct sock_filter filter_b[] = {
    PROLOGUE,
    ALLOW(__NR_rt_sigreturn), ALLOW(__NR_exit), ALLOW(__NR_sched_yield),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_futex, 0, 10),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(1)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAIT, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAKE, 0, 6),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0) + 4),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)(VMEXEC_MBOX >> 32), 0, 3),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)(VMEXEC_MBOX + VMEXEC_SLOTS_OFF), 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)VMEXEC_MBOX, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    DENY,
    DENY,
};
__attribute__((used, section(".rodata.stub"))) static const struct sock_fprog prog_a = {
    .len = sizeof filter_a / sizeof filter_a[0], .filter = (struct sock_filter *)filter_a};
__attribute__((used, section(".rodata.stub"))) static const struct sock_fprog prog_b = {
    .len = sizeof filter_b / sizeof filter_b[0], .filter = (struct sock_filter *)filter_b};

/* ---- the signal handler (stub threads only, on the slot's signal stack) --- */

static inline void futex_wait(uint32_t *w, uint32_t v) { sys6(__NR_futex, (long)w, FUTEX_WAIT, v, 0, 0, 0); }
static inline void futex_wake(uint32_t *w) { sys6(__NR_futex, (long)w, FUTEX_WAKE, 1, 0, 0, 0); }

__attribute__((used)) static void handler(int signo, void *info, void *uc) {
    struct vmexec_msg *m = (struct vmexec_msg *)((uint64_t)uc & ~(VMEXEC_SLOT_SIZE - 1));
    struct vmexec_global *g = (struct vmexec_global *)VMEXEC_GLOBAL;
    uint64_t fs, gs;
    __asm__ volatile("rdfsbase %0\n rdgsbase %1" : "=r"(fs), "=r"(gs));
    m->signo = signo;
    m->uc = (uint64_t)uc;
    m->info = (uint64_t)info;
    m->fs_base = fs;
    m->gs_base = gs;
    __atomic_store_n(&m->state, VMEXEC_EVENT, __ATOMIC_SEQ_CST);
    int sentry_awake = !__atomic_load_n(&m->sentry_sleeping, __ATOMIC_SEQ_CST);
    if (!sentry_awake) futex_wake(&m->state);

    /* Wait for RUN: spin while another CPU is free, then sleep. */
    vmexec_spin(g, m, &m->stub_spin, &m->state, VMEXEC_EVENT, sentry_awake);
    while (__atomic_load_n(&m->state, __ATOMIC_ACQUIRE) != VMEXEC_RUN) {
        __atomic_store_n(&m->stub_sleeping, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&m->state, __ATOMIC_SEQ_CST) == VMEXEC_EVENT) futex_wait(&m->state, VMEXEC_EVENT);
        __atomic_store_n(&m->stub_sleeping, 0, __ATOMIC_RELAXED);
    }
    if (m->cmd == VMEXEC_CMD_EXIT) sys3(__NR_exit, 0, 0, 0);
    fs = m->fs_base;
    gs = m->gs_base;
    __asm__ volatile("wrfsbase %0\n wrgsbase %1" ::"r"(fs), "r"(gs));
}

__attribute__((naked, used)) static void restorer(void) {
    __asm__ volatile("mov %0, %%eax\n syscall\n ud2\n" ::"i"(__NR_rt_sigreturn));
}

/* ---- start-up (main thread, on the kernel-made stack) --------------------- */

/* The stub is linked far above 2 GiB with the small code model's flags, so C
 * code takes addresses RIP-relative only. */
#define ADDR(sym) ({ void *p_; __asm__("lea " #sym "(%%rip), %0" : "=r"(p_)); p_; })

struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

static void die(int code) {
    for (;;) sys3(__NR_exit_group, code, 0, 0);
}

/* Map the shared pages, drop the extra fds, install the handlers. */
__attribute__((used)) static void stub_main(void) {
    sys3(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    if (sys3(__NR_munmap, 0, VMEXEC_TEXT, 0)) die(120);
    if (sys3(__NR_munmap, VMEXEC_TEXT + VMEXEC_TEXT_SIZE, VMEXEC_MBOX + VMEXEC_MBOX_SIZE - VMEXEC_TEXT - VMEXEC_TEXT_SIZE, 0))
        die(120);
    if (sys6(__NR_mmap, VMEXEC_GLOBAL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, VMEXEC_FD_GLOBAL, 0) !=
        (long)VMEXEC_GLOBAL)
        die(121);
    if (sys6(__NR_mmap, VMEXEC_MBOX, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, VMEXEC_FD_MBOX, 0) != (long)VMEXEC_MBOX)
        die(121);
    if (sys6(__NR_mmap, VMEXEC_MBOX + 4096, VMEXEC_MBOX_SIZE - 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             VMEXEC_FD_MBOX, 4096) != (long)(VMEXEC_MBOX + 4096))
        die(121);
    if (sys3(__NR_close_range, VMEXEC_FD_MBOX, ~0U, 0)) die(122);
    /* SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and the interrupt */
    uint64_t sigs = 1UL << 31 | 1UL << 11 | 1UL << 7 | 1UL << 8 | 1UL << 4 | 1UL << 5 | 1UL << VMEXEC_SIG_INTERRUPT;
    struct ksigaction sa = {ADDR(handler), SA_SIGINFO | SA_ONSTACK | SA_RESTORER, ADDR(restorer), ~0UL};
    for (int sig = 1; sig < 64; sig++)
        if ((sigs >> sig & 1) && sys6(__NR_rt_sigaction, sig, (long)&sa, 0, 8, 0, 0)) die(123);
}

/* Entry: stub_main, then leave the kernel's stack (unmapped with the vdso),
 * confine ourselves (filter A) and serve commands forever. */
__attribute__((naked, noreturn, section(".text.start"))) void _start(void) {
    __asm__ volatile(
        "and $-16, %%rsp\n call stub_main\n"
        "mov %[munmap], %%eax\n movabs %[end], %%rdi\n movabs %[len], %%rsi\n syscall\n"
        "test %%rax, %%rax\n jnz 9f\n"
        "mov %[prctl], %%eax\n mov %[nnp], %%edi\n mov $1, %%esi\n xor %%edx, %%edx\n"
        "xor %%r10d, %%r10d\n xor %%r8d, %%r8d\n syscall\n"
        "mov %[seccomp], %%eax\n mov %[mode], %%edi\n xor %%esi, %%esi\n lea prog_a(%%rip), %%rdx\n syscall\n"
        "test %%rax, %%rax\n jnz 9f\n"
        "movabs %[mbox], %%r12\n lea 4096(%%r12), %%r13\n xor %%ebx, %%ebx\n"
        /* ctl_loop: r12 = command page, r13 = result page, ebx = last seq.
         * Sleeping in FUTEX_WAIT on the command page is how the Sentry knows
         * the last command is done (vmexec.h, "control channel"): so no
         * spinning here, and nothing else may wait on that page. */
        "1: mov (%%r12), %%eax\n cmp %%eax, %%ebx\n jne 2f\n"
        "mov %[futex], %%eax\n mov %%r12, %%rdi\n mov %[wait], %%esi\n mov %%ebx, %%edx\n"
        "xor %%r10d, %%r10d\n syscall\n jmp 1b\n"
        "2: mov %%eax, %%ebx\n"
        "mov 8(%%r12), %%rax\n cmp %[batch], %%rax\n je 5f\n"
        "mov 16(%%r12), %%rdi\n mov 24(%%r12), %%rsi\n mov 32(%%r12), %%rdx\n"
        "mov 40(%%r12), %%r10\n mov 48(%%r12), %%r8\n mov 56(%%r12), %%r9\n"
        "cmp %[clone], %%rax\n je 4f\n"
        "syscall\n"
        "3: mov %%rax, 8(%%r13)\n mov %%ebx, (%%r13)\n jmp 1b\n"
        /* batch: r14 = the next call, r15 = how many are left */
        "5: mov 16(%%r12), %%r15\n cmp %[batch_max], %%r15\n ja 7f\n"
        "lea %c[batch_off](%%r12), %%r14\n"
        "6: test %%r15, %%r15\n jz 11f\n"
        "mov (%%r14), %%rax\n mov 8(%%r14), %%rdi\n mov 16(%%r14), %%rsi\n mov 24(%%r14), %%rdx\n"
        "mov 32(%%r14), %%r10\n mov 40(%%r14), %%r8\n mov 48(%%r14), %%r9\n"
        "cmp %[clone], %%rax\n je 7f\n"
        "syscall\n"
        "cmp $-4095, %%rax\n jae 3b\n"
        "add $56, %%r14\n dec %%r15\n jmp 6b\n"
        "11: mov 16(%%r12), %%rax\n jmp 3b\n"
        "7: mov $-22, %%rax\n jmp 3b\n"
        "4: syscall\n test %%rax, %%rax\n jnz 3b\n"
        /* thread_start: a new stub thread, on the top of its msg page. It
         * must not trust memory until filter B is on: registers only. */
        "mov %[sigaltstack], %%eax\n lea 64(%%r12), %%rdi\n xor %%esi, %%esi\n syscall\n"
        "test %%rax, %%rax\n jnz 8f\n"
        "mov %[seccomp], %%eax\n mov %[mode], %%edi\n xor %%esi, %%esi\n lea prog_b(%%rip), %%rdx\n syscall\n"
        "test %%rax, %%rax\n jnz 8f\n"
        "10: int3\n jmp 10b\n"
        "8: mov %[exit], %%eax\n mov $124, %%edi\n syscall\n"
        "9: mov %[exit_group], %%eax\n mov $125, %%edi\n syscall\n"
        :
        : [munmap] "i"(__NR_munmap), [end] "i"(VMEXEC_MBOX + VMEXEC_MBOX_SIZE),
          [len] "i"(VMEXEC_TOP - VMEXEC_MBOX - VMEXEC_MBOX_SIZE), [prctl] "i"(__NR_prctl),
          [nnp] "i"(PR_SET_NO_NEW_PRIVS), [seccomp] "i"(__NR_seccomp), [mode] "i"(SECCOMP_SET_MODE_FILTER),
          [mbox] "i"(VMEXEC_MBOX), [futex] "i"(__NR_futex),
          [wait] "i"(FUTEX_WAIT), [clone] "i"(__NR_clone), [batch] "i"(VMEXEC_NR_BATCH),
          [batch_max] "i"(VMEXEC_BATCH_MAX), [batch_off] "i"(VMEXEC_BATCH_OFF),
          [sigaltstack] "i"(__NR_sigaltstack), [exit] "i"(__NR_exit), [exit_group] "i"(__NR_exit_group));
}
