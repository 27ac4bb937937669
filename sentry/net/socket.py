"""The socket file: what socket(2) returns, whatever its family and type.

In a nutshell: ``Socket`` is an ``OpenFile`` with the socket calls as
methods (bind, listen, accept, connect, send, recv, shutdown, names and
options). Data moves as ``Message``s appended to a receiving socket's
``rx`` queue, with the files (SCM_RIGHTS) and credentials that travel with
them. Methods never block: one that would raises ``WouldBlock``, an EAGAIN
that carries what to wait for. read(2)/write(2) on a socket are recv/send
without flags (the file layer waits on ``readiness`` as for pipes).

Subclasses: ``conn.ConnSocket`` (stream, seqpacket), ``dgram.DgramSocket``.
The address family (``addr.UnixFamily``, ``addr.InetFamily``) parses,
binds, finds and formats names.

All mutable state is guarded by ``stack.lock`` (one per sandbox); call
``notify`` for the sockets whose readiness changed after releasing it.
"""
from __future__ import annotations

import errno
import stat as S
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from sentry.errors import SyscallError
from sentry.fs.file import O_NONBLOCK, O_RDWR, POLLIN, POLLOUT, OpenFile
from sentry.fs.node import FileSystem, Node, Stat

if TYPE_CHECKING:
    from sentry.net.addr import Family
    from sentry.net.stack import Stack

AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6 = 0, 1, 2, 10
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET = 1, 2, 3, 4, 5
SOCK_TYPE_MASK = 0xF
MSG_OOB, MSG_PEEK, MSG_DONTROUTE, MSG_CTRUNC, MSG_TRUNC = 0x1, 0x2, 0x4, 0x8, 0x20
MSG_DONTWAIT, MSG_EOR, MSG_WAITALL, MSG_NOSIGNAL, MSG_MORE = 0x40, 0x80, 0x100, 0x4000, 0x8000
MSG_CMSG_CLOEXEC = 0x40000000
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
POLLPRI, POLLRDHUP = 0x2, 0x2000

SOL_SOCKET, IPPROTO_IP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6 = 1, 0, 6, 17, 41
SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_SNDBUF, SO_RCVBUF = 2, 3, 4, 7, 8
SO_KEEPALIVE, SO_LINGER, SO_REUSEPORT, SO_PASSCRED, SO_PEERCRED = 9, 13, 15, 16, 17
SO_RCVTIMEO, SO_SNDTIMEO, SO_BINDTODEVICE, SO_ACCEPTCONN = 20, 21, 25, 30
SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_PROTOCOL, SO_DOMAIN = 32, 33, 38, 39
IPV6_V6ONLY = 26
TCP_INFO = 11
DEFAULT_BUF = 212992  # net.core.[rw]mem_default
MAX_BUF = 4 << 20

# Integer options that are stored and read back (level -> {name: default}).
# Those not listed fail with ENOPROTOOPT.
_INT_OPTS = {
    SOL_SOCKET: {1: 0, SO_REUSEADDR: 0, 5: 0, 6: 0, SO_KEEPALIVE: 0, 10: 0, 11: 0, 12: 0, SO_REUSEPORT: 0,
                 SO_PASSCRED: 0, 18: 1, 19: 1, 29: 0, 34: 0, 35: 0, 36: 0, 46: 0, 47: 0, 49: -1, 60: 0},
    IPPROTO_TCP: {1: 0, 2: 65483, 3: 0, 4: 7200, 5: 75, 6: 9, 7: 0, 8: 0, 9: 0, 10: 0, 12: 1, 18: 0,
                  19: 0, 23: 0, 25: 0, 30: 0},
    IPPROTO_IP: {1: 0, 2: 64, 3: 0, 6: 0, 7: 0, 8: 0, 10: 1, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0, 19: 0,
                 24: 0, 33: 1, 34: 1, 49: 0},
    IPPROTO_IPV6: {16: 64, 17: 0, 18: 1, 19: 1, 23: 0, 25: 0, IPV6_V6ONLY: 0, 49: 0, 66: 0, 67: 0},
}
_TIMEVAL = struct.Struct("<qq")
_LINGER = struct.Struct("<ii")


