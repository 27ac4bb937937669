/* Sockets between a forked client and server: unix stream with SCM_RIGHTS
 * and SCM_CREDENTIALS, unix dgram and seqpacket, TCP and UDP on 127.0.0.1
 * and ::1, names, options, errors. Prints one line per check; the output
 * must match a native run. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* SHOW: a call's result and, if it failed, its errno name. */
#define SHOW(label, expr) do { errno = 0; long r_ = (long)(expr); \
    printf("%s: %ld %s\n", label, r_, r_ < 0 ? strerrorname_np(errno) : "ok"); } while (0)
#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static void send_fd(int sock, int fd, const char *msg) {
    char buf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {(void *)msg, strlen(msg)};
    struct msghdr mh = {0};
    mh.msg_iov = &iov; mh.msg_iovlen = 1;
    mh.msg_control = buf; mh.msg_controllen = sizeof buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    CHECK(sendmsg(sock, &mh, 0) == (ssize_t)strlen(msg));
}

static int recv_fd(int sock, char *out, size_t n) {
    char buf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {out, n - 1};
    struct msghdr mh = {0};
    mh.msg_iov = &iov; mh.msg_iovlen = 1;
    mh.msg_control = buf; mh.msg_controllen = sizeof buf;
    ssize_t got = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    CHECK(got > 0);
    out[got] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    CHECK(c && c->cmsg_type == SCM_RIGHTS);
    int fd; memcpy(&fd, CMSG_DATA(c), sizeof fd);
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
    return fd;
}

static void unix_stream(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char msg[64];
        int fd = recv_fd(sv[1], msg, sizeof msg);
        char data[32] = {0};
        CHECK(read(fd, data, sizeof data) > 0);
        printf("child got '%s' and '%s' through the passed fd\n", msg, data);
        fflush(stdout);
        struct ucred cr; socklen_t l = sizeof cr;
        CHECK(getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &cr, &l) == 0);
        printf("peercred pid matches parent: %d\n", cr.pid == getppid());
        CHECK(write(sv[1], "bye", 3) == 3);
        _exit(0);
    }
    close(sv[1]);
    CHECK(write(p[1], "pipe data", 9) == 9);
    send_fd(sv[0], p[0], "hello");
    close(p[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char buf[16] = {0};
    CHECK(read(sv[0], buf, sizeof buf) == 3);
    CHECK(read(sv[0], buf, sizeof buf) == 0);
    printf("parent read '%s' then EOF\n", buf);
    signal(SIGPIPE, SIG_IGN);
    SHOW("write after peer close", write(sv[0], "x", 1));
    close(sv[0]); close(p[1]);
}

static void unix_named(void) {
    const char *path = "/tmp/sentry-net-test.sock";
    unlink(path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    int early = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("connect before listen", connect(early, (struct sockaddr *)&a, sizeof a));
    close(early);
    CHECK(listen(l, 5) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    printf("bound path is a socket: %d\n", S_ISSOCK(st.st_mode));
    int l2 = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("second bind", bind(l2, (struct sockaddr *)&a, sizeof a));
    close(l2);
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
        struct sockaddr_un peer; socklen_t pl = sizeof peer;
        CHECK(getpeername(c, (struct sockaddr *)&peer, &pl) == 0);
        printf("client peer name: %s\n", peer.sun_path);
        CHECK(write(c, "ping", 4) == 4);
        char b[8] = {0};
        CHECK(read(c, b, sizeof b) == 4);
        printf("client got %s\n", b);
        fflush(stdout);
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    char b[8] = {0};
    CHECK(read(s, b, sizeof b) == 4);
    printf("server got %s\n", b);
    fflush(stdout);
    CHECK(write(s, "pong", 4) == 4);
    int stt;
    waitpid(pid, &stt, 0);
    close(s); close(l);
    CHECK(unlink(path) == 0);
    /* abstract names */
    int d1 = socket(AF_UNIX, SOCK_DGRAM, 0), d2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un ab = {.sun_family = AF_UNIX};
    memcpy(ab.sun_path, "\0sentry-abstract", 16);
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 16;
    CHECK(bind(d1, (struct sockaddr *)&ab, alen) == 0);
    CHECK(sendto(d2, "dgram1", 6, 0, (struct sockaddr *)&ab, alen) == 6);
    CHECK(sendto(d2, "dgram22", 7, 0, (struct sockaddr *)&ab, alen) == 7);
    char db[4];
    ssize_t n = recv(d1, db, sizeof db, MSG_TRUNC);
    printf("dgram truncated: %zd\n", n);
    n = recv(d1, db, sizeof db, 0);
    printf("next dgram: %zd\n", n);
    SHOW("empty nonblocking recv", recv(d1, db, sizeof db, MSG_DONTWAIT));
    close(d1); close(d2);
    /* seqpacket keeps boundaries */
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0);
    CHECK(write(sp[0], "abc", 3) == 3 && write(sp[0], "defgh", 5) == 5);
    char sb[16];
    SHOW("seqpacket record 1", read(sp[1], sb, sizeof sb));
    SHOW("seqpacket record 2", read(sp[1], sb, sizeof sb));
    close(sp[0]); close(sp[1]);
}

static void tcp(int family) {
    int l = socket(family, SOCK_STREAM, 0);
    int one = 1;
    CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *a = (void *)&ss;
        a->sin_family = AF_INET; a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (void *)&ss;
        a->sin6_family = AF_INET6; a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    }
    CHECK(bind(l, (struct sockaddr *)&ss, sl) == 0);
    CHECK(listen(l, 16) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&ss, &sl) == 0);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    printf("tcp%d ephemeral port in range: %d\n", family == AF_INET ? 4 : 6, port >= 32768 && port <= 60999);
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(family, SOCK_STREAM, 0);
        CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
        CHECK(connect(c, (struct sockaddr *)&ss, sl) == 0);
        static char big[1000000];  /* more than the receive buffer: the writer must wait */
        memset(big, 'x', sizeof big);
        CHECK(send(c, big, sizeof big, 0) == sizeof big);  /* send(2) waits in sentry.syscalls.net */
        shutdown(c, SHUT_WR);
        char b[32] = {0};
        CHECK(read(c, b, sizeof b) > 0);
        printf("client got: %s\n", b);
        fflush(stdout);
        _exit(0);
    }
    struct sockaddr_storage peer; socklen_t pl = sizeof peer;
    int s = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
    CHECK(s >= 0);
    char ip[64];
    inet_ntop(family, family == AF_INET ? (void *)&((struct sockaddr_in *)&peer)->sin_addr
                                        : (void *)&((struct sockaddr_in6 *)&peer)->sin6_addr, ip, sizeof ip);
    printf("server accepted from %s\n", ip);
    long total = 0; char buf[8192]; ssize_t n;
    while ((n = read(s, buf, sizeof buf)) > 0) total += n;
    printf("server read %ld bytes then EOF\n", total);
    fflush(stdout);
    char reply[32]; snprintf(reply, sizeof reply, "got %ld", total);
    CHECK(write(s, reply, strlen(reply)) == (ssize_t)strlen(reply));
    int st; waitpid(pid, &st, 0);
    close(s); close(l);
    /* a closed port refuses */
    int c = socket(family, SOCK_STREAM, 0);
    SHOW("connect to closed port", connect(c, (struct sockaddr *)&ss, sl));
    close(c);
}

