/* KVM platform hot path and guest page tables (platforms/kvm).
 *
 * In a nutshell: one VM per Platform. Guest-physical memory is the
 * MemoryFile at GPA 0 (registered lazily in 1 GiB memory slots) plus a
 * private region at KVM_PRIV_GPA holding the ring0 stub (../ring0.h), IDT,
 * GDT, the per-vCPU TSS/stacks and every page-table page. The private
 * region is mapped supervisor-only at KVM_KBASE in every address space.
 *
 * Page tables are written by the Sentry from the host, with one rule that
 * the shadow MMU of kvm_pvm forces (measured: a host write to a *present*
 * guest PTE stays invisible even across CR3 reload, INVLPG and
 * KVM_SET_SREGS): entries go from not-present to present by host writes;
 * any change to a present entry is a store done by the guest's ring0 stub
 * (R0_BATCH, on the calling thread's maintenance vCPU), which KVM
 * page-tracks. A leaf table with many such changes is replaced by a fresh
 * copy (one tracked store in its parent). Page-table pages that were ever
 * linked are only reused after all shadow pages are dropped (deleting a
 * dummy memory slot zaps them).
 *
 * Locking: vm->lock guards the page pool, memory slots and every page-table
 * edit (map/unmap/release). The switch hot path takes no lock: it reads an
 * address space's root and generation (atomics). A vCPU is driven by one
 * thread at a time; sentry_kvm_interrupt may be called from any thread.
 */
#ifndef SENTRY_KVM_H
#define SENTRY_KVM_H
#include <stdint.h>
#include <sys/user.h>
#include "../ring0.h"

#define SENTRY_KVM_SYSCALL 0
#define SENTRY_KVM_FAULT 1
#define SENTRY_KVM_INTERRUPT 2
#define SENTRY_KVM_ERROR (-1)

struct sentry_kvm_vm;
struct sentry_kvm_vcpu;
struct sentry_kvm_as;

/* What stopped the guest, for SENTRY_KVM_FAULT (vector, error code, CR2
 * for #PF) and SENTRY_KVM_ERROR (message). */
struct sentry_kvm_exit {
    int vector;
    unsigned long error_code;
    unsigned long cr2;
    char message[256];
};

/* A new VM over the MemoryFile mapping [memfile_base, +capacity) with the
 * ring0 stub image (R0_SIZE bytes). NULL on failure, reason in err. */
struct sentry_kvm_vm *sentry_kvm_vm_new(unsigned long memfile_base, unsigned long memfile_capacity,
                                        const unsigned char *ring0, int ring0_len, char *err, int errlen);
/* Frees everything: vCPUs, address spaces, fds, mappings. */
void sentry_kvm_vm_free(struct sentry_kvm_vm *vm);
/* Number of live vCPUs and address spaces (for leak checks). */
int sentry_kvm_vm_counts(struct sentry_kvm_vm *vm, int *vcpus, int *spaces);
/* Dropping all shadow pages so far (page-pool recycling) happened this
 * many times. */
int sentry_kvm_vm_zaps(struct sentry_kvm_vm *vm);
/* After page-table stores, make vCPUs running in that address space exit
 * (needed where the guest TLB outlives exits: VMX/SVM). Off by default. */
void sentry_kvm_vm_set_shootdown(struct sentry_kvm_vm *vm, int on);

struct sentry_kvm_vcpu *sentry_kvm_vcpu_new(struct sentry_kvm_vm *vm, char *err, int errlen);
void sentry_kvm_vcpu_free(struct sentry_kvm_vm *vm, struct sentry_kvm_vcpu *v);

struct sentry_kvm_as *sentry_kvm_as_new(struct sentry_kvm_vm *vm, char *err, int errlen);
/* Map MemoryFile[offset, +length) at addr with PROT_* prot (PROT_NONE =
 * unmap); unmap when offset == -1. maint: a vCPU owned by the calling
 * thread, for the tracked stores. 0, or -1 with the reason in err. */
int sentry_kvm_as_set(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as, struct sentry_kvm_vcpu *maint,
                      unsigned long addr, long offset, unsigned long length, int prot, char *err, int errlen);
/* Frees the address space's page tables; no vCPU may run in it again. */
void sentry_kvm_as_free(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as);
/* The leaf entry mapping addr (0 if none), for tests. */
unsigned long sentry_kvm_as_lookup(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as, unsigned long addr);

/* Run the guest in `as` from regs until a system call, fault or interrupt;
 * returns SENTRY_KVM_SYSCALL/FAULT/INTERRUPT (regs updated) or
 * SENTRY_KVM_ERROR (ex->message). */
int sentry_kvm_switch(struct sentry_kvm_vcpu *v, struct sentry_kvm_as *as, struct user_regs_struct *regs,
                      struct sentry_kvm_exit *ex);
/* Make the vCPU's current or next switch return soon. Any thread. */
void sentry_kvm_interrupt(struct sentry_kvm_vcpu *v);
/* The guest XSAVE area (standard format) in/out; 0 or -errno. */
int sentry_kvm_get_xsave(struct sentry_kvm_vcpu *v, unsigned char *area, int len);
int sentry_kvm_set_xsave(struct sentry_kvm_vcpu *v, const unsigned char *area, int len);
#endif
