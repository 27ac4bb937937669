/* Escape attempts: each one a thing an untrusted guest might try to get
 * out of the sandbox. Every attempt prints one line: "ok NAME" when it was
 * refused (or had only a sandboxed effect), "ESCAPE NAME: why" when it got
 * something the guest was not given. The host side (tests/test_escape.py)
 * checks what the guest cannot see: the host files, listener, hostname and
 * processes are unchanged.
 *
 * usage: escape_attempts all SECRET_HOST_PATH MARKER_HOST_PATH TCP_PORT
 *                            UNIX_HOST_PATH ABSTRACT_NAME HOST_PID_LO HOST_PID_HI
 *
 * SECRET's content starts with "TOPSECRET"; MARKER must never come to exist.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <termios.h>
#include <ucontext.h>
#include <unistd.h>

#define STUB_BASE 0x7f7f00000000UL /* ptrace and vmexec stubs' code (stub/stub-*.ld) */
#define STUB_SIZE 0x10000UL
/* The kvm platform's private region (stub/native/kvm.c: KVM_KBASE, OFF_*;
 * stub/ring0.h: R0_*), supervisor-only in every guest address space: the
 * ring0 stub, IDT, GDT, kernel page tables, per-vCPU TSS and stacks, the
 * page-table pool. Elsewhere the same addresses are the host kernel's half. */
#define KVM_KBASE 0xffffff8000000000UL
#define KVM_PRIV_SIZE (256UL << 20)
static const struct {
    const char *name;
    unsigned long off;
} kvm_private[] = {
    {"ring0-stub", 0x0000},      {"ring0-iretq", 0x0100}, {"ring0-batch", 0x0200}, {"ring0-lstar", 0x0800},
    {"idt", 0x1000},             {"gdt", 0x2000},         {"kernel-pdpt", 0x3000}, {"kernel-pd", 0x4000},
    {"kernel-root", 0x5000},     {"vcpu0-tss", 0x10000},  {"vcpu0-batch", 0x11000}, {"vcpu0-stack", 0x12000},
    {"pt-pool", 0x1000000},      {"pt-pool-end", KVM_PRIV_SIZE - 4096},
};
#define KVM_NPRIVATE (sizeof kvm_private / sizeof *kvm_private)

static int attempts, escapes;
static const char *secret, *marker;

