/* futex requeue and wake-op as Linux does them. Prints only facts that
 * hold natively on any machine (no times):
 * - a waiter moved by FUTEX_CMP_REQUEUE (or FUTEX_REQUEUE) from A to B is
 *   woken at once by a FUTEX_WAKE on B (it waited out its timeout);
 * - the counts: woken + requeued for both requeue commands, EAGAIN when
 *   *uaddr != val3, EINVAL for a negative count, a FUTEX_WAKE of 0 wakes one;
 * - FUTEX_WAKE_OP: 12-bit signed oparg/cmparg, OPARG_SHIFT 1 << (oparg & 31),
 *   ENOSYS for an unknown op (word untouched) or comparison (word changed),
 *   and the read-modify-write atomic against a thread's atomic adds. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long futex(int *uaddr, int op, int val, long val2, int *uaddr2, int val3) {
    return syscall(SYS_futex, uaddr, op, val, (void *)val2, uaddr2, val3);
}

static const char *err(long r) {
    return r == -1 ? (errno == EAGAIN ? "EAGAIN" : errno == EINVAL ? "EINVAL" : errno == ENOSYS ? "ENOSYS"
                      : strerror(errno)) : "ok";
}

static long ms_since(struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000L + (b.tv_nsec - a->tv_nsec) / 1000000L;
}

static int A, B, W;

struct waiter {
    int *word;
    int val;
    long ret;
    int err;
    long ms;
};

/* Waits on its word (while it holds val) for at most 20 s. */
static void *wait_on(void *p) {
    struct waiter *w = p;
    struct timespec start, timeout = {20, 0};
    clock_gettime(CLOCK_MONOTONIC, &start);
    w->ret = futex(w->word, FUTEX_WAIT_PRIVATE, w->val, (long)&timeout, NULL, 0);
    w->err = errno;
    w->ms = ms_since(&start);
    return NULL;
}

/* How many threads wait on A: requeueing A onto itself moves them all and
 * says how many (wakes none). */
static long waiters_on(int *word) {
    return futex(word, FUTEX_REQUEUE_PRIVATE, 0, 1 << 30, word, 0);
}

/* Wait (at most 10 s) until n threads wait on word. */
static int await_waiters(int *word, long n) {
    for (int i = 0; i < 10000; i++) {
        if (waiters_on(word) == n) return 1;
        usleep(1000);
    }
    return 0;
}

static void requeue_then_wake(int cmp) {
    struct waiter w = {&A};
    pthread_t t;
    pthread_create(&t, NULL, wait_on, &w);
    int queued = await_waiters(&A, 1);
    usleep(20000); /* let it settle into its wait (the sandbox first spins a moment) */
    long moved = cmp ? futex(&A, FUTEX_CMP_REQUEUE_PRIVATE, 0, 1, &B, 0)
                     : futex(&A, FUTEX_REQUEUE_PRIVATE, 0, 1, &B, 0);
    long on_a = waiters_on(&A), on_b = waiters_on(&B);
    long woken = futex(&B, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0);
    pthread_join(t, NULL);
    printf("%s: queued=%d moved=%ld on_a=%ld on_b=%ld wake_b=%ld waiter_ret=%ld woken_at_once=%d\n",
           cmp ? "cmp_requeue" : "requeue", queued, moved, on_a, on_b, woken, w.ret, w.ms < 10000);
}

