/* Job control on the controlling terminal (stdin must be one), as Linux's
 * tty_check_change: once the terminal's foreground is another group, a
 * background read gets SIGTTIN (EIO if SIGTTIN is blocked), a background
 * write gets SIGTTOU only with TOSTOP set, a background termios change
 * gets SIGTTOU (allowed if SIGTTOU is ignored). Each case runs in a child
 * in its own group; the parent reports how it ended. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

enum { READ, READ_BLOCKED, WRITE, WRITE_TOSTOP, TCSETATTR, TCSETATTR_IGNORED };
static const char *const names[] = {"read", "read with SIGTTIN blocked", "write", "write with TOSTOP",
                                    "tcsetattr", "tcsetattr with SIGTTOU ignored"};

static void job(int what) {
    struct termios modes;
    tcgetattr(0, &modes);
    if (what == READ_BLOCKED) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTTIN);
        sigprocmask(SIG_BLOCK, &s, NULL);
    }
    if (what == TCSETATTR_IGNORED) signal(SIGTTOU, SIG_IGN);
    char c;
    long r;
    if (what == READ || what == READ_BLOCKED)
        r = read(0, &c, 1);
    else if (what == WRITE || what == WRITE_TOSTOP)
        r = write(1, "", 0) + write(2, "", 0); /* zero bytes: nothing shows */
    else
        r = tcsetattr(0, TCSANOW, &modes);
    _exit(r < 0 ? 100 + errno : 0);
}

static const char *outcome(int st) {
    static char text[64];
    if (WIFSTOPPED(st)) snprintf(text, sizeof text, "stopped by %s", sigabbrev_np(WSTOPSIG(st)));
    else if (WIFEXITED(st) && WEXITSTATUS(st) >= 100) snprintf(text, sizeof text, "%s", strerrorname_np(WEXITSTATUS(st) - 100));
    else if (WIFEXITED(st)) snprintf(text, sizeof text, "went through");
    else snprintf(text, sizeof text, "killed by %s", sigabbrev_np(WTERMSIG(st)));
    return text;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!isatty(0)) {
        printf("stdin is not a terminal\n");
        return 1;
    }
    signal(SIGTTOU, SIG_IGN); /* the parent changes the foreground from the background */
    struct termios saved;
    tcgetattr(0, &saved);
    pid_t self = getpgrp();
    for (int what = READ; what <= TCSETATTR_IGNORED; what++) {
        struct termios modes = saved;
        if (what == WRITE_TOSTOP) modes.c_lflag |= TOSTOP;
        tcsetattr(0, TCSANOW, &modes);
        int go[2];
        pipe(go);
        pid_t c = fork();
        if (c == 0) {
            setpgid(0, 0);
            signal(SIGTTOU, SIG_DFL);
            char x;
            read(go[0], &x, 1);
            job(what);
        }
        setpgid(c, c);
        /* a foreground job (the child of a shell) that is not this one */
        pid_t fg = fork();
        if (fg == 0) {
            setpgid(0, 0);
            pause();
            _exit(0);
        }
        setpgid(fg, fg);
        tcsetpgrp(0, fg);
        write(go[1], "g", 1);
        int st;
        waitpid(c, &st, WUNTRACED);
        printf("background %s: %s\n", names[what], outcome(st));
        if (WIFSTOPPED(st)) {
            kill(c, SIGKILL);
            waitpid(c, &st, 0);
        }
        tcsetpgrp(0, self);
        kill(fg, SIGKILL);
        waitpid(fg, &st, 0);
        close(go[0]);
        close(go[1]);
    }
    tcsetattr(0, TCSANOW, &saved);
    printf("foreground again: %d\n", tcgetpgrp(0) == self);
    return 0;
}
