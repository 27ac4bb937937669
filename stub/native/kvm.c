/* KVM platform: VM, vCPUs, guest page tables, the switch hot path. See kvm.h. */
#define _GNU_SOURCE
#include "kvm.h"
#include "arch.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- guest-physical and kernel-virtual layout ---------------------------- */
#define PAGE 4096ul
#define HUGE (2ul << 20)
#define KVM_PRIV_GPA (1ul << 40)          /* private region; the MemoryFile is below */
#define KVM_KBASE 0xffffff8000000000ul    /* PML4 slot 511: the private region, supervisor */
#define PRIV_SIZE (256ul << 20)
#define ZAP_GPA (KVM_PRIV_GPA + 2 * PRIV_SIZE)
#define OFF_STUB 0x0000
#define OFF_IDT 0x1000
#define OFF_GDT 0x2000
#define OFF_KPDPT 0x3000
#define OFF_KPD 0x4000
#define OFF_KROOT 0x5000                  /* kernel-only root, for maintenance vCPUs */
#define OFF_VCPUS 0x10000
#define VCPU_AREA 0x3000                  /* TSS page, batch page, ring0 stack page */
#define MAX_VCPUS 1024                    /* KVM_CAP_MAX_VCPUS here */
#define OFF_POOL 0x1000000                 /* page-table pages from here on */
#define SLOT_PRIV 0
#define SLOT_ZAP 1
#define SLOT_MEMFILE 2                    /* + i: MemoryFile GiB i */
#define CHUNK (1ul << 30)
#define USER_TOP (1ul << 47)

#define PTE_P 0x1ul
#define PTE_RW 0x2ul
#define PTE_US 0x4ul
#define PTE_A 0x20ul
#define PTE_D 0x40ul
#define PTE_PS 0x80ul
#define PTE_NX (1ul << 63)
#define PTE_ADDR 0x000ffffffffff000ul
#define PTE_ADDR_2M 0x000fffffffe00000ul
#define PTE_UPPER (PTE_P | PTE_RW | PTE_US | PTE_A)
#define NO_GPA (~0ul)
#define COW_MIN 8                         /* more tracked stores than this in one leaf table: copy it */
#define BATCH_MAX (PAGE / 16)

#define SEL_KCS 0x10
#define SEL_KDS 0x18
#define SEL_UDS 0x2b
#define SEL_UCS 0x33
#define SEL_TSS 0x40
#define USER_FLAGS 0x250dd5ul             /* CF PF AF ZF SF TF DF OF RF AC ID */
#define ERRCODE_VECTORS 0x60227d00u       /* 8 10 11 12 13 14 17 21 29 30 */
#define PF_USER_FETCH 0x14                /* #PF error code: user | instruction fetch */

#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define SFMASK 0x47700ul                  /* TF IF DF IOPL NT AC */

_Static_assert(BATCH_MAX * 16 == PAGE, "batch fits one page");
_Static_assert(OFF_VCPUS + MAX_VCPUS * VCPU_AREA <= OFF_POOL, "vCPU areas below the pool");
_Static_assert(R0_LSTAR < R0_SIZE && R0_BATCH < R0_LSTAR, "stub layout");

struct pagelist {
    uint32_t *v;
    size_t n, cap;
};

struct sentry_kvm_as {
    uint64_t root;     /* GPA of the PML4; immutable */
    uint64_t id;       /* unique per VM; immutable */
    uint64_t gen;      /* bumped after tracked stores (atomic) */
};

#define BROKEN 2 /* vcpu->live: creation failed half way */

struct sentry_kvm_vcpu {
    int fd, index, live; /* live: 1 in use, 0 pooled, BROKEN */
    struct kvm_run *run;
    struct kvm_sregs sregs; /* what KVM holds, unless sregs_stale */
    int sregs_stale;
    uint64_t last_as_id, last_gen;
    uint64_t *stack_top_host;
    uint64_t stack_top_kva;
    uint8_t *batch_host;
    uint64_t batch_kva;
    pid_t tid;          /* the thread that drives it (for interrupt) */
    uint64_t in_as;     /* id of the address space it runs in during a switch, else 0 (atomic) */
    uint64_t switches;  /* completed switches (atomic) */
};

struct sentry_kvm_vm {
    pthread_mutex_t lock;
    int kvm, fd, run_size;
    uint8_t *priv, *zap_page;
    unsigned long mf_base, mf_cap, mf_registered;
    struct kvm_cpuid2 *cpuid;
    uint64_t xcr0;
    uint32_t pool_next;
    struct pagelist clean, retired, pending;
    struct { uint64_t kva, val; } batch[BATCH_MAX];
    int nbatch;
    struct sentry_kvm_vcpu *vcpus[MAX_VCPUS];
    int nspaces, zaps;
    int shootdown;      /* kick vCPUs running in an address space whose entries changed */
    uint64_t next_as_id;
};

static int fail(char *err, int errlen, const char *fmt, ...) {
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (e && n >= 0 && n < errlen) snprintf(err + n, errlen - n, ": %s", strerror(e));
    return -1;
}

static inline uint64_t *host_of(struct sentry_kvm_vm *vm, uint64_t gpa) {
    return (uint64_t *)(vm->priv + (gpa - KVM_PRIV_GPA));
}
static inline uint64_t kva_of(struct sentry_kvm_vm *vm, const void *p) {
    return KVM_KBASE + (uint64_t)((const uint8_t *)p - vm->priv);
}
static inline uint64_t gpa_of(struct sentry_kvm_vm *vm, const void *p) {
    return KVM_PRIV_GPA + (uint64_t)((const uint8_t *)p - vm->priv);
}

