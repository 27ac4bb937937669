/* A zombie is still there until reaped: kill(zombie, 0) and a signal to it
 * succeed (and do nothing), kill(-pgid) reaches a group whose only member
 * is a zombie, getpgid/getsid report its ids; once reaped, ESRCH. A pid
 * may name any thread (kill, getpgid). setpgid on a child: fine before it
 * execs, EACCES after; on a non-leader thread: EINVAL.
 * Prints one line per case; the output must match a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)
#define TRY(name, call) do { long r_ = (call); printf(" %s=%s", name, r_ == 0 ? "0" : r_ > 0 ? "positive" \
                                                         : strerrorname_np(errno)); } while (0)

static pid_t thread_tid;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done;

static void *thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&m);
    thread_tid = syscall(SYS_gettid);
    pthread_cond_broadcast(&cond);
    while (!done) pthread_cond_wait(&cond, &m);
    pthread_mutex_unlock(&m);
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0); /* its own group, of which it is the only member */
        _exit(3);
    }
    siginfo_t si;
    CHECK(waitid(P_PID, child, &si, WEXITED | WNOWAIT) == 0); /* a zombie now, not reaped */
    printf("zombie:");
    TRY("kill0", kill(child, 0));
    TRY("kill TERM", kill(child, SIGTERM));
    TRY("kill KILL", kill(child, SIGKILL));
    TRY("kill -pgid", kill(-child, 0));
    printf(" getpgid is its own %d, getsid is ours %d", getpgid(child) == child, getsid(child) == getsid(0));
    printf("\n");
    int status;
    CHECK(waitpid(child, &status, 0) == child);
    printf("reaped: status %d", WEXITSTATUS(status));
    TRY("kill0", kill(child, 0));
    TRY("kill -pgid", kill(-child, 0));
    TRY("getpgid", getpgid(child));
    TRY("getsid", getsid(child));
    printf("\n");

    /* setpgid on a child before and after it execs. ``go`` lets it exec;
     * ``execd`` (close-on-exec) reads EOF once it has. */
    int go[2], execd[2];
    CHECK(pipe2(go, O_CLOEXEC) == 0 && pipe2(execd, O_CLOEXEC) == 0);
    child = fork();
    if (child == 0) {
        char byte;
        close(execd[0]);
        read(go[0], &byte, 1);
        execl("/bin/sleep", "sleep", "10", (char *)0);
        _exit(99);
    }
    close(go[0]);
    close(execd[1]);
    printf("setpgid on child:");
    TRY("before exec", setpgid(child, child));
    printf(" pgid %d", getpgid(child) == child);
    TRY("back", setpgid(child, getpgrp()));
    write(go[1], "x", 1);
    char byte;
    CHECK(read(execd[0], &byte, 1) == 0);
    TRY("after exec", setpgid(child, child));
    printf(" pgid unchanged %d\n", getpgid(child) == getpgrp());
    kill(child, SIGKILL);
    waitpid(child, 0, 0);

    /* Thread ids name the process. */
    pthread_t t;
    pthread_mutex_lock(&m);
    pthread_create(&t, 0, thread, 0);
    while (!thread_tid) pthread_cond_wait(&cond, &m);
    pthread_mutex_unlock(&m);
    printf("thread id:");
    TRY("kill0", kill(thread_tid, 0));
    printf(" getpgid is ours %d", getpgid(thread_tid) == getpgrp());
    TRY("setpgid", setpgid(thread_tid, 0));
    printf("\n");
    pthread_mutex_lock(&m);
    done = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&m);
    pthread_join(t, 0);
    return 0;
}
