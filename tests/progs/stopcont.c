/* Job control: SIGSTOP stops a child (WUNTRACED), SIGCONT resumes it
 * (WCONTINUED), SIGTERM kills it. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    pid_t p = fork();
    if (p == 0) { for (;;) pause(); }
    int st;
    kill(p, SIGSTOP);
    waitpid(p, &st, WUNTRACED);
    printf("stopped=%d sig=%d\n", WIFSTOPPED(st), WSTOPSIG(st));
    kill(p, SIGCONT);
    waitpid(p, &st, WCONTINUED);
    printf("continued=%d\n", WIFCONTINUED(st));
    kill(p, SIGTERM);
    waitpid(p, &st, 0);
    printf("signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
    return 0;
}
