"""Names strace prints for numbers: errnos, signals, open flags, clone
flags, file modes.

Tables that belong to one area of system calls (PROT_*, MAP_*, CLOCK_*...)
live with that area's entries in ``sentry.syscalls`` and reach strace as
``Flags(table)`` / ``Enum(table)`` details; the ones here are shared by
several calls or need more than a bit table (an access mode field, an exit
signal in the low byte, a file type in the high bits).
"""
from __future__ import annotations

import errno as _errno
import signal as _signal

# errno.errorcode picks one name per value among aliases; pick the ones
# Linux's own headers and strace print.
_ERRNO_PREFERRED = {_errno.EAGAIN: "EAGAIN", _errno.EDEADLK: "EDEADLK", _errno.EOPNOTSUPP: "EOPNOTSUPP"}
# Kernel-internal values a trace can show (never returned to user space).
_ERRNO_INTERNAL = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 516: "ERESTART_RESTARTBLOCK"}
ERRNO_NAMES: dict[int, str] = {**_errno.errorcode, **_ERRNO_PREFERRED, **_ERRNO_INTERNAL}
ERRNO_NUMBERS: dict[str, int] = {name: nr for nr, name in ERRNO_NAMES.items()}
ERRNO_NUMBERS.update({"EWOULDBLOCK": _errno.EAGAIN, "EDEADLOCK": _errno.EDEADLK, "ENOTSUP": _errno.EOPNOTSUPP})


def errno_name(err: int) -> str:
    """``ENOENT`` for 2; the number itself for an unknown errno."""
    return ERRNO_NAMES.get(err, str(err))


SIGRTMIN = 32
SIGNAL_NAMES: dict[int, str] = {s.value: s.name for s in _signal.Signals if s.value < SIGRTMIN}
SIGNAL_NAMES.update({n: "SIGRTMIN" if n == SIGRTMIN else f"SIGRTMIN+{n - SIGRTMIN}" for n in range(SIGRTMIN, 65)})
SIGNAL_NUMBERS: dict[str, int] = {name: nr for nr, name in SIGNAL_NAMES.items()}


def signal_name(signo: int) -> str:
    """``SIGSEGV`` for 11; the number itself for anything out of range."""
    return SIGNAL_NAMES.get(signo, str(signo))


def sigset_names(mask: int) -> str:
    """``[SIGINT SIGTERM]`` for a 64-bit signal mask (bit n-1 is signal n)."""
    return "[" + " ".join(SIGNAL_NAMES[n] for n in range(1, 65) if mask >> (n - 1) & 1) + "]"


def flag_names(value: int, table: dict[int, str]) -> str:
    """``A|B|0x40``: the names of the table's bits set in ``value``, then
    the bits no name covers in hex. A key 0 names the value 0 itself; for
    a zero value with no such key the result is ``""``."""
    if value == 0:
        return table.get(0, "")
    names = []
    rest = value
    for bit, name in table.items():
        if bit and value & bit == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)


# open(2) and friends: an access mode field, then flag bits.
O_ACCMODE = 3
OPEN_ACCESS = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR", 3: "O_ACCMODE"}
OPEN_FLAGS = {0o100: "O_CREAT", 0o200: "O_EXCL", 0o400: "O_NOCTTY", 0o1000: "O_TRUNC", 0o2000: "O_APPEND",
              0o4000: "O_NONBLOCK", 0o10000: "O_DSYNC", 0o20000: "O_ASYNC", 0o40000: "O_DIRECT",
              0o100000: "O_LARGEFILE", 0o200000: "O_DIRECTORY", 0o400000: "O_NOFOLLOW", 0o1000000: "O_NOATIME",
              0o2000000: "O_CLOEXEC", 0o4010000: "O_SYNC", 0o10000000: "O_PATH", 0o20200000: "O_TMPFILE"}


def open_flags(value: int) -> str:
    """``O_RDONLY|O_CLOEXEC`` for 0x80000 (O_SYNC and O_TMPFILE are whole
    multi-bit values and win over their O_DSYNC/O_DIRECTORY parts)."""
    rest = value & ~O_ACCMODE
    names = [OPEN_ACCESS[value & O_ACCMODE]]
    for bits in (0o4010000, 0o20200000):  # composite values first
        if rest & bits == bits:
            names.append(OPEN_FLAGS[bits])
            rest &= ~bits
    if rest:
        names.append(flag_names(rest, OPEN_FLAGS))
    return "|".join(names)