static void requeue_counts(void) {
    struct waiter w[4] = {{&A}, {&A}, {&A}, {&A}};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, wait_on, &w[i]);
    int queued = await_waiters(&A, 4);
    long r = futex(&A, FUTEX_CMP_REQUEUE_PRIVATE, 1, 2, &B, 1);
    printf("cmp_requeue *uaddr!=val3: %ld %s\n", r, err(r));
    r = futex(&A, FUTEX_CMP_REQUEUE_PRIVATE, -1, 2, &B, 0);
    printf("cmp_requeue negative wake: %ld %s\n", r, err(r));
    r = futex(&A, FUTEX_CMP_REQUEUE_PRIVATE, 1, -1, &B, 0);
    printf("cmp_requeue negative requeue: %ld %s\n", r, err(r));
    r = futex(&A, FUTEX_CMP_REQUEUE_PRIVATE, 1, 2, &B, 0);
    printf("all queued=%d cmp_requeue wake 1 requeue 2: %ld\n", queued, r);
    long on_a = waiters_on(&A), on_b = waiters_on(&B);
    printf("left on A=%ld moved to B=%ld\n", on_a, on_b);
    r = futex(&B, FUTEX_WAKE_PRIVATE, 0, 0, NULL, 0);
    printf("wake B count 0: %ld\n", r);
    r = futex(&B, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0);
    long r2 = futex(&A, FUTEX_WAKE_PRIVATE, 10, 0, NULL, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    int fast = 1, ok = 1;
    for (int i = 0; i < 4; i++) fast &= w[i].ms < 10000, ok &= w[i].ret == 0;
    printf("wake B: %ld wake A: %ld all returned 0: %d none timed out: %d\n", r, r2, ok, fast);
}

#define OP(op, oparg, cmp, cmparg) FUTEX_OP(op, (oparg) & 0xfff, cmp, (cmparg) & 0xfff)

/* One FUTEX_WAKE_OP on W (starting at `start`) with a waiter on W: prints
 * the result, W afterwards, and whether the comparison woke the waiter. */
static void wake_op(const char *what, int start, int encoded) {
    struct waiter w = {&W, start};
    pthread_t t;
    W = start;
    pthread_create(&t, NULL, wait_on, &w);
    int queued = await_waiters(&W, 1);
    long r = futex(&A, FUTEX_WAKE_OP_PRIVATE, 1, 1, &W, encoded);
    const char *e = err(r);
    long left = futex(&W, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0);
    pthread_join(t, NULL);
    printf("%s: queued=%d ret=%ld %s word=%d cond_woke=%d\n", what, queued, r, e, W, left == 0);
}

static volatile int stop;

static void *atomic_adder(void *p) {
    long *n = p;
    while (!stop) {
        __atomic_fetch_add(&W, 1, __ATOMIC_SEQ_CST);
        ++*n;
    }
    return NULL;
}

static void wake_op_atomic(void) {
    long adds = 0;
    pthread_t t;
    W = 0;
    stop = 0;
    pthread_create(&t, NULL, atomic_adder, &adds);
    for (int i = 0; i < 3000; i++) futex(&A, FUTEX_WAKE_OP_PRIVATE, 0, 0, &W, OP(FUTEX_OP_ADD, 1, 0, 0));
    stop = 1;
    pthread_join(t, NULL);
    /* W wraps: an unhurried thread can add past 2^31 while the loop runs */
    printf("wake_op atomic with a thread's atomic adds: %d\n", (unsigned)W == (unsigned)(adds + 3000));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    requeue_then_wake(1);
    requeue_then_wake(0);
    requeue_counts();
    wake_op("add -1", 10, OP(FUTEX_OP_ADD, -1, FUTEX_OP_CMP_EQ, 10));
    wake_op("set 5, cmp gt -10 (old -5)", -5, OP(FUTEX_OP_SET, 5, FUTEX_OP_CMP_GT, -10));
    wake_op("xor -1, cmp lt -1 (old 0)", 0, OP(FUTEX_OP_XOR, -1, FUTEX_OP_CMP_LT, -1));
    wake_op("andn 3, cmp ne -2048", 15, OP(FUTEX_OP_ANDN, 3, FUTEX_OP_CMP_NE, -2048));
    wake_op("or shift 4, cmp ge 2047", 1, OP(FUTEX_OP_OR | FUTEX_OP_OPARG_SHIFT, 4, FUTEX_OP_CMP_GE, 2047));
    wake_op("set shift 40", 0, OP(FUTEX_OP_SET | FUTEX_OP_OPARG_SHIFT, 40, FUTEX_OP_CMP_LE, 0));
    wake_op("set shift -1", 0, OP(FUTEX_OP_SET | FUTEX_OP_OPARG_SHIFT, -1, FUTEX_OP_CMP_EQ, 1));
    wake_op("unknown op", 7, OP(5, 1, FUTEX_OP_CMP_EQ, 7));
    wake_op("unknown cmp", 7, OP(FUTEX_OP_SET, 3, 9, 7));
    wake_op_atomic();
    return 0;
}
