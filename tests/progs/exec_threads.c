/* execve from a multi-threaded process (Linux's de_thread): the other
 * threads vanish without a trace, the process keeps its pid (a non-leader
 * thread that execs takes over the leader's pid) and its parent, and it
 * runs on in the new program. Cases: a second thread execs while the main
 * thread waits in pthread_join; the main thread execs while the others
 * sleep, block in a pipe read or spin; a thread execs after the main
 * thread has gone (pthread_exit). Each child is re-run as "after PID PPID"
 * and reports what it sees; its parent reports how it ended.
 * Prints one line per case; the output must match a native run. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static const char *self;
static int pipefd[2];
static pid_t before_pid;

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* Run in the new program: the same process, one thread, tid == pid. */
static int after(pid_t pid, pid_t ppid) {
    printf("  after exec: same pid %d, same parent %d, tid is pid %d, threads %d\n", getpid() == pid,
           getppid() == ppid, (pid_t)syscall(SYS_gettid) == getpid(), count_threads());
    return 7;
}

static void exec_self(void) {
    char pid[16], ppid[16];
    snprintf(pid, sizeof pid, "%d", before_pid);
    snprintf(ppid, sizeof ppid, "%d", getppid());
    fflush(stdout);
    execl(self, self, "after", pid, ppid, (char *)0);
    printf("exec failed: %s\n", strerrorname_np(errno));
    _exit(99);
}

static void *sleeper(void *arg) { (void)arg; for (;;) sleep(100); return 0; }
static void *reader(void *arg) { (void)arg; char c; read(pipefd[0], &c, 1); return 0; }
static void *spinner(void *arg) { (void)arg; for (volatile unsigned long i = 0;; i++) {} return 0; }

static void *exec_sh(void *arg) {
    (void)arg;
    execl("/bin/sh", "sh", "-c", "exit 5", (char *)0);
    _exit(99);
}

static void *exec_after(void *arg) {
    if (arg) usleep(100000); /* let the main thread exit first */
    exec_self();
    return 0;
}

static void report(const char *name, pid_t pid) {
    int status;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
    CHECK(got == pid);
    printf("%s: exited=%d status=%d signaled=%d\n", name, WIFEXITED(status), WEXITSTATUS(status),
           WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    fflush(stdout);
}

int main(int argc, char **argv) {
    self = argv[0];
    if (argc == 4 && !strcmp(argv[1], "after")) return after(atoi(argv[2]), atoi(argv[3]));
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(pipe(pipefd) == 0);

    pid_t pid = fork();
    if (pid == 0) { /* a second thread execs /bin/sh; main waits in pthread_join */
        pthread_t t;
        pthread_create(&t, 0, exec_sh, 0);
        pthread_join(t, 0);
        _exit(98);
    }
    report("thread execs sh", pid);

    pid = fork();
    if (pid == 0) { /* the main thread execs; three others sleep, read, spin */
        before_pid = getpid();
        pthread_t t;
        pthread_create(&t, 0, sleeper, 0);
        pthread_create(&t, 0, reader, 0);
        pthread_create(&t, 0, spinner, 0);
        usleep(50000);
        exec_self();
    }
    report("main execs", pid);

    pid = fork();
    if (pid == 0) { /* a second thread execs while main sleeps and others block */
        before_pid = getpid();
        pthread_t t;
        pthread_create(&t, 0, sleeper, 0);
        pthread_create(&t, 0, reader, 0);
        usleep(50000);
        pthread_create(&t, 0, exec_after, 0);
        for (;;) pause();
    }
    report("thread execs", pid);

    pid = fork();
    if (pid == 0) { /* a thread execs after the main thread is gone */
        before_pid = getpid();
        pthread_t t;
        pthread_create(&t, 0, exec_after, (void *)1);
        pthread_exit(0);
    }
    report("thread execs after main exits", pid);

    pid = fork();
    if (pid == 0) { /* a failed exec leaves every thread running */
        pthread_t t;
        pthread_create(&t, 0, sleeper, 0);
        usleep(20000);
        execl("/nonexistent/program", "x", (char *)0);
        printf("  failed exec: %s, threads %d\n", strerrorname_np(errno), count_threads());
        _exit(3);
    }
    report("failed exec", pid);
    return 0;
}
