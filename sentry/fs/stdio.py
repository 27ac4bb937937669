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
import threading
from typing import Callable

from sentry.errors import SyscallError
from sentry.fs.file import O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY, POLLERR, HostFDFile
from sentry.fs.node import FileSystem, Node

TCGETS, TIOCGPGRP, TIOCGWINSZ, FIONREAD = 0x5401, 0x540F, 0x5413, 0x541B
# request -> size of the struct the call fills
_ALLOWED = {TCGETS: 36, TIOCGWINSZ: 8, TIOCGPGRP: 4, FIONREAD: 4}


def _host_events(fd: int, want: int, timeout_ms: int) -> int:
    """POLLIN/POLLOUT/POLLHUP/POLLERR of host ``fd`` for ``want``."""
    p = select.poll()
    p.register(fd, want)
    got = p.poll(timeout_ms)
    return got[0][1] if got else 0


class _Watcher:
    """Tells subscribers when a host fd becomes ready: a daemon thread
    polls the fd while someone waits, and ends when nobody does (so idle
    files hold no thread). Each subscriber is told once, then forgotten: a
    waiter subscribes again for its next wait. Polling uses a short timeout
    so new subscribers and a closed fd are noticed."""

    def __init__(self, fd: int, want: int):
        self.fd, self.want = fd, want
        self.lock = threading.Lock()
        self.waiting: list[Callable[[], None]] = []
        self.running = False  # guarded by lock

    def add(self, cb: Callable[[], None]) -> None:
        with self.lock:
            self.waiting.append(cb)
            if self.running:
                return
            self.running = True
        threading.Thread(target=self._run, name=f"sentry-hostfd-{self.fd}", daemon=True).start()

    def remove(self, cb: Callable[[], None]) -> None:
        with self.lock:
            if cb in self.waiting:
                self.waiting.remove(cb)

    def _run(self) -> None:
        while True:
            with self.lock:
                if not self.waiting:
                    self.running = False
                    return
            try:
                ready = _host_events(self.fd, self.want, 100)
            except (OSError, ValueError):
                ready = POLLERR  # closed: wake everyone, reads will say why
            if ready:
                with self.lock:
                    told, self.waiting = self.waiting, []
                for cb in told:
                    cb()


class HostPassthrough(HostFDFile):
    """A host fd passed through (see module doc). ``owned``: close it on
    release (/dev/tty), or borrowed (the Sentry's own 0, 1, 2).

    Reads of a host fd that is not a regular file never block the task's
    thread: with nothing to read they raise EAGAIN and the syscall layer
    waits (interruptibly) for ``subscribe``'s callback."""

    __slots__ = ("watcher", "regular")

    def __init__(self, node, path: str, flags: int, hostfd: int, owned: bool):
        super().__init__(node, path, flags, hostfd, owned)
        self.watcher: _Watcher | None = None
        try:
            self.regular = S.S_ISREG(os.fstat(hostfd).st_mode)
        except OSError:
            self.regular = False

    @property
    def can_block(self) -> bool:  # type: ignore[override]
        return not self.regular

    def read(self, length: int) -> bytes:
        if not self.regular and not _host_events(self.hostfd, select.POLLIN, 0):
            raise SyscallError(errno.EAGAIN)
        return super().read(length)

    def _want(self) -> int:
        return (select.POLLIN if self.readable else 0) | (select.POLLOUT if self.writable else 0)

    def subscribe(self, cb: Callable[[], None]) -> None:
        if self.watcher is None:
            self.watcher = _Watcher(self.hostfd, self._want())
        self.watcher.add(cb)

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        if self.watcher is not None:
            self.watcher.remove(cb)

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
        try:
            return _host_events(self.hostfd, self._want(), 0)
        except (OSError, ValueError):
            return POLLERR

    def seek(self, offset: int, whence: int) -> int:
        if not self.regular:
            raise SyscallError(errno.ESPIPE)
        try:
            return os.lseek(self.hostfd, offset, whence)
        except OSError as e:
            raise SyscallError(e.errno) from None


