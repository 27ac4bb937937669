/* A robust mutex whose owner thread dies: the next locker gets EOWNERDEAD
 * and can make it consistent. A child with PR_SET_PDEATHSIG learns of its
 * parent's death. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t m;

static void *die_holding(void *arg) {
    pthread_mutex_lock(&m);
    return 0; /* exits while holding the lock */
}

int main(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &a);
    pthread_t t;
    pthread_create(&t, 0, die_holding, 0);
    pthread_join(t, 0);
    int r = pthread_mutex_lock(&m);
    printf("lock after owner died: %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : "other");
    pthread_mutex_consistent(&m);
    pthread_mutex_unlock(&m);
    printf("relock: %d\n", pthread_mutex_lock(&m));
    fflush(stdout);

    int fds[2];
    pipe(fds);
    pid_t middle = fork();
    if (middle == 0) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGUSR1);
            signal(SIGUSR1, SIG_DFL);
            close(fds[0]);
            write(fds[1], "r", 1);
            pause(); /* killed by SIGUSR1 when `middle` exits */
            _exit(0);
        }
        char c;
        read(fds[0], &c, 1);
        _exit(0);
    }
    close(fds[1]);
    waitpid(middle, 0, 0);
    char c;
    printf("grandchild gone: %s\n", read(fds[0], &c, 1) == 0 ? "yes" : "no");
    return 0;
}
