/* The ptrace platform's stub process: an empty address space that guest
 * code is mapped into, under PTRACE_SYSEMU.
 *
 * In a nutshell: the Sentry clones this program into fresh namespaces with
 * the MemoryFile as fd 3 and nothing else (stub/native/ptrace.c). It sets
 * PR_SET_PDEATHSIG, unmaps everything but its own page (kernel-made stack,
 * vdso, vvar), installs a seccomp allowlist, and stops at an int3. The
 * instruction after that int3 is the "gadget": `syscall; int3`. The Sentry
 * runs the calls it chooses (mmap/munmap of MemoryFile ranges) by pointing
 * RIP at the gadget and PTRACE_CONT; guest system calls never get here:
 * under PTRACE_SYSEMU they stop before the kernel runs them (and before
 * seccomp, which therefore constrains only the gadget).
 *
 * No libc, no stack: everything is one naked function.
 */
#include <asm/unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>

#define STUB_BASE 0x7f7f00000000UL
#define STUB_TOP 0x7ffffffff000UL
#define PR_SET_NO_NEW_PRIVS 38
#define PR_SET_PDEATHSIG 1

/* Allowed on the gadget: the memory calls the Sentry injects, and exit. */
#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
__attribute__((section(".rodata.stub"))) static const struct sock_filter filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    ALLOW(__NR_mmap), ALLOW(__NR_munmap), ALLOW(__NR_mprotect),
    ALLOW(__NR_exit), ALLOW(__NR_exit_group),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
};
__attribute__((section(".rodata.stub"))) static const struct sock_fprog prog = {
    .len = sizeof filter / sizeof filter[0], .filter = (struct sock_filter *)filter};

__attribute__((naked, noreturn, section(".text.start"))) void _start(void) {
    __asm__ volatile(
        /* prctl(PR_SET_PDEATHSIG, SIGKILL) */
        "mov %[prctl], %%eax\n mov %[pdeath], %%edi\n mov $9, %%esi\n syscall\n"
        /* munmap(0, STUB_BASE) and munmap(text end, top): stack, vdso, vvar go */
        "mov %[munmap], %%eax\n xor %%edi, %%edi\n movabs %[base], %%rsi\n syscall\n"
        "mov %[munmap], %%eax\n movabs %[base], %%rdi\n add $0x10000, %%rdi\n"
        "movabs %[top], %%rsi\n sub %%rdi, %%rsi\n syscall\n"
        /* prctl(PR_SET_NO_NEW_PRIVS, 1); seccomp(SET_MODE_FILTER, 0, &prog) */
        "mov %[prctl], %%eax\n mov %[nnp], %%edi\n mov $1, %%esi\n xor %%edx, %%edx\n"
        "xor %%r10d, %%r10d\n xor %%r8d, %%r8d\n syscall\n"
        "mov %[seccomp], %%eax\n mov %[mode], %%edi\n xor %%esi, %%esi\n lea %[prog], %%rdx\n syscall\n"
        "test %%rax, %%rax\n jnz 2f\n"
        /* Ready: the Sentry reads the gadget's address from RIP at this stop. */
        "int3\n"
        "1: syscall\n int3\n jmp 1b\n"
        "2: mov %[exit], %%eax\n mov $126, %%edi\n syscall\n"
        :
        : [prctl] "i"(__NR_prctl), [pdeath] "i"(PR_SET_PDEATHSIG), [munmap] "i"(__NR_munmap),
          [base] "i"(STUB_BASE), [top] "i"(STUB_TOP), [nnp] "i"(PR_SET_NO_NEW_PRIVS),
          [seccomp] "i"(__NR_seccomp), [mode] "i"(SECCOMP_SET_MODE_FILTER), [prog] "m"(prog),
          [exit] "i"(__NR_exit_group));
}
