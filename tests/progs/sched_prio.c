/* Scheduling policies and nice values: sched_get_priority_max/min,
 * sched_setscheduler/setparam/getparam/getscheduler, sched_rr_get_interval,
 * sched_setattr/getattr, getpriority/setpriority (PRIO_PROCESS, PRIO_PGRP,
 * PRIO_USER), what fork and threads inherit, SCHED_RESET_ON_FORK and
 * /proc/self/stat's priority and nice. Run as root, natively and in the
 * sandbox, with equal output; every change is undone before exit. Prints
 * "rt refused" and stops if the host refuses SCHED_FIFO to root. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif
#define OTHER_UID 54321 /* a user with no processes on the host */

struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

static const char *err(long r) {
    static char buf[64];
    if (r >= 0) {
        snprintf(buf, sizeof buf, "%ld", r);
        return buf;
    }
    switch (errno) {
    case EINVAL: return "EINVAL";
    case ESRCH: return "ESRCH";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case E2BIG: return "E2BIG";
    case EBUSY: return "EBUSY";
    default: snprintf(buf, sizeof buf, "errno %d", errno); return buf;
    }
}

static long raw_getprio(int which, int who) { return syscall(SYS_getpriority, which, who); }

static int param_of(pid_t pid) {
    struct sched_param p = {-1};
    if (sched_getparam(pid, &p)) return -100 - errno;
    return p.sched_priority;
}

static void show(const char *what, pid_t pid) {
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, pid);
    printf("%s: policy %d param %d nice %d\n", what, sched_getscheduler(pid), param_of(pid), nice);
}

static long setsched(pid_t pid, int policy, int prio) {
    struct sched_param p = {prio};
    return sched_setscheduler(pid, policy, &p);
}

static void proc_stat_prio(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')') + 2;
    long v[20];
    p += 2; /* past the state letter: field 4 on */
    for (int i = 4; i <= 19; i++) v[i] = strtol(p, &p, 10);
    printf("/proc/self/stat priority %ld nice %ld\n", v[18], v[19]);
}

static void *thread_main(void *arg) {
    (void)arg;
    show("thread inherits", 0);
    printf("thread setscheduler OTHER: %s\n", err(setsched(0, SCHED_OTHER, 0)));
    printf("thread setpriority own 3: %s\n", err(setpriority(PRIO_PROCESS, syscall(SYS_gettid), 3)));
    show("thread now", 0);
    return 0;
}