static void verdict(const char *name, int escaped, const char *why) {
    attempts++;
    if (escaped) {
        escapes++;
        printf("ESCAPE %s: %s\n", name, why);
    } else {
        printf("ok %s\n", name);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------ files */

/* Escaped if PATH opens and reads as the host secret. */
static void no_secret_at(const char *name, int dirfd, const char *path) {
    char buf[64] = {0};
    int fd = openat(dirfd, path, O_RDONLY);
    int got = fd >= 0 && read(fd, buf, sizeof buf - 1) > 0 && strncmp(buf, "TOPSECRET", 9) == 0;
    if (fd >= 0)
        close(fd);
    verdict(name, got, path);
}

static volatile int racing;

static void *flipper(void *arg) {
    (void)arg;
    while (racing) {
        mkdir("/tmp/race", 0755);
        rmdir("/tmp/race");
        symlink("/../../../../..", "/tmp/race");
        unlink("/tmp/race");
        symlink(secret, "/tmp/race");
        unlink("/tmp/race");
    }
    return NULL;
}

static void race_walks(void) {
    char path[4096], buf[64];
    pthread_t t;
    racing = 1;
    pthread_create(&t, NULL, flipper, NULL);
    int got = 0;
    snprintf(path, sizeof path, "/tmp/race%s", secret);
    for (int i = 0; i < 3000 && !got; i++) {
        const char *p = i % 3 == 0 ? "/tmp/race" : i % 3 == 1 ? path : "/tmp/race/../../../secret";
        int fd = open(p, O_RDONLY);
        if (fd >= 0) {
            memset(buf, 0, sizeof buf);
            got = read(fd, buf, sizeof buf - 1) > 0 && strncmp(buf, "TOPSECRET", 9) == 0;
            close(fd);
        }
    }
    racing = 0;
    pthread_join(t, NULL);
    verdict("race-dir-symlink-swap", got, "read the secret while a path flipped");
}

static void files(void) {
    char path[4096];
    no_secret_at("dotdot-relative", AT_FDCWD, "../secret");
    no_secret_at("dotdot-absolute", AT_FDCWD, "/../../../../../../secret");
    no_secret_at("host-absolute-path", AT_FDCWD, secret);
    snprintf(path, sizeof path, "/../../../../..%s", secret);
    no_secret_at("dotdot-host-path", AT_FDCWD, path);
    for (int i = 0; i < 30; i++)
        if (chdir("..") != 0)
            break;
    no_secret_at("chdir-dotdot", AT_FDCWD, "secret");
    int root = open("/", O_PATH | O_DIRECTORY);
    no_secret_at("openat-root-dotdot", root, "../secret");
    if (fchdir(root) == 0 && chdir("..") == 0)
        no_secret_at("fchdir-dotdot", AT_FDCWD, "secret");
    else
        verdict("fchdir-dotdot", 0, "");
    close(root);

    /* Symlinks the host left in the rootfs, and ones the guest makes. */
    no_secret_at("host-symlink-absolute", AT_FDCWD, "/link_abs");
    no_secret_at("host-symlink-relative", AT_FDCWD, "/link_up");
    no_secret_at("host-symlink-dir", AT_FDCWD, "/link_dir/secret");
    symlink(secret, "/tmp/s_abs");
    no_secret_at("guest-symlink-absolute", AT_FDCWD, "/tmp/s_abs");
    symlink("../../../../../../secret", "/tmp/s_up");
    no_secret_at("guest-symlink-relative", AT_FDCWD, "/tmp/s_up");
    symlink("/proc/self/root/..", "/tmp/s_proc");
    no_secret_at("guest-symlink-proc-root", AT_FDCWD, "/tmp/s_proc/secret");

    /* Hard links to a host file outside the root. */
    int rc = link(secret, "/tmp/h1");
    no_secret_at("hardlink-host-path", AT_FDCWD, "/tmp/h1");
    rc = linkat(AT_FDCWD, "/link_abs", AT_FDCWD, "/tmp/h2", AT_SYMLINK_FOLLOW);
    no_secret_at("hardlink-follow-symlink", AT_FDCWD, "/tmp/h2");
    (void)rc;

    /* /proc/self/root, /proc/self/cwd, /proc/1/root. */
    no_secret_at("proc-self-root-dotdot", AT_FDCWD, "/proc/self/root/../secret");
    snprintf(path, sizeof path, "/proc/self/root%s", secret);
    no_secret_at("proc-self-root-host-path", AT_FDCWD, path);
    chdir("/tmp");
    no_secret_at("proc-self-cwd-dotdot", AT_FDCWD, "/proc/self/cwd/../../secret");
    no_secret_at("proc-1-root-dotdot", AT_FDCWD, "/proc/1/root/../../secret");
    char link[256] = {0};
    ssize_t n = readlink("/proc/self/root", link, sizeof link - 1);
    verdict("proc-self-root-is-slash", n > 0 && strcmp(link, "/") != 0, link);

    /* chroot breakout: chroot into a subdirectory, climb out of it. */
    mkdir("/tmp/jail", 0755);
    if (chroot("/tmp/jail") == 0) {
        for (int i = 0; i < 30; i++)
            chdir("..");
        chroot(".");
    }
    no_secret_at("chroot-breakout", AT_FDCWD, secret);
    no_secret_at("chroot-breakout-dotdot", AT_FDCWD, "../../../../../secret");
    chdir("/");

    /* Writes: through a host symlink, and creating the host marker. */
    int fd = open("/link_abs", O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        write(fd, "overwritten", 11);
        close(fd);
    }
    verdict("write-through-host-symlink", 0, ""); /* the host checks the file */
    mkdir(marker, 0700);
    fd = open(marker, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0)
        close(fd);
    verdict("create-host-marker", 0, ""); /* the host checks it is absent */

    /* Writing the program through /proc/self/exe: the host checks /prog. */
    fd = open("/proc/self/exe", O_WRONLY);
    if (fd >= 0) {
        write(fd, "overwritten", 11);
        close(fd);
    }
    verdict("write-proc-self-exe", 0, "");

    /* A race: one thread flips /tmp/race between a directory and a symlink
     * out of the root while this one walks through it. */
    race_walks();

    /* File handles (the "shocker" escape): forge the host root's handle. */
    struct {
        struct file_handle h;
        unsigned char bytes[128];
    } fh = {0};
    fh.h.handle_bytes = 8;
    fh.h.handle_type = 1; /* FILEID_INO32_GEN */
    *(uint32_t *)fh.h.f_handle = 2;
    int mount_id;
    int named = name_to_handle_at(AT_FDCWD, "/", &fh.h, &mount_id, 0);
    fd = open_by_handle_at(AT_FDCWD, &fh.h, O_RDONLY);
    verdict("open-by-handle", fd >= 0, "a forged handle opened");
    (void)named;

    /* Mounting anything over the sandbox's view. */
    verdict("mount-proc-of-host", mount("proc", "/tmp/jail", "proc", 0, NULL) == 0 &&
                                         access("/tmp/jail/1/root/bin/sh", F_OK) == 0, "host proc mounted");
}

/* ---------------------------------------------------------- programs */

static void programs(void) {
    char *argv[] = {"sh", "-c", "echo escaped", NULL};
    execve("/bin/sh", argv, NULL);
    verdict("execve-host-bin-sh", 0, ""); /* still here: it failed */
    execve("/proc/self/root/../../../bin/sh", argv, NULL);
    verdict("execve-proc-root-dotdot", 0, "");
    symlink("/bin/sh", "/tmp/sh");
    execve("/tmp/sh", argv, NULL);
    verdict("execve-symlink-to-host", 0, "");
    execve("/link_bin", argv, NULL);
    verdict("execve-host-symlink", 0, "");
}

/* --------------------------------------------- processes, /proc, fds */

static int in_sandbox(pid_t pid) { return pid < 1000; } /* guest pids are small; host ones are not */

static void processes(long lo, long hi) {
    /* /proc/self/fd: only what the guest opened. */
    int leaked = 0;
    char path[64], what[256];
    for (int fd = 3; fd < 256; fd++) {
        if (fcntl(fd, F_GETFD) != -1)
            continue; /* the guest's own */
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        int got = open(path, O_RDONLY);
        if (got >= 0) {
            leaked = fd;
            close(got);
        }
    }
    snprintf(what, sizeof what, "/proc/self/fd/%d opened", leaked);
    verdict("proc-self-fd-unopened", leaked != 0, what);

    /* Host pids (the test runner, the Sentry, stubs): none is visible. */
    int hits[8] = {0};
    char buf[16];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
    for (long pid = lo; pid <= hi; pid++) {
        if (in_sandbox(pid))
            continue;
        hits[0] += kill(pid, 0) == 0 || errno == EPERM;
        hits[1] += kill(pid, SIGCONT) == 0;
        hits[2] += ptrace(PTRACE_ATTACH, pid, 0, 0) == 0;
        hits[3] += process_vm_writev(pid, &local, 1, &remote, 1, 0) >= 0 || errno == EFAULT;
        hits[4] += process_vm_readv(pid, &local, 1, &remote, 1, 0) >= 0 || errno == EFAULT;
        snprintf(path, sizeof path, "/proc/%ld/mem", pid);
        int fd = open(path, O_RDWR);
        hits[5] += fd >= 0;
        if (fd >= 0)
            close(fd);
        snprintf(path, sizeof path, "/proc/%ld/root", pid);
        hits[6] += access(path, F_OK) == 0;
        int pfd = syscall(SYS_pidfd_open, pid, 0);
        hits[7] += pfd >= 0;
        if (pfd >= 0)
            close(pfd);
    }
    const char *names[8] = {"kill0-host-pid", "kill-host-pid", "ptrace-attach-host-pid",
                            "process-vm-writev-host-pid", "process-vm-readv-host-pid",
                            "proc-pid-mem-host-pid", "proc-pid-root-host-pid", "pidfd-open-host-pid"};
    for (int i = 0; i < 8; i++) {
        snprintf(what, sizeof what, "%d host pids reached", hits[i]);
        verdict(names[i], hits[i] != 0, what);
    }
    /* /proc lists only sandbox processes. */
    int foreign = 0;
    for (long pid = lo; pid <= hi; pid++) {
        snprintf(path, sizeof path, "/proc/%ld", pid);
        foreign += !in_sandbox(pid) && access(path, F_OK) == 0;
    }
    verdict("proc-lists-host-pids", foreign != 0, "host pids in /proc");
    verdict("kill-host-init", !in_sandbox(1) && kill(1, 0) == 0, "");
    verdict("prlimit-host-pid", prlimit(lo, RLIMIT_NOFILE, NULL, &(struct rlimit){0}) == 0, "");
}

/* --------------------------------------------------------- stub code */

static sigjmp_buf jump_back;
static volatile long trap_rax;
static volatile int trapped;

static void on_trap(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    trap_rax = uc->uc_mcontext.gregs[REG_RAX];
    trapped = sig;
    siglongjmp(jump_back, 1);
}

static void guard(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD)
            sigaction(sig, &sa, NULL);
}

/* Byte at ADDR, or -1 if it cannot be read. */
static int peek(unsigned long addr) {
    trapped = 0;
    if (sigsetjmp(jump_back, 1) == 0)
        return *(volatile unsigned char *)addr;
    return -1;
}

/* Jump to ADDR (a `syscall` instruction in stub code) with rax = NR and
 * rdi = ARG; returns what the trap that brings control back left in rax. */
static long jump_syscall(unsigned long addr, long nr, long arg) {
    trapped = 0;
    alarm(5); /* if stub code never gives control back */
    if (sigsetjmp(jump_back, 1) == 0) {
        register long rax __asm__("rax") = nr;
        register long rdi __asm__("rdi") = arg;
        register long rsi __asm__("rsi") = 0700;
        __asm__ volatile("jmp *%0" : : "r"(addr), "r"(rax), "r"(rdi), "r"(rsi) : "memory");
        __builtin_unreachable();
    }
    alarm(0);
    return trap_rax;
}

/* In a child, jump_syscall(ADDR, NR, ARG). The host checks the effects
 * (the marker); here the child must end, whatever stub code did. */
static void jump_from_child(unsigned long addr, long nr, long arg) {
    pid_t child = fork();
    if (child == 0) {
        guard();
        jump_syscall(addr, nr, arg);
        _exit(0);
    }
    waitpid(child, NULL, 0);
}

static void stub_code(void) {
    guard();
    /* Map over, unmap, re-protect, write: the stub's pages are not the guest's. */
    void *p = mmap((void *)STUB_BASE, STUB_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    verdict("mmap-fixed-over-stub", p == (void *)STUB_BASE, "mapped over the stub");
    p = mmap((void *)STUB_BASE, STUB_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    verdict("mmap-hint-at-stub", p == (void *)STUB_BASE, "got the stub's address");
    if (p != MAP_FAILED && p != (void *)STUB_BASE)
        munmap(p, STUB_SIZE);
    p = mmap((void *)STUB_BASE, STUB_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
             -1, 0);
    verdict("mmap-noreplace-at-stub", p == (void *)STUB_BASE, "got the stub's address");
    void *mine = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p = mremap(mine, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)STUB_BASE);
    verdict("mremap-onto-stub", p == (void *)STUB_BASE, "moved a page onto the stub");
    munmap((void *)STUB_BASE, STUB_SIZE);
    mprotect((void *)STUB_BASE, STUB_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC);
    int before = peek(STUB_BASE);
    int wrote = 0;
    trapped = 0;
    if (sigsetjmp(jump_back, 1) == 0) {
        *(volatile unsigned char *)STUB_BASE = 0xcc ^ (before & 0xff);
        wrote = 1;
    }
    verdict("write-stub-code", wrote, "stub code written");
    int fd = open("/proc/self/mem", O_RDWR);
    unsigned char byte = 0x90;
    int poked = fd >= 0 && pwrite(fd, &byte, 1, STUB_BASE) == 1 && peek(STUB_BASE) == 0x90 && before != 0x90;
    verdict("proc-self-mem-write-stub", poked, "stub code written through /proc/self/mem");
    if (fd >= 0)
        close(fd);
    /* The guest still works after all that: its memory calls go through. */
    void *q = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int works = q != MAP_FAILED && (memset(q, 7, 1 << 20), ((char *)q)[12345] == 7);
    verdict("memory-works-after", !works, "mmap broken after the attempts");

    /* Jump into every `syscall` instruction of the stub's code, each time
     * from a child: what follows the instruction is stub code too, and runs
     * as the guest's (it may exit, or kill the stub thread or process). */
    int found = 0;
    for (unsigned long a = STUB_BASE; a + 1 < STUB_BASE + STUB_SIZE; a++) {
        int b0 = peek(a);
        if (b0 < 0) {
            a = (a | 0xfff); /* unreadable page: skip it */
            continue;
        }
        if (b0 != 0x0f || peek(a + 1) != 0x05)
            continue;
        found++;
        jump_from_child(a, SYS_mkdir, (long)marker);
        jump_from_child(a, SYS_exit, 0);
        jump_from_child(a, SYS_exit_group, 0);
    }
    verdict("jump-into-stub-syscall", 0, ""); /* the host checks the marker; we are still here */
    printf("stub syscall sites: %d\n", found);
}

/* ------------------------------------------- kvm's private region */

/* Jump to ADDR with rax = NR, rdi = ARG and rcx = 0 (if ADDR is taken for
 * a system call entry, the return goes to address 0 and faults). */
static void jump_kernel(unsigned long addr, long nr, long arg) {
    trapped = 0;
    alarm(5);
    if (sigsetjmp(jump_back, 1) == 0) {
        register long rax __asm__("rax") = nr;
        register long rdi __asm__("rdi") = arg;
        register long rcx __asm__("rcx") = 0;
        __asm__ volatile("jmp *%0" : : "r"(addr), "r"(rax), "r"(rdi), "r"(rcx) : "memory");
        __builtin_unreachable();
    }
    alarm(0);
}

/* Read, write, execute and map over every part of the kvm private region.
 * Each must fault (SIGSEGV, caught here) or fail (EFAULT, EINVAL, ENOMEM,
 * EPERM, EIO). The guest cannot tell whether the region is there (a fault
 * there reads as SEGV_MAPERR, as at any unmapped address): the attempts are
 * made on every platform, and elsewhere meet the host kernel's half. */
static void kvm_region(void) {
    guard();
    int before = attempts;
    char name[80];
    int memfd = open("/proc/self/mem", O_RDWR);
    for (unsigned i = 0; i < KVM_NPRIVATE; i++) {
        unsigned long a = KVM_KBASE + kvm_private[i].off;
        int got = peek(a);
        snprintf(name, sizeof name, "kvm-read-%s", kvm_private[i].name);
        verdict(name, got >= 0, "read a byte of the private region");
        int wrote = 0;
        trapped = 0;
        if (sigsetjmp(jump_back, 1) == 0) {
            *(volatile unsigned char *)a = 0xcc;
            wrote = 1;
        }
        snprintf(name, sizeof name, "kvm-write-%s", kvm_private[i].name);
        verdict(name, wrote, "wrote a byte of the private region");
        unsigned char byte = 0xcc, back = 0;
        int poked = memfd >= 0 && (pwrite(memfd, &byte, 1, (off_t)a) == 1 || pread(memfd, &back, 1, (off_t)a) == 1);
        snprintf(name, sizeof name, "kvm-proc-self-mem-%s", kvm_private[i].name);
        verdict(name, poked, "/proc/self/mem reached the private region");
        struct iovec local = {&back, 1}, remote = {(void *)a, 1};
        int copied = process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1 ||
                     process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == 1;
        snprintf(name, sizeof name, "kvm-process-vm-%s", kvm_private[i].name);
        verdict(name, copied, "process_vm_readv/writev reached the private region");
        int fds[2], leaked = 0;
        if (pipe(fds) == 0) {
            leaked = write(fds[1], (void *)a, 16) > 0;
            close(fds[0]);
            close(fds[1]);
        }
        snprintf(name, sizeof name, "kvm-syscall-buffer-%s", kvm_private[i].name);
        verdict(name, leaked, "a system call read the private region");
        /* Map over it, move a page onto it, change or drop its mappings. */
        void *p = mmap((void *)a, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                       -1, 0);
        int mapped = p == (void *)a;
        p = mmap((void *)a, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        mapped |= p == (void *)a;
        p = mmap((void *)a, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        mapped |= p == (void *)a;
        if (p != MAP_FAILED && p != (void *)a)
            munmap(p, 4096);
        void *mine = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p = mremap(mine, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)a);
        mapped |= p == (void *)a;
        munmap(p == MAP_FAILED ? mine : p, 4096);
        snprintf(name, sizeof name, "kvm-mmap-over-%s", kvm_private[i].name);
        verdict(name, mapped, "mapped guest memory over the private region");
        int changed = mprotect((void *)(a & ~0xfffUL), 4096, PROT_READ | PROT_WRITE | PROT_EXEC) == 0 ||
                      munmap((void *)(a & ~0xfffUL), 4096) == 0 ||
                      madvise((void *)(a & ~0xfffUL), 4096, MADV_DONTNEED) == 0;
        snprintf(name, sizeof name, "kvm-mprotect-munmap-%s", kvm_private[i].name);
        verdict(name, changed, "changed the private region's mappings");
        /* Execute it, from a child: the LSTAR entry is the one address
         * ring 3 may reach (a `syscall`), and a jump there is only one. */
        pid_t child = fork();
        if (child == 0) {
            guard();
            jump_kernel(a, SYS_mkdir, (long)marker);
            _exit(trapped ? 0 : 1);
        }
        int st = 0;
        waitpid(child, &st, 0);
        snprintf(name, sizeof name, "kvm-execute-%s", kvm_private[i].name);
        verdict(name, WIFEXITED(st) && WEXITSTATUS(st) != 0, "executed the private region without a fault");
    }
    if (memfd >= 0)
        close(memfd);
    printf("kvm private region attempts: %d\n", attempts - before);
}

/* --------------------------------------------------------- network */

static void network(int port, const char *unix_path, const char *abstract) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = s >= 0 ? connect(s, (struct sockaddr *)&in, sizeof in) : -1;
    if (rc == 0)
        write(s, "escaped", 7);
    verdict("tcp-connect-host-listener", 0, ""); /* the host checks its listener */
    if (s >= 0)
        close(s);

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", unix_path);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    rc = connect(s, (struct sockaddr *)&un, sizeof un);
    verdict("unix-connect-host-path", rc == 0, unix_path);
    close(s);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(un.sun_path, sizeof un.sun_path, "/host.sock");
    rc = connect(s, (struct sockaddr *)&un, sizeof un);
    verdict("unix-connect-socket-in-rootfs", rc == 0, "/host.sock");
    close(s);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(un.sun_path, 0, sizeof un.sun_path);
    size_t len = strlen(abstract);
    memcpy(un.sun_path + 1, abstract, len);
    rc = connect(s, (struct sockaddr *)&un, offsetof(struct sockaddr_un, sun_path) + 1 + len);
    verdict("unix-connect-host-abstract", rc == 0, abstract);
    close(s);
    s = socket(AF_PACKET, SOCK_RAW, htons(3));
    verdict("packet-socket", s >= 0, "raw packet socket");
    s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    verdict("raw-inet-socket-host", 0, ""); /* may exist in the Sentry's stack; it has no host side */
}

/* --------------------------------------------------------- devices */

static void devices(void) {
    const char *nodes[] = {"/dev/mem", "/dev/kmem", "/dev/port", "/dev/kvm", "/dev/sda", "/dev/vda",
                           "/dev/mapper/control", "/dev/fuse", "/mem", "/kvm"};
    for (unsigned i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        int fd = open(nodes[i], O_RDWR);
        char name[64];
        snprintf(name, sizeof name, "open%s", nodes[i]);
        for (char *c = name + 4; *c; c++)
            if (*c == '/')
                *c = '-';
        verdict(name, fd >= 0, nodes[i]);
        if (fd >= 0)
            close(fd);
    }
    int made = mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1));
    int fd = made == 0 ? open("/tmp/mem", O_RDONLY) : -1;
    verdict("mknod-dev-mem", fd >= 0, "opened a new /dev/mem node");
    made = mknod("/tmp/kvm", S_IFCHR | 0600, makedev(10, 232));
    fd = made == 0 ? open("/tmp/kvm", O_RDWR) : -1;
    verdict("mknod-dev-kvm", fd >= 0, "opened a new /dev/kvm node");
    char c = 'x';
    verdict("tiocsti-inject", ioctl(0, TIOCSTI, &c) == 0 || ioctl(1, TIOCSTI, &c) == 0, "typed into the host tty");
}

