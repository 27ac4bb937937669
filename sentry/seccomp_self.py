"""The Sentry's own seccomp allowlist (`sentry run --seccomp`).

In a nutshell: once the sandbox has started (platform up, init exec'd),
``install()`` puts every thread of the Sentry (SECCOMP_FILTER_FLAG_TSYNC)
under a filter that allows only the host system calls in ``ALLOWED``: what
the Python runtime, the Sentry's own services (files of the rootfs, the
MemoryFile, timers, threads) and the three platforms need. Any other call
fails with EPERM and never reaches the host kernel; a foreign architecture
(32-bit `int 0x80`, x32 numbers) is killed. See docs/SECURITY.md.

Why EPERM and not kill: stubs are started after the filter (execve of
stub/bin/stub-*) and inherit it; in a vmexec stub, guest system calls must
still reach the stub's own filter's SECCOMP_RET_TRAP, and TRAP outranks
ERRNO but not KILL. Under ptrace, guest calls stop before seccomp runs.

With ``--network=host`` (``network("host")`` around the install) the
filter also allows ``HOST_NETWORK``, the calls on the host sockets the
Sentry works for the guest (sentry.net.hostinet), and ``socket`` itself,
by argument only: AF_INET or AF_INET6, TCP or UDP, non-blocking and
close-on-exec, the only sockets hostinet makes. Without it, no call can
make a host socket (``socketpair`` stays, for trio's wake-up pair).

The list was learned (``learn``: SECCOMP_RET_LOG and the kernel log) by
running tests/ and bench/ workloads on every platform, then reviewed: calls
no workload made but the runtime may (error paths) are marked as such.
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import struct

from abi.sysnr import NUMBERS

# The host calls the Sentry may make, by purpose (names as in abi/sysnr).
ALLOWED: tuple[str, ...] = (
    # memory: the MemoryFile, Python's allocator, thread stacks
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "memfd_create", "fallocate", "ftruncate",
    # files: the rootfs passthrough (read-only), stdio, the overlay's host side, /proc of the host
    "read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "lseek", "close",
    "preadv2",  # os.preadv: large guest reads straight into guest memory
    "close_range", "openat", "openat2", "open", "newfstatat", "fstat", "stat", "lstat", "statx", "readlink",
    "readlinkat", "getdents64", "fcntl", "ioctl", "dup", "dup2", "dup3", "pipe2", "pipe", "access",
    "faccessat", "faccessat2", "getcwd", "statfs", "fstatfs", "fadvise64", "sendfile", "copy_file_range",
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "fsync", "fdatasync",
    "unlink", "unlinkat", "mkdir", "mkdirat", "rename", "renameat", "renameat2",  # overlay=DIR, temp files
    "symlinkat", "linkat", "mknodat", "fchownat", "chmod", "fchmodat", "utimensat",  # writable volumes, overlay=DIR
    # waiting: trio, host stdio readiness, timers
    "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "eventfd2", "futex", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "sched_yield", "socketpair", "recvfrom", "sendto",
    "recvmsg", "sendmsg", "shutdown", "getsockname", "setsockopt",  # trio's wake-up socketpair
    # threads and signals of the Sentry itself
    "clone", "clone3", "set_robust_list", "rseq", "set_tid_address", "exit", "exit_group", "gettid",
    "getpid", "getppid", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "restart_syscall", "sigaltstack",
    "tgkill", "tkill",
    "sched_getaffinity", "sched_setaffinity", "getrandom", "prctl", "arch_prctl", "getrusage", "times",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "uname", "sysinfo",
    "prlimit64", "getrlimit", "umask", "getpgrp", "getpgid", "getsid", "getpriority", "getcpu",
    # platforms: stubs (spawn, trace, map, kill, reap), KVM
    "vfork", "execve", "wait4", "waitid", "kill", "ptrace", "process_vm_readv", "process_vm_writev",
    "pidfd_open", "pidfd_send_signal", "seccomp", "membarrier",
    "setns",  # a new stub joins the namespaces of the platform's first stub (platforms/stubns.py)
)


# --network=host only (sentry.net.hostinet): the host sockets the Sentry makes
# for the guest. sendto, recvfrom, setsockopt, getsockname, shutdown and
# ioctl (FIONREAD) are in ALLOWED already. socket is allowed by argument:
# (argument index, the values allowed) -- the calls hostinet makes.
HOST_NETWORK: tuple[str, ...] = ("connect", "bind", "listen", "accept4", "getpeername", "getsockopt")
AF_INET, AF_INET6, SOCK_STREAM, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_CLOEXEC = 2, 10, 1, 2, 0o4000, 0o2000000
HOST_SOCKET_ARGS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (0, (AF_INET, AF_INET6)),
    (1, tuple(t | SOCK_NONBLOCK | SOCK_CLOEXEC for t in (SOCK_STREAM, SOCK_DGRAM))),
    (2, (0, 6, 17)),  # IPPROTO_TCP, IPPROTO_UDP
)
_NETWORK: contextvars.ContextVar[str] = contextvars.ContextVar("sentry_seccomp_network", default="none")


@contextlib.contextmanager
def network(mode: str):
    """Within this block, on this thread, ``install()`` with no list of its
    own allows what networking ``mode`` ("none" or "host", Config.network)
    needs: ``sentry.api`` wraps Kernel.start (which installs the filter)
    in it."""
    token = _NETWORK.set(mode)
    try:
        yield
    finally:
        _NETWORK.reset(token)


def numbers(names: tuple[str, ...] = ALLOWED) -> list[int]:
    """System-call numbers of ``names``; KeyError names an unknown call."""
    return sorted({NUMBERS[n] for n in names if n in NUMBERS})


# <linux/seccomp.h>, <linux/filter.h>, <linux/audit.h>
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_LOG, SECCOMP_RET_ALLOW = (
    0x80000000, 0x00050000, 0x7FFC0000, 0x7FFF0000)
AUDIT_ARCH_X86_64, X32_SYSCALL_BIT = 0xC000003E, 0x40000000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16  # struct seccomp_data: nr, arch, instruction_pointer, args[6]
PR_SET_NO_NEW_PRIVS, NR_SECCOMP = 38, 317
EPERM = 1


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def _by_args(nr: int, checks: tuple[tuple[int, tuple[int, ...]], ...], default: int) -> list[bytes]:
    """Instructions that, for system call ``nr`` (in the accumulator),
    allow it when each (argument index, values) check holds (the low 32
    bits of the argument: ints) and return ``default`` otherwise; any
    other call skips them with the accumulator unchanged."""
    body: list[bytes] = []
    deny = sum(1 + len(values) for _, values in checks) + 1  # index of the final `ret default`
    for arg, values in checks:
        body.append(_insn(_BPF_LD_W_ABS, 0, 0, _OFF_ARGS + 8 * arg))
        for j, v in enumerate(values):
            here = len(body)
            last = j == len(values) - 1
            body.append(_insn(_BPF_JEQ_K, len(values) - j - 1, deny - here - 1 if last else 0, v))
    body += [_insn(_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW), _insn(_BPF_RET_K, 0, 0, default)]
    return [_insn(_BPF_JEQ_K, 0, len(body), nr)] + body


def build(allowed: list[int], default: int = SECCOMP_RET_ERRNO | EPERM, host_sockets: bool = False) -> bytes:
    """The BPF program: a foreign arch or an x32 number is killed; an
    allowed number is allowed; with ``host_sockets``, ``socket`` is allowed
    for HOST_SOCKET_ARGS alone; anything else gets ``default``."""
    prog = [
        _insn(_BPF_LD_W_ABS, 0, 0, _OFF_ARCH),
        _insn(_BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(_BPF_LD_W_ABS, 0, 0, _OFF_NR),
        _insn(_BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ]
    if host_sockets:
        prog += _by_args(NUMBERS["socket"], HOST_SOCKET_ARGS, default)
    for nr in allowed:
        prog += [_insn(_BPF_JEQ_K, 0, 1, nr), _insn(_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    prog.append(_insn(_BPF_RET_K, 0, 0, default))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(allowed: list[int] | None = None, default: int = SECCOMP_RET_ERRNO | EPERM) -> None:
    """Put every thread of this process under the filter, for good.
    ``allowed``: the numbers to allow (default: ALLOWED, and what the
    current ``network`` mode needs). Raises OSError if the kernel refuses
    (no seccomp, or a thread cannot be synchronized)."""
    host = allowed is None and _NETWORK.get() == "host"
    if allowed is None:
        allowed = numbers(ALLOWED + HOST_NETWORK if host else ALLOWED)
    code = build(allowed, default, host_sockets=host)
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(NR_SECCOMP), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                      ctypes.c_long(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err or 0, f"seccomp(SET_MODE_FILTER, TSYNC) = {rc}: {os.strerror(err) if err else 'thread ' + str(rc)}")


def learn() -> None:
    """Like install(), but every call outside ALLOWED is allowed and logged
    to the kernel log (SECCOMP_RET_LOG: `dmesg | grep type=1326`): how the
    list is kept complete."""
    install(default=SECCOMP_RET_LOG)