static int push(struct pagelist *l, uint64_t gpa) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        uint32_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = (uint32_t)((gpa - KVM_PRIV_GPA) / PAGE);
    return 0;
}

/* ---- memory slots and the page pool ------------------------------------- */

static int set_slot(struct sentry_kvm_vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host) {
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = (uint64_t)host};
    return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r);
}

/* Register the MemoryFile up to `end` bytes (whole GiB slots). */
static int cover_memfile(struct sentry_kvm_vm *vm, uint64_t end, char *err, int errlen) {
    while (vm->mf_registered < end) {
        uint64_t off = vm->mf_registered, size = vm->mf_cap - off < CHUNK ? vm->mf_cap - off : CHUNK;
        if (set_slot(vm, SLOT_MEMFILE + off / CHUNK, off, size, (void *)(vm->mf_base + off)))
            return fail(err, errlen, "KVM_SET_USER_MEMORY_REGION(MemoryFile at %#lx)", off);
        vm->mf_registered = off + size;
    }
    return 0;
}

/* Drop every shadow page KVM holds (deleting a memory slot zaps them all),
 * after which retired page-table pages may be reused. */
static int zap_all(struct sentry_kvm_vm *vm) {
    if (set_slot(vm, SLOT_ZAP, ZAP_GPA, PAGE, vm->zap_page) || set_slot(vm, SLOT_ZAP, ZAP_GPA, 0, vm->zap_page))
        return -1;
    vm->zaps++;
    struct pagelist t = vm->clean; /* empty: zap_all runs only when nothing is clean */
    vm->clean = vm->retired;
    vm->retired = t;
    return 0;
}

/* A zeroed page-table page no shadow page describes; NULL if none left. */
static uint64_t *page_alloc(struct sentry_kvm_vm *vm, uint64_t *gpa) {
    for (;;) {
        if (vm->clean.n) {
            *gpa = KVM_PRIV_GPA + (uint64_t)vm->clean.v[--vm->clean.n] * PAGE;
            uint64_t *p = host_of(vm, *gpa);
            memset(p, 0, PAGE);
            return p;
        }
        if ((uint64_t)vm->pool_next * PAGE < PRIV_SIZE) {
            *gpa = KVM_PRIV_GPA + (uint64_t)vm->pool_next++ * PAGE;
            return host_of(vm, *gpa);
        }
        if (!vm->retired.n || zap_all(vm)) {
            errno = ENOMEM;
            return NULL;
        }
    }
}

/* ---- tracked stores ------------------------------------------------------ */

struct edit {
    struct sentry_kvm_vm *vm;
    struct sentry_kvm_as *as;
    struct sentry_kvm_vcpu *maint;
    uint64_t flags; /* leaf flags of the mapping being made */
    char *err;
    int errlen;
};

static const char *exit_name(unsigned r);
void sentry_kvm_interrupt(struct sentry_kvm_vcpu *v);

/* Make every vCPU running in `as` leave the guest, so that none keeps a
 * translation the last stores removed (on VMX/SVM the guest TLB survives
 * exits; under kvm_pvm KVM's own remote flush already did this). They
 * return INTERRUPT and re-enter through R0_FLUSH_IRETQ. Caller holds
 * vm->lock and has bumped as->gen. */
static void shoot_down(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as) {
    for (int i = 0; i < MAX_VCPUS; i++) {
        struct sentry_kvm_vcpu *v = vm->vcpus[i];
        if (!v || v->live != 1) continue;
        uint64_t seen = __atomic_load_n(&v->switches, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&v->in_as, __ATOMIC_SEQ_CST) != as->id) continue;
        sentry_kvm_interrupt(v); /* immediate_exit stays set until that switch sees it */
        while (__atomic_load_n(&v->in_as, __ATOMIC_SEQ_CST) == as->id &&
               __atomic_load_n(&v->switches, __ATOMIC_SEQ_CST) == seen)
            sched_yield();
    }
}

static int batch_flush(struct edit *e) {
    struct sentry_kvm_vm *vm = e->vm;
    struct sentry_kvm_vcpu *m = e->maint;
    if (!vm->nbatch) return 0;
    if (m->sregs_stale || m->sregs.cr3 != KVM_PRIV_GPA + OFF_KROOT) { /* a pooled vCPU's last use */
        m->sregs.cr3 = KVM_PRIV_GPA + OFF_KROOT;
        if (ioctl(m->fd, KVM_SET_SREGS, &m->sregs)) return fail(e->err, e->errlen, "KVM_SET_SREGS");
        m->sregs_stale = 0;
    }
    memcpy(m->batch_host, vm->batch, vm->nbatch * 16ul);
    struct kvm_regs *r = &m->run->s.regs.regs;
    memset(r, 0, sizeof *r);
    r->rsi = m->batch_kva;
    r->rdx = vm->nbatch;
    r->rip = KVM_KBASE + OFF_STUB + R0_BATCH;
    r->rsp = m->stack_top_kva;
    r->rflags = 2;
    m->run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
    for (;;) {
        if (ioctl(m->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR) continue;
            return fail(e->err, e->errlen, "KVM_RUN (page-table stores)");
        }
        break;
    }
    if (m->run->exit_reason != KVM_EXIT_IO || m->run->io.port != R0_PORT_DONE) {
        errno = 0;
        return fail(e->err, e->errlen, "page-table stores: unexpected exit %s port %#x rip %#llx",
                    exit_name(m->run->exit_reason), m->run->io.port, (unsigned long long)r->rip);
    }
    vm->nbatch = 0;
    __atomic_add_fetch(&e->as->gen, 1, __ATOMIC_SEQ_CST);
    if (vm->shootdown) shoot_down(vm, e->as);
    for (size_t i = 0; i < vm->pending.n; i++) {
        if (push(&vm->retired, KVM_PRIV_GPA + (uint64_t)vm->pending.v[i] * PAGE)) {
            errno = ENOMEM;
            return fail(e->err, e->errlen, "page-table pool");
        }
    }
    vm->pending.n = 0;
    return 0;
}