/* ------------------------------------------------ kernel, rlimits */

static void kernel_calls(void) {
    union bpf_attr attr = {.map_type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 1};
    verdict("bpf-map-create", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr) >= 0, "");
    struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pe, .config = PERF_COUNT_SW_CPU_CLOCK};
    verdict("perf-event-open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0) >= 0, "");
    verdict("init-module", syscall(SYS_init_module, "", 0, "") == 0, "");
    verdict("kexec-load", syscall(SYS_kexec_load, 0, 0, NULL, 0) == 0, "");
    verdict("reboot-bad-magic", syscall(SYS_reboot, 0, 0, 0, NULL) == 0, "");
    verdict("swapon", syscall(SYS_swapon, "/tmp/jail", 0) == 0, "");
    sethostname("escaped-guest", 13); /* the host checks its hostname */
    verdict("sethostname", 0, "");
    verdict("setns", syscall(SYS_setns, 0, 0) == 0, "");
    verdict("iopl", syscall(SYS_iopl, 3) == 0, "port I/O granted");
    verdict("ioperm", syscall(SYS_ioperm, 0x80, 1, 1) == 0, "port I/O granted");
}

static void rlimits(void) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    struct rlimit more = {r.rlim_max * 4, r.rlim_max * 4};
    verdict("raise-nofile", setrlimit(RLIMIT_NOFILE, &more) == 0, "hard RLIMIT_NOFILE raised");
    more = (struct rlimit){r.rlim_max, r.rlim_max};
    setrlimit(RLIMIT_NOFILE, &more);
    int opened = 0;
    while (open("/", O_RDONLY) >= 0)
        opened++;
    char what[64];
    snprintf(what, sizeof what, "%d files open past the hard limit %lu", opened, (unsigned long)r.rlim_max);
    verdict("open-past-nofile", (unsigned long)opened + 3 > r.rlim_max, what);
    for (int fd = 3; fd < 1 << 16; fd++)
        close(fd);
    verdict("dup2-past-nofile", dup2(0, (int)r.rlim_max + 10) >= 0, "dup2 past the hard limit");
    getrlimit(RLIMIT_NPROC, &r);
    more = (struct rlimit){RLIM_INFINITY, RLIM_INFINITY};
    verdict("raise-nproc", r.rlim_max != RLIM_INFINITY && setrlimit(RLIMIT_NPROC, &more) == 0, "");
    getrlimit(RLIMIT_AS, &r);
    verdict("raise-as", r.rlim_max != RLIM_INFINITY && setrlimit(RLIMIT_AS, &more) == 0, "");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 9 || strcmp(argv[1], "all") != 0) {
        fprintf(stderr, "usage: see the comment atop escape_attempts.c\n");
        return 2;
    }
    secret = argv[2];
    marker = argv[3];
    files();
    programs();
    processes(atol(argv[7]), atol(argv[8]));
    network(atoi(argv[4]), argv[5], argv[6]);
    devices();
    kernel_calls();
    rlimits();
    kvm_region();
    stub_code(); /* last: it jumps into stub code */
    printf("attempts %d escapes %d\n", attempts, escapes);
    return escapes != 0;
}
