"""Connection-oriented sockets: unix stream and seqpacket, TCP.

In a nutshell: connect finds a listener by name, makes the server-side
socket at once, pairs it with the connecting one and queues it on the
listener's backlog for accept (connect never waits for accept; it waits
only while the backlog is full). A connected socket sends by appending a
``Message`` to its peer's ``rx``: a stream reads across messages (but not
past one that carried files), a seqpacket socket reads one message per
call. Closing tells the peer: it reads EOF after the queued data, its sends
fail with EPIPE, and ECONNRESET if the closed side left data unread.
"""
from __future__ import annotations

import errno
from collections import deque

from sentry.errors import SyscallError
from sentry.fs.file import O_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLOUT, OpenFile
from sentry.net.socket import (AF_UNIX, MSG_PEEK, MSG_TRUNC, POLLRDHUP, SHUT_RD, SHUT_RDWR, SHUT_WR, SOCK_SEQPACKET, Creds,
                               Message, Received, Socket, WouldBlock)

MAX_BACKLOG = 4096  # net.core.somaxconn

LISTEN, CONNECTED, UNCONNECTED = "listen", "connected", "unconnected"


class ConnSocket(Socket):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Guarded by stack.lock.
        self.state = UNCONNECTED
        self.peer: ConnSocket | None = None
        self.peer_name: object = None  # the peer's name, for getpeername
        self.peer_creds: Creds | None = None
        self.backlog: deque[ConnSocket] = deque()  # connected, not yet accepted
        self.max_backlog = 0
        # A non-blocking TCP connect said EINPROGRESS: the next connect reports success.
        self.in_progress = False

    def pair_with(self, other: "ConnSocket") -> None:
        """socketpair: connect two new sockets to each other."""
        self.peer, other.peer = other, self
        self.state = other.state = CONNECTED
        self.peer_creds, other.peer_creds = other.creds, self.creds

    def listening(self) -> bool:
        return self.state == LISTEN

    def listen(self, backlog: int) -> None:
        with self.stack.lock:
            if self.state == CONNECTED or self.closed:
                raise SyscallError(errno.EINVAL)
            if self.local is None:
                if self.family.domain == AF_UNIX:  # a unix socket listens only under a name
                    raise SyscallError(errno.EINVAL)
                self.family.autobind(self)
            self.state = LISTEN
            self.max_backlog = min(max(backlog, 0), MAX_BACKLOG) + 1
        self.notify()

    def accept(self, flags: int) -> "ConnSocket":
        with self.stack.lock:
            if self.state != LISTEN:
                raise SyscallError(errno.EINVAL)
            if not self.backlog:
                raise WouldBlock(lambda: bool(self.backlog) or self.state != LISTEN, self)
            srv = self.backlog.popleft()
        self.notify()  # room in the backlog for a waiting connect
        srv.flags = (srv.flags & ~O_NONBLOCK) | (flags & O_NONBLOCK)
        return srv

    def connect(self, t, raw: bytes) -> None:
        dest = self.family.resolve(t, self, raw)
        with self.stack.lock:
            if self.state == LISTEN:
                raise SyscallError(errno.EINVAL)
            if self.state == CONNECTED and self.in_progress:
                self.in_progress = False
                return
            if self.state == CONNECTED or self.peer is not None:
                raise SyscallError(errno.EISCONN)
            lst = self.family.find(self, dest)
            if lst is None or not isinstance(lst, ConnSocket) or lst.state != LISTEN:
                raise SyscallError(errno.ECONNREFUSED)
            if len(lst.backlog) >= lst.max_backlog:
                raise WouldBlock(lambda: len(lst.backlog) < lst.max_backlog or lst.state != LISTEN, lst)
            self.family.autobind(self)
            srv = ConnSocket(self.stack, self.family, self.stype, self.protocol, 0, lst.creds)
            srv.accepted = True
            srv.local = lst.local if self.family.domain == AF_UNIX else dest
            self.local = self.family.source(self, dest)
            self.peer, srv.peer = srv, self
            self.state = srv.state = CONNECTED
            self.peer_name, srv.peer_name = srv.local, self.local
            self.peer_creds = lst.creds
            srv.peer_creds = (t.pid, t.creds.euid, t.creds.egid) if t is not None else self.creds
            lst.backlog.append(srv)
        lst.notify()
        self.notify()

    # --- data ---------------------------------------------------------
    def _room(self) -> int:
        p = self.peer
        return p.rcvbuf() - p.rx_bytes if p is not None else 0

    def send(self, t, data, dest, files, creds, flags):
        with self.stack.lock:
            if self.shut_wr:
                raise SyscallError(errno.EPIPE)
            if self.state != CONNECTED:
                raise SyscallError(errno.ENOTCONN)
            self.raise_pending_error()
            peer = self.peer
            assert peer is not None
            room = self._room()
            if self.stype == SOCK_SEQPACKET:
                if len(data) > peer.rcvbuf():
                    raise SyscallError(errno.EMSGSIZE)
                need = max(len(data), 1)
            else:
                need = 1
            if room < need:
                # The receiver notifies its peer (this socket) when it drains.
                raise WouldBlock(lambda: self._room() >= need or self.shut_wr or self.closed, self)
            chunk = bytes(data if self.stype == SOCK_SEQPACKET else data[:room])
            peer.queue(Message(chunk, None, files, creds))
        peer.notify()
        return len(chunk)

    def recv(self, length, flags):
        with self.stack.lock:
            if self.state != CONNECTED:
                raise SyscallError(errno.EINVAL if self.family.domain == AF_UNIX and self.state == LISTEN else errno.ENOTCONN)
            if not self.rx:
                return self.nothing_queued()
            got = self._take_seqpacket(length, flags) if self.stype == SOCK_SEQPACKET else self._take_stream(length, flags)
            peer = self.peer
        if peer is not None and not flags & MSG_PEEK:
            peer.notify()  # room to send
        return got

    def _take_seqpacket(self, length: int, flags: int) -> Received:
        m = self.rx[0]
        if not flags & MSG_PEEK:
            self.rx.popleft()
            self.rx_bytes -= len(m.data)
        trunc = MSG_TRUNC if len(m.data) > length else 0
        files = None if flags & MSG_PEEK else m.files
        return Received(m.data[:length], None, files, m.creds, trunc, len(m.data))

    def _take_stream(self, length: int, flags: int) -> Received:
        """Up to ``length`` bytes across queued messages, stopping before a
        message with other credentials or files, and after one with files."""
        out = bytearray()
        files: list[OpenFile] | None = None
        creds = self.rx[0].creds
        if flags & MSG_PEEK:
            for m in self.rx:
                if len(out) >= length or (out and (m.files or m.creds != creds)):
                    break
                out += m.data[:length - len(out)]
                if m.files:
                    break
            return Received(bytes(out), None, None, creds)
        while self.rx and len(out) < length:
            m = self.rx[0]
            if out and (m.files or m.creds != creds):
                break
            take = m.data[:length - len(out)]
            out += take
            files, m.files = m.files, None
            if len(take) == len(m.data):
                self.rx.popleft()
            else:
                m.data = m.data[len(take):]
            self.rx_bytes -= len(take)
            if files:
                break  # never read past a message that carried files
        return Received(bytes(out), None, files, creds)

    def pending_bytes(self) -> int:
        with self.stack.lock:
            if self.stype == SOCK_SEQPACKET:
                return len(self.rx[0].data) if self.rx else 0
            return self.rx_bytes

    # --- state ---------------------------------------------------------
    def shutdown(self, how: int) -> None:
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise SyscallError(errno.EINVAL)
        with self.stack.lock:
            if self.state != CONNECTED:
                raise SyscallError(errno.ENOTCONN)
            peer = self.peer
            if how in (SHUT_RD, SHUT_RDWR):
                self.shut_rd = True
                if peer is not None:
                    peer.shut_wr = True
            if how in (SHUT_WR, SHUT_RDWR):
                self.shut_wr = True
                if peer is not None:
                    peer.shut_rd = True
        self.notify()
        if peer is not None:
            peer.notify()

    def peername(self) -> bytes:
        with self.stack.lock:
            if self.state != CONNECTED:
                raise SyscallError(errno.ENOTCONN)
            return self.family.pack(self.peer_name, self)

    def peercred(self) -> Creds:
        with self.stack.lock:
            if self.family.domain == AF_UNIX:
                if self.peer_creds is None:
                    return (0, 0xFFFFFFFF, 0xFFFFFFFF)
                return self.peer_creds
        return super().peercred()

    def readiness(self) -> int:
        with self.stack.lock:
            if self.state == LISTEN:
                return POLLIN if self.backlog else 0
            if self.state != CONNECTED:
                return POLLOUT | POLLHUP
            ev = POLLERR if self.error else 0
            if self.rx or self.shut_rd:
                ev |= POLLIN
            if self.shut_rd:
                ev |= POLLRDHUP
                if self.shut_wr:
                    ev |= POLLHUP
            if self.shut_wr or self._room() > 0:
                ev |= POLLOUT
            return ev

    def _on_close(self, unread):
        woken: list[Socket] = []
        dropped: list[Message] = []
        for srv in self.backlog:  # connections never accepted: reset them
            srv.closed = True
            dropped.extend(srv.rx)
            srv.rx.clear()
            client = srv.peer
            if client is not None:
                client.shut_rd = client.shut_wr = True
                client.error = errno.ECONNRESET
                woken.append(client)
        self.backlog.clear()
        if self.state == LISTEN:
            self.state = UNCONNECTED
        peer = self.peer
        if peer is not None:
            peer.shut_rd = peer.shut_wr = True
            if unread:
                peer.error = errno.ECONNRESET
            woken.append(peer)
        return woken, dropped
