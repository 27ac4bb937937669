/* Huge, negative and overflowing file offsets (after /tmp/audit8/offs.c and
 * mmapneg.c): each call prints one line, its result or errno, never the
 * Sentry's crash (an offset past 2^63 reached Python's os.pread and gave
 * `sentry: internal error: OverflowError`).
 *
 * usage: file_offsets RO_FILE VICTIM TMPFS_DIR
 *   RO_FILE    a regular file, only read and mapped (in the sandbox: a host
 *              file of the rootfs, read through a host fd)
 *   VICTIM     a regular file this program truncates (a copy, natively)
 *   TMPFS_DIR  a tmpfs directory for files in memory
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static char big[1 << 16];

static void show(const char *what, const char *name, long r) {
    if (r < 0)
        printf("%s %s = -1 %s\n", what, name, strerrorname_np(errno));
    else
        printf("%s %s = %ld\n", what, name, r);
}

/* mmap: the address itself varies, so "ok" (and unmapped again). */
static void map(const char *what, const char *name, int fd, size_t len, int flags, off_t off) {
    errno = 0;
    void *p = mmap(NULL, len, PROT_READ, flags, fd, off);
    if (p == MAP_FAILED) {
        printf("%s %s = -1 %s\n", what, name, strerrorname_np(errno));
    } else {
        printf("%s %s = ok\n", what, name);
        munmap(p, len);
    }
}

static sigjmp_buf back;
static void on_bus(int sig) { siglongjmp(back, sig); }

