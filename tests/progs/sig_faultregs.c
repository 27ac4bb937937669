/* What Linux puts in a signal frame's mcontext for each kind of fault:
 * trapno, err (the #PF error code) and cr2, with si_code and si_addr; a
 * later kill()'s frame shows the last fault's (the thread's trap_nr,
 * error_code and cr2). With an argument, also writes to pages that are not
 * present, whose access type only the #PF error code tells. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <fcntl.h>

static sigjmp_buf jump;
static volatile long trapno, err, cr2, code, addr;

static void handler(int s, siginfo_t *si, void *p) {
    ucontext_t *uc = p;
    trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
    err = uc->uc_mcontext.gregs[REG_ERR];
    cr2 = uc->uc_mcontext.gregs[REG_CR2];
    code = si->si_code;
    addr = (long)si->si_addr;
    if (s != SIGUSR1) siglongjmp(jump, s);
}

static char *page, *ro, *none, *file_map;
static uintptr_t base;

int main(int argc, char **argv);

/* An address as the test's own mappings place it, so output is the same run to run. */
static void show(const char *name, long a) {
    if (a && (uintptr_t)a >= base && (uintptr_t)a < base + 0x10000) printf(" %s=base+%#lx", name, a - (long)base);
    else if (a && (uintptr_t)a - (uintptr_t)main < 0x100000) printf(" %s=text", name);
    else printf(" %s=%#lx", name, a);
}

static void report(const char *what, int sig) {
    printf("%-14s sig=%-2d trapno=%ld err=%#lx", what, sig, trapno, err);
    show("cr2", cr2);
    if (sig != SIGUSR1) {
        printf(" code=%ld", code);
        show("addr", addr);
    }
    printf("\n");
    fflush(stdout);
}

#define TRY(what, stmt) do { int s = sigsetjmp(jump, 1); if (!s) { stmt; printf("%s: no fault\n", what); } else report(what, s); } while (0)

int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    for (int s = 1; s < 32; s++) sigaction(s, &sa, 0);

    /* A fresh thread's frame: nothing faulted yet. */
    raise(SIGUSR1);
    report("kill", SIGUSR1);

    base = (uintptr_t)mmap(0, 0x10000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    page = (char *)base;
    ro = page + 0x1000, none = page + 0x2000;
    mprotect(page, 0x1000, PROT_READ | PROT_WRITE);
    mprotect(ro, 0x1000, PROT_READ);
    munmap(page + 0x4000, 0x1000); /* a hole: unmapped */
    page[0] = (char)0xc3; /* ret: data, not code */

    char path[] = "/tmp/faultregsXXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    if (ftruncate(fd, 100)) return 1;
    file_map = mmap(page + 0x6000, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);

    TRY("read-unmapped", (void)*(volatile char *)(page + 0x4010));
    TRY("read-none", (void)*(volatile char *)(none + 8));
    (void)*(volatile char *)ro; /* populated: a write faults on a present page */
    TRY("write-ro", *(volatile char *)(ro + 16) = 1);
    TRY("exec-data", ((void (*)(void))page)());
    TRY("exec-unmapped", ((void (*)(void))(page + 0x4000))());
    TRY("read-null", (void)*(volatile int *)0x10);
    TRY("read-kernel", (void)*(volatile int *)0xffff800000001000UL);
    TRY("noncanonical", (void)*(volatile long *)0x8000000000000000UL);
    TRY("ud2", __asm__ volatile("ud2"));
    TRY("int3", __asm__ volatile("int3"));
    TRY("hlt", __asm__ volatile("hlt"));
    TRY("div0", __asm__ volatile("xor %%ecx, %%ecx; mov $1, %%eax; cltd; idivl %%ecx" ::: "eax", "ecx", "edx"));
    TRY("bus-read", (void)*(volatile char *)(file_map + 0x1000));
    raise(SIGUSR1);
    report("kill-after", SIGUSR1);
    if (argc > 1) { /* writes to absent pages: only the #PF error code tells them from reads (not ptrace) */
        TRY("write-none", *(volatile char *)(none + 24) = 1);
        TRY("write-unmapped", *(volatile char *)(page + 0x4020) = 1);
        TRY("bus-write", *(volatile char *)(file_map + 0x1008) = 1);
        raise(SIGUSR1);
        report("kill-after", SIGUSR1);
    }
    return 0;
}