static void udp(void) {
    int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof sa;
    CHECK(bind(a, (struct sockaddr *)&sa, l) == 0);
    CHECK(getsockname(a, (struct sockaddr *)&sa, &l) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(sendto(b, "udp hello", 9, 0, (struct sockaddr *)&sa, sizeof sa) == 9);
        _exit(0);
    }
    char buf[32] = {0};
    struct sockaddr_in from; socklen_t fl = sizeof from;
    CHECK(recvfrom(a, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl) == 9);
    printf("udp got '%s' from %s\n", buf, inet_ntoa(from.sin_addr));
    int st; waitpid(pid, &st, 0);
    /* a connected socket learns the port is closed */
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in closed = sa;
    close(a);
    CHECK(connect(c, (struct sockaddr *)&closed, sizeof closed) == 0);
    CHECK(send(c, "x", 1, 0) == 1);
    struct pollfd pf = {c, POLLIN, 0};
    poll(&pf, 1, 1000);
    SHOW("recv after unreachable port", recv(c, buf, sizeof buf, 0));
    close(b); close(c);
}

static void errors(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int v; socklen_t l = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &l) == 0);
    printf("SO_TYPE %d\n", v);
    l = sizeof v;
    CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &l) == 0);
    printf("SO_PROTOCOL %d\n", v);
    int p[2];
    CHECK(pipe(p) == 0);
    SHOW("getsockopt on a pipe", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &l));
    SHOW("recv unconnected tcp", recv(s, &v, 4, 0));
    struct sockaddr_in far = {.sin_family = AF_INET, .sin_port = htons(80), .sin_addr.s_addr = htonl(0x08080808)};
    if (getenv("NET_SANDBOX")) {  /* the host may have a network; the sandbox has none */
        SHOW("AF_NETLINK", socket(AF_NETLINK, SOCK_RAW, 0));
        SHOW("connect 8.8.8.8", connect(s, (struct sockaddr *)&far, sizeof far));
    }
    close(s);
}

