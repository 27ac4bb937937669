/* splice, tee, vmsplice, sync_file_range, pipe sizes, fallocate modes and
 * small errno cases (FIONREAD, fsync, copy_file_range, SCM_CREDENTIALS):
 * one line per call, the same natively and in the sandbox.
 *
 * usage: fs_io DIR         (DIR: an empty writable directory)
 *        fs_io DIR max     (only F_SETPIPE_SZ past pipe-max-size: root
 *                           passes natively, EPERM in the sandbox as gVisor)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;
static volatile sig_atomic_t sigpipes, alarms;

static void show(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerrorname_np(errno));
    else
        printf("%s: %ld\n", what, r);
    fflush(stdout);
}

static char *path(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void show_data(const char *what, const char *buf, long n) {
    printf("%s: \"", what);
    for (long i = 0; i < n; i++)
        putchar(buf[i] >= 32 && buf[i] < 127 ? buf[i] : '.');
    printf("\"\n");
}

static long fionread(int fd) {
    int n = -1;
    return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

static void drain(int fd) {
    char buf[65536];
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    while (read(fd, buf, sizeof buf) > 0) {
    }
    fcntl(fd, F_SETFL, fl);
}

static off_t cur(int fd) { return lseek(fd, 0, SEEK_CUR); }

static int make_file(const char *name, long size) {
    int fd = open(path(name), O_RDWR | O_CREAT | O_TRUNC, 0644);
    char *buf = malloc(size);
    for (long i = 0; i < size; i++)
        buf[i] = 'a' + i % 26;
    if (write(fd, buf, size) != size)
        abort();
    free(buf);
    return fd;
}

static void on_sigpipe(int sig) { (void)sig; sigpipes++; }
static void on_alarm(int sig) { (void)sig; alarms++; }

/* ----------------------------------------------------------- pipe sizes */
struct bigwrite { int fd; long n; long done; };

static void *writer(void *arg) {
    struct bigwrite *w = arg;
    char *buf = calloc(1, w->n);
    w->done = write(w->fd, buf, w->n);
    free(buf);
    return NULL;
}

static void pipe_sizes(void) {
    int p[2], fl;
    char buf[8192];
    memset(buf, 'x', sizeof buf);
    pipe(p);
    show("getpipe default", fcntl(p[0], F_GETPIPE_SZ));
    show("setpipe 100000", fcntl(p[1], F_SETPIPE_SZ, 100000));
    show("getpipe after", fcntl(p[0], F_GETPIPE_SZ));
    show("setpipe 0", fcntl(p[0], F_SETPIPE_SZ, 0));
    show("setpipe 4097", fcntl(p[0], F_SETPIPE_SZ, 4097));
    show("setpipe 1048576", fcntl(p[0], F_SETPIPE_SZ, 1048576));
    show("setpipe -1", fcntl(p[0], F_SETPIPE_SZ, -1));
    show("write 8192", write(p[1], buf, 8192));
    show("setpipe 4096 busy", fcntl(p[1], F_SETPIPE_SZ, 4096));
    show("setpipe 8192 full", fcntl(p[1], F_SETPIPE_SZ, 8192));
    fl = fcntl(p[1], F_GETFL);
    fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
    show("write to full", write(p[1], buf, 1));
    drain(p[0]);
    show("setpipe 4096", fcntl(p[1], F_SETPIPE_SZ, 4096));
    show("write 8192 nonblock", write(p[1], buf, 8192));
    show("write 1 more", write(p[1], buf, 1));
    struct pollfd pf = {p[1], POLLOUT, 0};
    show("poll full", poll(&pf, 1, 0));
    drain(p[0]);
    show("poll empty", poll(&pf, 1, 0));
    show("write 100", write(p[1], buf, 100));
    show("write 3996", write(p[1], buf, 3996));
    show("write 1 past", write(p[1], buf, 1));
    drain(p[0]);
    fcntl(p[1], F_SETFL, fl);
    /* a blocking write larger than the pipe goes through in pieces */
    struct bigwrite w = {p[1], 100000, 0};
    pthread_t th;
    pthread_create(&th, NULL, writer, &w);
    long total = 0, n;
    while (total < w.n && (n = read(p[0], buf, sizeof buf)) > 0)
        total += n;
    pthread_join(th, NULL);
    printf("blocking write through 4096: wrote %ld read %ld\n", w.done, total);
    close(p[0]);
    close(p[1]);

    mkfifo(path("fifo"), 0600);
    int f = open(path("fifo"), O_RDWR | O_NONBLOCK);
    show("fifo getpipe", fcntl(f, F_GETPIPE_SZ));
    show("fifo setpipe 8192", fcntl(f, F_SETPIPE_SZ, 8192));
    show("fifo fsync", fsync(f));
    close(f);
    f = open(path("fifo"), O_RDWR | O_NONBLOCK);
    show("fifo reopened getpipe", fcntl(f, F_GETPIPE_SZ));
    close(f);
    show("regular getpipe", fcntl(open("/proc/self/exe", O_RDONLY), F_GETPIPE_SZ));
}

