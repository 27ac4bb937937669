/* pidfds: pidfd_open, pidfd_send_signal, poll/epoll readiness when the
 * process exits (also after it was reparented), waitid(P_PIDFD), clone and
 * clone3 with CLONE_PIDFD. Output is the same natively and in the sandbox. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define PIDFD_NONBLOCK O_NONBLOCK

struct clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static const char *err(long r) {
    static char buf[32];
    if (r >= 0) {
        snprintf(buf, sizeof buf, "%ld", r);
        return buf;
    }
    switch (errno) {
    case EINVAL: return "EINVAL";
    case ESRCH: return "ESRCH";
    case EBADF: return "EBADF";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    case ECHILD: return "ECHILD";
    case ENOENT: return "ENOENT";
    default: snprintf(buf, sizeof buf, "errno %d", errno); return buf;
    }
}

static long pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }
static long pidfd_send(int fd, int sig, siginfo_t *info, unsigned flags) {
    return syscall(SYS_pidfd_send_signal, fd, sig, info, flags);
}

static int readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, timeout_ms);
    return n < 0 ? -1 : (p.revents & POLLIN) != 0;
}

static void waitid_pidfd(int fd, int options) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    long r = waitid(P_PIDFD, fd, &si, options);
    printf("  waitid(P_PIDFD): %s", err(r));
    if (r == 0 && si.si_pid)
        printf(" code %d status %d own child %d", si.si_code, si.si_status, si.si_pid > 0);
    printf("\n");
}

static void *thread_main(void *arg) {
    *(long *)arg = syscall(SYS_gettid);
    pause();
    return 0;
}

static pid_t blocked_child(int *go) {
    int p[2];
    pipe(p);
    pid_t c = fork();
    if (c == 0) {
        char b;
        close(p[1]);
        int n = read(p[0], &b, 1);
        _exit(n == 1 ? b : 99);
    }
    close(p[0]);
    *go = p[1];
    return c;
}

static void basics(void) {
    printf("open(-1): %s\n", err(pidfd_open(-1, 0)));
    printf("open(0): %s\n", err(pidfd_open(0, 0)));
    printf("open(bad flags): %s\n", err(pidfd_open(getpid(), 1)));
    printf("open(no such pid): %s\n", err(pidfd_open(999999, 0)));
    long tid = 0;
    pthread_t th;
    pthread_create(&th, 0, thread_main, &tid);
    while (!__atomic_load_n(&tid, __ATOMIC_SEQ_CST)) sched_yield();
    printf("open(a thread, not a leader): %s\n", err(pidfd_open(tid, 0)));
    int self = pidfd_open(getpid(), 0);
    printf("open(self): %d cloexec %d\n", self >= 0, fcntl(self, F_GETFD) == FD_CLOEXEC);
    printf("self readable: %d\n", readable(self, 0));
    char b;
    printf("read: %s\n", err(read(self, &b, 1)));
    printf("send 0 to self: %s\n", err(pidfd_send(self, 0, 0, 0)));
    printf("send flags: %s\n", err(pidfd_send(self, 0, 0, 8)));
    printf("send through stdin: %s\n", err(pidfd_send(0, 0, 0, 0)));
    printf("send bad signal: %s\n", err(pidfd_send(self, 65, 0, 0)));
    printf("waitid on self: %s\n", err(waitid(P_PIDFD, self, &(siginfo_t){0}, WEXITED)));
    printf("waitid on stdin: %s\n", err(waitid(P_PIDFD, 0, &(siginfo_t){0}, WEXITED)));
    printf("waitid on -1: %s\n", err(waitid(P_PIDFD, -1, &(siginfo_t){0}, WEXITED)));
    close(self);
}

static void signal_and_wait(void) {
    int go;
    pid_t c = blocked_child(&go);
    int fd = pidfd_open(c, 0);
    printf("child: pidfd %d, readable %d\n", fd >= 0, readable(fd, 0));
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1;
    si.si_code = SI_USER;
    printf("send forged info: %s\n", err(pidfd_send(fd, SIGUSR1, &si, 0)));
    si.si_code = SI_QUEUE;
    printf("send info signo mismatch: %s\n", err(pidfd_send(fd, SIGTERM, &si, 0)));
    printf("send SIGTERM: %s\n", err(pidfd_send(fd, SIGTERM, 0, 0)));
    printf("readable after exit: %d\n", readable(fd, -1));
    printf("send to zombie: %s\n", err(pidfd_send(fd, SIGTERM, 0, 0)));
    waitid_pidfd(fd, WEXITED);
    printf("send after reap: %s\n", err(pidfd_send(fd, SIGTERM, 0, 0)));
    printf("waitid after reap: %s\n", err(waitid(P_PIDFD, fd, &si, WEXITED)));
    printf("open after reap: %s\n", err(pidfd_open(c, 0)));
    close(fd);
    close(go);
}

static void nonblocking(void) {
    int go;
    pid_t c = blocked_child(&go);
    int fd = pidfd_open(c, PIDFD_NONBLOCK);
    printf("nonblocking pidfd: %d\n", fd >= 0);
    printf("waitid nonblocking: %s\n", err(waitid(P_PIDFD, fd, &(siginfo_t){0}, WEXITED)));
    siginfo_t si;
    memset(&si, 0, sizeof si);
    printf("waitid WNOHANG: %s pid %d\n", err(waitid(P_PIDFD, fd, &si, WEXITED | WNOHANG)), si.si_pid);
    write(go, "\x05", 1);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    int n = epoll_wait(ep, &out, 1, -1);
    printf("epoll: %d events %#x data %u\n", n, out.events & EPOLLIN, out.data.u32);
    waitid_pidfd(fd, WEXITED);
    close(ep);
    close(fd);
    close(go);
}

static void zombie(void) {
    pid_t c = fork();
    if (c == 0) _exit(3);
    siginfo_t si;
    waitid(P_PID, c, &si, WEXITED | WNOWAIT); /* a zombie now */
    int fd = pidfd_open(c, 0);
    printf("zombie: pidfd %d readable %d\n", fd >= 0, readable(fd, 0));
    waitid_pidfd(fd, WEXITED);
    close(fd);
}

