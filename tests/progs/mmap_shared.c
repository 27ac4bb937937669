/* MAP_SHARED file mappings: two mappings of one file are the same memory
 * (also across processes that mapped it on their own), msync and munmap
 * write the pages back to the file, and a private mapping does not. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    char path[] = "/tmp/sentry-mmap-shared-XXXXXX";
    int fd = mkstemp(path);
    ftruncate(fd, 8192);
    char *a = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(a, "written through a");
    printf("b sees: %s\n", b);
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open(path, O_RDWR);
        char *c = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
        printf("other process sees: %s\n", c);
        strcpy(c + 4096, "from the child");
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, 0, 0);
    printf("parent sees: %s\n", a + 4096);
    msync(a, 8192, MS_SYNC);
    char buf[32] = {0};
    pread(fd, buf, 17, 0);
    printf("file after msync: %s\n", buf);
    char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    strcpy(p, "private");
    munmap(p, 4096);
    strcpy(a, "final");
    munmap(a, 8192);
    munmap(b, 8192);
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 17, 0);
    printf("file after munmap: %s\n", buf);
    printf("size %ld\n", (long)lseek(fd, 0, SEEK_END));
    unlink(path);
    return 0;
}
