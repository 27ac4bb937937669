"""Host passthrough files: the sandbox's stdin/stdout/stderr, /dev/tty and
/dev/pts/N; and the host terminals one sandbox uses (``Terminals``).

In a nutshell: read and write go to a host fd the Sentry holds; fstat shows
the host's object (a char device, a pipe, a file) as the host has it. On a
terminal the Sentry works as gVisor's host-TTY passthrough:

- ioctl reads TCGETS, TIOCGWINSZ, FIONREAD from the host terminal, and
  forwards TCSETS, TCSETSW, TCSETSF (a line editor's raw mode) and TCFLSH
  to it; the line discipline (c_line) always stays the host's. Before the
  first change the terminal's termios are saved, and ``Terminals.restore``
  (Kernel.close: every way a sandbox ends) puts them back, so a guest never
  leaves the user's terminal raw. Every other request is ENOTTY, as for a
  file: TIOCSTI, TIOCSETD, TIOCCONS, TIOCSCTTY, TIOCLINUX above all, and
  TCXONC (it could stop the user's terminal) and TIOCSWINSZ (the size would
  outlive the sandbox and SIGWINCH host processes).
- The foreground process group is the sandbox's own: TIOCSPGRP stores it
  per terminal, TIOCGPGRP returns it (the caller's group if never set);
  the host's is never read or changed. A ^C the Sentry gets goes to the
  foreground group of the stdio's terminal (``stdio_foreground``).
- /dev/pts holds exactly the terminals the guest's stdio are, with the
  host's stat (so glibc's ttyname finds them); opening one is another
  passthrough of that borrowed fd.

The guest never learns the host fd number and can never close the Sentry's
own stdio (the fd is borrowed, not owned).

Lock order: Kernel.lock > Terminals.lock (a leaf).
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import stat as S
import termios
import threading
from typing import Callable

from sentry.errors import SyscallError
from sentry.fs.file import O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY, POLLERR, HostFDFile
from sentry.fs.node import FileSystem, Node

# <asm-generic/ioctls.h>
TCGETS, TCSETS, TCSETSW, TCSETSF, TCFLSH = 0x5401, 0x5402, 0x5403, 0x5404, 0x540B
TIOCGPGRP, TIOCSPGRP, TIOCGWINSZ, FIONREAD, TIOCGDEV = 0x540F, 0x5410, 0x5413, 0x541B, 0x80045432
TERMIOS_SIZE, C_LINE = 36, 16  # struct termios (the kernel's), offset of c_line
# Requests answered from the host terminal: request -> size of the struct the call fills.
_QUERIES = {TCGETS: TERMIOS_SIZE, TIOCGWINSZ: 8, FIONREAD: 4}
_SETS = (TCSETS, TCSETSW, TCSETSF)


def _host_events(fd: int, want: int, timeout_ms: int) -> int:
    """POLLIN/POLLOUT/POLLHUP/POLLERR of host ``fd`` for ``want``."""
    p = select.poll()
    p.register(fd, want)
    got = p.poll(timeout_ms)
    return got[0][1] if got else 0


def _host_ioctl(fd: int, request: int, arg: "bytearray | bytes | int") -> None:
    """ioctl on host ``fd``; a bytearray is filled in. OSError -> SyscallError."""
    try:
        if isinstance(arg, bytearray):
            fcntl.ioctl(fd, request, arg, True)
        else:
            fcntl.ioctl(fd, request, arg)
    except OSError as e:
        raise SyscallError(e.errno) from None


def _check_pgrp(t, pgid: int) -> None:
    """TIOCSPGRP's checks, as Linux's: ESRCH if no process group ``pgid``
    lives in the sandbox, EPERM if it is in another session."""
    kernel = t.kernel
    with kernel.lock:
        sids = {g.sid for g in kernel.groups.values() if g.pgid == pgid and not g.zombie}
        exists = any(g.pid == pgid and not g.zombie for g in kernel.groups.values())
    if not sids:
        raise SyscallError(errno.EPERM if exists else errno.ESRCH)
    if sids != {t.group.sid}:
        raise SyscallError(errno.EPERM)


TOSTOP = 0o400  # c_lflag: background writes raise SIGTTOU


def check_job_access(t, hostfd: int, signo: int, always: bool = False) -> None:
    """Linux's tty_check_change for the host terminal ``hostfd``: a process
    of the terminal's session (init's: the sandbox's controlling terminal)
    outside the foreground group the guest set gets ``signo`` sent to its
    whole group and the call is restarted after the stop (ERESTARTSYS).
    SIGTTIN (reads) fails with EIO instead if ignored or blocked, or if the
    group is orphaned; SIGTTOU (writes, only with TOSTOP set, unless
    ``always``: termios changes) lets the call through if ignored or
    blocked, EIO if orphaned."""
    from sentry.kernel import signals as sig
    from sentry.kernel.wait import ERESTARTSYS

    kernel = t.kernel
    group = t.group
    foreground = kernel.terminals.foreground(hostfd)
    init = kernel.init
    if foreground is None or group.pgid == foreground or init is None or group.sid != init.sid:
        return
    if not always and signo == signal.SIGTTOU:
        modes = bytearray(TERMIOS_SIZE)
        try:
            _host_ioctl(hostfd, TCGETS, modes)
        except SyscallError:
            return
        if not int.from_bytes(modes[12:16], "little") & TOSTOP:
            return
    unheeded = group.sigactions[signo].handler == 1 or t.signal_mask & (1 << (signo - 1))
    if unheeded:
        if signo == signal.SIGTTIN:
            raise SyscallError(errno.EIO)
        return
    with kernel.lock:
        members = [g for g in kernel.groups.values() if g.pgid == group.pgid and not g.zombie]
        orphaned = not any(g.parent is not None and g.parent.pgid != group.pgid and g.parent.sid == group.sid
                           for g in members)
    if orphaned:
        raise SyscallError(errno.EIO)
    for g in members:
        sig.send(kernel, g, signo, sig.siginfo(signo, sig.SI_KERNEL))
    raise SyscallError(ERESTARTSYS)


class _Watcher:
    """Tells subscribers when a host fd's readiness changes. Subscribers
    stay until they unsubscribe (the OpenFile contract); a daemon thread
    polls the fd only while there is something to wait for: it waits in
    poll for the wanted events not ready yet (one already ready, POLLOUT of
    a terminal, would return at once) and calls every subscriber whenever
    the set of ready events changes; each rechecks its own condition. It
    ends when nobody is subscribed, or when every wanted event is ready or
    the fd failed (so idle files hold no thread); ``add`` and ``kick`` (a
    read or write through the fd may have cleared an event) start it again.
    A short timeout notices new subscribers and a closed fd."""

    def __init__(self, fd: int, want: int):
        self.fd, self.want = fd, want
        self.lock = threading.Lock()
        self.waiting: list[Callable[[], None]] = []  # guarded by lock
        self.running = False  # guarded by lock
        self.kicked = False  # guarded by lock: readiness may have changed since the thread looked

    def add(self, cb: Callable[[], None]) -> None:
        with self.lock:
            self.waiting.append(cb)
            self._start()

    def remove(self, cb: Callable[[], None]) -> None:
        with self.lock:
            if cb in self.waiting:
                self.waiting.remove(cb)

    def kick(self) -> None:
        with self.lock:
            if self.waiting:
                self._start()

    def _start(self) -> None:
        """Caller holds lock."""
        if self.running:
            self.kicked = True
            return
        self.running = True
        threading.Thread(target=self._run, name=f"sentry-hostfd-{self.fd}", daemon=True).start()

    def _run(self) -> None:
        last = -1
        while True:
            with self.lock:
                if not self.waiting:
                    self.running = False
                    return
                told = list(self.waiting)
                self.kicked = False
            try:
                ready = _host_events(self.fd, self.want, 0)
            except (OSError, ValueError):
                ready = POLLERR  # closed: wake everyone, reads will say why
            if ready != last:
                last = ready
                for cb in told:
                    cb()
            if ready & (POLLERR | select.POLLHUP | select.POLLNVAL) or ready & self.want == self.want:
                with self.lock:  # nothing left to wait for
                    if not self.kicked:
                        self.running = False
                        return
                continue
            try:
                _host_events(self.fd, self.want & ~ready, 100)
            except (OSError, ValueError):
                pass


# Host fd -> its watchers (by wanted events), shared by every passthrough of
# that fd: a read through one may clear the readiness another waits for.
_WATCHERS: dict[int, dict[int, _Watcher]] = {}
_WATCHERS_LOCK = threading.Lock()


def _watcher(fd: int, want: int) -> _Watcher:
    with _WATCHERS_LOCK:
        by_want = _WATCHERS.setdefault(fd, {})
        w = by_want.get(want)
        if w is None:
            w = by_want[want] = _Watcher(fd, want)
        return w


def _kick(fd: int) -> None:
    by_want = _WATCHERS.get(fd)
    if by_want:
        for w in list(by_want.values()):
            w.kick()


class HostPassthrough(HostFDFile):
    """A host fd passed through (see module doc). ``owned``: close it on
    release (/dev/tty), or borrowed (the Sentry's own 0, 1, 2).

    Reads of a host fd that is not a regular file never block the task's
    thread: with nothing to read they raise EAGAIN and the syscall layer
    waits (interruptibly) for ``subscribe``'s callback."""

    __slots__ = ("watcher", "regular", "terminal")

    def __init__(self, node, path: str, flags: int, hostfd: int, owned: bool):
        super().__init__(node, path, flags, hostfd, owned)
        self.watcher: _Watcher | None = None
        try:
            self.regular = S.S_ISREG(os.fstat(hostfd).st_mode)
        except OSError:
            self.regular = False
        self.terminal = not self.regular and os.isatty(hostfd)  # once: job_control runs on every read and write

    @property
    def can_block(self) -> bool:  # type: ignore[override]
        return not self.regular

    def job_control(self, t, signo: int) -> None:
        if self.terminal:
            check_job_access(t, self.hostfd, signo)

    def read(self, length: int) -> bytes:
        if self.regular:
            return super().read(length)
        if not _host_events(self.hostfd, select.POLLIN, 0):
            raise SyscallError(errno.EAGAIN)
        try:
            return super().read(length)
        finally:
            _kick(self.hostfd)  # POLLIN may be gone: a waiter elsewhere must not miss the next data

    def write(self, data: bytes) -> int:
        try:
            return super().write(data)
        finally:
            if not self.regular:
                _kick(self.hostfd)

    def _want(self) -> int:
        return (select.POLLIN if self.readable else 0) | (select.POLLOUT if self.writable else 0)

    def subscribe(self, cb: Callable[[], None]) -> None:
        if self.watcher is None:
            self.watcher = _watcher(self.hostfd, self._want())
        self.watcher.add(cb)

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        if self.watcher is not None:
            self.watcher.remove(cb)

    def ioctl(self, t, request: int, arg: int) -> int:
        size = _QUERIES.get(request)
        if size is not None:
            buf = bytearray(size)
            _host_ioctl(self.hostfd, request, buf)
            t.mm.copy_out(arg, bytes(buf))
            return 0
        if request not in _SETS and request not in (TCFLSH, TIOCGPGRP, TIOCSPGRP) or not os.isatty(self.hostfd):
            raise SyscallError(errno.ENOTTY)
        terminals: Terminals = t.kernel.terminals
        if request != TIOCGPGRP:  # a change from the background: SIGTTOU, as Linux
            check_job_access(t, self.hostfd, signal.SIGTTOU, always=True)
        if request in _SETS:
            new = bytearray(t.mm.copy_in(arg, TERMIOS_SIZE))
            cur = bytearray(TERMIOS_SIZE)
            _host_ioctl(self.hostfd, TCGETS, cur)
            new[C_LINE] = cur[C_LINE]  # the line discipline is the host's (TIOCSETD is never forwarded)
            terminals.change(self.hostfd, lambda: _host_ioctl(self.hostfd, request, bytes(new)))
        elif request == TCFLSH:  # arg: TCIFLUSH, TCOFLUSH or TCIOFLUSH (a value, not a pointer)
            if arg not in (termios.TCIFLUSH, termios.TCOFLUSH, termios.TCIOFLUSH):
                raise SyscallError(errno.EINVAL)
            _host_ioctl(self.hostfd, TCFLSH, arg)
        elif request == TIOCGPGRP:
            pgid = terminals.foreground(self.hostfd)
            t.mm.copy_out(arg, (t.group.pgid if pgid is None else pgid).to_bytes(4, "little"))
        else:  # TIOCSPGRP: within the sandbox only
            pgid = int.from_bytes(t.mm.copy_in(arg, 4), "little", signed=True)
            if pgid < 0:
                raise SyscallError(errno.EINVAL)
            _check_pgrp(t, pgid)
            terminals.set_foreground(self.hostfd, pgid)
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


class TerminalNode(StdioNode):
    """/dev/pts/N of a host terminal the guest's stdio are: the terminal's
    stat; opening it makes another passthrough of one of those borrowed
    fds (``fds``: (host fd, its access mode)) that allows the access mode
    asked for, else EACCES (the host's /dev/pts/N is never opened)."""

    __slots__ = ("fds",)

    def __init__(self, fds: list[tuple[int, int]]):
        super().__init__(*fds[0])
        self.fds = fds

    def open(self, path, flags, ctx):
        acc = flags & O_ACCMODE
        for fd, mode in self.fds:
            if mode in (acc, O_RDWR):
                return HostPassthrough(self, path, flags, fd, owned=False)
        raise SyscallError(errno.EACCES)


def terminal_id(fd: int) -> int:
    """Which host terminal ``fd`` is: its device number (TIOCGDEV, so an fd
    of /dev/tty names the real terminal), or st_rdev."""
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, TIOCGDEV, buf, True)
        return int.from_bytes(buf, "little")
    except OSError:
        pass
    try:
        return os.fstat(fd).st_rdev
    except OSError as e:
        raise SyscallError(e.errno) from None