/* *entry = val, done by the guest so that KVM's shadow MMU sees it. */
static int tracked(struct edit *e, uint64_t *entry, uint64_t val) {
    struct sentry_kvm_vm *vm = e->vm;
    if (vm->nbatch == BATCH_MAX && batch_flush(e)) return -1;
    vm->batch[vm->nbatch].kva = kva_of(vm, entry);
    vm->batch[vm->nbatch].val = val;
    vm->nbatch++;
    return 0;
}

/* ---- page-table edits ---------------------------------------------------- */

static int oom(struct edit *e) {
    errno = ENOMEM;
    return fail(e->err, e->errlen, "page-table pool exhausted");
}

static uint64_t leaf(uint64_t gpa, uint64_t va0, uint64_t a, uint64_t flags) {
    return gpa == NO_GPA ? 0 : (gpa + (a - va0)) | flags;
}

/* The child table of a non-leaf entry, created if absent (unless !create). */
static uint64_t *child(struct edit *e, uint64_t *entry, int create, int *error) {
    if (*entry & PTE_P) return host_of(e->vm, *entry & PTE_ADDR);
    if (!create) return NULL;
    uint64_t gpa;
    uint64_t *t = page_alloc(e->vm, &gpa);
    if (!t) {
        *error = oom(e);
        return NULL;
    }
    *entry = gpa | PTE_UPPER; /* not present -> present: a host store is seen */
    return t;
}

/* Set [va, cend) (within one 2 MiB region, PD entry *pde) to gpa.. or unmap. */
static int set_chunk(struct edit *e, uint64_t *pde, uint64_t va, uint64_t cend, uint64_t gpa) {
    struct sentry_kvm_vm *vm = e->vm;
    int unmap = gpa == NO_GPA;
    uint64_t old = *pde, ptgpa;
    if (!(va & (HUGE - 1)) && cend - va == HUGE && (unmap || !(gpa & (HUGE - 1)))) {
        uint64_t nv = unmap ? 0 : gpa | e->flags | PTE_PS;
        if (old == nv) return 0;
        if (!(old & PTE_P)) {
            *pde = nv;
            return 0;
        }
        if (!(old & PTE_PS) && push(&vm->pending, old & PTE_ADDR)) return oom(e);
        return tracked(e, pde, nv);
    }
    if (!(old & PTE_P)) {
        if (unmap) return 0;
        uint64_t *pt = page_alloc(vm, &ptgpa);
        if (!pt) return oom(e);
        for (uint64_t a = va; a < cend; a += PAGE) pt[(a >> 12) & 511] = leaf(gpa, va, a, e->flags);
        *pde = ptgpa | PTE_UPPER;
        return 0;
    }
    if (old & PTE_PS) { /* split a 2 MiB page */
        uint64_t *pt = page_alloc(vm, &ptgpa);
        if (!pt) return oom(e);
        uint64_t lflags = old & (PTE_NX | 0x7f);
        for (int i = 0; i < 512; i++) pt[i] = ((old & PTE_ADDR_2M) + i * PAGE) | lflags;
        for (uint64_t a = va; a < cend; a += PAGE) pt[(a >> 12) & 511] = leaf(gpa, va, a, e->flags);
        return tracked(e, pde, ptgpa | PTE_UPPER);
    }
    uint64_t *pt = host_of(vm, old & PTE_ADDR);
    int changes = 0;
    for (uint64_t a = va; a < cend; a += PAGE) {
        uint64_t cur = pt[(a >> 12) & 511];
        changes += (cur & PTE_P) && cur != leaf(gpa, va, a, e->flags);
    }
    if (changes > COW_MIN) { /* one tracked store instead of many */
        uint64_t *npt = page_alloc(vm, &ptgpa);
        if (!npt) return oom(e);
        memcpy(npt, pt, PAGE);
        int any = 0;
        for (uint64_t a = va; a < cend; a += PAGE) npt[(a >> 12) & 511] = leaf(gpa, va, a, e->flags);
        for (int i = 0; i < 512; i++) any |= npt[i] != 0;
        if (push(&vm->pending, old & PTE_ADDR)) return oom(e);
        if (!any) {
            if (push(&vm->clean, ptgpa)) return oom(e);
            return tracked(e, pde, 0);
        }
        return tracked(e, pde, ptgpa | PTE_UPPER);
    }
    for (uint64_t a = va; a < cend; a += PAGE) {
        uint64_t *p = &pt[(a >> 12) & 511], nv = leaf(gpa, va, a, e->flags);
        if (*p == nv) continue;
        if (!(*p & PTE_P))
            *p = nv;
        else if (tracked(e, p, nv))
            return -1;
    }
    return 0;
}

/* Unlink the page directory under *e3 and retire it with its tables. */
static int drop_pd(struct edit *e, uint64_t *e3) {
    uint64_t *pd = host_of(e->vm, *e3 & PTE_ADDR);
    for (int i = 0; i < 512; i++)
        if ((pd[i] & PTE_P) && !(pd[i] & PTE_PS) && push(&e->vm->pending, pd[i] & PTE_ADDR)) return oom(e);
    if (push(&e->vm->pending, *e3 & PTE_ADDR)) return oom(e);
    return tracked(e, e3, 0);
}

