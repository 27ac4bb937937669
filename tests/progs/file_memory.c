/* Files in memory count as memory (after /tmp/audit8/trunc.c and fill.c):
 * under `sentry run --memory 64M` the content of /tmp and /dev/shm files
 * and guest memory share one budget.
 *
 * usage: file_memory DIR1 DIR2   (two tmpfs directories: /tmp, /dev/shm)
 *
 * Prints one line per step; sizes in MiB.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static char buf[1 << 20];

static const char *path(const char *dir, const char *name) {
    static char out[2][4096];
    static int which;
    which ^= 1;
    snprintf(out[which], sizeof out[which], "%s/%s", dir, name);
    return out[which];
}

static const char *err(int ok) { return ok ? "ok" : strerrorname_np(errno); }

/* Write MIB MiB to a new file; returns the MiB written. */
static long fill(const char *p, long mib) {
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    long i = 0;
    while (i < mib && write(fd, buf, sizeof buf) == (ssize_t)sizeof buf)
        i++;
    printf("fill %ld: wrote %ld (%s)\n", mib, i, err(i == mib));
    close(fd);
    return i;
}

static unsigned long long avail(const char *dir) {
    struct statvfs v;
    statvfs(dir, &v);
    return (unsigned long long)v.f_bavail * v.f_bsize;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    memset(buf, 'x', sizeof buf);
    const char *d1 = argv[1], *d2 = argv[2];

    /* Sparse: 2 GiB files cost nothing until written. */
    unsigned long long before = avail(d1);
    for (int i = 0; i < 2; i++) {
        const char *p = path(i ? d2 : d1, "sparse");
        int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0600);
        int r = ftruncate(fd, 2L << 30);
        struct stat st;
        fstat(fd, &st);
        printf("sparse ftruncate 2G: %s, size %lld MiB, %lld blocks\n", err(r == 0), (long long)st.st_size >> 20,
               (long long)st.st_blocks);
        char c = 0;
        int got = pwrite(fd, "z", 1, (2L << 30) - 1) == 1 && pread(fd, &c, 1, (2L << 30) - 1) == 1 && c == 'z' &&
                  pread(fd, buf, 4096, 1L << 30) == 4096 && buf[0] == 0 && buf[4095] == 0;
        fstat(fd, &st);
        printf("sparse last byte written: %s, under 1 MiB held: %s\n", got ? "ok" : "wrong",
               st.st_blocks * 512 < (1 << 20) ? "yes" : "no");
        memset(buf, 'x', sizeof buf);
        close(fd);
    }
    printf("sparse files took memory: %s\n", before - avail(d1) >= (1 << 20) ? "yes" : "no");

    /* Content: 40 MiB in one directory, then the other runs out. */
    fill(path(d1, "a"), 40);
    long more = fill(path(d2, "b"), 40);
    printf("second directory got less than 24: %s\n", more < 24 ? "yes" : "no");
    int fd = open(path(d2, "c"), O_CREAT | O_RDWR | O_TRUNC, 0600);
    printf("fallocate 32: %s\n", err(fallocate(fd, 0, 0, 32L << 20) == 0));
    struct stat st;
    fstat(fd, &st);
    printf("size after the failed fallocate: %lld\n", (long long)st.st_size);
    printf("ftruncate 1G when full: %s\n", err(ftruncate(fd, 1L << 30) == 0));
    printf("fallocate KEEP_SIZE 2G when full: %s\n", err(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2L << 30) == 0));
    close(fd);
    /* Guest memory shares the budget. */
    void *m = mmap(NULL, 32 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap 32 when full: %s\n", err(m != MAP_FAILED));
    if (m != MAP_FAILED)
        munmap(m, 32 << 20);
    /* Deleting a file gives its memory back. */
    unlink(path(d1, "a"));
    m = mmap(NULL, 32 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mmap 32 after unlink: %s\n", err(m != MAP_FAILED));
    if (m != MAP_FAILED)
        munmap(m, 32 << 20);
    fill(path(d2, "d"), 20);
    printf("done\n");
    return 0;
}