/* The calls on one open file FD (WHAT names it in the output). */
static void offsets(const char *what, int fd) {
    struct iovec v = {big, sizeof big};
    map(what, "mmap private -4096", fd, 4096, MAP_PRIVATE, -4096);
    map(what, "mmap shared -4096", fd, 4096, MAP_SHARED, -4096);
    map(what, "mmap private -8192 len 8192", fd, 8192, MAP_PRIVATE, -8192);
    map(what, "mmap private LLONG_MAX-4095", fd, 4096, MAP_PRIVATE, LLONG_MAX - 4095);
    map(what, "mmap shared LLONG_MAX-8191 len 8192", fd, 8192, MAP_SHARED, LLONG_MAX - 8191);
    map(what, "mmap private LLONG_MAX-8191", fd, 4096, MAP_PRIVATE, LLONG_MAX - 8191);
    map(what, "mmap shared 2^62", fd, 4096, MAP_SHARED, 1L << 62);
    map(what, "mmap private unaligned", fd, 4096, MAP_PRIVATE, 100);
    map(what, "mmap anonymous -4096", -1, 4096, MAP_PRIVATE | MAP_ANONYMOUS, -4096);
    /* A page past the end of the file: SIGBUS when touched. */
    char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 1L << 62);
    if (p != MAP_FAILED) {
        signal(SIGBUS, on_bus);
        int sig = sigsetjmp(back, 1);
        if (sig == 0)
            printf("%s touch 2^62 = %d\n", what, *(volatile char *)p);
        else
            printf("%s touch 2^62 = signal %s\n", what, sigabbrev_np(sig));
        signal(SIGBUS, SIG_DFL);
        /* Grown past the largest offset: refused or mapped, never a crash. */
        errno = 0;
        void *q = mremap(p, 4096, 8192, MREMAP_MAYMOVE);
        printf("%s mremap at 2^62 = %s\n", what, q == MAP_FAILED ? strerrorname_np(errno) : "ok");
        munmap(q == MAP_FAILED ? p : q, q == MAP_FAILED ? 4096 : 8192);
    }
    p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, LLONG_MAX - 8191);
    if (p != MAP_FAILED) {
        errno = 0;
        void *q = mremap(p, 4096, 1 << 20, MREMAP_MAYMOVE);
        printf("%s mremap past LLONG_MAX = %s\n", what, q == MAP_FAILED ? strerrorname_np(errno) : "ok");
        munmap(q == MAP_FAILED ? p : q, q == MAP_FAILED ? 4096 : 1 << 20);
    }
    errno = 0;
    show(what, "pread LLONG_MAX", pread(fd, big, 10, LLONG_MAX));
    show(what, "pread LLONG_MAX-64K", pread(fd, big, sizeof big, LLONG_MAX - (long)sizeof big));
    show(what, "pread -1", pread(fd, big, 10, -1));
    show(what, "pread 2^62", pread(fd, big, 10, 1L << 62));
    show(what, "preadv -2", syscall(SYS_preadv, fd, &v, 1, -2L, 0));
    show(what, "preadv2 -2", syscall(SYS_preadv2, fd, &v, 1, -2L, 0, 0));
    show(what, "lseek SEEK_SET -1", lseek(fd, -1, SEEK_SET));
    show(what, "lseek SEEK_END LLONG_MIN", lseek(fd, LLONG_MIN, SEEK_END));
    show(what, "lseek SEEK_DATA LLONG_MAX", lseek(fd, LLONG_MAX, SEEK_DATA));
    show(what, "lseek SEEK_SET LLONG_MAX", lseek(fd, LLONG_MAX, SEEK_SET));
    show(what, "read at LLONG_MAX", read(fd, big, 10));
    lseek(fd, 0, SEEK_SET);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: file_offsets RO_FILE VICTIM TMPFS_DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    int ro = open(argv[1], O_RDONLY);
    offsets("host", ro);

    char path[4096];
    snprintf(path, sizeof path, "%s/offsets", argv[3]);
    int w = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    write(w, "hello", 5);
    offsets("memory", w);
    struct stat st;
    show("memory", "pwrite LLONG_MAX-1 len 2", pwrite(w, "ab", 2, LLONG_MAX - 1));
    show("memory", "pwrite -1", pwrite(w, "ab", 2, -1));
    show("memory", "pwrite 2^62", pwrite(w, "ab", 2, 1L << 62));
    fstat(w, &st);
    printf("memory size after 2^62 = %lld\n", (long long)st.st_size);
    show("memory", "pread back 2^62", pread(w, big, 4, 1L << 62));
    show("memory", "ftruncate -1", ftruncate(w, -1));
    show("memory", "ftruncate LLONG_MAX", ftruncate(w, LLONG_MAX));
    show("memory", "pread LLONG_MAX-10", pread(w, big, 10, LLONG_MAX - 10));
    show("memory", "fallocate off -1", fallocate(w, 0, -1, 10));
    show("memory", "fallocate len 0", fallocate(w, 0, 0, 0));
    show("memory", "fallocate LLONG_MAX-1 len 10", fallocate(w, 0, LLONG_MAX - 1, 10));
    show("memory", "ftruncate 5", ftruncate(w, 5));
    show("memory", "fallocate KEEP_SIZE 2^40", fallocate(w, FALLOC_FL_KEEP_SIZE, 0, 1L << 40));
    fstat(w, &st);
    printf("memory size after KEEP_SIZE = %lld\n", (long long)st.st_size);
    show("memory", "pwrite LLONG_MAX-1 len 1", pwrite(w, "z", 1, LLONG_MAX - 1));
    show("memory", "ftruncate 0", ftruncate(w, 0));
    off_t o = LLONG_MAX;
    show("memory", "sendfile from LLONG_MAX", sendfile(w, ro, &o, 10));
    o = -1;
    show("memory", "sendfile from -1", sendfile(w, ro, &o, 10));
    snprintf(path, sizeof path, "%s/offsets-src", argv[3]); /* one file system: no EXDEV */
    int src = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    write(src, "0123456789", 10);
    loff_t lo = LLONG_MAX - 1;
    show("memory", "copy_file_range in LLONG_MAX-1", copy_file_range(src, &lo, w, NULL, 100, 0));
    lo = LLONG_MAX - 1;
    show("memory", "copy_file_range out LLONG_MAX-1", copy_file_range(src, NULL, w, &lo, 100, 0));
    lo = -1;
    show("memory", "copy_file_range in -1", copy_file_range(src, &lo, w, NULL, 100, 0));
    lo = -1;
    show("memory", "copy_file_range out -1", copy_file_range(src, NULL, w, &lo, 100, 0));
    show("memory", "ftruncate 0 again", ftruncate(w, 0));
    show("memory", "truncate victim 2^40", truncate(argv[2], 1L << 40));
    stat(argv[2], &st);
    printf("victim size = %lld\n", (long long)st.st_size);
    printf("still alive\n");
    return 0;
}