static int wait_status(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void policies(void) {
    int pols[] = {SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, 6, 42, -1};
    for (unsigned i = 0; i < sizeof pols / sizeof *pols; i++) {
        printf("policy %d: max %s", pols[i], err(sched_get_priority_max(pols[i])));
        printf(" min %s\n", err(sched_get_priority_min(pols[i])));
    }
    show("start", 0);
    struct timespec ts = {7, 7};
    long r = sched_rr_get_interval(0, &ts);
    printf("rr_get_interval OTHER: %s small %d\n", err(r), ts.tv_sec == 0 && ts.tv_nsec < 1000000000);
    printf("rr_get_interval -1: %s\n", err(sched_rr_get_interval(-1, &ts)));
    printf("OTHER prio 1: %s\n", err(setsched(0, SCHED_OTHER, 1)));
    printf("FIFO prio 0: %s\n", err(setsched(0, SCHED_FIFO, 0)));
    printf("FIFO prio 100: %s\n", err(setsched(0, SCHED_FIFO, 100)));
    printf("FIFO prio -1: %s\n", err(setsched(0, SCHED_FIFO, -1)));
    printf("policy 42: %s\n", err(setsched(0, 42, 0)));
    printf("policy -1: %s\n", err(setsched(0, -1, 0)));
    printf("DEADLINE: %s\n", err(setsched(0, 6, 0)));
    printf("pid -1: %s\n", err(setsched(-1, SCHED_OTHER, 0)));
    printf("no such pid: %s\n", err(setsched(999999, SCHED_OTHER, 0)));
    printf("NULL param: %s\n", err(sched_setscheduler(0, SCHED_OTHER, NULL)));
    printf("getparam NULL: %s\n", err(sched_getparam(0, NULL)));
    printf("getscheduler -1: %s\n", err(sched_getscheduler(-1)));
    printf("getscheduler no such pid: %s\n", err(sched_getscheduler(999999)));
    printf("BATCH: %s\n", err(setsched(0, SCHED_BATCH, 0)));
    show("batch", 0);
    printf("IDLE: %s\n", err(setsched(0, SCHED_IDLE, 0)));
    show("idle", 0);
    printf("OTHER: %s\n", err(setsched(0, SCHED_OTHER, 0)));
}

static int realtime(void) {
    long r = setsched(0, SCHED_FIFO, 50);
    if (r && errno == EPERM) {
        printf("rt refused\n");
        return 0;
    }
    printf("FIFO 50: %s\n", err(r));
    show("fifo", 0);
    struct timespec ts = {7, 7};
    r = sched_rr_get_interval(0, &ts);
    printf("rr_get_interval FIFO: %s %ld.%09ld\n", err(r), (long)ts.tv_sec, ts.tv_nsec);
    struct sched_param p = {60};
    printf("setparam 60: %s\n", err(sched_setparam(0, &p)));
    p.sched_priority = 0;
    printf("setparam 0 under FIFO: %s\n", err(sched_setparam(0, &p)));
    show("fifo 60", 0);
    printf("RR 10: %s\n", err(setsched(0, SCHED_RR, 10)));
    ts.tv_sec = 7;
    r = sched_rr_get_interval(0, &ts);
    printf("rr_get_interval RR: %s positive %d\n", err(r), ts.tv_sec == 0 && ts.tv_nsec > 0);
    pid_t c = fork();
    if (c == 0) {
        show("child of RR", 0);
        _exit(0);
    }
    wait_status(c);
    pthread_t th;
    pthread_create(&th, 0, thread_main, 0);
    pthread_join(th, 0);
    show("main after thread", 0);
    printf("RR|RESET_ON_FORK 5: %s\n", err(setsched(0, SCHED_RR | SCHED_RESET_ON_FORK, 5)));
    printf("getscheduler: %#x\n", sched_getscheduler(0));
    c = fork();
    if (c == 0) {
        show("child after reset", 0);
        _exit(0);
    }
    wait_status(c);
    struct sched_param q = {7};
    r = sched_setparam(0, &q);
    printf("setparam keeps reset: %s %#x\n", err(r), sched_getscheduler(0));
    printf("back to OTHER: %s\n", err(setsched(0, SCHED_OTHER, 0)));
    show("other", 0);
    return 1;
}

static void attrs(int rt) {
    struct attr a;
    memset(&a, 0xff, sizeof a);
    printf("getattr: %s", err(syscall(SYS_sched_getattr, 0, &a, 48, 0)));
    printf(" size %u policy %u flags %llu nice %d prio %u\n", a.size, a.policy, (unsigned long long)a.flags,
           a.nice, a.priority);
    printf("getattr small: %s\n", err(syscall(SYS_sched_getattr, 0, &a, 40, 0)));
    printf("getattr flags: %s\n", err(syscall(SYS_sched_getattr, 0, &a, 48, 1)));
    memset(&a, 0, sizeof a);
    a.size = 48;
    a.policy = SCHED_OTHER;
    a.nice = 4;
    long r = syscall(SYS_sched_setattr, 0, &a, 0);
    printf("setattr nice 4: %s nice now %d\n", err(r), getpriority(PRIO_PROCESS, 0));
    a.nice = 100;
    r = syscall(SYS_sched_setattr, 0, &a, 0);
    printf("setattr nice 100: %s nice now %d\n", err(r), getpriority(PRIO_PROCESS, 0));
    a.size = 20;
    r = syscall(SYS_sched_setattr, 0, &a, 0);
    printf("setattr size 20: %s size now %u\n", err(r), a.size);
    a.size = 48;
    a.flags = 0x1000;
    printf("setattr bad flag: %s\n", err(syscall(SYS_sched_setattr, 0, &a, 0)));
    a.flags = 0;
    a.nice = 0;
    printf("setattr nice 0: %s\n", err(syscall(SYS_sched_setattr, 0, &a, 0)));
    if (rt) {
        a.policy = SCHED_FIFO;
        a.priority = 20;
        a.nice = 3;
        printf("setattr FIFO 20: %s\n", err(syscall(SYS_sched_setattr, 0, &a, 0)));
        memset(&a, 0xff, sizeof a);
        syscall(SYS_sched_getattr, 0, &a, 48, 0);
        printf("getattr: policy %u nice %d prio %u\n", a.policy, a.nice, a.priority);
        show("after setattr", 0);
        memset(&a, 0, sizeof a);
        a.size = 48;
        a.flags = 0x10; /* SCHED_FLAG_KEEP_PARAMS */
        a.policy = SCHED_RR;
        printf("setattr RR keep params: %s\n", err(syscall(SYS_sched_setattr, 0, &a, 0)));
        show("rr kept", 0);
        a.flags = 0;
        a.policy = SCHED_OTHER;
        printf("setattr OTHER: %s\n", err(syscall(SYS_sched_setattr, 0, &a, 0)));
    }
    show("after attrs", 0);
}

static void nice_values(void) {
    printf("raw getpriority: %ld\n", raw_getprio(PRIO_PROCESS, 0));
    long r = setpriority(PRIO_PROCESS, 0, 5);
    printf("setpriority 5: %s get %d raw %ld\n", err(r), getpriority(PRIO_PROCESS, 0), raw_getprio(PRIO_PROCESS, 0));
    proc_stat_prio();
    r = setpriority(PRIO_PROCESS, 0, 100);
    printf("setpriority 100: %s get %d\n", err(r), getpriority(PRIO_PROCESS, 0));
    r = setpriority(PRIO_PROCESS, 0, -100);
    printf("setpriority -100: %s get %d\n", err(r), getpriority(PRIO_PROCESS, 0));
    printf("which 3: %s\n", err(setpriority(3, 0, 0)));
    errno = 0;
    printf("getpriority which 3: %s\n", err(raw_getprio(3, 0)));
    printf("getpriority no such pid: %s\n", err(raw_getprio(PRIO_PROCESS, 999999)));
    printf("setpriority no such pid: %s\n", err(setpriority(PRIO_PROCESS, 999999, 0)));
    printf("getpriority no such user: %s\n", err(raw_getprio(PRIO_USER, OTHER_UID)));
    printf("setpriority 2: %s\n", err(setpriority(PRIO_PROCESS, 0, 2)));

    int go[2], back[2];
    pipe(go);
    pipe(back);
    pid_t c = fork();
    if (c == 0) {
        char b;
        setpgid(0, 0);
        printf("child inherits nice %d\n", getpriority(PRIO_PROCESS, 0));
        fflush(stdout);
        write(back[1], "r", 1);
        read(go[0], &b, 1); /* the parent set our nice (PRIO_PROCESS) */
        printf("child nice set by parent %d\n", getpriority(PRIO_PROCESS, 0));
        fflush(stdout);
        write(back[1], "r", 1);
        read(go[0], &b, 1); /* ... then our group's (PRIO_PGRP) */
        printf("child nice set by pgrp %d\n", getpriority(PRIO_PROCESS, 0));
        setuid(OTHER_UID);
        fflush(stdout);
        write(back[1], "r", 1);
        read(go[0], &b, 1); /* ... then our user's (PRIO_USER) */
        printf("child nice set by user %d\n", getpriority(PRIO_PROCESS, 0));
        printf("unprivileged lower: %s\n", err(setpriority(PRIO_PROCESS, 0, 1)));
        long r = setpriority(PRIO_PROCESS, 0, 6);
        printf("unprivileged raise: %s get %d\n", err(r), getpriority(PRIO_PROCESS, 0));
        printf("unprivileged on parent: %s\n", err(setpriority(PRIO_PROCESS, getppid(), 10)));
        errno = 0;
        printf("unprivileged FIFO: %s\n", err(setsched(0, SCHED_FIFO, 1)));
        printf("unprivileged BATCH: %s\n", err(setsched(0, SCHED_BATCH, 0)));
        fflush(stdout);
        _exit(0);
    }
    char b;
    read(back[0], &b, 1);
    printf("parent sets child 9: %s\n", err(setpriority(PRIO_PROCESS, c, 9)));
    printf("parent's own nice %d\n", getpriority(PRIO_PROCESS, 0));
    fflush(stdout);
    write(go[1], "g", 1);
    read(back[0], &b, 1);
    r = setpriority(PRIO_PGRP, c, 11);
    printf("parent sets pgrp 11: %s get %d\n", err(r), getpriority(PRIO_PGRP, c));
    fflush(stdout);
    write(go[1], "g", 1);
    read(back[0], &b, 1);
    errno = 0;
    printf("user's nice %d\n", getpriority(PRIO_USER, OTHER_UID));
    r = setpriority(PRIO_USER, OTHER_UID, 4);
    printf("parent sets user 4: %s get %d\n", err(r), getpriority(PRIO_USER, OTHER_UID));
    fflush(stdout);
    write(go[1], "g", 1);
    printf("child status %d\n", wait_status(c));
    printf("back to 0: %s\n", err(setpriority(PRIO_PROCESS, 0, 0)));
    proc_stat_prio();
}

int main(void) {
    setvbuf(stdout, 0, _IOLBF, 0);
    setpgid(0, 0); /* PRIO_PGRP never reaches past this program (the sandbox's init may not: EPERM) */
    policies();
    int rt = realtime();
    attrs(rt);
    nice_values();
    return 0;
}
