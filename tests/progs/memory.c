/* The memory system calls, printing what a native run prints. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond) printf("%-40s %s\n", #cond, (cond) ? "ok" : "FAIL")

int main(void) {
    long pg = sysconf(_SC_PAGESIZE);
    char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    CHECK(a[0] == 0 && a[4 * pg - 1] == 0);
    memset(a, 'x', 4 * pg);
    CHECK(munmap(a + pg, pg) == 0);
    char *b = mmap(a + pg, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(b == a + pg && b[0] == 0);
    char *c = mmap(a, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(c == MAP_FAILED && errno == EEXIST);
    char *d = mmap(a, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(d == a && d[0] == 0 && a[2 * pg] == 'x');
    CHECK(mprotect(a + 3 * pg, pg, PROT_READ) == 0 && a[3 * pg] == 'x');
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL);
    CHECK(madvise(a + 2 * pg, pg, MADV_DONTNEED) == 0 && a[2 * pg] == 0);
    /* mremap: grow (maybe moving), contents kept */
    char *e = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(e, "remapped");
    char *f = mremap(e, pg, 64 * pg, MREMAP_MAYMOVE);
    CHECK(f != MAP_FAILED && strcmp(f, "remapped") == 0 && f[64 * pg - 1] == 0);
    CHECK(mremap(f, 64 * pg, pg, 0) == f);
    /* munmap over several mappings (split by mprotect) removes them all */
    char *k = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mprotect(k + pg, pg, PROT_READ) == 0 && mprotect(k + 3 * pg, pg, PROT_READ) == 0);
    CHECK(munmap(k, 4 * pg) == 0 && mprotect(k + 2 * pg, pg, PROT_READ) == -1 && errno == ENOMEM);
    CHECK(mmap(k, 4 * pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == k);
    /* brk */
    char *brk0 = sbrk(0);
    CHECK(sbrk(10 * pg) == brk0);
    memset(brk0, 1, 10 * pg);
    CHECK(sbrk(-5 * pg) != (void *)-1 && sbrk(0) == brk0 + 5 * pg);
    /* file mappings, private: writes stay private */
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0) fd = open("/bin/sh", O_RDONLY);
    char *g = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(g != MAP_FAILED && memcmp(g, "\177ELF", 4) == 0);
    char *h = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    h[0] = 'Z';
    CHECK(h[0] == 'Z' && g[0] == 0x7f);
    CHECK(mprotect(g, pg, PROT_READ | PROT_WRITE) == 0);
    g[1] = 'Q';
    char *i = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(i[1] == 'E' && g[1] == 'Q');
    /* bad pointers are EFAULT, not crashes */
    char *volatile badp = (char *)8;
    CHECK(write(1, badp, 10) == -1 && errno == EFAULT);
    CHECK(read(fd, a + 3 * pg, 10) == -1 && errno == EFAULT);
    CHECK(munmap(a + 1, pg) == -1 && errno == EINVAL);
    /* a big sparse mapping costs nothing until touched */
    char *big = mmap(NULL, 1UL << 32, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(big != MAP_FAILED);
    big[(1UL << 32) - 1] = 1;
    CHECK(munmap(big, 1UL << 32) == 0);
    CHECK(mprotect(big, pg, PROT_READ) == -1 && errno == ENOMEM);
    return 0;
}
