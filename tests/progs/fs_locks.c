/* Advisory locks between two processes: POSIX record locks, OFD locks and
 * flock, printed deterministically for comparison with a native run.
 * argv[1]: a scratch file path. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static int lock(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static const char *res(int r) { return r == 0 ? "ok" : strerrorname_np(errno); }

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
    int fd2 = open(argv[1], O_RDWR);
    int go[2], done[2];
    pipe(go);
    pipe(done);
    printf("parent wrlck 0-10: %s\n", res(lock(fd, F_SETLK, F_WRLCK, 0, 10)));
    printf("parent flock ex: %s\n", res(flock(fd, LOCK_EX)));
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int cfd = open(argv[1], O_RDWR);
        printf("child wrlck 5-15: %s\n", res(lock(cfd, F_SETLK, F_WRLCK, 5, 10)));
        printf("child rdlck 10-20: %s\n", res(lock(cfd, F_SETLK, F_RDLCK, 10, 10)));
        struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        fcntl(cfd, F_GETLK, &q);
        printf("child getlk: type=%d start=%ld len=%ld pid_is_parent=%d\n", q.l_type, (long)q.l_start,
               (long)q.l_len, q.l_pid == getppid());
        printf("child flock ex nb: %s\n", res(flock(cfd, LOCK_EX | LOCK_NB)));
        printf("child flock sh nb: %s\n", res(flock(cfd, LOCK_SH | LOCK_NB)));
        struct flock o = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        printf("child ofd rdlck 0: %s\n", res(fcntl(cfd, F_OFD_SETLK, &o)));
        fflush(stdout);
        write(go[1], "g", 1);
        /* blocks until the parent closes fd2, which drops all its POSIX locks */
        printf("child wrlck wait: %s\n", res(lock(cfd, F_SETLKW, F_WRLCK, 0, 0)));
        printf("child flock ex wait: %s\n", res(flock(cfd, LOCK_EX)));
        fflush(stdout);
        _exit(0);
    }
    char c;
    read(go[0], &c, 1);
    usleep(100000);
    printf("parent closes another fd\n");
    fflush(stdout);
    close(fd2);
    usleep(100000);
    printf("parent unlocks flock\n");
    fflush(stdout);
    flock(fd, LOCK_UN);
    int status;
    waitpid(child, &status, 0);
    printf("parent rdlck after child exit: %s\n", res(lock(fd, F_SETLK, F_RDLCK, 0, 0)));
    return 0;
}
