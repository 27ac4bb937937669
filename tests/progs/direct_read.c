/* Large reads that go straight from a host file into guest memory:
 * read and pread of 1 MiB chunks (checksums), a read into a buffer whose
 * tail is unmapped (EFAULT, the file offset unchanged), and a read into
 * copy-on-write memory after fork (the child's bytes never reach the
 * parent). usage: direct_read FILE */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static uint64_t fnv(const unsigned char *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

int main(int argc, char **argv) {
    static unsigned char buf[CHUNK];
    if (argc != 2) return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    uint64_t h = 14695981039346656037ULL;
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, CHUNK)) > 0) { h = fnv(buf, n, h); total += n; }
    printf("read %ld bytes fnv %016llx\n", total, (unsigned long long)h);
    h = 14695981039346656037ULL;
    total = 0;
    while ((n = pread(fd, buf, CHUNK, total)) > 0) { h = fnv(buf, n, h); total += n; }
    printf("pread %ld bytes fnv %016llx\n", total, (unsigned long long)h);

    unsigned char *two = mmap(0, 2 * CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(two + CHUNK, CHUNK);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, two + CHUNK / 2, CHUNK);  /* half of it past the mapping */
    printf("read past the mapping: %zd, offset %ld\n", n, (long)lseek(fd, 0, SEEK_CUR));
    mprotect(two, CHUNK, PROT_READ);
    printf("read into read-only memory: %zd\n", read(fd, two, CHUNK));

    memset(buf, 'p', CHUNK);
    pid_t pid = fork();
    if (pid == 0) {
        lseek(fd, 0, SEEK_SET);
        _exit(read(fd, buf, CHUNK) == CHUNK && buf[0] != 'p' ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    int untouched = 1;
    for (int i = 0; i < CHUNK; i++) untouched &= buf[i] == 'p';
    printf("child read ok %d, parent's copy untouched %d\n", WIFEXITED(st) && !WEXITSTATUS(st), untouched);
    return 0;
}