static uint64_t leaf_flags(int prot) {
    uint64_t f = PTE_P | PTE_US | PTE_A;
    if (prot & 2) f |= PTE_RW | PTE_D;
    if (!(prot & 4)) f |= PTE_NX;
    return f;
}

int sentry_kvm_as_set(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as, struct sentry_kvm_vcpu *maint,
                      unsigned long addr, long offset, unsigned long length, int prot, char *err, int errlen) {
    errno = 0;
    if ((addr | length) & (PAGE - 1) || !length || addr >= USER_TOP || length > USER_TOP - addr)
        return fail(err, errlen, "bad range %#lx+%#lx", addr, length);
    if (offset >= 0 && ((offset & (PAGE - 1)) || (unsigned long)offset > vm->mf_cap ||
                        length > vm->mf_cap - (unsigned long)offset))
        return fail(err, errlen, "bad MemoryFile range %#lx+%#lx", offset, length);
    uint64_t gpa = offset < 0 || !(prot & 7) ? NO_GPA : (uint64_t)offset;
    struct edit e = {vm, as, maint, leaf_flags(prot), err, errlen};
    pthread_mutex_lock(&vm->lock);
    int rc = gpa == NO_GPA ? 0 : cover_memfile(vm, offset + length, err, errlen);
    uint64_t end = addr + length, *root = host_of(vm, as->root);
    for (uint64_t va = addr; !rc && va < end;) {
        uint64_t *e4 = &root[(va >> 39) & 511], *pdpt, *pd;
        if (!(pdpt = child(&e, e4, gpa != NO_GPA, &rc))) {
            va = (va | ((1ul << 39) - 1)) + 1;
            continue;
        }
        uint64_t *e3 = &pdpt[(va >> 30) & 511];
        if (!(pd = child(&e, e3, gpa != NO_GPA, &rc))) {
            va = (va | ((1ul << 30) - 1)) + 1;
            continue;
        }
        if (gpa == NO_GPA && !(va & ((1ul << 30) - 1)) && end - va >= (1ul << 30)) {
            rc = drop_pd(&e, e3); /* a whole GiB: one tracked store */
            va += 1ul << 30;
            continue;
        }
        uint64_t cend = (va | (HUGE - 1)) + 1;
        if (cend > end) cend = end;
        rc = set_chunk(&e, &pd[(va >> 21) & 511], va, cend, gpa == NO_GPA ? NO_GPA : gpa + (va - addr));
        va = cend;
    }
    int frc = batch_flush(&e); /* even after an error: keep the tables consistent */
    pthread_mutex_unlock(&vm->lock);
    return rc ? rc : frc;
}

unsigned long sentry_kvm_as_lookup(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as, unsigned long addr) {
    pthread_mutex_lock(&vm->lock);
    uint64_t ent = host_of(vm, as->root)[(addr >> 39) & 511];
    for (int shift = 30; shift >= 12 && (ent & PTE_P); shift -= 9) {
        ent = host_of(vm, ent & PTE_ADDR)[(addr >> shift) & 511];
        if (shift == 21 && (ent & PTE_PS)) break;
    }
    pthread_mutex_unlock(&vm->lock);
    return ent & PTE_P ? ent : 0;
}

struct sentry_kvm_as *sentry_kvm_as_new(struct sentry_kvm_vm *vm, char *err, int errlen) {
    struct sentry_kvm_as *as = calloc(1, sizeof *as);
    if (!as) return fail(err, errlen, "calloc"), NULL;
    pthread_mutex_lock(&vm->lock);
    uint64_t *root = page_alloc(vm, &as->root);
    if (root) {
        root[511] = (KVM_PRIV_GPA + OFF_KPDPT) | PTE_P | PTE_RW | PTE_A;
        as->id = ++vm->next_as_id;
        vm->nspaces++;
    }
    pthread_mutex_unlock(&vm->lock);
    if (!root) {
        free(as);
        errno = ENOMEM;
        return fail(err, errlen, "page-table pool exhausted"), NULL;
    }
    return as;
}

void sentry_kvm_as_free(struct sentry_kvm_vm *vm, struct sentry_kvm_as *as) {
    pthread_mutex_lock(&vm->lock);
    uint64_t *root = host_of(vm, as->root);
    for (int i = 0; i < 256; i++) {
        if (!(root[i] & PTE_P)) continue;
        uint64_t *pdpt = host_of(vm, root[i] & PTE_ADDR);
        for (int j = 0; j < 512; j++) {
            if (!(pdpt[j] & PTE_P)) continue;
            uint64_t *pd = host_of(vm, pdpt[j] & PTE_ADDR);
            for (int k = 0; k < 512; k++)
                if ((pd[k] & PTE_P) && !(pd[k] & PTE_PS)) push(&vm->retired, pd[k] & PTE_ADDR);
            push(&vm->retired, pdpt[j] & PTE_ADDR);
        }
        push(&vm->retired, root[i] & PTE_ADDR);
    }
    push(&vm->retired, as->root);
    vm->nspaces--;
    pthread_mutex_unlock(&vm->lock);
    free(as);
}

/* ---- VM ------------------------------------------------------------------ */

static void set_gate(uint64_t *idt, int v, uint64_t handler, int dpl) {
    idt[2 * v] = (handler & 0xffff) | ((uint64_t)SEL_KCS << 16) | ((0x8eul | ((uint64_t)dpl << 5)) << 40) |
                 ((handler >> 16 & 0xffff) << 48);
    idt[2 * v + 1] = handler >> 32;
}

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

