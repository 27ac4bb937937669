/* rt_sigreturn with a bad frame: Linux forces SIGSEGV (kernel/signal.c
 * force_sig via signal_fault), never returns an error. Modes:
 *   unmapped  rsp at an unmapped page: killed (139)
 *   mxcsr     a handler sets reserved MXCSR bits in its frame: killed
 *   xcomp     a handler sets XCOMP_BV in its frame's XSAVE header: killed
 *   xfeature  a handler sets an unknown XSTATE_BV bit: killed
 *   magic     a handler clears FP_XSTATE_MAGIC1 and corrupts the header: legacy state only, survives
 *   handler   as unmapped, with a SIGSEGV handler on an alternate stack: it runs */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static const char *mode;
static char altstack[65536];

static void on_usr1(int s, siginfo_t *si, void *p) {
    ucontext_t *uc = p;
    unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
    if (!strcmp(mode, "mxcsr")) *(uint32_t *)(fp + 24) = 0xffffffff;
    else if (!strcmp(mode, "xcomp")) *(uint64_t *)(fp + 520) = 1;
    else if (!strcmp(mode, "xfeature")) *(uint64_t *)(fp + 512) |= 1ULL << 62;
    else if (!strcmp(mode, "magic")) { /* no xstate magic: only the legacy area is restored, garbage after it is ignored */
        *(uint32_t *)(fp + 464) = 0;
        *(uint64_t *)(fp + 520) = 1;
        *(uint64_t *)(fp + 512) |= 1ULL << 62;
    }
}

static void on_segv(int s, siginfo_t *si, void *p) {
    printf("SIGSEGV code=%d addr=%p\n", si->si_code, si->si_addr);
    fflush(stdout);
    _exit(3);
}

static void bad_sigreturn(void) {
    void *hole = mmap(0, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(hole, 4096);
    __asm__ volatile("mov %0, %%rsp; mov $15, %%eax; syscall" ::"r"((char *)hole + 2048) : "rax", "memory");
}

int main(int argc, char **argv) {
    mode = argc > 1 ? argv[1] : "unmapped";
    printf("%s\n", mode);
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    if (!strcmp(mode, "handler")) {
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
        sigaltstack(&ss, 0);
        sa.sa_sigaction = on_segv;
        sigaction(SIGSEGV, &sa, 0);
    }
    if (!strcmp(mode, "unmapped") || !strcmp(mode, "handler")) bad_sigreturn();
    sa.sa_sigaction = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    printf("survived\n");
    return 0;
}
