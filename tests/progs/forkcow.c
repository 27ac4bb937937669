/* fork: the child's writes never show in the parent; a 100 MB parent forks
 * without copying (the Sentry's --debug memory report shows the peak). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    size_t size = 100 << 20;
    char *big = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(big, 'p', size);
    int shared_counter_fd[2];
    pipe(shared_counter_fd);
    pid_t pid = fork();
    if (pid == 0) {
        big[0] = 'c';
        big[size - 1] = 'c';
        char msg[64];
        int n = snprintf(msg, sizeof msg, "child sees %c%c\n", big[0], big[1]);
        write(1, msg, n);
        _exit(big[12345] == 'p' ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child exit %d\n", WEXITSTATUS(status));
    printf("parent sees %c%c\n", big[0], big[size - 1]);
    big[1] = 'q';
    printf("parent wrote %c\n", big[1]);
    for (int i = 0; i < 3; i++) {
        pid = fork();
        if (pid == 0) { big[i * 4096] = 'x'; _exit(i); }
        waitpid(pid, &status, 0);
        printf("child %d exit %d\n", i, WEXITSTATUS(status));
    }
    printf("parent still %c%c\n", big[0], big[4096]);
    return 0;
}
