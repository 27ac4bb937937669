/* Exhaust the Sentry's host fds from inside (after /tmp/audit8/fdx.c).
 *
 * usage: fd_exhaust PROCS
 *
 * PROCS children each raise their soft RLIMIT_NOFILE to the hard one and
 * open host files (rootfs files: each open holds a host fd in the Sentry)
 * until open fails, report how many and why, and wait. Then, with every
 * child still holding its files, the parent asks the Sentry for things
 * that need host fds of its own (a process: a stub or a vCPU; a thread; a
 * program; a file mapping; a pipe) and prints what each gave. Output:
 *
 *   opened N (EMFILE a, ENFILE b, other c)
 *   fork ok | fork ERRNO
 *   child exit S | child signal S
 *   thread ok | thread ERRNO
 *   mmap ok | open ERRNO | mmap ERRNO
 *   pipe ok | pipe ERRNO
 *   released: open ok
 *   done
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread_main(void *arg) { return arg; }

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int procs = argc > 1 ? atoi(argv[1]) : 2;
    int gate[2], report[2];
    if (pipe(gate) || pipe(report))
        return 2;
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            close(gate[1]);
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            int got[2] = {0, 0};
            while (open(got[0] % 2 ? "/etc/passwd" : "/bin/true", O_RDONLY) >= 0)
                got[0]++;
            got[1] = errno;
            write(report[1], got, sizeof got);
            char c;
            read(gate[0], &c, 1); /* hold the files until the parent is done */
            _exit(0);
        }
    }
    close(gate[0]);
    close(report[1]);
    int total = 0, emfile = 0, enfile = 0, other = 0, got[2];
    for (int p = 0; p < procs && read(report[0], got, sizeof got) == sizeof got; p++) {
        total += got[0];
        emfile += got[1] == EMFILE;
        enfile += got[1] == ENFILE;
        other += got[1] != EMFILE && got[1] != ENFILE;
    }
    printf("opened %d (EMFILE %d, ENFILE %d, other %d)\n", total, emfile, enfile, other);

    pid_t c = fork();
    if (c == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(100 + errno); /* the program cannot be opened: ENFILE, say */
    }
    if (c < 0) {
        printf("fork %s\n", strerrorname_np(errno));
    } else {
        int st = 0;
        printf("fork ok\n");
        waitpid(c, &st, 0);
        if (WIFEXITED(st))
            printf("child exit %d\n", WEXITSTATUS(st));
        else
            printf("child signal %d\n", WTERMSIG(st));
    }
    pthread_t t;
    int r = pthread_create(&t, NULL, thread_main, NULL);
    if (r == 0) {
        pthread_join(t, NULL);
        printf("thread ok\n");
    } else {
        printf("thread %s\n", strerrorname_np(r));
    }
    int fd = open("/bin/true", O_RDONLY);
    if (fd < 0) {
        printf("open %s\n", strerrorname_np(errno));
    } else {
        void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
        printf(m == MAP_FAILED ? "mmap %s\n" : "mmap ok\n", strerrorname_np(errno));
        close(fd);
    }
    int pp[2];
    printf(pipe(pp) == 0 ? "pipe ok\n" : "pipe %s\n", strerrorname_np(errno));
    close(gate[1]);
    while (wait(NULL) > 0) {}
    fd = open("/etc/passwd", O_RDONLY); /* the children's files are closed: host fds are free again */
    printf(fd >= 0 ? "released: open ok\n" : "released: open %s\n", strerrorname_np(errno));
    printf("done\n");
    return 0;
}
