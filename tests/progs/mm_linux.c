/* Memory-management behaviour Linux has and an audit found missing, one
 * section per argument, printing what a native run prints (no addresses):
 *   mremap-shared   mremap of MAP_SHARED memory keeps it shared: a file
 *                   mapping grown in place or moved still writes the file
 *                   and is the memory other mappings of the file see; shared
 *                   anonymous memory stays shared with a forked child
 *   mremap-fixed    MREMAP_FIXED (move to a given address, replacing what is
 *                   there) and MREMAP_DONTUNMAP
 *   dontneed-fork   MADV_DONTNEED on private pages shared copy-on-write
 *                   after fork: zeros (or the file's contents) in the caller,
 *                   the other process keeps its data
 *   hint            an unaligned mmap hint without MAP_FIXED is advisory
 *   sigbus          a page of a file mapping past the end of the file is
 *                   SIGBUS (BUS_ADRERR, si_addr the address), EFAULT for a
 *                   system call, mapped once the file grows over it */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define CHECK(cond) printf("%-72s %s\n", #cond, (cond) ? "ok" : "FAIL")

static long pg;

static int temp_file(char *path, const char *data, size_t size) {
    int fd = mkstemp(path);
    unlink(path);
    if (ftruncate(fd, (off_t)size) != 0 || (data && pwrite(fd, data, strlen(data), 0) < 0))
        return -1;
    return fd;
}

static const char *file_at(int fd, off_t off) {
    static char buf[64];
    memset(buf, 0, sizeof buf);
    if (pread(fd, buf, sizeof buf - 1, off) < 0)
        return "(pread failed)";
    return buf;
}

/* A free range of `pages` pages, so a mapping placed at its start has
 * room to grow in place. */
static char *free_range(int pages) {
    char *r = mmap(NULL, (size_t)pages * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(r, (size_t)pages * pg);
    return r;
}

static sigjmp_buf jump_back;
static volatile int got_signo, got_code;
static void *volatile got_addr;

static void on_fault(int signo, siginfo_t *si, void *ctx) {
    (void)ctx;
    got_signo = signo;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(jump_back, 1);
}

/* Touch p (a read, or a write of 'w'): the signal it raised, or 0. */
static int touch(char *p, int write) {
    got_signo = got_code = 0;
    got_addr = NULL;
    if (sigsetjmp(jump_back, 1) == 0) {
        if (write)
            *(volatile char *)p = 'w';
        else
            (void)*(volatile char *)p;
    }
    return got_signo;
}

static void report(const char *what, char *p, int write) {
    int signo = touch(p, write);
    printf("%-40s %s", what, signo == SIGBUS ? "SIGBUS" : signo == SIGSEGV ? "SIGSEGV" : signo ? "signal" : "none");
    if (signo)
        printf(" code %s addr %s", got_code == BUS_ADRERR ? "BUS_ADRERR" : got_code == SEGV_ACCERR ? "SEGV_ACCERR"
                                                                                                 : "other",
               got_addr == p ? "exact" : "wrong");
    printf("\n");
}

static void mremap_shared(void) {
    char path[] = "/tmp/sentry-mm-shared-XXXXXX";
    int fd = temp_file(path, NULL, 4 * pg);
    char *r = free_range(8);
    /* Grown in place. */
    char *a = mmap(r, pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    strcpy(a, "head");
    char *g = mremap(a, pg, 2 * pg, 0);
    CHECK(g == a && strcmp(g, "head") == 0);
    strcpy(g + pg, "grown in place");
    CHECK(msync(g, 2 * pg, MS_SYNC) == 0);
    printf("file[pg] after msync: %s\n", file_at(fd, pg));
    char *other = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("another mapping sees: %s / %s\n", other, other + pg);
    strcpy(other + pg + 100, "through the other mapping");
    printf("the grown one sees: %s\n", g + pg + 100);
    /* Moved (the next page is taken). */
    char *block = mmap(g + 2 * pg, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(block == g + 2 * pg);
    char *m = mremap(g, 2 * pg, 4 * pg, MREMAP_MAYMOVE);
    CHECK(m != MAP_FAILED && m != g);
    printf("moved: %s / %s\n", m, m + pg);
    strcpy(m, "moved head");
    strcpy(m + 3 * pg, "moved tail");
    printf("the other mapping sees: %s / %s\n", other, other + 3 * pg);
    strcpy(other + 2 * pg, "third page");
    printf("the moved one sees: %s\n", m + 2 * pg);
    CHECK(munmap(other, 4 * pg) == 0 && munmap(m, 4 * pg) == 0);
    printf("file after munmap: %s /", file_at(fd, 0));
    printf(" %s /", file_at(fd, 2 * pg));
    printf(" %s\n", file_at(fd, 3 * pg));
    close(fd);

    /* Shared anonymous memory stays shared with a child across mremap. */
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    char *s = mmap(free_range(2), pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    strcpy(s, "before");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        read(go[0], &c, 1);
        printf("child sees: %s\n", s);
        strcpy(s + 100, "child wrote");
        char *cs = mremap(s, pg, 3 * pg, MREMAP_MAYMOVE);
        strcpy(cs + 200, "child moved too");
        fflush(stdout);
        write(done[1], "", 1);
        read(go[0], &c, 1);
        printf("child sees after parent's move: %s\n", cs + 300);
        fflush(stdout);
        _exit(0);
    }
    char *sb = mmap(s + pg, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    char *s2 = mremap(s, pg, 2 * pg, MREMAP_MAYMOVE);
    CHECK(sb == s + pg && s2 != MAP_FAILED && s2 != s);
    strcpy(s2, "parent moved");
    report("shared anonymous, grown part", s2 + pg, 1);  /* past the end of the shared memory */
    char c;
    write(go[1], "", 1);
    read(done[0], &c, 1);
    printf("parent sees: %s / %s\n", s2 + 100, s2 + 200);
    char *s3 = mremap(s2, 2 * pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, free_range(1));
    strcpy(s3 + 300, "parent moved again");
    write(go[1], "", 1);
    waitpid(pid, NULL, 0);
}

static void mremap_fixed(void) {
    char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(p, "fixed");
    p[pg] = 'y';
    char *t = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(t, 't', 3 * pg);
    char *q = mremap(p, 2 * pg, 3 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, t);
    CHECK(q == t && strcmp(q, "fixed") == 0 && q[pg] == 'y' && q[2 * pg] == 0);
    CHECK(mprotect(p, pg, PROT_READ) == -1 && errno == ENOMEM);
    CHECK(mremap(q, pg, pg, MREMAP_FIXED, p) == MAP_FAILED && errno == EINVAL);
    CHECK(mremap(q, 2 * pg, 2 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, q + pg) == MAP_FAILED && errno == EINVAL);
    CHECK(mremap(q, pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, p + 1) == MAP_FAILED && errno == EINVAL);
    /* Shrunk while moved. */
    char *back = mremap(q, 3 * pg, pg, MREMAP_MAYMOVE | MREMAP_FIXED, p);
    CHECK(back == p && strcmp(p, "fixed") == 0);
    CHECK(mprotect(q, pg, PROT_READ) == -1 && errno == ENOMEM);
    /* A shared file mapping moved to a fixed address still writes the file. */
    char path[] = "/tmp/sentry-mm-fixed-XXXXXX";
    int fd = temp_file(path, "file data", 2 * pg);
    char *f = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *dst = free_range(2);
    char *fm = mremap(f, pg, 2 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    CHECK(fm == dst && strcmp(fm, "file data") == 0);
    strcpy(fm + pg, "written after the move");
    CHECK(munmap(fm, 2 * pg) == 0);
    printf("file: %s /", file_at(fd, 0));
    printf(" %s\n", file_at(fd, pg));

    /* MREMAP_DONTUNMAP: private memory leaves zeros behind. */
    char *d = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(d, "dontunmap");
    char *e = mremap(d, pg, pg, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    CHECK(e != MAP_FAILED && e != d && strcmp(e, "dontunmap") == 0 && d[0] == 0);
    d[0] = 'X';
    CHECK(e[0] == 'd' && d[0] == 'X');
    CHECK(mremap(e, pg, 2 * pg, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL) == MAP_FAILED && errno == EINVAL);
    CHECK(mremap(e, pg, pg, MREMAP_DONTUNMAP, NULL) == MAP_FAILED && errno == EINVAL);
    /* ... a private file mapping the file's contents; shared memory stays. */
    char *pf = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    strcpy(pf, "private copy");
    char *pf2 = mremap(pf, pg, pg, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    printf("private file, dontunmap: new %s, old %s\n", pf2, pf);
    char *sh = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    strcpy(sh, "shared");
    char *sh2 = mremap(sh, pg, pg, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    CHECK(sh2 != MAP_FAILED && sh2 != sh);
    strcpy(sh2 + 10, "one memory");
    printf("shared, dontunmap: old %s %s\n", sh, sh + 10);
    close(fd);
}

static void dontneed_fork(void) {
    char *m = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(m, 'p', 4 * pg);
    char path[] = "/tmp/sentry-mm-dontneed-XXXXXX";
    int fd = temp_file(path, "from the file", pg);
    char *f = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    strcpy(f, "written privately");
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(madvise(m + pg, 2 * pg, MADV_DONTNEED) == 0);
        CHECK(m[0] == 'p' && m[pg] == 0 && m[3 * pg - 1] == 0 && m[3 * pg] == 'p');
        CHECK(madvise(f, pg, MADV_DONTNEED) == 0);
        printf("child's private file page: %s\n", f);
        fflush(stdout);
        write(done[1], "", 1);
        char c;
        read(go[0], &c, 1);
        CHECK(m[0] == 'p' && m[3 * pg] == 'p');
        fflush(stdout);
        _exit(0);
    }
    char c;
    read(done[0], &c, 1);
    CHECK(m[pg] == 'p' && m[3 * pg - 1] == 'p');
    printf("parent's private file page: %s\n", f);
    CHECK(madvise(m, pg, MADV_DONTNEED) == 0 && m[0] == 0 && m[pg] == 'p');
    CHECK(madvise(m + 3 * pg, pg, MADV_DONTNEED) == 0 && m[3 * pg] == 0);
    write(go[1], "", 1);
    waitpid(pid, NULL, 0);
    /* After the child is gone, and without a fork at all. */
    CHECK(madvise(m, 4 * pg, MADV_DONTNEED) == 0 && m[pg] == 0 && m[2 * pg] == 0);
    strcpy(f, "again");
    CHECK(madvise(f, pg, MADV_DONTNEED) == 0 && strcmp(f, "from the file") == 0);
    CHECK(munmap(m + pg, pg) == 0);
    CHECK(madvise(m, 4 * pg, MADV_DONTNEED) == -1 && errno == ENOMEM);
    close(fd);
}

static void hint(void) {
    char *h = mmap((void *)0x1234, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(h != MAP_FAILED && ((uintptr_t)h & (pg - 1)) == 0);
    h[0] = 1;
    char *r = free_range(2);
    char *near = mmap(r + 0x123, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(near == r);
    CHECK(mmap(r + 0x123, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED &&
          errno == EINVAL);
    CHECK(mmap(r + 0x123, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED &&
          errno == EINVAL);
    CHECK(mmap(NULL, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 1) == MAP_FAILED && errno == EINVAL);
}

static void sigbus(void) {
    char path[] = "/tmp/sentry-mm-sigbus-XXXXXX";
    int fd = temp_file(path, "Z", 1);
    char *s = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *p = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *r = mmap(NULL, 2 * pg, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(s[0] == 'Z' && s[1] == 0 && s[pg - 1] == 0 && p[0] == 'Z' && r[pg - 1] == 0);
    report("shared, read past the end", s + pg + 10, 0);
    report("shared, write past the end", s + pg, 1);
    report("private, write past the end", p + 2 * pg + 7, 1);
    report("read-only private, read past the end", r + pg, 0);
    report("shared, last page, after the end", s + 100, 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(write(fds[1], s + pg, 8) == -1 && errno == EFAULT);
    CHECK(write(fds[1], "12345678", 8) == 8 && read(fds[0], p + pg, 8) == -1 && errno == EFAULT);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        report("child, past the end", s + pg, 0);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    /* The file grows: the pages are there. */
    CHECK(ftruncate(fd, 2 * pg) == 0);
    report("shared, after ftruncate", s + pg + 10, 0);
    s[pg] = 'G';
    CHECK(msync(s, 2 * pg, MS_SYNC) == 0);
    printf("file[pg]: %s\n", file_at(fd, pg));
    report("private, after ftruncate", p + pg, 1);
    report("private, still past the end", p + 2 * pg, 0);
    report("read-only private, after ftruncate", r + pg, 0);
    CHECK(write(fds[1], s + pg, 1) == 1);
    /* mremap past the end. */
    char *g = mremap(s, 2 * pg, 4 * pg, MREMAP_MAYMOVE);
    CHECK(g != MAP_FAILED && g[pg] == 'G');
    report("grown by mremap past the end", g + 3 * pg, 0);
    close(fd);
}

int main(int argc, char **argv) {
    pg = sysconf(_SC_PAGESIZE);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "mremap-shared"))
        mremap_shared();
    else if (!strcmp(what, "mremap-fixed"))
        mremap_fixed();
    else if (!strcmp(what, "dontneed-fork"))
        dontneed_fork();
    else if (!strcmp(what, "hint"))
        hint();
    else if (!strcmp(what, "sigbus"))
        sigbus();
    else {
        fprintf(stderr, "usage: %s mremap-shared|mremap-fixed|dontneed-fork|hint|sigbus\n", argv[0]);
        return 2;
    }
    return 0;
}