CLONE_FLAGS = {0x100: "CLONE_VM", 0x200: "CLONE_FS", 0x400: "CLONE_FILES", 0x800: "CLONE_SIGHAND",
               0x1000: "CLONE_PIDFD", 0x2000: "CLONE_PTRACE", 0x4000: "CLONE_VFORK", 0x8000: "CLONE_PARENT",
               0x10000: "CLONE_THREAD", 0x20000: "CLONE_NEWNS", 0x40000: "CLONE_SYSVSEM", 0x80000: "CLONE_SETTLS",
               0x100000: "CLONE_PARENT_SETTID", 0x200000: "CLONE_CHILD_CLEARTID", 0x400000: "CLONE_DETACHED",
               0x800000: "CLONE_UNTRACED", 0x1000000: "CLONE_CHILD_SETTID", 0x2000000: "CLONE_NEWCGROUP",
               0x4000000: "CLONE_NEWUTS", 0x8000000: "CLONE_NEWIPC", 0x10000000: "CLONE_NEWUSER",
               0x20000000: "CLONE_NEWPID", 0x40000000: "CLONE_NEWNET", 0x80000000: "CLONE_IO"}


def clone_flags(value: int) -> str:
    """``CLONE_VM|CLONE_VFORK|SIGCHLD``: flag bits, then the exit signal
    that clone(2) keeps in the low byte."""
    names = flag_names(value & ~0xFF, CLONE_FLAGS)
    sig = value & 0xFF
    parts = [p for p in (names, signal_name(sig) if sig else "") if p]
    return "|".join(parts) or "0"


FUTEX_COMMANDS = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 2: "FUTEX_FD", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE",
                  5: "FUTEX_WAKE_OP", 6: "FUTEX_LOCK_PI", 7: "FUTEX_UNLOCK_PI", 8: "FUTEX_TRYLOCK_PI",
                  9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
                  12: "FUTEX_CMP_REQUEUE_PI", 13: "FUTEX_LOCK_PI2"}
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 0x80, 0x100


def futex_op(op: int) -> str:
    """``FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG|FUTEX_CLOCK_REALTIME`` for 0x189."""
    names = [FUTEX_COMMANDS.get(op & 0x7F, f"{op & 0x7F:#x}")]
    if op & FUTEX_PRIVATE_FLAG:
        names.append("FUTEX_PRIVATE_FLAG")
    if op & FUTEX_CLOCK_REALTIME:
        names.append("FUTEX_CLOCK_REALTIME")
    if op & ~0x1FF:
        names.append(f"{op & ~0x1FF:#x}")
    return "|".join(names)


_FILE_TYPES = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG", 0o060000: "S_IFBLK",
               0o040000: "S_IFDIR", 0o020000: "S_IFCHR", 0o010000: "S_IFIFO"}


def file_mode(mode: int) -> str:
    """``S_IFREG|0o644`` (the type, if any, then the permission bits)."""
    kind = _FILE_TYPES.get(mode & 0o170000)
    perms = f"{mode & 0o7777:#o}"
    return f"{kind}|{perms}" if kind else perms


SA_FLAGS = {0x1: "SA_NOCLDSTOP", 0x2: "SA_NOCLDWAIT", 0x4: "SA_SIGINFO", 0x04000000: "SA_RESTORER",
            0x08000000: "SA_ONSTACK", 0x10000000: "SA_RESTART", 0x40000000: "SA_NODEFER", 0x80000000: "SA_RESETHAND"}
SS_FLAGS = {1: "SS_ONSTACK", 2: "SS_DISABLE"}
ADDRESS_FAMILIES = {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
POLL_EVENTS = {0x1: "POLLIN", 0x2: "POLLPRI", 0x4: "POLLOUT", 0x8: "POLLERR", 0x10: "POLLHUP", 0x20: "POLLNVAL",
               0x40: "POLLRDNORM", 0x80: "POLLRDBAND", 0x100: "POLLWRNORM", 0x200: "POLLWRBAND",
               0x400: "POLLMSG", 0x2000: "POLLRDHUP"}
