/* The KVM ring0 stub: one page of position-independent code mapped
 * supervisor-only at the same address in every guest address space.
 * Layout and protocol: ring0.h. Each entry ends in `ud2` so that running
 * past an exit is a loud fault, never a silent fall-through. */
#include "ring0.h"
    .code64
    .text
    .globl ring0_start
ring0_start:
    .irp v,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .org R0_VECTORS + \v * R0_VEC_STRIDE
    outb %al, $(R0_PORT_VECTOR + \v)
    ud2
    .endr

    .org R0_IRETQ
    iretq

    .org R0_FLUSH_IRETQ
    push %rax
    mov %cr3, %rax
    mov %rax, %cr3
    pop %rax
    iretq

    .org R0_BATCH
1:  mov (%rsi), %rdi
    mov 8(%rsi), %rax
    mov %rax, (%rdi)
    add $16, %rsi
    dec %rdx
    jnz 1b
    outb %al, $R0_PORT_DONE
    ud2

    .org R0_LSTAR
    outb %al, $R0_PORT_SYSCALL
    ud2

    .org R0_SIZE
