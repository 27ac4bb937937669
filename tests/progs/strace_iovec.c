/* readv/writev, the p and p*2 variants and sendmsg/recvmsg under --strace
 * (tests/test_strace.py): raw syscall(2) calls on static buffers after a
 * getppid() marker, as strace_golden.c. A pipe carries the data read. */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static char hello[] = "hello ", world[] = "world\n", head[4], tail[8];
static char long_text[] = "0123456789abcdefghijklmnopqrstuvwxyz\n";
static int p[2], s[2];

int main(void) {
    struct iovec out[3] = {{hello, 6}, {hello, 0}, {world, 6}};
    struct iovec in[2] = {{head, sizeof head}, {tail, sizeof tail}};
    struct iovec cut[2] = {{long_text, 20}, {long_text + 20, sizeof long_text - 21}};
    struct iovec bad[2] = {{hello, 6}, {(void *)16, 4}};
    if (pipe(p) || socketpair(AF_UNIX, SOCK_DGRAM, 0, s))
        return 1;
    struct msghdr send_msg = {.msg_iov = out, .msg_iovlen = 3};
    struct msghdr recv_msg = {.msg_iov = in, .msg_iovlen = 2};
    syscall(SYS_getppid); /* marker */
    syscall(SYS_writev, 1, out, 3);
    syscall(SYS_writev, 1, cut, 2); /* cut at --strace-log-size */
    syscall(SYS_writev, p[1], out, 1);
    syscall(SYS_readv, p[0], in, 2); /* 6 bytes: "hell", "o " */
    syscall(SYS_pwritev, p[1], out, 3, 0, 0); /* ESPIPE: shown on entry only */
    syscall(SYS_pwritev2, p[1], out, 3, -1L, -1L, 0); /* offset -1: as writev */
    syscall(SYS_preadv, p[0], in, 2, 0, 0); /* ESPIPE: not decoded after */
    syscall(SYS_preadv2, p[0], in, 2, -1L, -1L, 0);
    syscall(SYS_writev, 1, bad, 2); /* EFAULT */
    syscall(SYS_writev, 1, (void *)16, 1);
    syscall(SYS_writev, 1, out, -1);
    syscall(SYS_sendmsg, s[0], &send_msg, 0);
    syscall(SYS_recvmsg, s[1], &recv_msg, MSG_TRUNC); /* 12 bytes into 12: "hell", "o world\n" */
    syscall(SYS_sendmsg, s[0], (void *)16, 0); /* EFAULT */
    syscall(SYS_exit_group, 0);
    return 1;
}
