"""Pipes: a buffer in the Sentry between a read end and a write end.

In a nutshell: ``Pipe`` holds a bytearray of at most ``capacity`` bytes and
counts the open read and write ends. The ends never block: a read with
nothing to read (and a writer left) and a write with no room raise EAGAIN;
the system-call layer waits on the kernel's wait queues for ``readiness``
to change (told through ``subscribe``) and retries, unless the file is
O_NONBLOCK. A read returns b"" (EOF) once the last writer is gone; a write
fails with EPIPE once no reader is left (the caller sends SIGPIPE); writes
of at most PIPE_BUF bytes are atomic. F_SETPIPE_SZ changes ``capacity``
(``set_capacity``: a power-of-two number of pages, as Linux rounds).

splice, tee and vmsplice (sentry.syscalls.splice) use ``transfer``,
``room``, ``put`` and ``unread``: byte moves without PIPE_BUF atomicity.
Capacity is counted in bytes, where Linux counts page slots.

A pipe is also a node (``PipeNode``): /proc/self/fd/N of a pipe jumps to
it, and opening it makes a new end of the same pipe (bash's /dev/fd/N).
A FIFO (overlay.OvFifo) holds a Pipe and opens its ends the same way; a
blocking FIFO open waits (in the syscall layer) until ``peer_opened``.

Lock order: Pipe.lock is a leaf, but for ``transfer``, which holds two
pipes' locks, taken in the order of ``id``; subscriber callbacks run after
they are released.
"""
from __future__ import annotations

import errno
import stat as S
import threading
from typing import Callable

from sentry.errors import SyscallError
from sentry.fs.file import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_WRONLY, POLLERR, POLLHUP, POLLIN, POLLOUT, OpenFile
from sentry.fs.node import FileSystem, Node, Stat

PIPE_BUF = 4096
PIPE_CAPACITY = 65536
PAGE_SIZE = 4096
# /proc/sys/fs/pipe-max-size. F_SETPIPE_SZ above it is EPERM even for root,
# as in gVisor (Linux lets CAP_SYS_RESOURCE pass it).
PIPE_MAX_SIZE = 1 << 20
FIONREAD = 0x541B


class PipeFS(FileSystem):
    fs_type = "pipefs"
    magic = 0x50495045


PIPEFS = PipeFS()


class PipeNode(Node):
    __slots__ = ("pipe", "meta")
    kind = S.S_IFIFO

    def __init__(self, pipe: "Pipe"):
        super().__init__(PIPEFS)
        self.pipe = pipe
        self.meta = Stat(S.S_IFIFO | 0o600, dev=PIPEFS.dev)

    def stat(self):
        return self.meta

    def open(self, path, flags, ctx):
        return open_end(self.pipe, self, f"pipe:[{self.meta.st_ino}]", flags)


def open_end(pipe: "Pipe", node: Node, path: str, flags: int) -> "PipeEnd":
    """A new read or write end of ``pipe`` (by the access mode of flags),
    reached through ``node`` (a pipe's own node or a FIFO)."""
    acc = flags & O_ACCMODE
    cls = PipeReader if acc == O_RDONLY else PipeWriter if acc == O_WRONLY else PipeReadWrite
    return cls(pipe, node, path, flags)


class Pipe:
    def __init__(self, capacity: int = PIPE_CAPACITY):
        self.buf = bytearray()  # guarded by lock
        self.capacity = capacity
        self.readers = 0  # open read ends; guarded by lock
        self.writers = 0
        self.read_opens = 0  # read ends ever opened (a FIFO open waits for the peer's)
        self.write_opens = 0
        self.lock = threading.Lock()
        self.node = PipeNode(self)
        self.subscribers: list[Callable[[], None]] = []

    def notify(self) -> None:
        """Tell subscribers readiness may have changed. Call without lock."""
        for cb in list(self.subscribers):
            cb()

    def set_capacity(self, arg: int) -> int:
        """F_SETPIPE_SZ: the capacity becomes ``arg`` (a C unsigned int)
        rounded up to a power-of-two number of pages, at least one page;
        returns it. EINVAL past 2**31, EPERM past PIPE_MAX_SIZE, EBUSY if
        the pipe holds more than that."""
        arg &= 0xFFFF_FFFF
        if arg > 1 << 31:
            raise SyscallError(errno.EINVAL)
        size = PAGE_SIZE if arg <= PAGE_SIZE else 1 << (arg - 1).bit_length()
        if size > PIPE_MAX_SIZE:
            raise SyscallError(errno.EPERM)
        with self.lock:
            if len(self.buf) > size:
                raise SyscallError(errno.EBUSY)
            self.capacity = size
        self.notify()  # writers may fit now
        return size

    def room(self) -> int:
        """Bytes a splice into the pipe may add now (no atomicity); EPIPE
        if no read end is open (the caller sends SIGPIPE)."""
        with self.lock:
            if self.readers == 0:
                raise SyscallError(errno.EPIPE)
            return max(0, self.capacity - len(self.buf))

    def put(self, data: bytes) -> None:
        """Append ``data``, which the caller sized by ``room`` (a writer
        racing in between may push the pipe past capacity by as much)."""
        if data:
            with self.lock:
                self.buf += data
            self.notify()

    def unread(self, data: bytes) -> None:
        """Put back at the front bytes a splice took but could not deliver."""
        if data:
            with self.lock:
                self.buf[:0] = data
            self.notify()


