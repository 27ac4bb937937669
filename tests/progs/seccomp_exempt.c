/* The system calls Linux lets past every seccomp filter (uretprobe 335 from
 * 6.11, uprobe 336 from 6.16): called from ordinary code they must still be
 * the Sentry's calls, never a host SIGILL that kills the guest. Prints each
 * call's errno. */
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    for (long nr = 335; nr <= 336; nr++) {
        errno = 0;
        long r = syscall(nr);
        printf("%ld: %ld errno %d\n", nr, r, errno);
    }
    return 0;
}
