/* pthreads: 8 threads, a mutex-protected counter, a condition variable
 * barrier, thread-local storage and joins. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;
static int arrived;
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
    while (arrived < 8) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    long tid = syscall(SYS_gettid);
    return (void *)(long)(mine * 1000 + (tid != getpid()));
}

int main(void) {
    pthread_t t[8];
    for (long i = 0; i < 8; i++) pthread_create(&t[i], 0, work, (void *)i);
    long sum = 0;
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (long)r;
    }
    printf("counter %ld sum %ld\n", counter, sum);
    return 0;
}
