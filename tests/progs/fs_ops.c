/* File-system calls and their errors, printed deterministically (no inode
 * numbers or times), so the output in the Sentry can be compared with a
 * native run. Works in the directory given as argv[1] (must exist, empty). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHECK(expr) report(#expr, (long)(expr))

static long report(const char *what, long r) {
    if (r < 0)
        printf("%s = -1 %s\n", what, strerrorname_np(errno));
    else
        printf("%s = %ld\n", what, r);
    return r;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void list(const char *path) {
    DIR *d = opendir(path);
    if (!d) { printf("opendir %s: %s\n", path, strerrorname_np(errno)); return; }
    char *names[64]; int n = 0; struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        char buf[300];
        snprintf(buf, sizeof buf, "%s:%d", e->d_name, e->d_type);
        names[n++] = strdup(buf);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) { printf(" %s", names[i]); free(names[i]); }
    printf("\n");
}

static void show(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) { printf("lstat %s: %s\n", path, strerrorname_np(errno)); return; }
    printf("stat %s: mode=%o nlink=%lu size=%ld\n", path, st.st_mode, (unsigned long)st.st_nlink,
           (long)st.st_size);
}

int main(int argc, char **argv) {
    char buf[256];
    if (argc < 2 || chdir(argv[1]) < 0) { perror("chdir"); return 2; }
    umask(022);
    int fd = CHECK(open("f", O_CREAT | O_RDWR | O_EXCL, 0666));
    CHECK(open("f", O_CREAT | O_RDWR | O_EXCL, 0666));
    CHECK(write(fd, "hello world\n", 12));
    CHECK(lseek(fd, 0, SEEK_CUR));
    CHECK(pwrite(fd, "HELLO", 5, 0));
    CHECK(lseek(fd, 6, SEEK_SET));
    memset(buf, 0, sizeof buf);
    CHECK(read(fd, buf, 100));
    printf("read: %s", buf);
    CHECK(pread(fd, buf, 5, 0));
    printf("pread: %.5s\n", buf);
    CHECK(lseek(fd, 100, SEEK_END));
    CHECK(write(fd, "x", 1));
    show("f");
    CHECK(ftruncate(fd, 3));
    show("f");
    struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
    CHECK(lseek(fd, 0, SEEK_END));
    CHECK(writev(fd, iov, 2));
    CHECK(pread(fd, buf, 100, 0));
    printf("content: %.7s\n", buf);
    CHECK(fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK));
    CHECK(fcntl(fd, F_SETFL, O_APPEND));
    CHECK(fcntl(fd, F_GETFL) & (O_ACCMODE | O_APPEND | O_NONBLOCK));
    CHECK(fcntl(fd, F_GETFD));
    int fd2 = CHECK(fcntl(fd, F_DUPFD_CLOEXEC, 10));
    CHECK(fcntl(fd2, F_GETFD));
    CHECK(dup2(fd, 20));
    CHECK(dup3(fd, 20, 0));
    CHECK(close(20));
    CHECK(close(20));
    CHECK(close(fd2));
    CHECK(ioctl(fd, 0x5401 /* TCGETS */, buf));

    CHECK(mkdir("d", 0777));
    CHECK(mkdir("d", 0777));
    CHECK(mkdir("d/sub", 0700));
    CHECK(rmdir("d"));
    CHECK(rename("f", "d/f2"));
    CHECK(link("d/f2", "hard"));
    CHECK(symlink("d/f2", "sym"));
    CHECK(symlink("nowhere", "dangling"));
    show("hard");
    show("sym");
    ssize_t n = readlink("sym", buf, sizeof buf);
    printf("readlink sym = %.*s\n", (int)n, buf);
    CHECK(readlink("hard", buf, sizeof buf));
    CHECK(open("dangling", O_RDONLY));
    CHECK(open("sym", O_RDONLY | O_NOFOLLOW));
    CHECK(open("d/f2/x", O_RDONLY));
    CHECK(open("d", O_WRONLY));
    CHECK(open("nope/x", O_CREAT | O_WRONLY, 0644));
    CHECK(access("d/f2", R_OK | W_OK));
    CHECK(access("nope", F_OK));
    CHECK(unlink("d"));
    CHECK(rmdir("d/f2"));
    CHECK(rename("d", "d/sub/inside"));
    CHECK(rename("d/sub", "d/f2"));
    CHECK(chmod("hard", 0600));
    show("d/f2");
    CHECK(truncate("hard", 1));
    show("d/f2");
    list(".");
    list("d");
    CHECK(unlink("hard"));
    show("d/f2");
    CHECK(unlink("sym"));
    CHECK(unlink("dangling"));
    CHECK(unlinkat(AT_FDCWD, "d/sub", AT_REMOVEDIR));
    CHECK(renameat2(AT_FDCWD, "d/f2", AT_FDCWD, "g", RENAME_NOREPLACE));
    int dfd = CHECK(open("d", O_RDONLY | O_DIRECTORY));
    CHECK(openat(dfd, "../g", O_RDONLY) >= 0);
    CHECK(mkdirat(dfd, "via_dirfd", 0755));
    struct stat st;
    CHECK(fstatat(dfd, "via_dirfd", &st, 0));
    printf("via_dirfd mode=%o\n", st.st_mode);
    CHECK(fstatat(dfd, "", &st, AT_EMPTY_PATH));
    printf("dirfd is dir: %d\n", S_ISDIR(st.st_mode));
    CHECK(fchdir(dfd));
    if (getcwd(buf, sizeof buf))
        printf("cwd ends with /d: %d\n", strlen(buf) >= 2 && !strcmp(buf + strlen(buf) - 2, "/d"));
    CHECK(chdir(".."));
    list("d");

    int p[2];
    CHECK(pipe2(p, O_CLOEXEC));
    CHECK(write(p[1], "through a pipe", 14));
    CHECK(read(p[0], buf, sizeof buf));
    CHECK(close(p[1]));
    CHECK(read(p[0], buf, sizeof buf));
    CHECK(fcntl(p[0], F_GETFD));
    CHECK(lseek(p[0], 0, SEEK_SET));
    struct stat pst;
    CHECK(fstat(p[0], &pst));
    printf("pipe is fifo: %d\n", S_ISFIFO(pst.st_mode));
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dfd);
    n = readlink(link, buf, sizeof buf);
    printf("fd link ends with /d: %d\n", n >= 2 && !memcmp(buf + n - 2, "/d", 2));

    int nfd = CHECK(open("/dev/null", O_RDWR));
    CHECK(write(nfd, "abc", 3));
    CHECK(read(nfd, buf, 10));
    int zfd = CHECK(open("/dev/zero", O_RDONLY));
    CHECK(read(zfd, buf, 8));
    printf("zero: %d\n", buf[0] + buf[7]);
    struct statfs sfs;
    CHECK(statfs("/", &sfs));
    CHECK(creat("made", 0600));
    show("made");
    CHECK(close_range(3, ~0U, 0));
    CHECK(close(3));
    return 0;
}