struct sentry_kvm_vm *sentry_kvm_vm_new(unsigned long memfile_base, unsigned long memfile_capacity,
                                        const unsigned char *ring0, int ring0_len, char *err, int errlen) {
    errno = 0;
    if (ring0_len != R0_SIZE) return fail(err, errlen, "ring0 stub is %d bytes, not %d", ring0_len, R0_SIZE), NULL;
    if (memfile_capacity > KVM_PRIV_GPA || (memfile_base & (PAGE - 1)))
        return fail(err, errlen, "MemoryFile capacity %#lx above %#lx", memfile_capacity, KVM_PRIV_GPA), NULL;
    struct sentry_kvm_vm *vm = calloc(1, sizeof *vm);
    if (!vm) return fail(err, errlen, "calloc"), NULL;
    pthread_mutex_init(&vm->lock, NULL);
    vm->kvm = vm->fd = -1;
    vm->priv = vm->zap_page = MAP_FAILED;
    vm->mf_base = memfile_base, vm->mf_cap = memfile_capacity;
    vm->pool_next = OFF_POOL / PAGE;
    if ((vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) goto fail_open;
    if ((vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0)) < 0) goto fail_vm;
    fcntl(vm->fd, F_SETFD, FD_CLOEXEC);
    vm->run_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    vm->priv = mmap(NULL, PRIV_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    vm->zap_page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (vm->priv == MAP_FAILED || vm->zap_page == MAP_FAILED) goto fail_mmap;
    if (set_slot(vm, SLOT_PRIV, KVM_PRIV_GPA, PRIV_SIZE, vm->priv)) goto fail_slot;

    memcpy(vm->priv + OFF_STUB, ring0, R0_SIZE);
    uint64_t *idt = (uint64_t *)(vm->priv + OFF_IDT);
    for (int v = 0; v < R0_NVECTORS; v++)
        set_gate(idt, v, KVM_KBASE + OFF_STUB + R0_VECTORS + v * R0_VEC_STRIDE, v == 3 || v == 4 ? 3 : 0);
    uint64_t *gdt = (uint64_t *)(vm->priv + OFF_GDT);
    gdt[1] = 0x00cf9b000000ffffull; /* 0x08 kernel cs32 */
    gdt[2] = 0x00af9b000000ffffull; /* 0x10 kernel cs64 */
    gdt[3] = 0x00cf93000000ffffull; /* 0x18 kernel ds */
    /* 0x23 (user cs32) stays empty: no compat mode, a far jump there is #GP */
    gdt[5] = 0x00cff3000000ffffull; /* 0x2b user ds */
    gdt[6] = 0x00affb000000ffffull; /* 0x33 user cs64 */
    uint64_t tss0 = KVM_KBASE + OFF_VCPUS;  /* TR is loaded per vCPU; this is only a valid descriptor */
    gdt[8] = 0x67 | ((tss0 & 0xffffff) << 16) | (0x89ull << 40) | ((tss0 >> 24 & 0xff) << 56);
    gdt[9] = tss0 >> 32;
    uint64_t *kpdpt = (uint64_t *)(vm->priv + OFF_KPDPT), *kpd = (uint64_t *)(vm->priv + OFF_KPD);
    kpdpt[0] = (KVM_PRIV_GPA + OFF_KPD) | PTE_P | PTE_RW | PTE_A;
    for (uint64_t i = 0; i < PRIV_SIZE / HUGE; i++)
        kpd[i] = (KVM_PRIV_GPA + i * HUGE) | PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS;
    ((uint64_t *)(vm->priv + OFF_KROOT))[511] = (KVM_PRIV_GPA + OFF_KPDPT) | PTE_P | PTE_RW | PTE_A;

    for (int n = 128;; n *= 2) {
        vm->cpuid = calloc(1, sizeof *vm->cpuid + n * sizeof(struct kvm_cpuid_entry2));
        if (!vm->cpuid) goto fail_cpuid;
        vm->cpuid->nent = n;
        if (!ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, vm->cpuid)) break;
        free(vm->cpuid);
        vm->cpuid = NULL;
        if (errno != E2BIG || n > 4096) goto fail_cpuid;
    }
    uint64_t supported = 0;
    int xsave = 0;
    for (uint32_t i = 0; i < vm->cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *c = &vm->cpuid->entries[i];
        if (c->function == 1) xsave = (c->ecx >> 26) & 1;
        if (c->function == 0xd && c->index == 0) supported = c->eax | (uint64_t)c->edx << 32;
    }
    vm->xcr0 = xsave ? xgetbv0() & supported : 0;
    return vm;

fail_open:
    fail(err, errlen, "open /dev/kvm");
    goto out;
fail_vm:
    fail(err, errlen, "KVM_CREATE_VM");
    goto out;
fail_mmap:
    fail(err, errlen, "mmap of the private region");
    goto out;
fail_slot:
    fail(err, errlen, "KVM_SET_USER_MEMORY_REGION(private region)");
    goto out;
fail_cpuid:
    fail(err, errlen, "KVM_GET_SUPPORTED_CPUID");
out:
    sentry_kvm_vm_free(vm);
    return NULL;
}

void sentry_kvm_vm_free(struct sentry_kvm_vm *vm) {
    for (int i = 0; i < MAX_VCPUS; i++) {
        struct sentry_kvm_vcpu *v = vm->vcpus[i];
        if (!v) continue;
        if (v->run != MAP_FAILED) munmap(v->run, vm->run_size);
        close(v->fd);
        free(v);
    }
    if (vm->fd >= 0) close(vm->fd);
    if (vm->kvm >= 0) close(vm->kvm);
    if (vm->priv != MAP_FAILED) munmap(vm->priv, PRIV_SIZE);
    if (vm->zap_page != MAP_FAILED) munmap(vm->zap_page, PAGE);
    free(vm->cpuid);
    free(vm->clean.v);
    free(vm->retired.v);
    free(vm->pending.v);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}

