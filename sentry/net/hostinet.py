"""Host networking (``--network=host``): AF_INET/AF_INET6 sockets that are
host sockets the Sentry owns, as gVisor's hostinet.

In a nutshell: socket(2) of a TCP or UDP socket makes a host socket
(always non-blocking and close-on-exec) held by a ``HostSocket``, the
guest's file. The Sentry makes every call on it itself: connect, bind,
listen, accept, send*, recv*, names, shutdown, an allowlist of options
and FIONREAD/TIOCOUTQ/SIOCATMARK; data is copied between guest memory and
the host socket by the system-call layer (``sentry.syscalls.net``). The
guest only ever holds its own descriptor for the ``HostSocket``: no host
fd is handed to it, nothing it sends carries files (SCM_RIGHTS is EINVAL
on these sockets) and no control message from the host reaches it.

Blocking: a host call that says EAGAIN (or EINPROGRESS, for a blocking
connect) raises ``WouldBlock``; the task then waits in the kernel's trio
loop like any socket's, and retries. What wakes it: ``NOTIFIER``, one
daemon thread per Sentry process over one edge-triggered host epoll set
holding every host socket (gVisor's fdnotifier), calls ``notify`` on the
socket each time the host reports an event. ``readiness`` (poll, select,
epoll inside the sandbox) asks the host with a zero-timeout poll. A
notification says nothing of which event came, and may arrive after the
guest already saw its effect: an edge-triggered epoll item on a host
socket may be reported once more than Linux would (a spurious wake-up,
never a lost one).

Options: those in ``HOST_OPTS`` go to the host socket; privileged ones
(device binding, marks, transparent proxying, forced buffer sizes, a
congestion-control module to load) are EPERM, as for an unprivileged
process; SO_RCVTIMEO/SO_SNDTIMEO live in the Sentry (the host socket never
blocks); any other option the sandbox loopback knows is stored and read
back without effect, the rest are ENOPROTOOPT. SO_REUSEPORT (and
SO_REUSEADDR on UDP) are among those kept without effect: the host socket
belongs to the Sentry's user, often root, and would share a port with the
host's own services. Ports below 1024 are EACCES unless the guest's euid
is 0 (the Sentry itself may be host root). A lingering close (SO_LINGER
with a time) does not wait: the host sends what is left in the background.

Limits: one Sentry process holds at most ``MAX_HOST_SOCKETS`` host sockets
(half its RLIMIT_NOFILE soft limit, so the rootfs passthrough keeps fds);
past that socket and accept fail with ENFILE.

Lock order: HostSocket.fd_lock (held across one non-blocking host call,
so a concurrent close can never let a call land on a reused fd number) >
Notifier.lock. Subscriber callbacks run without either.
"""
from __future__ import annotations

import errno
import resource
import select
import struct
import threading
import weakref

from sentry.errors import SyscallError
from sentry.fs.file import O_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLOUT
from sentry.net import hostcalls
from sentry.net.addr import INET, INET6
from sentry.net.socket import (AF_INET6, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, MSG_DONTROUTE,
                               MSG_DONTWAIT, MSG_EOR, MSG_MORE, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC, POLLRDHUP,
                               SO_ACCEPTCONN, SO_BINDTODEVICE, SO_ERROR, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF,
                               SO_RCVBUFFORCE, SO_REUSEADDR, SO_SNDBUF, SO_SNDBUFFORCE, SOCK_DGRAM,
                               SOCK_STREAM, SOL_SOCKET, Creds, Received, Socket, WouldBlock)
from sentry.net.stack import stack_of