class SockFS(FileSystem):
    fs_type = "sockfs"
    magic = 0x534F434B


SOCKFS = SockFS()


class SockNode(Node):
    """The inode of a socket (fstat shows S_IFSOCK)."""

    __slots__ = ("meta",)
    kind = S.S_IFSOCK

    def __init__(self, uid: int, gid: int):
        super().__init__(SOCKFS)
        self.meta = Stat(S.S_IFSOCK | 0o777, uid, gid, dev=SOCKFS.dev)

    def stat(self):
        return self.meta


Creds = tuple[int, int, int]  # (pid, uid, gid), as struct ucred


@dataclass(slots=True)
class Message:
    """What one send put in a receive queue. ``files`` hold one reference
    each until received (installed) or dropped."""

    data: bytes
    source: object = None  # the sender's name (datagrams), as its family keeps it
    files: list[OpenFile] | None = None
    creds: Creds | None = None

    def drop(self) -> None:
        for f in self.files or ():
            f.decref()
        self.files = None


class WouldBlock(SyscallError):
    """EAGAIN: the call would block. A retry may succeed once ``ready()``
    holds; the sockets in ``watch`` notify when it may have changed.
    ``ready`` is called from the trio thread: it only looks."""

    __slots__ = ("ready", "watch")

    def __init__(self, ready: Callable[[], bool], *watch: "Socket"):
        super().__init__(errno.EAGAIN)
        self.ready = ready
        self.watch = watch


@dataclass(slots=True)
class Received:
    """The result of ``Socket.recv``."""

    data: bytes
    source: bytes | None = None
    files: list[OpenFile] | None = None
    creds: Creds | None = None
    flags: int = 0  # MSG_TRUNC, MSG_EOR...
    size: int = -1  # a datagram's or record's whole length (MSG_TRUNC reports it)


