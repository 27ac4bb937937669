/* Layout of the KVM ring0 stub page (stub/ring0.S, assembled into
 * stub/bin/ring0.bin), shared with stub/native/kvm.c.
 *
 * Every entry is a few instructions: under kvm_pvm each ring0 instruction
 * is emulated (~0.85 us), so the stub only turns events into port writes
 * and lets the VMM (the Sentry) do the rest from outside the guest:
 *
 *   R0_VECTORS + 8*v   exception vector v: `out R0_PORT_VECTOR+v`. The VMM
 *                      reads the frame at RSP (error code first for the
 *                      vectors that push one).
 *   R0_LSTAR           LSTAR. On VMX/SVM hosts `syscall` arrives here in
 *                      ring0: `out R0_PORT_SYSCALL`. On kvm_pvm the CPL3
 *                      jump here faults (supervisor page): #PF with frame
 *                      RIP == LSTAR, which the VMM reads as a system call.
 *   R0_IRETQ           enter user mode: the VMM writes an iret frame on the
 *                      vCPU's ring0 stack and points RIP here.
 *   R0_FLUSH_IRETQ     the same after reloading CR3 (drops stale TLB entries).
 *   R0_BATCH           page-table edits KVM must see: RSI = array of
 *                      (address, value) pairs, RDX = count (>= 1); stores
 *                      them one by one, then `out R0_PORT_DONE`.
 */
#ifndef SENTRY_RING0_H
#define SENTRY_RING0_H
#define R0_VECTORS 0x000
#define R0_VEC_STRIDE 8
#define R0_NVECTORS 32
#define R0_IRETQ 0x100
#define R0_FLUSH_IRETQ 0x110
#define R0_BATCH 0x200
#define R0_LSTAR 0x800
#define R0_SIZE 0x1000
#define R0_PORT_SYSCALL 0x7e
#define R0_PORT_DONE 0x7f
#define R0_PORT_VECTOR 0x80
#endif