static int spair[2];
static void on_alarm(int sig) { (void)sig; (void)!write(spair[1], "late", 4); }

static void interrupted(int restart) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, spair) == 0);
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0};
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {.it_value = {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    char b[8] = {0};
    SHOW(restart ? "recv with SA_RESTART" : "recv without SA_RESTART", recv(spair[0], b, sizeof b, 0));
    if (!restart) SHOW("then recv", recv(spair[0], b, sizeof b, 0));
    close(spair[0]); close(spair[1]);
}

static void more(void) {
    /* credentials */
    int sv[2], one = 1;
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    CHECK(write(sv[0], "who", 3) == 3);
    char data[8], ctl[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {data, sizeof data};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    CHECK(recvmsg(sv[1], &mh, 0) == 3);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    struct ucred cr; memcpy(&cr, CMSG_DATA(c), sizeof cr);
    printf("SCM_CREDENTIALS: type %d pid ok %d uid ok %d\n", c->cmsg_type, cr.pid == getpid(), cr.uid == getuid());
    close(sv[0]); close(sv[1]);
    /* peek, FIONREAD, shutdown, timeouts */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[0], "abcdef", 6) == 6);
    int avail = 0;
    CHECK(ioctl(sv[1], FIONREAD, &avail) == 0);
    printf("FIONREAD %d\n", avail);
    char b[8] = {0};
    SHOW("peek", recv(sv[1], b, 3, MSG_PEEK));
    SHOW("read after peek", read(sv[1], b, 8));
    struct timeval tv = {0, 20000};
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    SHOW("recv with SO_RCVTIMEO", recv(sv[1], b, 8, 0));
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    struct pollfd pf = {sv[1], POLLIN | POLLRDHUP, 0};
    CHECK(poll(&pf, 1, 0) == 1);
    printf("after peer SHUT_WR: POLLIN %d POLLRDHUP %d\n", !!(pf.revents & POLLIN), !!(pf.revents & POLLRDHUP));
    SHOW("read at EOF", read(sv[1], b, 8));
    SHOW("write after SHUT_WR", send(sv[0], "x", 1, MSG_NOSIGNAL));
    close(sv[0]); close(sv[1]);
    /* non-blocking TCP connect */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(l, (struct sockaddr *)&a, al) == 0 && listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    SHOW("nonblocking connect", connect(t, (struct sockaddr *)&a, sizeof a));
    pf = (struct pollfd){t, POLLOUT, 0};
    CHECK(poll(&pf, 1, -1) == 1);
    int err = -1; socklen_t el = sizeof err;
    CHECK(getsockopt(t, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    printf("SO_ERROR after connect: %d\n", err);
    SHOW("connect again", connect(t, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in me; socklen_t ml = sizeof me;
    CHECK(getsockname(t, (struct sockaddr *)&me, &ml) == 0);
    printf("client name %s port set %d\n", inet_ntoa(me.sin_addr), me.sin_port != 0);
    int l2 = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("bind a listening port", bind(l2, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in far = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0xC0000201)};
    SHOW("bind 192.0.2.1", bind(l2, (struct sockaddr *)&far, sizeof far));
    close(t); close(l); close(l2);
    /* a unix dgram socket connected to another refuses strangers */
    int d[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, "\0sentry-dg", 10);
    socklen_t ul = offsetof(struct sockaddr_un, sun_path) + 10;
    int d3 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(d[0], (struct sockaddr *)&un, ul) == 0);
    SHOW("dgram to a socket connected elsewhere", sendto(d3, "x", 1, 0, (struct sockaddr *)&un, ul));
    close(d[0]); close(d[1]); close(d3);
    interrupted(0);
    interrupted(1);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *what = argc > 1 ? argv[1] : "all";
    if (!strcmp(what, "all") || !strcmp(what, "unix")) { unix_stream(); unix_named(); }
    if (!strcmp(what, "all") || !strcmp(what, "tcp")) { tcp(AF_INET); tcp(AF_INET6); }
    if (!strcmp(what, "all") || !strcmp(what, "udp")) udp();
    if (!strcmp(what, "all") || !strcmp(what, "errors")) errors();
    if (!strcmp(what, "all") || !strcmp(what, "more")) more();
    printf("done\n");
    return 0;
}