/* ---------------------------------------------------------------- splice */
static void *late_writer(void *arg) {
    usleep(20000);
    write(*(int *)arg, "late", 4);
    return NULL;
}

static void splices(void) {
    int fd = make_file("data", 100000), out = open(path("out"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    int p[2], a[2], b[2], c[2], d[2], sv[2];
    char buf[65536];
    loff_t off;
    long n;
    pipe(p);
    pipe(a);
    pipe(b);

    off = 100;
    show("splice file->pipe at 100", splice(fd, &off, p[1], NULL, 50, 0));
    printf("off %ld pos %ld\n", (long)off, (long)cur(fd));
    n = read(p[0], buf, sizeof buf);
    show_data("got", buf, n);
    lseek(fd, 26, SEEK_SET);
    show("splice file->pipe", splice(fd, NULL, p[1], NULL, 10, 0));
    printf("pos %ld\n", (long)cur(fd));
    n = read(p[0], buf, sizeof buf);
    show_data("got", buf, n);
    lseek(fd, 4096, SEEK_SET);
    show("splice file->pipe big", splice(fd, NULL, p[1], NULL, 100000, 0));
    printf("pos %ld fionread %ld\n", (long)cur(fd), fionread(p[0]));
    off = 0;
    show("splice into full nonblock", splice(fd, &off, p[1], NULL, 10, SPLICE_F_NONBLOCK));
    drain(p[0]);
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    off = 0;
    show("splice into 4096 pipe", splice(fd, &off, p[1], NULL, 10000, 0));
    drain(p[0]);
    off = 99990;
    show("splice at eof-10", splice(fd, &off, p[1], NULL, 100, 0));
    drain(p[0]);
    show("splice at eof", splice(fd, &off, p[1], NULL, 100, 0));
    drain(p[0]);

    write(p[1], "HELLO", 5);
    off = 3;
    show("splice pipe->file at 3", splice(p[0], NULL, out, &off, 100, 0));
    printf("off %ld pos %ld\n", (long)off, (long)cur(out));
    write(p[1], "world", 5);
    show("splice pipe->file", splice(p[0], NULL, out, NULL, 100, 0));
    printf("pos %ld\n", (long)cur(out));
    n = pread(out, buf, sizeof buf, 0);
    show_data("file", buf, n);

    write(a[1], "abcdefgh", 8);
    show("splice pipe->pipe", splice(a[0], NULL, b[1], NULL, 5, 0));
    printf("fionread a %ld b %ld\n", fionread(a[0]), fionread(b[0]));
    show("tee", tee(a[0], b[1], 100, 0));
    printf("fionread a %ld b %ld\n", fionread(a[0]), fionread(b[0]));
    n = read(b[0], buf, sizeof buf);
    show_data("b", buf, n);
    n = read(a[0], buf, sizeof buf);
    show_data("a", buf, n);

    off = 0;
    show("splice off on pipe", splice(a[0], &off, b[1], NULL, 1, 0));
    show("splice off out pipe", splice(fd, NULL, b[1], &off, 1, 0));
    show("splice to itself", splice(a[0], NULL, a[1], NULL, 1, 0));
    show("splice file->file", splice(fd, NULL, out, NULL, 1, 0));
    show("splice bad flags", splice(a[0], NULL, b[1], NULL, 1, 0x100));
    show("splice len 0", splice(-1, NULL, -1, NULL, 0, 0));
    show("splice bad fd", splice(-1, NULL, b[1], NULL, 1, 0));
    show("splice from write end", splice(b[1], NULL, a[1], NULL, 1, 0));
    show("splice empty nonblock", splice(a[0], NULL, b[1], NULL, 1, SPLICE_F_NONBLOCK));
    fcntl(a[0], F_SETFL, O_NONBLOCK);
    show("splice empty O_NONBLOCK", splice(a[0], NULL, b[1], NULL, 1, 0));
    show("splice empty O_NONBLOCK ->file", splice(a[0], NULL, out, NULL, 1, 0));
    fcntl(a[0], F_SETFL, 0);
    off = -1;
    show("splice negative offset", splice(fd, &off, b[1], NULL, 1, 0));
    show("splice bad offset ptr", splice(fd, (loff_t *)8, b[1], NULL, 1, 0));
    int app = open(path("out"), O_WRONLY | O_APPEND);
    write(a[1], "x", 1);
    show("splice to O_APPEND", splice(a[0], NULL, app, NULL, 1, 0));
    printf("fionread a %ld\n", fionread(a[0]));
    drain(a[0]);
    int ev = eventfd(0, 0);
    show("splice eventfd->pipe", splice(ev, NULL, b[1], NULL, 8, 0));
    show("tee file", tee(fd, b[1], 1, 0));
    show("tee len 0", tee(-1, -1, 0, 0));
    show("tee to itself", tee(a[0], a[1], 1, 0));
    show("tee bad flags", tee(a[0], b[1], 1, 0x40));
    show("tee empty nonblock", tee(a[0], b[1], 1, SPLICE_F_NONBLOCK));

    signal(SIGPIPE, on_sigpipe);
    pipe(c);
    close(c[0]);
    off = 0;
    show("splice file->readerless pipe", splice(fd, &off, c[1], NULL, 1, 0));
    write(a[1], "y", 1);
    show("splice pipe->readerless pipe", splice(a[0], NULL, c[1], NULL, 1, 0));
    printf("sigpipes %d fionread a %ld\n", (int)sigpipes, fionread(a[0]));
    drain(a[0]);
    pipe(d);
    close(d[1]);
    show("splice at pipe eof", splice(d[0], NULL, out, NULL, 10, 0));
    show("tee at pipe eof", tee(d[0], b[1], 10, 0));

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    write(a[1], "sockdata", 8);
    show("splice pipe->socket", splice(a[0], NULL, sv[0], NULL, 100, 0));
    n = read(sv[1], buf, sizeof buf);
    show_data("socket got", buf, n);
    write(sv[1], "back", 4);
    show("splice socket->pipe", splice(sv[0], NULL, b[1], NULL, 100, 0));
    n = read(b[0], buf, sizeof buf);
    show_data("pipe got", buf, n);
    off = 0;
    show("splice socket with offset", splice(sv[0], &off, b[1], NULL, 1, 0));
    show("splice socket empty nonblock", splice(sv[0], NULL, b[1], NULL, 1, SPLICE_F_NONBLOCK));
    show("fsync socket", fsync(sv[0]));
    show("fsync pipe", fsync(a[0]));
    show("fdatasync pipe", fdatasync(a[1]));
    show("fsync eventfd", fsync(ev));
    show("fsync file", fsync(fd));

    pthread_t th;
    pthread_create(&th, NULL, late_writer, &a[1]);
    show("splice waits", splice(a[0], NULL, b[1], NULL, 100, 0));
    pthread_join(th, NULL);
    n = read(b[0], buf, sizeof buf);
    show_data("got", buf, n);
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    show("splice interrupted", splice(a[0], NULL, b[1], NULL, 100, 0));
    setitimer(ITIMER_REAL, &it, NULL);
    show("tee interrupted", tee(a[0], b[1], 100, 0));
    printf("alarms %d\n", (int)alarms);

    struct iovec iov[2] = {{"vm", 2}, {"splice", 6}};
    show("vmsplice to pipe", vmsplice(a[1], iov, 2, 0));
    n = read(a[0], buf, sizeof buf);
    show_data("got", buf, n);
    write(a[1], "tovm", 4);
    char r1[2], r2[10] = {0};
    struct iovec riov[2] = {{r1, 2}, {r2, 10}};
    show("vmsplice from pipe", vmsplice(a[0], riov, 2, 0));
    show_data("r1", r1, 2);
    show_data("r2", r2, 2);
    show("vmsplice empty nonblock", vmsplice(a[0], riov, 2, SPLICE_F_NONBLOCK));
    show("vmsplice file", vmsplice(fd, iov, 2, 0));
    struct iovec zero = {buf, 0};
    show("vmsplice nothing", vmsplice(a[1], &zero, 1, 0));
    show("vmsplice bad flags", vmsplice(a[1], iov, 1, 0x10));
    int e[2];
    pipe(e);
    fcntl(e[1], F_SETPIPE_SZ, 4096);
    write(e[1], buf, 4096);
    show("vmsplice full nonblock", vmsplice(e[1], iov, 1, SPLICE_F_NONBLOCK));
    show("vmsplice readerless", vmsplice(c[1], iov, 1, 0));
    printf("sigpipes %d\n", (int)sigpipes);

    show("sync_file_range", sync_file_range(fd, 0, 0, 0));
    show("sync_file_range all flags", sync_file_range(fd, 0, 100, 7));
    show("sync_file_range bad flags", sync_file_range(fd, 0, 0, 8));
    show("sync_file_range negative offset", sync_file_range(fd, -1, 0, 0));
    show("sync_file_range negative length", sync_file_range(fd, 10, -5, 0));
    show("sync_file_range overflow", sync_file_range(fd, LLONG_MAX - 5, 10, 0));
    show("sync_file_range pipe", sync_file_range(a[0], 0, 0, 0));
    show("sync_file_range bad fd", sync_file_range(-1, 0, 0, 0));
}

/* ------------------------------------------------------------ fallocate */
static void file_summary(int fd) {
    struct stat st;
    fstat(fd, &st);
    char *buf = malloc(st.st_size + 1);
    long n = pread(fd, buf, st.st_size, 0), zeros = 0, first = -1, last = -1;
    for (long i = 0; i < n; i++)
        if (!buf[i]) {
            zeros++;
            if (first < 0)
                first = i;
            last = i;
        }
    printf("  size %ld zeros %ld [%ld..%ld]\n", (long)st.st_size, zeros, first, last);
    free(buf);
}

static void fallocates(void) {
    int fd = make_file("fa", 8192), p[2];
    pipe(p);
    show("punch hole without keep size", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
    show("punch hole", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 200));
    file_summary(fd);
    show("punch hole past eof", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8000, 1000));
    file_summary(fd);
    show("zero range", fallocate(fd, FALLOC_FL_ZERO_RANGE, 50, 10));
    file_summary(fd);
    show("zero range extends", fallocate(fd, FALLOC_FL_ZERO_RANGE, 8192, 808));
    file_summary(fd);
    show("zero range keep size", fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 9000, 1000));
    file_summary(fd);
    show("allocate", fallocate(fd, 0, 0, 10000));
    file_summary(fd);
    show("allocate keep size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 20000));
    file_summary(fd);
    show("punch and zero", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 1));
    show("collapse keep size", fallocate(fd, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096));
    show("no hide stale", fallocate(fd, FALLOC_FL_NO_HIDE_STALE, 0, 1));
    show("length 0", fallocate(fd, 0, 0, 0));
    show("negative offset", fallocate(fd, 0, -1, 1));
    show("pipe", fallocate(p[1], 0, 0, 1));
    int ro = open(path("fa"), O_RDONLY);
    show("read-only", fallocate(ro, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1));

    int n;
    lseek(fd, 100, SEEK_SET);
    show("fionread file", ioctl(fd, FIONREAD, &n));
    printf("  %d\n", n);
    lseek(fd, 10500, SEEK_SET);
    show("fionread past eof", ioctl(fd, FIONREAD, &n));
    printf("  %d\n", n);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    show("fionread directory", ioctl(dfd, FIONREAD, &n));

    int cf = make_file("cf", 8192), cf2 = open(path("cf"), O_RDWR);
    loff_t i = 0, o = 100;
    show("copy_file_range overlap", copy_file_range(cf, &i, cf, &o, 200, 0));
    i = 0, o = 4096;
    show("copy_file_range disjoint", copy_file_range(cf, &i, cf, &o, 100, 0));
    printf("  in %ld out %ld\n", (long)i, (long)o);
    i = 8000, o = 8100;
    show("copy_file_range overlap near eof", copy_file_range(cf, &i, cf, &o, 1000, 0));
    i = 9000, o = 8100;
    show("copy_file_range past eof", copy_file_range(cf, &i, cf, &o, 1000, 0));
    i = 0, o = 10;
    show("copy_file_range overlap two fds", copy_file_range(cf, &i, cf2, &o, 100, 0));
    i = 0, o = 200;
    show("copy_file_range adjacent", copy_file_range(cf, &i, cf2, &o, 200, 0));
}

