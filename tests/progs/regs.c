/* Register round trip: set every general register and all 16 xmm registers
 * to known patterns, make a system call, and check that nothing but rax,
 * rcx and r11 changed (the syscall ABI). Prints "regs ok" or what changed. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* probe(before=rdi, after=rsi, xin=rdx, xout=rcx) */
void probe(const uint64_t *before, uint64_t *after, const unsigned char *xin, unsigned char *xout);
__asm__(
    ".globl probe\n probe:\n"
    "push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
    "push %rsi\n push %rcx\n"
    ".irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu \\n*16(%rdx), %xmm\\n\n .endr\n"
    "mov %rdi, %rax\n"
    "mov 0(%rax), %rbx\n mov 8(%rax), %rbp\n mov 16(%rax), %r12\n mov 24(%rax), %r13\n"
    "mov 32(%rax), %r14\n mov 40(%rax), %r15\n mov 48(%rax), %rdi\n mov 56(%rax), %rsi\n"
    "mov 64(%rax), %rdx\n mov 72(%rax), %r10\n mov 80(%rax), %r8\n mov 88(%rax), %r9\n"
    "mov $39, %eax\n syscall\n" /* getpid ignores its arguments */
    "mov 8(%rsp), %rax\n"
    "mov %rbx, 0(%rax)\n mov %rbp, 8(%rax)\n mov %r12, 16(%rax)\n mov %r13, 24(%rax)\n"
    "mov %r14, 32(%rax)\n mov %r15, 40(%rax)\n mov %rdi, 48(%rax)\n mov %rsi, 56(%rax)\n"
    "mov %rdx, 64(%rax)\n mov %r10, 72(%rax)\n mov %r8, 80(%rax)\n mov %r9, 88(%rax)\n"
    "pop %rcx\n"
    ".irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu %xmm\\n, \\n*16(%rcx)\n .endr\n"
    "pop %rsi\n pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n");

int main(void) {
    uint64_t before[12], after[12];
    unsigned char xin[256], xout[256];
    for (int i = 0; i < 12; i++) before[i] = 0x1111111111111111ULL * (i + 1) ^ 0xa5a5a5a5ULL;
    for (int i = 0; i < 256; i++) xin[i] = (unsigned char)(i * 7 + 3);
    probe(before, after, xin, xout);
    const char *names[] = {"rbx", "rbp", "r12", "r13", "r14", "r15", "rdi", "rsi", "rdx", "r10", "r8", "r9"};
    int bad = 0;
    for (int i = 0; i < 12; i++)
        if (after[i] != before[i]) {
            printf("%s changed: %#lx -> %#lx\n", names[i], (unsigned long)before[i], (unsigned long)after[i]);
            bad = 1;
        }
    if (memcmp(xin, xout, sizeof xin)) { printf("xmm registers changed\n"); bad = 1; }
    printf(bad ? "regs CHANGED\n" : "regs ok\n");
    return bad;
}
