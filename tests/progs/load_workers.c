/* Load: PROCS processes x 4 threads doing pipes, futexes and file I/O at
 * once, each checking its results.
 *
 * usage: load_workers PROCS MESSAGES
 *
 * In each process: threads 0 and 1 write MESSAGES 8-byte values each into
 * one pipe, threads 2 and 3 read them all and sum them; every thread bumps
 * a mutex-protected counter (futexes) after each message and meets the
 * others at a barrier; every thread writes its own region of the process's
 * file with pwrite and reads it back. A process exits 0 only if the sum,
 * the counter and the file are right. The parent prints
 * "processes P ok K" (K = how many exited 0).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int messages, pipefd[2], filefd;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;
static long counter;
static uint64_t sums[4];
static int file_ok[4];

static void *worker(void *arg) {
    int id = (int)(long)arg;
    pthread_barrier_wait(&barrier);
    if (id < 2) {
        for (int i = 0; i < messages; i++) {
            uint64_t v = (uint64_t)id * 1000000 + i;
            if (write(pipefd[1], &v, 8) != 8)
                abort();
            pthread_mutex_lock(&lock);
            counter++;
            pthread_mutex_unlock(&lock);
        }
    } else {
        for (int i = 0; i < messages; i++) { /* 2 readers share 2 x messages values */
            uint64_t v;
            if (read(pipefd[0], &v, 8) != 8)
                abort();
            sums[id] += v;
            pthread_mutex_lock(&lock);
            counter++;
            pthread_mutex_unlock(&lock);
        }
    }
    pthread_barrier_wait(&barrier);
    char mine[4096], back[4096];
    memset(mine, 'a' + id, sizeof mine);
    off_t at = (off_t)id * sizeof mine;
    file_ok[id] = pwrite(filefd, mine, sizeof mine, at) == sizeof mine &&
                  pread(filefd, back, sizeof back, at) == sizeof back && memcmp(mine, back, sizeof mine) == 0;
    pthread_barrier_wait(&barrier);
    return NULL;
}

static int process(int index) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/load-%d-%d", getppid(), index);
    filefd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (filefd < 0 || pipe(pipefd) != 0)
        return 2;
    pthread_barrier_init(&barrier, NULL, 4);
    pthread_t t[4];
    for (long i = 1; i < 4; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 3;
    worker((void *)0);
    for (int i = 1; i < 4; i++)
        pthread_join(t[i], NULL);
    uint64_t want = 0;
    for (int id = 0; id < 2; id++)
        for (int i = 0; i < messages; i++)
            want += (uint64_t)id * 1000000 + i;
    int files = file_ok[0] && file_ok[1] && file_ok[2] && file_ok[3];
    unlink(path);
    if (sums[2] + sums[3] != want)
        return 4;
    if (counter != 4L * messages)
        return 5;
    return files ? 0 : 6;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: load_workers PROCS MESSAGES\n");
        return 2;
    }
    int procs = atoi(argv[1]);
    messages = atoi(argv[2]);
    for (int i = 0; i < procs; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            _exit(process(i));
    }
    int ok = 0, status;
    while (wait(&status) > 0)
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else
            fprintf(stderr, "a worker process failed: status %#x\n", status);
    printf("processes %d ok %d\n", procs, ok);
    return ok == procs ? 0 : 1;
}