class StdioFS(FileSystem):
    fs_type = "stdio"
    magic = 0x1CD1  # DEVPTS_SUPER_MAGIC: what a terminal's fstatfs says


STDIOFS = StdioFS()


class StdioNode(Node):
    """What /proc/self/fd/N (and /dev/stdin...) of a host stdio fd jumps
    to: opening it makes another passthrough of the same borrowed host fd,
    for an access mode the host fd allows (else EACCES: the Sentry never
    reopens a host object, which could be a file the guest may not write)."""

    __slots__ = ("hostfd", "host_mode")

    def __init__(self, hostfd: int, host_mode: int):
        super().__init__(STDIOFS)
        self.hostfd = hostfd
        self.host_mode = host_mode

    @property
    def kind(self) -> int:  # type: ignore[override]
        try:
            return S.S_IFMT(os.fstat(self.hostfd).st_mode)
        except OSError:
            return S.S_IFCHR

    def stat(self):
        try:
            return os.fstat(self.hostfd)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def open(self, path, flags, ctx):
        acc = flags & O_ACCMODE
        if acc != self.host_mode and self.host_mode != O_RDWR:
            raise SyscallError(errno.EACCES)
        return HostPassthrough(self, path, flags, self.hostfd, owned=False)


# The Sentry's fds 0-2 that were closed when it started (plug_closed_stdio).
CLOSED_AT_START: frozenset[int] = frozenset()


def plug_closed_stdio() -> None:
    """Call first thing in a process that runs sandboxes on its own stdio:
    any of fds 0-2 that is closed gets /dev/null, so no fd the Sentry opens
    later (the MemoryFile above all) can land there and be handed to the
    guest as its stdio; the guest still finds those fds closed (EBADF), as
    it would natively (``is_open_stdio``)."""
    global CLOSED_AT_START
    closed = set()
    for fd in (0, 1, 2):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            closed.add(fd)
            plug = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
            if plug != fd:
                os.dup2(plug, fd)
                os.close(plug)
    CLOSED_AT_START = frozenset(closed)


def is_open_stdio(fd: int) -> bool:
    """Host ``fd`` (0-2 inherited by the guest) was open when the Sentry
    started and is open now."""
    if fd in CLOSED_AT_START:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def stdio_files(host_fds: tuple[int, int, int] = (0, 1, 2)) -> list[HostPassthrough | None]:
    """Files for guest fds 0, 1, 2 over the Sentry's own (borrowed), or
    over the host fds ``host_fds`` (borrowed too: the caller closes them);
    None where the host fd is -1 (the guest starts with that fd closed)."""
    modes = (O_RDONLY, O_WRONLY, O_WRONLY)
    out: list[HostPassthrough | None] = []
    for fd, mode in zip(host_fds, modes):
        if fd < 0:
            out.append(None)
            continue
        try:
            fl = fcntl.fcntl(fd, fcntl.F_GETFL) & O_ACCMODE
        except OSError:
            fl = mode  # closed on the host since: reads/writes will fail with EBADF
        mode = O_RDWR if fl == O_RDWR else mode
        out.append(HostPassthrough(StdioNode(fd, mode), _stdio_path(fd), mode, fd, owned=False))
    return out


def _stdio_path(fd: int) -> str:
    """What /proc/self/fd/N shows: the terminal's name, pipe:[ino],
    socket:[ino] or /dev/null as Linux does; never a host file's path."""
    try:
        if os.isatty(fd):
            return os.ttyname(fd)
        st = os.fstat(fd)
        if S.S_ISFIFO(st.st_mode) or S.S_ISSOCK(st.st_mode):
            return f"{'pipe' if S.S_ISFIFO(st.st_mode) else 'socket'}:[{st.st_ino}]"
        if S.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            return "/dev/null"
    except OSError:
        pass
    return "anon_inode:[stdio]"