static void not_a_child(void) {
    /* A grandchild: waitid(P_PIDFD) is ECHILD; poll still sees its exit,
     * also after its parent exited first (the pidfd follows reparenting). */
    int p[2], go[2];
    pipe(p);
    pipe(go);
    pid_t a = fork();
    if (a == 0) {
        pid_t b = fork();
        if (b == 0) {
            char c;
            read(go[0], &c, 1);
            while (getppid() == a) usleep(1000); /* until our parent is gone */
            _exit(6);
        }
        write(p[1], &b, sizeof b);
        char c;
        read(go[0], &c, 1);
        usleep(50000); /* the caller is polling by now */
        _exit(0);
    }
    pid_t b;
    read(p[0], &b, sizeof b);
    int fd = pidfd_open(b, 0);
    printf("grandchild: pidfd %d readable %d\n", fd >= 0, readable(fd, 0));
    printf("grandchild waitid: %s\n", err(waitid(P_PIDFD, fd, &(siginfo_t){0}, WEXITED | WNOHANG)));
    write(go[1], "gg", 2);
    printf("grandchild readable after its parent and it exit: %d\n", readable(fd, -1));
    int st;
    waitpid(a, &st, 0);
    printf("middle status %d\n", WEXITSTATUS(st));
    close(fd);
}

static void clone_pidfd(void) {
    int fd = -1;
    long r = syscall(SYS_clone, CLONE_PIDFD | CLONE_PARENT_SETTID | SIGCHLD, 0, &fd, 0, 0);
    printf("clone PIDFD|PARENT_SETTID same pointer: %s\n", err(r));
    r = syscall(SYS_clone, CLONE_PIDFD | CLONE_DETACHED | SIGCHLD, 0, &fd, 0, 0);
    printf("clone PIDFD|DETACHED: %s\n", err(r));
    r = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &fd, 0, 0);
    if (r == 0) _exit(4);
    printf("clone PIDFD: pid %d pidfd %d cloexec %d\n", r > 0, fd >= 0, fcntl(fd, F_GETFD) == FD_CLOEXEC);
    printf("readable: %d\n", readable(fd, -1));
    waitid_pidfd(fd, WEXITED);
    close(fd);

    int fd3 = -1, go[2];
    pipe(go);
    struct clone_args args = {.flags = CLONE_PIDFD, .pidfd = (uintptr_t)&fd3, .exit_signal = SIGCHLD};
    r = syscall(SYS_clone3, &args, sizeof args);
    if (r == 0) {
        char b;
        _exit(read(go[0], &b, 1) == 1 ? 8 : 9);
    }
    printf("clone3 PIDFD: pid %d pidfd %d readable now %d\n", r > 0, fd3 >= 0, readable(fd3, 0));
    write(go[1], "g", 1);
    printf("readable: %d\n", readable(fd3, -1));
    waitid_pidfd(fd3, WEXITED);
    close(fd3);
}

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    basics();
    signal_and_wait();
    nonblocking();
    zombie();
    not_a_child();
    clone_pidfd();
    return 0;
}