def _put_back(fd: int, saved: bytes) -> None:
    """Set host terminal ``fd``'s termios to ``saved`` now (TCSETS), even
    from a background process group: SIGTTOU is blocked meanwhile, so the
    host kernel allows it rather than stopping the Sentry. Errors (the
    terminal hung up) are ignored: there is nothing left to restore."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        fcntl.ioctl(fd, TCSETS, saved)
    except OSError:
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Terminals:
    """The host terminals of one sandbox (``Kernel.terminals``): which the
    guest's stdio are (/dev/pts), the termios each had before the guest
    first changed it, and the foreground process group the guest set.

    ``restore`` (at the sandbox's end) puts the saved termios back; a change
    still in flight then (TCSETSW waits for output to drain) is undone as
    it completes, and later changes fail with EIO.

    Lock order: Terminals.lock is a leaf."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pts: dict[bytes, TerminalNode] = {}  # /dev/pts: set by add_stdio before the guest runs
        # terminal_id -> (our CLOEXEC dup of one of its fds, its termios before the first change).
        self.saved: dict[int, tuple[int, bytes]] = {}  # guarded by lock
        self.fg: dict[int, int] = {}  # terminal_id -> foreground pgid in the sandbox; guarded by lock
        self.stdio_ttys: tuple[int, ...] = ()  # the host fds of the guest's stdio that are terminals
        self.restored = False  # guarded by lock

    def add_stdio(self, host_fds: tuple[int, int, int]) -> None:
        """The guest's stdio are the host fds ``host_fds`` (-1: closed):
        those that are terminals named /dev/pts/N appear in /dev/pts."""
        by_name: dict[bytes, list[tuple[int, int]]] = {}
        self.stdio_ttys = tuple(fd for fd in host_fds if fd >= 0 and os.isatty(fd))
        for fd in self.stdio_ttys:
            try:
                name = os.ttyname(fd)
                mode = fcntl.fcntl(fd, fcntl.F_GETFL) & O_ACCMODE
            except OSError:
                continue
            n = name.removeprefix("/dev/pts/")
            if n != name and n.isdigit():
                by_name.setdefault(n.encode(), []).append((fd, mode))
        self.pts = {**self.pts, **{n: TerminalNode(fds) for n, fds in by_name.items()}}

    def change(self, hostfd: int, apply: Callable[[], None]) -> None:
        """Run ``apply`` (a termios change of host terminal ``hostfd``),
        saving the terminal's termios first if this is the first change.
        EIO once the sandbox has ended."""
        key = terminal_id(hostfd)
        with self.lock:
            if self.restored:
                raise SyscallError(errno.EIO)
            if key not in self.saved:
                cur = bytearray(TERMIOS_SIZE)
                try:
                    dup = fcntl.fcntl(hostfd, fcntl.F_DUPFD_CLOEXEC, 3)
                except OSError as e:
                    raise SyscallError(e.errno) from None
                try:
                    _host_ioctl(dup, TCGETS, cur)
                except SyscallError:
                    os.close(dup)
                    raise
                self.saved[key] = (dup, bytes(cur))
        try:
            apply()
        finally:
            with self.lock:
                if self.restored:  # restored while we changed it: undo
                    _put_back(hostfd, self.saved[key][1])

    def restore(self) -> None:
        """The sandbox has ended: every terminal the guest changed gets the
        termios it had before (once; later calls do nothing)."""
        with self.lock:
            if self.restored:
                return
            self.restored = True
            saved = list(self.saved.values())
        for dup, termios_ in reversed(saved):  # the earliest save wins, should two name one terminal
            _put_back(dup, termios_)
            os.close(dup)

    def foreground(self, hostfd: int) -> int | None:
        """The foreground process group set with TIOCSPGRP, or None."""
        key = terminal_id(hostfd)
        with self.lock:
            return self.fg.get(key)

    def stdio_foreground(self) -> int | None:
        """The foreground process group the guest set on the terminal of
        its stdio (stdin's first), or None: where a ^C the Sentry is sent
        goes."""
        with self.lock:
            for fd in self.stdio_ttys:
                try:
                    pgid = self.fg.get(terminal_id(fd))
                except SyscallError:
                    continue
                if pgid is not None:
                    return pgid
        return None

    def set_foreground(self, hostfd: int, pgid: int) -> None:
        key = terminal_id(hostfd)
        with self.lock:
            self.fg[key] = pgid


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
