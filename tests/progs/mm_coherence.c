/* One page cache: a file's mappings and its read/write/truncate see each
 * other at once, as on Linux. Shared mappings (two in one process, one in
 * another process) see pwrite/write/writev/fallocate at once, and
 * pread/read see stores through them before any msync; ftruncate shorter
 * makes the pages past the end SIGBUS and zeroes the tail of the last
 * page, longer makes them zeros; a private mapping's pages see writes to
 * the file until the mapper writes them. Usage: mm_coherence DIR (a
 * writable directory: the file is made there and removed). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

static sigjmp_buf probe_env;
static volatile int bus_code;

static void on_bus(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)uc;
    bus_code = si->si_code;
    siglongjmp(probe_env, 1);
}

/* The byte at p, or a note that reading it was SIGBUS. */
static void probe(const char *what, volatile char *p) {
    if (sigsetjmp(probe_env, 1)) {
        printf("%s: SIGBUS code %d\n", what, bus_code);
        return;
    }
    char c = *p;
    printf("%s: %d\n", what, c);
}

static void show(const char *what, const char *p, size_t n) {
    printf("%s: \"%.*s\"\n", what, (int)n, p);
}

static void show_pread(const char *what, int fd, off_t off, size_t n) {
    char buf[64] = {0};
    ssize_t got = pread(fd, buf, n, off);
    printf("%s: %zd \"%.*s\"\n", what, got, (int)(got > 0 ? got : 0), buf);
}

static void wait_byte(int fd) {
    char c;
    if (read(fd, &c, 1) != 1)
        _exit(3);
}

static void send_byte(int fd) {
    if (write(fd, "x", 1) != 1)
        _exit(3);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mm_coherence DIR\n");
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGBUS, &sa, 0);
    setvbuf(stdout, 0, _IOLBF, 0);

    char path[4096];
    snprintf(path, sizeof path, "%s/mm-coherence", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    ftruncate(fd, 3 * PG);
    char *a = mmap(0, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(0, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) {
        perror("mmap");
        return 1;
    }

    /* -- one process, two mappings */
    pwrite(fd, "pwritten", 8, 100);
    show("a after pwrite", a + 100, 8);
    show("b after pwrite", b + 100, 8);
    memcpy(a + PG + 10, "stored", 6);
    show_pread("pread after store in a", fd, PG + 10, 6);
    show("b after store in a", b + PG + 10, 6);
    lseek(fd, 2 * PG - 3, SEEK_SET);
    write(fd, "across pages", 12); /* one write over two pages */
    show("a after write", a + 2 * PG - 3, 12);
    struct iovec iov[2] = {{"vec", 3}, {"tored", 5}};
    pwritev(fd, iov, 2, 300);
    show("b after pwritev", b + 300, 8);
    lseek(fd, 0, SEEK_SET);
    writev(fd, iov, 2);
    show("a after writev", a, 8);
    memcpy(b + 2 * PG + 500, "read me", 7);
    lseek(fd, 2 * PG + 500, SEEK_SET);
    char rbuf[16] = {0};
    ssize_t n = read(fd, rbuf, 7);
    printf("read after store in b: %zd \"%s\"\n", n, rbuf);
    /* a read of more than 64 KiB (the Sentry's direct path) sees stores too */
    char *big = malloc(1 << 17);
    memcpy(a + 7, "BIG", 3);
    n = pread(fd, big, 1 << 17, 0);
    printf("big pread after store: %zd \"%.3s\"\n", n, big + 7);
    free(big);

    /* -- two processes: the child's own mapping and the inherited one */
    int up[2], down[2];
    pipe(up);
    pipe(down);
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open(path, O_RDWR);
        char *c = mmap(0, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
        send_byte(up[1]);
        wait_byte(down[0]); /* the parent wrote */
        show("child own mapping after parent pwrite", c + 1000, 6);
        show("child inherited mapping after parent pwrite", a + 1000, 6);
        memcpy(c + PG + 1000, "child!", 6);
        send_byte(up[1]);
        wait_byte(down[0]); /* the parent truncated */
        probe("child page 2 after truncate", c + 2 * PG);
        probe("child tail of page 1 after truncate", c + PG + 1000);
        send_byte(up[1]);
        _exit(0);
    }
    wait_byte(up[0]);
    pwrite(fd, "parent", 6, 1000);
    send_byte(down[1]);
    wait_byte(up[0]);
    show_pread("parent pread after child store", fd, PG + 1000, 6);
    show("parent mapping after child store", b + PG + 1000, 6);

    /* -- truncate shorter, then longer */
    memset(a + PG, 'x', 2 * PG);
    ftruncate(fd, PG + 100);
    send_byte(down[1]);
    wait_byte(up[0]);
    waitpid(pid, 0, 0);
    probe("page 1 inside the file", a + PG + 50);
    probe("tail of page 1 past the end", a + PG + 200);
    probe("page 2 past the end", a + 2 * PG);
    probe("page 2 past the end, other mapping", b + 2 * PG + 7);
    show_pread("pread past the end", fd, PG + 90, 20);
    ftruncate(fd, 3 * PG);
    probe("page 2 after growing", a + 2 * PG);
    probe("tail of page 1 after growing", a + PG + 200);
    probe("page 1 kept", b + PG + 50);
    pwrite(fd, "grown", 5, 2 * PG + 8);
    show("page 2 after pwrite", b + 2 * PG + 8, 5);

    /* -- fallocate: a punched hole reads as zeros through the mapping */
    memset(a, 'p', PG);
    int r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * PG);
    printf("punch hole: %d\n", r);
    probe("punched page 0", a + 10);
    probe("punched page 1", b + PG + 10);
    probe("kept page 2", a + 2 * PG + 8);

    /* -- O_TRUNC drops every page */
    int tfd = open(path, O_RDWR | O_TRUNC);
    probe("page 0 after O_TRUNC", a);
    pwrite(tfd, "again", 5, 0);
    show("page 0 after pwrite", b, 5);
    close(tfd);

    /* -- private mappings */
    ftruncate(fd, 2 * PG);
    memset(a, 'o', 2 * PG);
    msync(a, 2 * PG, MS_SYNC);
    char *p = mmap(0, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *q = mmap(0, 2 * PG, PROT_READ, MAP_PRIVATE, fd, 0);
    p[5] = 'W'; /* page 0 of p is its own now; page 1 is still the file's */
    pwrite(fd, "NEW", 3, 0);
    pwrite(fd, "NEW", 3, PG);
    show("private written page after pwrite", p, 6);
    show("private unwritten page after pwrite", p + PG, 6);
    show("private read-only page after pwrite", q, 6);
    memcpy(a + PG + 3, "map", 3);
    show("private unwritten page after store in shared", p + PG, 6);
    show_pread("file after private write", fd, 0, 6);
    pid = fork();
    if (pid == 0) {
        pwrite(fd, "KID", 3, PG);
        show("child's private unwritten page", p + PG, 3);
        p[PG] = 'c';
        _exit(0);
    }
    waitpid(pid, 0, 0);
    show("parent's private page after child pwrite", p + PG, 3);
    ftruncate(fd, 100);
    probe("private written page after truncate", p + 5);
    probe("private page 1 after truncate", p + PG);

    munmap(p, 2 * PG);
    munmap(q, 2 * PG);
    munmap(a, 3 * PG);
    munmap(b, 3 * PG);
    show_pread("file at the end", fd, 0, 8);
    printf("size %ld\n", (long)lseek(fd, 0, SEEK_END));
    close(fd);
    unlink(path);
    return 0;
}