int sentry_kvm_vm_counts(struct sentry_kvm_vm *vm, int *vcpus, int *spaces) {
    pthread_mutex_lock(&vm->lock);
    int n = 0;
    for (int i = 0; i < MAX_VCPUS; i++) n += vm->vcpus[i] && vm->vcpus[i]->live == 1;
    *vcpus = n;
    *spaces = vm->nspaces;
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

int sentry_kvm_vm_zaps(struct sentry_kvm_vm *vm) { return vm->zaps; }

void sentry_kvm_vm_set_shootdown(struct sentry_kvm_vm *vm, int on) {
    pthread_mutex_lock(&vm->lock);
    vm->shootdown = on;
    pthread_mutex_unlock(&vm->lock);
}

/* ---- vCPUs --------------------------------------------------------------- */

static void seg(struct kvm_segment *s, uint16_t sel, int type, int dpl, int l) {
    memset(s, 0, sizeof *s);
    s->selector = sel, s->limit = 0xffffffff, s->type = type, s->present = 1;
    s->dpl = dpl, s->db = !l, s->s = 1, s->l = l, s->g = 1;
}

static int set_msrs(int fd) {
    struct {
        struct kvm_msrs h;
        struct kvm_msr_entry e[4];
    } m = {.h.nmsrs = 4,
           .e = {{.index = MSR_STAR, .data = (0x23ull << 48) | ((uint64_t)SEL_KCS << 32)},
                 {.index = MSR_LSTAR, .data = KVM_KBASE + OFF_STUB + R0_LSTAR},
                 {.index = MSR_CSTAR, .data = KVM_KBASE + OFF_STUB + R0_LSTAR},
                 {.index = MSR_SFMASK, .data = SFMASK}}};
    return ioctl(fd, KVM_SET_MSRS, &m) == 4 ? 0 : -1;
}

/* Power-on FPU state (a pooled vCPU must not leak its last owner's). */
static int reset_fpu(struct sentry_kvm_vcpu *v) {
    unsigned char area[4096];
    int size = sentry_xsave_size();
    if (size > (int)sizeof area) size = sizeof area;
    sentry_fpstate_init(area, size);
    return sentry_kvm_set_xsave(v, area, size);
}

static int vcpu_init(struct sentry_kvm_vm *vm, struct sentry_kvm_vcpu *v, char *err, int errlen) {
    int idx = v->index;
    if ((v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, idx)) < 0) return fail(err, errlen, "KVM_CREATE_VCPU");
    fcntl(v->fd, F_SETFD, FD_CLOEXEC);
    v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) return fail(err, errlen, "mmap kvm_run");
    if (ioctl(v->fd, KVM_SET_CPUID2, vm->cpuid)) return fail(err, errlen, "KVM_SET_CPUID2");
    uint8_t *area = vm->priv + OFF_VCPUS + (uint64_t)idx * VCPU_AREA;
    memset(area, 0, VCPU_AREA);
    v->batch_host = area + PAGE;
    v->batch_kva = kva_of(vm, v->batch_host);
    v->stack_top_host = (uint64_t *)(area + VCPU_AREA);
    v->stack_top_kva = kva_of(vm, v->stack_top_host);
    memcpy(area + 4, &v->stack_top_kva, 8); /* TSS.rsp0 */
    uint16_t iomap = 0x68;                 /* no I/O bitmap: every port faults in ring 3 */
    memcpy(area + 0x66, &iomap, 2);

    struct kvm_sregs *s = &v->sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, s)) return fail(err, errlen, "KVM_GET_SREGS");
    s->cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
    s->cr3 = KVM_PRIV_GPA + OFF_KROOT;
    s->cr4 = 0x20 | 0x200 | 0x400 | (vm->xcr0 ? 0x40000 : 0); /* PAE OSFXSR OSXMMEXCPT OSXSAVE */
    s->efer = 0xd01;                                          /* SCE LME LMA NXE */
    seg(&s->cs, SEL_KCS, 11, 0, 1);
    seg(&s->ss, SEL_KDS, 3, 0, 0);
    seg(&s->ds, 0, 3, 3, 0); /* user data, selector 0: left alone by iretq to ring 3 */
    s->es = s->fs = s->gs = s->ds;
    s->gdt.base = KVM_KBASE + OFF_GDT, s->gdt.limit = 10 * 8 - 1;
    s->idt.base = KVM_KBASE + OFF_IDT, s->idt.limit = R0_NVECTORS * 16 - 1;
    memset(&s->tr, 0, sizeof s->tr);
    s->tr.selector = SEL_TSS, s->tr.base = kva_of(vm, area), s->tr.limit = 0x67, s->tr.type = 11;
    s->tr.present = 1;
    if (ioctl(v->fd, KVM_SET_SREGS, s)) return fail(err, errlen, "KVM_SET_SREGS");
    if (vm->xcr0) {
        struct kvm_xcrs x = {.nr_xcrs = 1, .xcrs = {{.xcr = 0, .value = vm->xcr0}}};
        if (ioctl(v->fd, KVM_SET_XCRS, &x)) return fail(err, errlen, "KVM_SET_XCRS(%#lx)", vm->xcr0);
    }
    if (set_msrs(v->fd)) return fail(err, errlen, "KVM_SET_MSRS(STAR/LSTAR/SFMASK)");
    v->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
    return 0;
}