/* ------------------------------------------------------- SCM_CREDENTIALS */
static long send_creds(int s, pid_t pid, uid_t uid, gid_t gid) {
    char data = 'c';
    struct iovec iov = {&data, 1};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(struct ucred))]; } u;
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred cr = {pid, uid, gid};
    memcpy(CMSG_DATA(c), &cr, sizeof cr);
    return sendmsg(s, &m, 0);
}

static void credentials(void) {
    int sv[2], gate[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    pipe(gate);
    show("creds own pid", send_creds(sv[0], getpid(), 0, 0));
    show("creds pid 1", send_creds(sv[0], 1, 0, 0));
    show("creds no such pid", send_creds(sv[0], INT_MAX, 0, 0));
    show("creds pid 0", send_creds(sv[0], 0, 0, 0));
    show("creds uid -1", send_creds(sv[0], getpid(), -1, 0));
    pid_t child = fork();
    if (child == 0) {
        char x;
        close(gate[1]);
        read(gate[0], &x, 1);
        _exit(0);
    }
    show("creds child pid", send_creds(sv[0], child, 0, 0));
    close(gate[1]);
    waitpid(child, NULL, 0);
    show("creds reaped child", send_creds(sv[0], child, 0, 0));
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    dir = argv[1];
    if (argc > 2 && !strcmp(argv[2], "max")) {
        int p[2];
        pipe(p);
        show("setpipe 2097152", fcntl(p[0], F_SETPIPE_SZ, 2097152));
        show("getpipe", fcntl(p[0], F_GETPIPE_SZ));
        return 0;
    }
    pipe_sizes();
    splices();
    fallocates();
    credentials();
    return 0;
}
