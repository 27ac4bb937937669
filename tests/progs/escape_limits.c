/* Trying to take more than the sandbox's limits allow.
 *
 *   escape_limits forks     fork until fork fails; print how many children
 *                           lived at once and the errno; then reap them all
 *   escape_limits threads   the same with pthread_create
 *   escape_limits memory    allocate and touch 1 MiB blocks until malloc fails;
 *                           print the MiB obtained
 *   escape_limits cow MIB   map MIB MiB, touch it, fork; the child writes every
 *                           page (copy-on-write past the limit); print how the
 *                           child ended
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int forks(void) {
    int gate[2];
    if (pipe(gate) != 0)
        return 1;
    int n = 0, err = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) { /* wait until the parent closes the gate */
            char c;
            close(gate[1]);
            read(gate[0], &c, 1);
            _exit(0);
        }
        n++;
        if (n > 100000)
            break;
    }
    printf("children %d errno %s\n", n, strerrorname_np(err));
    close(gate[1]);
    int reaped = 0;
    while (wait(NULL) > 0)
        reaped++;
    printf("reaped %d\n", reaped);
    return 0;
}

static int gate_fd;
static void *parked(void *arg) {
    char c;
    read(gate_fd, &c, 1);
    return arg;
}

static int threads(void) {
    int gate[2];
    pthread_t t[4096];
    if (pipe(gate) != 0)
        return 1;
    gate_fd = gate[0];
    int n = 0, err = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    while (n < 4096 && (err = pthread_create(&t[n], &attr, parked, NULL)) == 0)
        n++;
    printf("threads %d errno %s\n", n, strerrorname_np(err));
    close(gate[1]);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("joined %d\n", n);
    return 0;
}

static int memory(void) {
    long mib = 0;
    for (;;) {
        char *p = malloc(1 << 20);
        if (p == NULL)
            break;
        memset(p, 1, 1 << 20);
        if (++mib > (1L << 20))
            break;
    }
    printf("allocated %ld MiB\n", mib);
    return 0;
}

static int cow(long mib) {
    size_t len = (size_t)mib << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap %s\n", strerrorname_np(errno));
        return 0;
    }
    memset(p, 1, len);
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t i = 0; i < len; i += 4096)
            p[i] = 2;
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf("child killed by %s\n", sigabbrev_np(WTERMSIG(status)));
    else
        printf("child exited %d\n", WEXITSTATUS(status));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "forks") == 0)
        return forks();
    if (strcmp(mode, "threads") == 0)
        return threads();
    if (strcmp(mode, "memory") == 0)
        return memory();
    if (strcmp(mode, "cow") == 0 && argc == 3)
        return cow(atol(argv[2]));
    fprintf(stderr, "usage: escape_limits forks|threads|memory|cow MIB\n");
    return 2;
}