POLLPRI = 0x2
SOCK_NONBLOCK_HOST, SOCK_CLOEXEC_HOST = 0o4000, 0o2000000  # every host socket is both
MSG_CONFIRM, MSG_ERRQUEUE, MSG_ZEROCOPY, MSG_FASTOPEN = 0x800, 0x2000, 0x4000000, 0x20000000
SEND_FLAGS = MSG_OOB | MSG_DONTROUTE | MSG_EOR | MSG_MORE | MSG_CONFIRM  # passed to the host; the rest are ours
RECV_FLAGS = MSG_OOB | MSG_PEEK | MSG_TRUNC
FIONREAD, TIOCOUTQ, SIOCATMARK = 0x541B, 0x5411, 0x8905
MAX_STREAM_CHUNK = 256 << 10  # bytes one host send/recv moves at most on a stream (short counts are legal)
MAX_DATAGRAM = 1 << 16  # a UDP payload is smaller; MSG_TRUNC reports a bigger one's length
SO_PRIORITY, SO_MARK, IP_TRANSPARENT, IPV6_TRANSPARENT, TCP_CONGESTION, TCP_INFO = 12, 36, 19, 75, 13, 11


def _max_host_sockets() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(16, (soft if soft != resource.RLIM_INFINITY else 1 << 20) // 2)


MAX_HOST_SOCKETS = _max_host_sockets()

# (level, name) -> (value size: a host option's whole value; whether getsockopt
# may read it; whether setsockopt may set it). Ints unless said otherwise.
# Options whose effect is a control message (IP_PKTINFO, SO_TIMESTAMP...) are
# left out: the Sentry passes no control message from the host to the guest.
# SO_REUSEPORT, and SO_REUSEADDR on UDP, are absent on purpose: host sockets
# are the Sentry's (often root's), and with them a guest could share a host
# service's port and take its connections or datagrams. The Sentry keeps
# them without effect.
_RW, _RO = (True, True), (True, False)
HOST_OPTS: dict[tuple[int, int], tuple[int, bool, bool]] = {
    # SO_DONTROUTE 5, SO_BROADCAST 6, SO_OOBINLINE 10, SO_RCVLOWAT 18; SO_SNDLOWAT 19 (read)
    **{(SOL_SOCKET, n): (4, *_RW) for n in (SO_REUSEADDR, 5, 6, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, 10,
                                             SO_PRIORITY, 18)},
    (SOL_SOCKET, SO_LINGER): (8, *_RW),
    **{(SOL_SOCKET, n): (4, *_RO) for n in (SO_ERROR, 19, SO_ACCEPTCONN)},
    # TCP_NODELAY, MAXSEG, CORK, KEEPIDLE, KEEPINTVL, KEEPCNT, SYNCNT, LINGER2, DEFER_ACCEPT, WINDOW_CLAMP,
    # QUICKACK, USER_TIMEOUT, FASTOPEN (a listener's queue), NOTSENT_LOWAT
    **{(IPPROTO_TCP, n): (4, *_RW) for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 18, 23, 25)},
    (IPPROTO_TCP, TCP_INFO): (256, *_RO),
    (IPPROTO_TCP, TCP_CONGESTION): (16, *_RO),  # a string
    # IP_TOS, TTL, MTU_DISCOVER, RECVERR, BIND_ADDRESS_NO_PORT, MULTICAST_TTL, MULTICAST_LOOP; IP_MTU (read)
    **{(IPPROTO_IP, n): (4, *_RW) for n in (1, 2, 10, 11, 24, 33, 34)},
    (IPPROTO_IP, 14): (4, *_RO),
    # IPV6_UNICAST_HOPS, MULTICAST_HOPS, MULTICAST_LOOP, MTU_DISCOVER, RECVERR, V6ONLY, TCLASS; IPV6_MTU (read)
    **{(IPPROTO_IPV6, n): (4, *_RW) for n in (16, 18, 19, 23, 25, 26, 67)},
    (IPPROTO_IPV6, 24): (4, *_RO),
    (IPPROTO_UDP, 1): (4, *_RW),  # UDP_CORK
}
# Options an unprivileged process may not set (CAP_NET_ADMIN, CAP_NET_RAW),
# or that load host kernel modules: EPERM, whatever the guest's own uid.
PRIVILEGED = {(SOL_SOCKET, SO_BINDTODEVICE), (SOL_SOCKET, SO_SNDBUFFORCE), (SOL_SOCKET, SO_RCVBUFFORCE),
              (SOL_SOCKET, SO_MARK), (IPPROTO_IP, IP_TRANSPARENT), (IPPROTO_IPV6, IPV6_TRANSPARENT),
              (IPPROTO_TCP, TCP_CONGESTION)}


