/* What /proc says each task is doing: children put in known states (a
 * sleeper in pause, a busy loop, a stopped one, a zombie) and two threads
 * of this process (one blocked in a pipe read, one reading), each state
 * printed from /proc/PID/stat field 3 and /proc/PID/status. Prints the same
 * natively and in the sandbox. A waiting child takes a moment to park:
 * its state is polled until it settles (bounded). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int pipefd[2];
static volatile pid_t reader_tid;

static void slurp(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);
    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = 0;
}

/* Field 3 of a stat file, and the comm before it. */
static char state_of(const char *path, char *comm, size_t size) {
    char buf[1024];
    slurp(path, buf, sizeof buf);
    char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
    if (!open_paren || !close_paren || close_paren[1] != ' ')
        return '?';
    if (comm) {
        size_t n = (size_t)(close_paren - open_paren - 1);
        n = n < size - 1 ? n : size - 1;
        memcpy(comm, open_paren + 1, n);
        comm[n] = 0;
    }
    return close_paren[2];
}

static char settle(const char *path, char want) {
    char got = '?';
    for (int i = 0; i < 2000 && (got = state_of(path, NULL, 0)) != want; i++)
        usleep(5000);
    return got;
}

static void status_state(const char *path) {
    char buf[4096];
    slurp(path, buf, sizeof buf);
    char *line = strstr(buf, "\nState:\t");
    if (!line) {
        printf("  status: no State line\n");
        return;
    }
    char *end = strchr(line + 1, '\n');
    printf("  status: %.*s\n", (int)(end - line - 1), line + 1);
}

static void *reader(void *arg) {
    (void)arg;
    char c;
    reader_tid = (pid_t)syscall(SYS_gettid);
    return read(pipefd[0], &c, 1) == 1 ? NULL : (void *)1;
}

static void show(const char *what, pid_t pid, char want) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    printf("%s %c\n", what, settle(path, want));
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    status_state(path);
}

int main(void) {
    pid_t sleeper = fork();
    if (sleeper == 0) {
        pause();
        _exit(0);
    }
    pid_t busy = fork();
    if (busy == 0)
        for (;;)
            __asm__ volatile("" ::: "memory");
    pid_t stopped = fork();
    if (stopped == 0) {
        pause();
        _exit(0);
    }
    int status;
    kill(stopped, SIGSTOP);
    if (waitpid(stopped, &status, WUNTRACED) != stopped || !WIFSTOPPED(status))
        return 1;
    pid_t zombie = fork();
    if (zombie == 0)
        _exit(7);
    siginfo_t si;
    if (waitid(P_PID, zombie, &si, WEXITED | WNOWAIT) != 0) /* a zombie now, not reaped */
        return 2;

    show("sleeping", sleeper, 'S');
    show("busy", busy, 'R');
    show("stopped", stopped, 'T');
    show("zombie", zombie, 'Z');
    char path[64], comm[32], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", zombie);
    state_of(path, comm, sizeof comm);
    slurp(path, buf, sizeof buf);
    char *last = strrchr(buf, ' ');
    printf("zombie comm %s exit_code %s", comm, last ? last + 1 : "?\n");
    snprintf(path, sizeof path, "/proc/%d/cmdline", zombie);
    slurp(path, buf, sizeof buf);
    printf("zombie cmdline %zu bytes\n", strlen(buf));

    /* threads: /proc/self/task/TID shows each one's own state */
    pthread_t th;
    if (pipe(pipefd) != 0 || pthread_create(&th, NULL, reader, NULL) != 0)
        return 3;
    while (!reader_tid)
        usleep(1000);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", reader_tid);
    printf("blocked thread %c\n", settle(path, 'S'));
    snprintf(path, sizeof path, "/proc/self/task/%d/status", reader_tid);
    status_state(path);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)syscall(SYS_gettid));
    printf("reading thread %c\n", state_of(path, NULL, 0));
    printf("process %c\n", state_of("/proc/self/stat", NULL, 0));
    if (write(pipefd[1], "x", 1) != 1 || pthread_join(th, NULL) != 0)
        return 4;

    kill(sleeper, SIGKILL);
    kill(busy, SIGKILL);
    kill(stopped, SIGCONT); /* continued first: the Sentry's SIGKILL does not yet end a stopped process */
    kill(stopped, SIGKILL);
    while (wait(NULL) > 0)
        ;
    snprintf(path, sizeof path, "/proc/%d/stat", zombie);
    printf("reaped: %s\n", access(path, F_OK) == 0 ? "still there" : "gone");
    return 0;
}
