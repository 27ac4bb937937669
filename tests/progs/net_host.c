/* Host networking (--network=host): a client of the test's host servers
 * and servers the test reaches from the host. Prints one line per check;
 * the client's output must match a native run against the same servers.
 *
 *   net_host client TCPPORT UDPPORT   TCP and UDP to 127.0.0.1, with poll,
 *                                     epoll (level and edge), select
 *   net_host tcp-server               prints "port N", serves one client
 *   net_host udp-server N             prints "port N", echoes N datagrams
 *
 * The host's TCP server answers each line L with "echo:L" and EOF with
 * "bye\n"; its UDP server answers each datagram D with "echo:D". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHOW(label, expr) do { errno = 0; long r_ = (long)(expr); \
    printf("%s: %ld %s\n", label, r_, r_ < 0 ? strerrorname_np(errno) : "ok"); } while (0)
#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return a;
}

/* Read until "\n" (the servers answer whole lines). */
static void read_line(int s, const char *label) {
    char buf[256]; size_t n = 0;
    while (n < sizeof buf - 1) {
        ssize_t r = read(s, buf + n, 1);
        CHECK(r >= 0);
        if (r == 0) break;
        n++;
        if (buf[n - 1] == '\n') break;
    }
    buf[n] = 0;
    printf("%s: %s", label, n ? buf : "(EOF)\n");
}

static void tcp_client(int port) {
    struct sockaddr_in a = loopback(port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
    int v = 0; socklen_t vl = sizeof v;
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0);
    printf("TCP_NODELAY read back: %d\n", v != 0);
    SHOW("connect", connect(s, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in peer; socklen_t pl = sizeof peer;
    CHECK(getpeername(s, (struct sockaddr *)&peer, &pl) == 0);
    printf("peer is the server: %d\n", ntohs(peer.sin_port) == port && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));

    /* poll: nothing to read yet, writable */
    struct pollfd pf = {s, POLLIN | POLLOUT, 0};
    CHECK(poll(&pf, 1, 0) == 1);
    printf("poll before data: POLLIN %d POLLOUT %d\n", !!(pf.revents & POLLIN), !!(pf.revents & POLLOUT));
    CHECK(write(s, "ping\n", 5) == 5);
    pf = (struct pollfd){s, POLLIN, 0};
    SHOW("poll waits for the answer", poll(&pf, 1, 10000));
    int avail = 0;
    CHECK(ioctl(s, FIONREAD, &avail) == 0);
    printf("FIONREAD: %d\n", avail);
    read_line(s, "read");

    /* epoll, level-triggered then edge-triggered */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 7}, got[4];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e) == 0);
    SHOW("epoll_wait with nothing to read", epoll_wait(ep, got, 4, 0));
    CHECK(send(s, "epoll\n", 6, 0) == 6);
    SHOW("epoll_wait for the answer", epoll_wait(ep, got, 4, 10000));
    printf("tag %u EPOLLIN %d\n", got[0].data.u32, !!(got[0].events & EPOLLIN));
    SHOW("epoll_wait again, not read: level-triggered", epoll_wait(ep, got, 4, 0));
    read_line(s, "recv");
    SHOW("epoll_wait after reading", epoll_wait(ep, got, 4, 0));
    e.events = EPOLLIN | EPOLLET;
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e) == 0);
    CHECK(send(s, "edge\n", 5, 0) == 5);
    /* Let the host's wake-ups for this exchange (the ACK, the answer) reach
     * the Sentry first: one still in flight when epoll_wait reports may be
     * reported once more to an edge-triggered item (docs/SECURITY.md). */
    usleep(100000);
    SHOW("EPOLLET: epoll_wait for the answer", epoll_wait(ep, got, 4, 10000));
    SHOW("EPOLLET: again, no new data", epoll_wait(ep, got, 4, 0));
    read_line(s, "recv");
    close(ep);

    /* select, MSG_PEEK, recvmsg */
    CHECK(send(s, "select\n", 7, 0) == 7);
    fd_set rd; FD_ZERO(&rd); FD_SET(s, &rd);
    struct timeval tv = {10, 0};
    SHOW("select for the answer", select(s + 1, &rd, NULL, NULL, &tv));
    char buf[64] = {0};
    SHOW("MSG_PEEK", recv(s, buf, 5, MSG_PEEK));
    struct iovec iov[2] = {{buf, 3}, {buf + 3, 30}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    memset(buf, 0, sizeof buf);
    SHOW("recvmsg", recvmsg(s, &mh, 0));
    printf("recvmsg got: %s", buf);

    /* SO_RCVTIMEO, kept by the Sentry */
    struct timeval rt = {0, 50000};
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt) == 0);
    SHOW("recv with SO_RCVTIMEO", recv(s, buf, sizeof buf, 0));

    /* half close: the server says bye and closes */
    CHECK(shutdown(s, SHUT_WR) == 0);
    pf = (struct pollfd){s, POLLIN | POLLRDHUP, 0};
    SHOW("poll after SHUT_WR", poll(&pf, 1, 10000));
    read_line(s, "after shutdown");
    pf = (struct pollfd){s, POLLIN | POLLRDHUP, 0};
    CHECK(poll(&pf, 1, 10000) == 1);
    printf("at EOF: POLLIN %d POLLRDHUP %d\n", !!(pf.revents & POLLIN), !!(pf.revents & POLLRDHUP));
    read_line(s, "then");
    SHOW("send after the server closed", send(s, "x", 1, MSG_NOSIGNAL));
    close(s);

    /* non-blocking connect */
    int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    SHOW("nonblocking connect", connect(t, (struct sockaddr *)&a, sizeof a));
    pf = (struct pollfd){t, POLLOUT, 0};
    CHECK(poll(&pf, 1, 10000) == 1);
    int err = -1; socklen_t el = sizeof err;
    CHECK(getsockopt(t, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    printf("SO_ERROR after connect: %d\n", err);
    SHOW("connect again", connect(t, (struct sockaddr *)&a, sizeof a));
    SHOW("recv with nothing there", recv(t, buf, sizeof buf, 0));
    close(t);

    /* a closed port refuses */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in free_port = loopback(0); socklen_t fl = sizeof free_port;
    CHECK(bind(c, (struct sockaddr *)&free_port, fl) == 0);
    CHECK(getsockname(c, (struct sockaddr *)&free_port, &fl) == 0);
    close(c);
    c = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("connect to a closed port", connect(c, (struct sockaddr *)&free_port, sizeof free_port));
    close(c);
}

static void udp_client(int port) {
    struct sockaddr_in a = loopback(port);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(sendto(u, "dgram one", 9, 0, (struct sockaddr *)&a, sizeof a) == 9);
    struct pollfd pf = {u, POLLIN, 0};
    SHOW("udp poll", poll(&pf, 1, 10000));
    char buf[64] = {0};
    struct sockaddr_in from; socklen_t fl = sizeof from;
    SHOW("recvfrom", recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl));
    printf("got '%s' from the server: %d\n", buf, ntohs(from.sin_port) == port);
    /* connected, epoll, truncation */
    CHECK(connect(u, (struct sockaddr *)&a, sizeof a) == 0);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 3}, got[2];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, u, &e) == 0);
    CHECK(send(u, "dgram two, longer", 17, 0) == 17);
    SHOW("udp epoll_wait", epoll_wait(ep, got, 2, 10000));
    memset(buf, 0, sizeof buf);
    struct iovec iov = {buf, 8};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    SHOW("recvmsg into 8 bytes", recvmsg(u, &mh, 0));
    printf("'%s' MSG_TRUNC %d\n", buf, !!(mh.msg_flags & MSG_TRUNC));
    SHOW("epoll_wait, queue empty", epoll_wait(ep, got, 2, 0));
    SHOW("recv MSG_DONTWAIT", recv(u, buf, sizeof buf, MSG_DONTWAIT));
    close(ep); close(u);
    /* options: kept, allowed, refused */
    int s = socket(AF_INET6, SOCK_DGRAM, 0), one = 1, v = 0; socklen_t vl = sizeof v;
    SHOW("IPV6_V6ONLY", setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
    CHECK(getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl) == 0);
    printf("IPV6_V6ONLY read back %d\n", v);
    SHOW("SO_BROADCAST", setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof one));
    SHOW("TCP_NODELAY on UDP", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    close(s);
}

