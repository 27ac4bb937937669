/* EPOLLET on pipes: an edge-triggered item reports again only on a new
 * event, as Linux's keyed pipe wake-ups make it: every write for the read
 * end (EPOLLIN), a read from a full pipe for the write end (EPOLLOUT), a
 * close for both; not a partial read, nor a write while the pipe stays
 * writable. Prints one line per step; the output must match a native run
 * (Linux >= 5.5, whose reads wake writers only when the pipe was full). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define CHECK(x) do { if (!(x)) { printf("FAIL %s:%d %s errno=%s\n", __FILE__, __LINE__, #x, strerrorname_np(errno)); exit(1); } } while (0)

static char buf[70000];

/* One non-blocking epoll_wait: "label: n [tag:events]..." by tag. */
static void step(const char *label, int ep) {
    struct epoll_event ev[4];
    int n = epoll_wait(ep, ev, 4, 0);
    CHECK(n >= 0);
    for (int i = 1; i < n; i++)  /* by tag: the ready list's order is Linux's own */
        for (int j = i; j > 0 && ev[j].data.u32 < ev[j - 1].data.u32; j--) {
            struct epoll_event t = ev[j]; ev[j] = ev[j - 1]; ev[j - 1] = t;
        }
    printf("%s: %d", label, n);
    for (int i = 0; i < n; i++) printf(" [%u:%#x]", ev[i].data.u32, ev[i].events);
    printf("\n");
}

static void add(int ep, int fd, unsigned events, unsigned tag) {
    struct epoll_event e = {.events = events, .data.u32 = tag};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0);
}

static void put(int fd, int n) { CHECK(write(fd, buf, n) == n); }
static void get(int fd, int n) { CHECK(read(fd, buf, n) == n); }

int main(void) {
    memset(buf, 'x', sizeof buf);
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    int ep = epoll_create1(0);
    add(ep, p[0], EPOLLIN | EPOLLET, 1);
    add(ep, p[1], EPOLLOUT | EPOLLET, 2);
    step("added", ep);
    step("again", ep);
    put(p[1], 4);
    step("write 4", ep);
    get(p[0], 2);
    step("read 2 of 4", ep);
    step("again", ep);
    get(p[0], 2);
    step("read the last 2", ep);
    put(p[1], 4);
    step("write 4", ep);
    get(p[0], 4);
    step("read all 4", ep);
    put(p[1], 2);
    step("write 2", ep);
    put(p[1], 2);
    step("write 2 more", ep);
    get(p[0], 1);
    step("read 1", ep);
    get(p[0], 3);
    step("read 3", ep);
    int total = 0, r;
    while ((r = write(p[1], buf, 4096)) > 0) total += r;  /* whole pages, atomic */
    CHECK(errno == EAGAIN);
    printf("filled %d\n", total);
    step("full", ep);
    get(p[0], 100);
    step("read 100 of a full pipe", ep);
    get(p[0], 4000);
    step("read 4000 more", ep);
    get(p[0], 4096);
    step("read 4096 of a writable pipe", ep);
    while (read(p[0], buf, sizeof buf) > 0) {}
    step("drained", ep);
    put(p[1], 5000);
    step("write 5000", ep);
    get(p[0], 4096);
    step("read 4096", ep);
    get(p[0], 904);
    step("read the rest", ep);

    /* Level-triggered items beside edge-triggered ones on one pipe. */
    int q[2];
    CHECK(pipe2(q, O_NONBLOCK) == 0);
    int lt = epoll_create1(0);
    add(lt, q[0], EPOLLIN, 3);
    add(lt, q[1], EPOLLOUT | EPOLLET, 4);
    put(q[1], 4);
    step("lt: write 4", lt);
    get(q[0], 2);
    step("lt: read 2 of 4", lt);
    get(q[0], 2);
    step("lt: read the last 2", lt);

    /* Closing an end wakes the other side's items. */
    close(q[1]);
    step("lt: writer closed", lt);
    int s[2];
    CHECK(pipe2(s, O_NONBLOCK) == 0);
    int ep2 = epoll_create1(0);
    add(ep2, s[0], EPOLLIN | EPOLLET, 5);
    add(ep2, s[1], EPOLLOUT | EPOLLET, 6);
    step("close: added", ep2);
    while (write(s[1], buf, 4096) > 0) {}  /* full: EPOLLERR alone once the reader goes */
    step("close: full", ep2);
    close(s[0]);
    step("close: reader closed", ep2);
    step("close: again", ep2);

    /* EPOLL_CTL_MOD re-arms an edge-triggered item. */
    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.u32 = 1};
    put(p[1], 4);
    step("mod: write 4", ep);
    step("mod: again", ep);
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e) == 0);
    step("mod: modified", ep);
    step("mod: again", ep);
    return 0;
}