def transfer(src: Pipe, dst: Pipe, length: int, consume: bool = True) -> int:
    """splice (``consume``) or tee (not): move or copy up to ``length``
    bytes from ``src`` into ``dst``, as many as ``src`` holds and ``dst``
    has room for, never waiting. As Linux's ipipe_prep/opipe_prep: EAGAIN
    while ``src`` is empty with a writer or ``dst`` full with a reader;
    then EPIPE if ``dst`` has no reader; 0 when ``src`` is at EOF.
    EINVAL if they are one pipe."""
    if src is dst:
        raise SyscallError(errno.EINVAL)
    first, second = (src, dst) if id(src) < id(dst) else (dst, src)
    with first.lock, second.lock:
        room = dst.capacity - len(dst.buf)
        if (not src.buf and src.writers) or (room <= 0 and dst.readers):
            raise SyscallError(errno.EAGAIN)
        if dst.readers == 0:
            raise SyscallError(errno.EPIPE)
        n = min(length, len(src.buf), room)
        if n:
            dst.buf += src.buf[:n]
            if consume:
                del src.buf[:n]
    if n:
        if consume:
            src.notify()
        dst.notify()
    return n


def new_pipe(flags: int = 0) -> tuple["PipeReader", "PipeWriter"]:
    """A new pipe's (read end, write end); ``flags`` may hold O_NONBLOCK."""
    p = Pipe()
    path = f"pipe:[{p.node.meta.st_ino}]"
    return (PipeReader(p, p.node, path, O_RDONLY | (flags & O_NONBLOCK)),
            PipeWriter(p, p.node, path, O_WRONLY | (flags & O_NONBLOCK)))


class PipeEnd(OpenFile):
    """An end of a pipe: ``reads``/``writes`` say which side(s) it is."""

    __slots__ = ("pipe", "peer_opens")  # peer_opens: the peer's open count to exceed
    can_block = True
    reads = writes = False

    def __init__(self, pipe: Pipe, node: Node, path: str, flags: int):
        super().__init__(node, path, flags)
        self.pipe = pipe
        with pipe.lock:
            if self.reads:
                pipe.readers += 1
                pipe.read_opens += 1
            if self.writes:
                pipe.writers += 1
                pipe.write_opens += 1
            # A peer open now, or one opening later (even if it closes again
            # before we look), lets a blocking FIFO open return.
            peer_now = pipe.writers if self.reads else pipe.readers
            self.peer_opens = (pipe.write_opens if self.reads else pipe.read_opens) - (1 if peer_now else 0)
        pipe.notify()

    def peer_opened(self) -> bool:
        """Whether the other side was open when this end opened, or opened
        (and maybe closed) since: a blocking FIFO open waits for it."""
        p = self.pipe
        return (p.write_opens if self.reads else p.read_opens) > self.peer_opens

    def read(self, length: int) -> bytes:
        p = self.pipe
        with p.lock:
            if not p.buf:
                if p.writers == 0:
                    return b""
                raise SyscallError(errno.EAGAIN)
            data = bytes(p.buf[:length])
            del p.buf[:length]
        p.notify()
        return data

    def write(self, data: bytes) -> int:
        """Write what fits now (all of ``data`` or nothing if it is at most
        PIPE_BUF bytes); EAGAIN if nothing fits, EPIPE if no reader."""
        p = self.pipe
        with p.lock:
            if p.readers == 0:
                raise SyscallError(errno.EPIPE)
            room = p.capacity - len(p.buf)
            if room <= 0 or (len(data) <= PIPE_BUF and room < len(data)):
                raise SyscallError(errno.EAGAIN)
            chunk = data[:room]
            p.buf += chunk
        p.notify()
        return len(chunk)

    def ioctl(self, t, request: int, arg: int) -> int:
        if request != FIONREAD:
            raise SyscallError(errno.ENOTTY)
        t.mm.copy_out(arg, len(self.pipe.buf).to_bytes(4, "little"))
        return 0

    def readiness(self) -> int:
        p = self.pipe
        events = 0
        if self.reads:
            events |= (POLLIN if p.buf else 0) | (POLLHUP if p.writers == 0 else 0)
        if self.writes:
            events |= POLLERR if p.readers == 0 else POLLOUT if p.capacity - len(p.buf) >= PIPE_BUF else 0
        return events

    def release(self) -> None:
        p = self.pipe
        with p.lock:
            p.readers -= self.reads
            p.writers -= self.writes
            if not p.readers and not p.writers:
                p.buf.clear()  # a FIFO starts empty, and of the default size, when next opened
                p.capacity = PIPE_CAPACITY
        p.notify()

    def subscribe(self, cb: Callable[[], None]) -> None:
        with self.pipe.lock:
            self.pipe.subscribers.append(cb)

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        with self.pipe.lock:
            if cb in self.pipe.subscribers:
                self.pipe.subscribers.remove(cb)


class PipeReader(PipeEnd):
    __slots__ = ()
    reads, writes = True, False


class PipeWriter(PipeEnd):
    __slots__ = ()
    reads, writes = False, True


class PipeReadWrite(PipeEnd):
    """A FIFO opened O_RDWR: both ends at once (never waits to open)."""

    __slots__ = ()
    reads, writes = True, True
