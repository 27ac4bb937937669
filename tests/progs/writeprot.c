/* A write to a read-only page: SIGSEGV. */
#include <sys/mman.h>
#include <stdio.h>
int main(void) {
    char *p = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mapped\n");
    fflush(stdout);
    p[0] = 1;
    return 0;
}
