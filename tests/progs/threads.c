/* pthreads: 16 threads, a mutex-protected counter, a condition-variable
 * rendezvous, a pthread_barrier (three rounds: each thread writes its slot,
 * waits, then reads every other slot), thread-local storage and joins.
 * The output is deterministic. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

#define N 16
#define ROUNDS 3

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t barrier;
static long counter;
static int arrived;
static int serial_count;
static long slots[N];
static long seen[ROUNDS];
static __thread int mine;

static void *work(void *arg) {
    mine = (int)(long)arg;
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    arrived++;
    pthread_cond_broadcast(&cond);
    while (arrived < N) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);

    for (int r = 0; r < ROUNDS; r++) {
        slots[mine] = (long)(r + 1) * (mine + 1);
        int s = pthread_barrier_wait(&barrier); /* every slot of this round is written */
        long sum = 0;
        for (int i = 0; i < N; i++) sum += slots[i];
        pthread_mutex_lock(&lock);
        if (s == PTHREAD_BARRIER_SERIAL_THREAD) serial_count++;
        if (seen[r] == 0) seen[r] = sum;
        else if (seen[r] != sum) seen[r] = -1; /* a thread saw another round's value */
        pthread_mutex_unlock(&lock);
        pthread_barrier_wait(&barrier); /* every thread has read before the next round writes */
    }
    long tid = syscall(SYS_gettid);
    return (void *)(long)(mine * 1000 + (tid != getpid()));
}

int main(void) {
    pthread_t t[N];
    pthread_barrier_init(&barrier, 0, N);
    for (long i = 0; i < N; i++) pthread_create(&t[i], 0, work, (void *)i);
    long sum = 0;
    for (int i = 0; i < N; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    pthread_barrier_destroy(&barrier);
    printf("counter %ld sum %ld\n", counter, sum);
    for (int r = 0; r < ROUNDS; r++) printf("round %d: every thread saw %ld\n", r + 1, seen[r]);
    printf("serial threads %d\n", serial_count);
    return 0;
}