struct sentry_kvm_vcpu *sentry_kvm_vcpu_new(struct sentry_kvm_vm *vm, char *err, int errlen) {
    errno = 0;
    struct sentry_kvm_vcpu *v = NULL;
    pthread_mutex_lock(&vm->lock);
    int idx = 0;
    for (; idx < MAX_VCPUS && vm->vcpus[idx] && vm->vcpus[idx]->live; idx++) {}
    if (idx == MAX_VCPUS) {
        fail(err, errlen, "more than %d vCPUs", MAX_VCPUS);
    } else if ((v = vm->vcpus[idx])) { /* pooled: reset what its last owner left */
        if (reset_fpu(v)) {
            fail(err, errlen, "KVM_SET_XSAVE");
            v = NULL;
        } else {
            v->live = 1, v->tid = 0, v->sregs_stale = 1, v->last_as_id = 0;
            v->run->immediate_exit = 0;
            v->sregs.cr3 = KVM_PRIV_GPA + OFF_KROOT;
        }
    } else if ((v = calloc(1, sizeof *v))) {
        v->index = idx, v->fd = -1, v->run = MAP_FAILED;
        int rc = vcpu_init(vm, v, err, errlen);
        v->live = rc ? BROKEN : 1;
        if (v->fd >= 0) vm->vcpus[idx] = v; /* KVM keeps the vCPU id: never reuse a broken one */
        else free(v);
        if (rc) v = NULL;
    }
    pthread_mutex_unlock(&vm->lock);
    return v;
}

void sentry_kvm_vcpu_free(struct sentry_kvm_vm *vm, struct sentry_kvm_vcpu *v) {
    pthread_mutex_lock(&vm->lock);
    v->live = 0;
    v->tid = 0;
    pthread_mutex_unlock(&vm->lock);
}

/* ---- the switch hot path ------------------------------------------------- */

static void kick_handler(int sig) { (void)sig; }
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;
static int kick_signal(void) { return SIGRTMIN + 6; }
static void kick_install(void) {
    struct sigaction sa = {.sa_handler = kick_handler, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, NULL);
}

void sentry_kvm_interrupt(struct sentry_kvm_vcpu *v) {
    pthread_once(&kick_once, kick_install);
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pid_t tid = __atomic_load_n(&v->tid, __ATOMIC_SEQ_CST);
    if (tid) syscall(SYS_tgkill, getpid(), tid, kick_signal());
}

static void gprs_out(struct user_regs_struct *u, const struct kvm_regs *r) {
    u->rax = r->rax, u->rbx = r->rbx, u->rcx = r->rcx, u->rdx = r->rdx;
    u->rsi = r->rsi, u->rdi = r->rdi, u->rbp = r->rbp;
    u->r8 = r->r8, u->r9 = r->r9, u->r10 = r->r10, u->r11 = r->r11;
    u->r12 = r->r12, u->r13 = r->r13, u->r14 = r->r14, u->r15 = r->r15;
    u->cs = SEL_UCS, u->ss = SEL_UDS, u->ds = u->es = u->fs = u->gs = 0;
}

static void gprs_in(struct kvm_regs *r, const struct user_regs_struct *u) {
    r->rax = u->rax, r->rbx = u->rbx, r->rcx = u->rcx, r->rdx = u->rdx;
    r->rsi = u->rsi, r->rdi = u->rdi, r->rbp = u->rbp;
    r->r8 = u->r8, r->r9 = u->r9, r->r10 = u->r10, r->r11 = u->r11;
    r->r12 = u->r12, r->r13 = u->r13, r->r14 = u->r14, r->r15 = u->r15;
}

static const char *exit_name(unsigned r) {
    switch (r) {
    case KVM_EXIT_IO: return "IO";
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_MMIO: return "MMIO";
    case KVM_EXIT_SHUTDOWN: return "SHUTDOWN (triple fault)";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case KVM_EXIT_INTR: return "INTR";
    }
    return "other";
}

static int exit_error(struct sentry_kvm_vcpu *v, struct sentry_kvm_exit *ex, const char *what) {
    struct kvm_regs *r = &v->run->s.regs.regs;
    snprintf(ex->message, sizeof ex->message, "%s: exit %s (%u) port %#x rip %#llx rsp %#llx", what,
             exit_name(v->run->exit_reason), v->run->exit_reason, v->run->io.port, (unsigned long long)r->rip,
             (unsigned long long)r->rsp);
    return SENTRY_KVM_ERROR;
}

static int run_guest(struct sentry_kvm_vcpu *v, struct sentry_kvm_as *as, struct user_regs_struct *u,
                     struct sentry_kvm_exit *ex);

int sentry_kvm_switch(struct sentry_kvm_vcpu *v, struct sentry_kvm_as *as, struct user_regs_struct *u,
                      struct sentry_kvm_exit *ex) {
    /* Published before the generation is read: shoot_down() either sees
     * this vCPU or this vCPU sees the new generation (and flushes). */
    __atomic_store_n(&v->in_as, as->id, __ATOMIC_SEQ_CST);
    int rc = run_guest(v, as, u, ex);
    __atomic_store_n(&v->in_as, 0, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&v->switches, 1, __ATOMIC_SEQ_CST);
    return rc;
}