# ------------------------------------------------------------------ the notifier

class Notifier:
    """Tells each host socket when the host reports an event on it: one
    epoll set, edge-triggered (every new event is reported once, so a
    waiter that already saw the socket not ready hears of the change),
    and one daemon thread waiting in it. Sockets are held weakly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._ep: select.epoll | None = None  # guarded by lock; made on first use
        self._socks: dict[int, weakref.ref] = {}  # host fd -> HostSocket; guarded by lock

    def count(self) -> int:
        with self.lock:
            return len(self._socks)

    def add(self, fd: int, sock: "HostSocket") -> None:
        with self.lock:
            if self._ep is None:
                self._ep = select.epoll()
                threading.Thread(target=self._run, args=(self._ep,), name="sentry-hostinet", daemon=True).start()
            self._socks[fd] = weakref.ref(sock)
            self._ep.register(fd, select.EPOLLIN | select.EPOLLOUT | select.EPOLLPRI | select.EPOLLRDHUP
                              | select.EPOLLET)

    def remove(self, fd: int) -> None:
        """Forget ``fd`` (before it is closed)."""
        with self.lock:
            self._socks.pop(fd, None)
            if self._ep is not None:
                try:
                    self._ep.unregister(fd)
                except OSError:
                    pass

    def _run(self, ep: select.epoll) -> None:
        while True:
            for fd, _ in ep.poll():
                with self.lock:
                    ref = self._socks.get(fd)
                sock = ref() if ref is not None else None
                if sock is None:
                    continue
                try:
                    sock.notify()  # for an fd number reused meanwhile: a spurious wake-up, rechecked
                except Exception:  # noqa: BLE001 - one failing subscriber (a loop at its end) must not stop the rest
                    pass


NOTIFIER = Notifier()


# ------------------------------------------------------------------ sockets

def new_socket(t, domain: int, stype: int, protocol: int, flags: int, creds: Creds) -> "HostSocket":
    """A host TCP (``stype`` SOCK_STREAM) or UDP socket of ``domain``
    (AF_INET, AF_INET6), checked by the caller. ENFILE past
    MAX_HOST_SOCKETS."""
    if NOTIFIER.count() >= MAX_HOST_SOCKETS:
        raise SyscallError(errno.ENFILE)
    fd = hostcalls.socket(domain, stype | SOCK_NONBLOCK_HOST | SOCK_CLOEXEC_HOST, protocol)
    return HostSocket(stack_of(t.kernel), domain, stype, protocol, flags, creds, fd)


def _port(raw: bytes) -> int:
    """The port of an AF_INET/AF_INET6 sockaddr (0 if too short)."""
    return struct.unpack_from(">H", raw, 2)[0] if len(raw) >= 4 else 0


class HostSocket(Socket):
    """A guest socket that is a host socket (see the module doc)."""

    def __init__(self, stack, domain: int, stype: int, protocol: int, flags: int, creds: Creds, fd: int):
        super().__init__(stack, INET6 if domain == AF_INET6 else INET, stype, protocol, flags, creds)
        self.fd_lock = threading.Lock()
        self.fd = fd  # guarded by fd_lock; -1 once released
        self.connecting = False  # a blocking connect is waiting for the host's handshake
        self.lingers = False  # the guest set SO_LINGER (undone at close: see _close)
        NOTIFIER.add(fd, self)

    # --- host calls -------------------------------------------------------
    def _host(self, call, *args):
        """``call(fd, *args)`` on the host socket; EBADF once released."""
        with self.fd_lock:
            if self.fd < 0:
                raise SyscallError(errno.EBADF)
            return call(self.fd, *args)

    def _ready(self, events: int) -> bool:
        return bool(self.readiness() & (events | POLLERR | POLLHUP))

    def _would_block(self, events: int) -> WouldBlock:
        return WouldBlock(lambda: self._ready(events), self)

    def readiness(self) -> int:
        with self.fd_lock:
            if self.fd < 0:
                return POLLERR | POLLHUP
            p = select.poll()
            p.register(self.fd, POLLIN | POLLPRI | POLLOUT | POLLRDHUP)
            got = p.poll(0)
        return (got[0][1] if got else 0) & (POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP)

    # --- names and connections ---------------------------------------------
    def bind(self, t, raw: bytes) -> None:
        port = _port(raw)
        if 0 < port < 1024 and t.group.creds.euid != 0:
            raise SyscallError(errno.EACCES)
        self._host(hostcalls.bind, raw)

    def listen(self, backlog: int) -> None:
        if self.stype != SOCK_STREAM:
            raise SyscallError(errno.EOPNOTSUPP)
        self._host(hostcalls.listen, backlog)

    def listening(self) -> bool:
        try:
            return bool(struct.unpack("<i", self._host(hostcalls.getsockopt, SOL_SOCKET, SO_ACCEPTCONN, 4))[0])
        except SyscallError:
            return False

    def accept(self, flags: int) -> "HostSocket":
        if self.stype != SOCK_STREAM:
            raise SyscallError(errno.EOPNOTSUPP)
        if NOTIFIER.count() >= MAX_HOST_SOCKETS:
            raise SyscallError(errno.ENFILE)
        try:
            fd, _ = self._host(hostcalls.accept4, SOCK_NONBLOCK_HOST | SOCK_CLOEXEC_HOST)
        except SyscallError as e:
            if e.errno == errno.EAGAIN:
                raise self._would_block(POLLIN) from None
            raise
        return HostSocket(self.stack, self.family.domain, self.stype, self.protocol, flags & O_NONBLOCK,
                          self.creds, fd)

    def connect(self, t, raw: bytes) -> None:
        """As Linux: a non-blocking socket gets EINPROGRESS (then EALREADY,
        then 0 or the error once done); a blocking one waits for the
        handshake and asks the host again, which then says how it went."""
        try:
            self._host(hostcalls.connect, raw)
        except SyscallError as e:
            if e.errno in (errno.EINPROGRESS, errno.EALREADY) and not self.flags & O_NONBLOCK:
                self.connecting = True
                raise self._would_block(POLLOUT) from None
            if e.errno == errno.EISCONN and self.connecting:
                self.connecting = False
                return
            self.connecting = False
            raise
        self.connecting = False

    def sockname(self) -> bytes:
        return self._host(hostcalls.getsockname)

    def peername(self) -> bytes:
        return self._host(hostcalls.getpeername)

    def shutdown(self, how: int) -> None:
        self._host(hostcalls.shutdown, how)

    # --- data ---------------------------------------------------------------
    def send(self, t, data, dest, files, creds, flags):
        for f in files or ():  # never: control messages on these sockets are EINVAL
            f.decref()
        if flags & (MSG_ZEROCOPY | MSG_FASTOPEN):
            raise SyscallError(errno.EOPNOTSUPP)
        chunk = bytes(data[:MAX_STREAM_CHUNK] if self.stype == SOCK_STREAM else data)
        try:
            return self._host(hostcalls.sendto, chunk, (flags & SEND_FLAGS) | MSG_DONTWAIT | MSG_NOSIGNAL, dest)
        except SyscallError as e:
            if e.errno == errno.EAGAIN:
                raise self._would_block(POLLOUT) from None
            raise

    def recv(self, length, flags):
        if flags & MSG_ERRQUEUE:
            raise SyscallError(errno.EAGAIN)  # no error queue is passed on: always empty
        dgram = self.stype == SOCK_DGRAM
        size = min(length, MAX_DATAGRAM if dgram else MAX_STREAM_CHUNK)
        host_flags = (flags & RECV_FLAGS) | MSG_DONTWAIT | (MSG_TRUNC if dgram else 0)
        try:
            n, data, source = self._host(hostcalls.recvfrom, size, host_flags)
        except SyscallError as e:
            if e.errno == errno.EAGAIN:
                raise self._would_block(POLLPRI if flags & MSG_OOB else POLLIN) from None
            raise
        if dgram:
            return Received(data[:length], source or None, flags=MSG_TRUNC if n > length else 0, size=n)
        if flags & MSG_TRUNC:  # TCP: discard, report the count
            return Received(b"", size=n)
        return Received(data)

    def pending_bytes(self) -> int:
        return self._host(hostcalls.ioctl_int, FIONREAD)

    def ioctl(self, t, request: int, arg: int) -> int:
        if request not in (FIONREAD, TIOCOUTQ, SIOCATMARK):
            raise SyscallError(errno.ENOTTY)
        t.mm.copy_out(arg, struct.pack("<i", self._host(hostcalls.ioctl_int, request)))
        return 0

    # --- options --------------------------------------------------------------
    def setsockopt(self, level: int, name: int, value: bytes) -> None:
        if (level, name) in PRIVILEGED:
            raise SyscallError(errno.EPERM)
        spec = HOST_OPTS.get((level, name))
        if spec is None or not spec[2] or (self.stype == SOCK_DGRAM and (level, name) == (SOL_SOCKET, SO_REUSEADDR)):
            super().setsockopt(level, name, value)  # timeouts; others stored without effect, or ENOPROTOOPT
            return
        if level == SOL_SOCKET and name == SO_PRIORITY and len(value) >= 4 \
                and not 0 <= struct.unpack_from("<i", value)[0] <= 6:
            raise SyscallError(errno.EPERM)  # 7 and up need CAP_NET_ADMIN
        self._host(hostcalls.setsockopt, level, name, value[:spec[0]])
        if (level, name) == (SOL_SOCKET, SO_LINGER):
            self.lingers = True

    def getsockopt(self, level: int, name: int) -> bytes:
        spec = HOST_OPTS.get((level, name))
        if spec is None or not spec[1] or (self.stype == SOCK_DGRAM and (level, name) == (SOL_SOCKET, SO_REUSEADDR)):
            return super().getsockopt(level, name)  # SO_TYPE, SO_DOMAIN, timeouts, stored ones...
        return self._host(hostcalls.getsockopt, level, name, spec[0])

    # --- lifetime ---------------------------------------------------------------
    def release(self) -> None:
        self._close()
        self.notify()  # waiters wake and see EBADF

    def _close(self) -> None:
        """Close the host socket. A lingering close (SO_LINGER with a time)
        would block this thread until the peer took the data, for as long
        as the guest asked; the host sends it in the background instead
        (SO_LINGER with no time, an abortive close, stays as it is)."""
        with self.fd_lock:
            fd, self.fd = self.fd, -1
        if fd < 0:
            return
        NOTIFIER.remove(fd)
        if self.lingers:
            try:
                on, secs = struct.unpack("<ii", hostcalls.getsockopt(fd, SOL_SOCKET, SO_LINGER, 8))
                if on and secs:
                    hostcalls.setsockopt(fd, SOL_SOCKET, SO_LINGER, struct.pack("<ii", 0, 0))
            except SyscallError:
                pass
        hostcalls.close(fd)

    def __del__(self) -> None:  # a socket dropped without release (left in a message queue at the end)
        try:
            self._close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

