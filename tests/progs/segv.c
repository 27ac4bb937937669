/* NULL dereference: the guest must die of SIGSEGV (status 139). */
#include <stdio.h>
int main(int argc, char **argv) {
    volatile int *p = (int *)(long)(argc - 1);
    printf("before\n");
    fflush(stdout);
    return *p;
}
