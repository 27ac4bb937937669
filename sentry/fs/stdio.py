"""Host passthrough files: the sandbox's stdin/stdout/stderr and /dev/tty.

In a nutshell: read and write go to a host fd the Sentry holds; fstat shows
the host's object (a char device, a pipe, a file) as the host has it;
ioctl is forwarded to the host fd only for a read-only allow-list
(TCGETS, TIOCGWINSZ, TIOCGPGRP, FIONREAD): the guest may learn it talks to
a terminal and its size, never change the user's terminal (TCSETS*, a line
editor's raw mode, fails with ENOTTY and readline falls back to cooked
mode). Everything else is ENOTTY, as for a file. The guest never learns the
host fd number and can never close the Sentry's own stdio (the fd is
borrowed, not owned).
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import stat as S

from sentry.errors import SyscallError
from sentry.fs.file import O_RDONLY, O_RDWR, O_WRONLY, POLLIN, POLLOUT, HostFDFile

TCGETS, TIOCGPGRP, TIOCGWINSZ, FIONREAD = 0x5401, 0x540F, 0x5413, 0x541B
# request -> size of the struct the call fills
_ALLOWED = {TCGETS: 36, TIOCGWINSZ: 8, TIOCGPGRP: 4, FIONREAD: 4}


class HostPassthrough(HostFDFile):
    """A host fd passed through (see module doc). ``owned``: close it on
    release (/dev/tty), or borrowed (the Sentry's own 0, 1, 2)."""

    __slots__ = ()

    def ioctl(self, t, request: int, arg: int) -> int:
        size = _ALLOWED.get(request)
        if size is None:
            raise SyscallError(errno.ENOTTY)
        if request == TIOCGPGRP:
            # The host's process group means nothing inside: report the caller's.
            if not os.isatty(self.hostfd):
                raise SyscallError(errno.ENOTTY)
            t.mm.copy_out(arg, t.group.pgid.to_bytes(4, "little"))
            return 0
        buf = bytearray(size)
        try:
            fcntl.ioctl(self.hostfd, request, buf, True)
        except OSError as e:
            raise SyscallError(e.errno) from None
        t.mm.copy_out(arg, bytes(buf))
        return 0

    def readiness(self) -> int:
        r, w, _ = select.select([self.hostfd], [self.hostfd], [], 0)
        return (POLLIN if r else 0) | (POLLOUT if w else 0)

    def seek(self, offset: int, whence: int) -> int:
        if S.S_ISREG(os.fstat(self.hostfd).st_mode):
            try:
                return os.lseek(self.hostfd, offset, whence)
            except OSError as e:
                raise SyscallError(e.errno) from None
        raise SyscallError(errno.ESPIPE)


def stdio_files() -> list[HostPassthrough]:
    """Files for guest fds 0, 1, 2 over the Sentry's own (borrowed)."""
    modes = (O_RDONLY, O_WRONLY, O_WRONLY)
    out = []
    for fd, mode in enumerate(modes):
        try:
            fl = fcntl.fcntl(fd, fcntl.F_GETFL) & 3
        except OSError:
            fl = mode  # closed on the host: reads/writes will fail with EBADF
        out.append(HostPassthrough(None, _stdio_path(fd), O_RDWR if fl == O_RDWR else mode, fd, owned=False))
    return out


def _stdio_path(fd: int) -> str:
    """What /proc/self/fd/N shows: the terminal's name, pipe:[ino] or
    socket:[ino] as Linux does; never a host file's path."""
    try:
        if os.isatty(fd):
            return os.ttyname(fd)
        mode = os.fstat(fd).st_mode
        if S.S_ISFIFO(mode) or S.S_ISSOCK(mode):
            return f"{'pipe' if S.S_ISFIFO(mode) else 'socket'}:[{os.fstat(fd).st_ino}]"
    except OSError:
        pass
    return "anon_inode:[stdio]"