static int listen_any_port(int type, int *port) {
    int l = socket(AF_INET, type, 0), one = 1;
    CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    struct sockaddr_in a = loopback(0); socklen_t al = sizeof a;
    CHECK(bind(l, (struct sockaddr *)&a, al) == 0);
    if (type == SOCK_STREAM) CHECK(listen(l, 8) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    return l;
}

static void tcp_server(void) {
    int port, l = listen_any_port(SOCK_STREAM, &port);
    printf("port %d\n", port);
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 1}, got[2];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &e) == 0);
    CHECK(epoll_wait(ep, got, 2, 60000) == 1);  /* a connection waits */
    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    CHECK(s >= 0);
    long total = 0;
    for (;;) {
        char buf[65536];
        ssize_t n = read(s, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pf = {s, POLLIN, 0};
            CHECK(poll(&pf, 1, 60000) == 1);
            continue;
        }
        CHECK(n > 0);
        total += n;
    }
    char reply[64];
    int len = snprintf(reply, sizeof reply, "guest read %ld bytes\n", total);
    CHECK(write(s, reply, len) == len);
    printf("served %ld bytes\n", total);
    close(s); close(l); close(ep);
}

static void udp_server(int count) {
    int port, u = listen_any_port(SOCK_DGRAM, &port);
    printf("port %d\n", port);
    fflush(stdout);
    for (int i = 0; i < count; i++) {
        char buf[2048], out[2100];
        struct sockaddr_in from; socklen_t fl = sizeof from;
        ssize_t n = recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        CHECK(n >= 0);
        int len = snprintf(out, sizeof out, "echo:%.*s", (int)n, buf);
        CHECK(sendto(u, out, len, 0, (struct sockaddr *)&from, fl) == len);
    }
    printf("echoed %d\n", count);
    close(u);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "client")) {
        tcp_client(atoi(argv[2]));
        udp_client(atoi(argv[3]));
    } else if (argc == 2 && !strcmp(argv[1], "tcp-server")) {
        tcp_server();
    } else if (argc == 3 && !strcmp(argv[1], "udp-server")) {
        udp_server(atoi(argv[2]));
    } else {
        fprintf(stderr, "usage: net_host client TCPPORT UDPPORT | tcp-server | udp-server N\n");
        return 2;
    }
    return 0;
}