class Socket(OpenFile):
    """A socket of ``family`` and type ``stype``. ``creds``: the creator's
    (pid, uid, gid), sent with data written by write(2)."""

    can_block = True

    def __init__(self, stack: "Stack", family: "Family", stype: int, protocol: int, flags: int, creds: Creds):
        node = SockNode(creds[1], creds[2])
        super().__init__(node, f"socket:[{node.meta.st_ino}]", O_RDWR | (flags & O_NONBLOCK))
        self.stack = stack
        self.family = family
        self.stype = stype
        self.protocol = protocol
        self.creds = creds
        # Guarded by stack.lock.
        self.local: object = None  # the bound name (family-specific), None if unbound
        self.error = 0  # pending SO_ERROR
        self.rx: deque[Message] = deque()
        self.rx_bytes = 0
        self.shut_rd = False  # no more data will be received
        self.shut_wr = False  # no more data may be sent
        self.closed = False
        self.accepted = False  # made by accept: shares its listener's name, owns no binding
        self.unix_node = None  # the socket node of a unix path name (addr.UnixNode)
        self.opts: dict[tuple[int, int], object] = {(SOL_SOCKET, SO_RCVBUF): DEFAULT_BUF,
                                                   (SOL_SOCKET, SO_SNDBUF): DEFAULT_BUF}
        self.subscribers: list[Callable[[], None]] = []

    # --- readiness ------------------------------------------------------
    def subscribe(self, cb: Callable[[], None]) -> None:
        with self.stack.lock:
            self.subscribers.append(cb)

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        with self.stack.lock:
            if cb in self.subscribers:
                self.subscribers.remove(cb)

    def notify(self) -> None:
        """Tell subscribers readiness may have changed (without the lock)."""
        for cb in list(self.subscribers):
            cb()

    # --- the socket calls (subclasses) ---------------------------------
    def bind(self, t, raw: bytes) -> None:
        self.family.bind(t, self, raw)

    def listen(self, backlog: int) -> None:
        raise SyscallError(errno.EOPNOTSUPP)

    def accept(self, flags: int) -> "Socket":
        raise SyscallError(errno.EOPNOTSUPP)

    def connect(self, t, raw: bytes) -> None:
        raise NotImplementedError

    def send(self, t, data: bytes | memoryview, dest: bytes | None, files: list[OpenFile] | None, creds: Creds | None,
             flags: int) -> int:
        """Send ``data`` (to ``dest`` if given); ``files`` (one reference
        each, consumed) and ``creds`` travel with it."""
        raise NotImplementedError

    def recv(self, length: int, flags: int) -> Received:
        raise NotImplementedError

    def shutdown(self, how: int) -> None:
        raise SyscallError(errno.ENOTCONN)

    def sockname(self) -> bytes:
        with self.stack.lock:
            return self.family.pack(self.local, self)

    def peername(self) -> bytes:
        raise SyscallError(errno.ENOTCONN)

    def peercred(self) -> Creds:
        return (0, 0xFFFFFFFF, 0xFFFFFFFF)

    def pending_bytes(self) -> int:
        """FIONREAD: bytes readable now."""
        with self.stack.lock:
            return self.rx_bytes

    # --- read(2)/write(2) -------------------------------------------------
    def read(self, length: int) -> bytes:
        got = self.recv(length, 0)
        for f in got.files or ():
            f.decref()
        return got.data

    def write(self, data: bytes) -> int:
        return self.send(None, data, None, None, self.creds if self.family.domain == AF_UNIX else None, 0)

    def readiness(self) -> int:
        return POLLIN | POLLOUT

    def ioctl(self, t, request: int, arg: int) -> int:
        if request == 0x541B:  # FIONREAD (SIOCINQ)
            t.mm.copy_out(arg, struct.pack("<i", self.pending_bytes()))
            return 0
        if request == 0x5411:  # TIOCOUTQ / SIOCOUTQ: nothing waits to be sent
            t.mm.copy_out(arg, struct.pack("<i", 0))
            return 0
        raise SyscallError(errno.ENOTTY)

    # --- options ----------------------------------------------------------
    def rcvbuf(self) -> int:
        return int(self.opts[(SOL_SOCKET, SO_RCVBUF)])  # type: ignore[arg-type]

    def timeout_ns(self, name: int) -> int | None:
        """SO_RCVTIMEO / SO_SNDTIMEO in ns (None: wait forever)."""
        v = self.opts.get((SOL_SOCKET, name))
        return v or None  # type: ignore[return-value]

    def _level_ok(self, level: int) -> None:
        inet = self.family.domain in (AF_INET, AF_INET6)
        if level == IPPROTO_TCP and not (inet and self.stype == SOCK_STREAM):
            raise SyscallError(errno.EOPNOTSUPP)
        if level == IPPROTO_UDP and not (inet and self.stype == SOCK_DGRAM):
            raise SyscallError(errno.ENOPROTOOPT)
        if level in (IPPROTO_IP, IPPROTO_IPV6) and not inet:
            raise SyscallError(errno.EOPNOTSUPP)
        if level == IPPROTO_IPV6 and not self.family.v6:
            raise SyscallError(errno.ENOPROTOOPT)
        if level not in _INT_OPTS and level != IPPROTO_UDP:
            raise SyscallError(errno.ENOPROTOOPT)

    def setsockopt(self, level: int, name: int, value: bytes) -> None:
        """Set an option from its raw bytes. ENOPROTOOPT if unknown,
        EINVAL if the value is too short."""
        self._level_ok(level)
        if level == SOL_SOCKET and name in (SO_RCVTIMEO, SO_SNDTIMEO):
            if len(value) < _TIMEVAL.size:
                raise SyscallError(errno.EINVAL)
            sec, usec = _TIMEVAL.unpack_from(value)
            if sec < 0 or not 0 <= usec < 1_000_000:
                raise SyscallError(errno.EDOM)
            self.opts[(level, name)] = sec * 1_000_000_000 + usec * 1000
            return
        if level == SOL_SOCKET and name == SO_LINGER:
            if len(value) < _LINGER.size:
                raise SyscallError(errno.EINVAL)
            self.opts[(level, name)] = value[:_LINGER.size]
            return
        if level == SOL_SOCKET and name == SO_BINDTODEVICE:
            dev = value.split(b"\0", 1)[0]
            if dev not in (b"", b"lo"):
                raise SyscallError(errno.ENODEV)
            return
        if len(value) < 4:
            raise SyscallError(errno.EINVAL)
        v = struct.unpack_from("<i", value)[0]
        if level == SOL_SOCKET and name in (SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE):
            key = SO_SNDBUF if name in (SO_SNDBUF, SO_SNDBUFFORCE) else SO_RCVBUF
            self.opts[(level, key)] = max(4608 if key == SO_RCVBUF else 2304, min(max(v, 0), MAX_BUF) * 2)
            return
        if name not in _INT_OPTS.get(level, {}):
            raise SyscallError(errno.ENOPROTOOPT)
        if level == IPPROTO_IPV6 and name == IPV6_V6ONLY and self.local is not None:
            raise SyscallError(errno.EINVAL)
        self.opts[(level, name)] = v

    def getsockopt(self, level: int, name: int) -> bytes:
        """An option's raw value (ENOPROTOOPT if unknown)."""
        self._level_ok(level)
        if level == SOL_SOCKET:
            if name == SO_TYPE:
                return struct.pack("<i", self.stype)
            if name == SO_DOMAIN:
                return struct.pack("<i", self.family.domain)
            if name == SO_PROTOCOL:
                return struct.pack("<i", self.protocol)
            if name == SO_ERROR:
                with self.stack.lock:
                    err, self.error = self.error, 0
                return struct.pack("<i", err)
            if name == SO_ACCEPTCONN:
                return struct.pack("<i", int(self.listening()))
            if name == SO_PEERCRED:
                return struct.pack("<iII", *self.peercred())
            if name in (SO_RCVTIMEO, SO_SNDTIMEO):
                ns = int(self.opts.get((level, name), 0))  # type: ignore[arg-type]
                return _TIMEVAL.pack(ns // 1_000_000_000, ns % 1_000_000_000 // 1000)
            if name == SO_LINGER:
                return bytes(self.opts.get((level, name), bytes(_LINGER.size)))  # type: ignore[arg-type]
            if name == SO_BINDTODEVICE:
                return b""
        if level == IPPROTO_TCP and name == TCP_INFO:
            return bytes(104)
        if (level, name) in self.opts:
            return struct.pack("<i", self.opts[(level, name)])
        default = _INT_OPTS.get(level, {}).get(name)
        if default is None:
            raise SyscallError(errno.ENOPROTOOPT)
        return struct.pack("<i", default)

    def opt(self, level: int, name: int) -> int:
        """An integer option's value (its default if never set)."""
        return int(self.opts.get((level, name), _INT_OPTS[level][name]))  # type: ignore[arg-type]

    def listening(self) -> bool:
        return False

    # --- lifetime -----------------------------------------------------------
    def release(self) -> None:
        """The last descriptor is closed: unbind, drop queued messages,
        tell the peer."""
        with self.stack.lock:
            self.closed = True
            msgs = list(self.rx)
            self.rx.clear()
            self.rx_bytes = 0
            self.family.unbind(self)
            woken, more = self._on_close(bool(msgs))
            msgs += more
        for m in msgs:
            m.drop()
        for s in woken:
            s.notify()
        self.notify()

    def _on_close(self, unread: bool) -> tuple[list["Socket"], list[Message]]:
        """Subclass hook under stack.lock (``unread``: data was left
        unread): returns sockets to notify and messages to drop."""
        return [], []

    # --- helpers for subclasses (caller holds stack.lock) ---------------
    def raise_pending_error(self) -> None:
        """Raise (and clear) the pending SO_ERROR, if there is one."""
        if self.error:
            err, self.error = self.error, 0
            raise SyscallError(err)

    def nothing_queued(self) -> Received:
        """What a receive on an empty queue gets: the pending error, end of
        file once shut down for reading, or else WouldBlock until one of
        those or data arrives."""
        self.raise_pending_error()
        if self.shut_rd:
            return Received(b"")
        raise WouldBlock(lambda: bool(self.rx) or self.shut_rd or bool(self.error), self)

    def queue(self, msg: Message) -> None:
        self.rx.append(msg)
        self.rx_bytes += len(msg.data)