static int run_guest(struct sentry_kvm_vcpu *v, struct sentry_kvm_as *as, struct user_regs_struct *u,
                     struct sentry_kvm_exit *ex) {
    struct kvm_run *run = v->run;
    struct kvm_regs *r = &run->s.regs.regs;
    if (!v->tid) __atomic_store_n(&v->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
    if (v->sregs_stale || v->sregs.cr3 != as->root || v->sregs.fs.base != u->fs_base ||
        v->sregs.gs.base != u->gs_base) {
        if (u->fs_base >= USER_TOP || u->gs_base >= USER_TOP) {
            snprintf(ex->message, sizeof ex->message, "fs_base %#lx / gs_base %#lx outside user space",
                     (unsigned long)u->fs_base, (unsigned long)u->gs_base);
            return SENTRY_KVM_ERROR;
        }
        v->sregs.cr3 = as->root;
        v->sregs.fs.base = u->fs_base;
        v->sregs.gs.base = u->gs_base;
        if (ioctl(v->fd, KVM_SET_SREGS, &v->sregs)) {
            snprintf(ex->message, sizeof ex->message, "KVM_SET_SREGS: %s", strerror(errno));
            return SENTRY_KVM_ERROR;
        }
        v->sregs_stale = 0;
    }
    uint64_t gen = __atomic_load_n(&as->gen, __ATOMIC_ACQUIRE);
    int flush = v->last_as_id != as->id || v->last_gen != gen;
    v->last_as_id = as->id, v->last_gen = gen;
    uint64_t *frame = v->stack_top_host - 5;
    frame[0] = u->rip, frame[1] = SEL_UCS, frame[2] = (u->eflags & USER_FLAGS) | 0x202;
    frame[3] = u->rsp, frame[4] = SEL_UDS;
    gprs_in(r, u);
    r->rsp = v->stack_top_kva - 40;
    r->rip = KVM_KBASE + OFF_STUB + (flush ? R0_FLUSH_IRETQ : R0_IRETQ);
    r->rflags = 2;
    run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
    for (;;) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno != EINTR) {
                snprintf(ex->message, sizeof ex->message, "KVM_RUN: %s", strerror(errno));
                return SENTRY_KVM_ERROR;
            }
            __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
            uint64_t rip = r->rip, stub = KVM_KBASE + OFF_STUB;
            if (rip >= stub + R0_IRETQ && rip < stub + R0_BATCH) return SENTRY_KVM_INTERRUPT; /* not entered */
            if (rip < USER_TOP) { /* stopped in ring 3 */
                gprs_out(u, r);
                u->rip = rip, u->rsp = r->rsp, u->eflags = r->rflags;
                v->sregs_stale = 1; /* KVM holds ring-3 segments now */
                v->last_as_id = 0;
                return SENTRY_KVM_INTERRUPT;
            }
            if (rip >= stub && rip < stub + R0_SIZE) continue; /* an exit one stub instruction away */
            return exit_error(v, ex, "interrupted outside the guest");
        }
        if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT)
            return exit_error(v, ex, "unexpected exit");
        unsigned port = run->io.port;
        if (port == R0_PORT_SYSCALL) { /* VMX/SVM: syscall -> LSTAR in ring 0 */
            gprs_out(u, r);
            u->rip = r->rcx, u->eflags = r->r11, u->rsp = r->rsp, u->orig_rax = r->rax;
            return SENTRY_KVM_SYSCALL;
        }
        if (port < R0_PORT_VECTOR || port >= R0_PORT_VECTOR + R0_NVECTORS)
            return exit_error(v, ex, "unexpected port");
        int vec = port - R0_PORT_VECTOR, has_err = (ERRCODE_VECTORS >> vec) & 1;
        if (r->rsp != v->stack_top_kva - 40 - 8 * has_err) return exit_error(v, ex, "exception in ring 0");
        uint64_t *f = v->stack_top_host - 5 - has_err, err = has_err ? f[0] : 0;
        f += has_err;
        if (f[1] != SEL_UCS) return exit_error(v, ex, "exception in ring 0");
        gprs_out(u, r);
        u->rsp = f[3];
        if (vec == 14 && f[0] == KVM_KBASE + OFF_STUB + R0_LSTAR && (err & PF_USER_FETCH) == PF_USER_FETCH) {
            /* kvm_pvm: `syscall` jumped to LSTAR at CPL 3 and faulted there */
            u->rip = r->rcx, u->eflags = r->r11, u->orig_rax = r->rax;
            return SENTRY_KVM_SYSCALL;
        }
        u->rip = f[0], u->eflags = f[2], u->orig_rax = ~0ul;
        ex->vector = vec, ex->error_code = err, ex->cr2 = 0;
        if (vec == 14) {
            struct kvm_sregs s;
            if (ioctl(v->fd, KVM_GET_SREGS, &s)) {
                snprintf(ex->message, sizeof ex->message, "KVM_GET_SREGS: %s", strerror(errno));
                return SENTRY_KVM_ERROR;
            }
            ex->cr2 = s.cr2;
        }
        return SENTRY_KVM_FAULT;
    }
}

int sentry_kvm_get_xsave(struct sentry_kvm_vcpu *v, unsigned char *area, int len) {
    struct kvm_xsave x;
    if (len > (int)sizeof x) return -EINVAL;
    if (ioctl(v->fd, KVM_GET_XSAVE, &x)) return -errno;
    memcpy(area, x.region, len);
    return 0;
}

int sentry_kvm_set_xsave(struct sentry_kvm_vcpu *v, const unsigned char *area, int len) {
    struct kvm_xsave x;
    if (len > (int)sizeof x) return -EINVAL;
    memset(&x, 0, sizeof x);
    memcpy(x.region, area, len);
    return ioctl(v->fd, KVM_SET_XSAVE, &x) ? -errno : 0;
}
