"""Datagram sockets: unix dgram and UDP.

In a nutshell: send finds the receiving socket by name (or the connected
peer) and appends a ``Message`` that keeps the sender's name; recv takes one
message per call, cut to the buffer (MSG_TRUNC). Unix datagrams are
reliable: a full receiver makes the sender wait, and a receiver connected
to another socket refuses them (EPERM). UDP datagrams to a port nobody
bound, or to a full receiver, are lost; a connected UDP socket then reports
ECONNREFUSED on a later call, as the ICMP error makes Linux do.
"""
from __future__ import annotations

import errno
import struct
import weakref

from sentry.errors import SyscallError
from sentry.fs.file import POLLERR, POLLHUP, POLLIN, POLLOUT
from sentry.net.socket import (AF_UNIX, AF_UNSPEC, MSG_PEEK, MSG_TRUNC, SHUT_RD, SHUT_RDWR, SHUT_WR, Message,
                               Received, Socket, WouldBlock)

MAX_UDP = 65507


class DgramSocket(Socket):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Guarded by stack.lock. Unix: the peer socket; inet: its (address, port).
        self.peer_dest: object = None
        # Unix sockets connected to this one: told when a read makes room (their POLLOUT).
        self.senders: "weakref.WeakSet[DgramSocket]" = weakref.WeakSet()

    def pair_with(self, other: "DgramSocket") -> None:
        """socketpair: each is the other's peer."""
        self.peer_dest, other.peer_dest = other, self
        self.senders.add(other)
        other.senders.add(self)

    def _unix(self) -> bool:
        return self.family.domain == AF_UNIX

    def connect(self, t, raw: bytes) -> None:
        if len(raw) >= 2 and struct.unpack_from("<H", raw)[0] == AF_UNSPEC and not self._unix():
            with self.stack.lock:
                self.peer_dest = None
            return
        dest = self.family.resolve(t, self, raw)
        with self.stack.lock:
            if self._unix():
                target = self.family.find(self, dest)
                if target is None:
                    raise SyscallError(errno.ECONNREFUSED)
                self.peer_dest = target
                target.senders.add(self)
            else:
                self.family.autobind(self)
                self.local = self.family.source(self, dest)
                self.peer_dest = dest
        self.notify()

    def _has_room(self, target: Socket, size: int) -> bool:
        return not target.rx or target.rx_bytes + size <= target.rcvbuf()

    def send(self, t, data, dest, files, creds, flags):
        where = self.family.resolve(t, self, dest) if dest is not None else None
        with self.stack.lock:
            if self.shut_wr:
                raise SyscallError(errno.EPIPE)
            self.raise_pending_error()
            if where is None:
                where = self.peer_dest
                if where is None:
                    raise SyscallError(errno.ENOTCONN if self._unix() else errno.EDESTADDRREQ)
            if self._unix():
                target = where if isinstance(where, Socket) else self.family.find(self, where)
                if target is None or target.closed:
                    raise SyscallError(errno.ECONNREFUSED)
                if target.peer_dest is not None and target.peer_dest is not self:  # type: ignore[attr-defined]
                    raise SyscallError(errno.EPERM)
                if len(data) > target.rcvbuf():
                    raise SyscallError(errno.EMSGSIZE)
                if not self._has_room(target, len(data)):
                    raise WouldBlock(lambda: self._has_room(target, len(data)) or target.closed, target)
                target.queue(Message(bytes(data), self.local, files, creds))
            else:
                if len(data) > MAX_UDP:
                    raise SyscallError(errno.EMSGSIZE)
                self.family.autobind(self)
                source = self.family.source(self, where)
                target = self.family.find(self, where)
                if target is None or target.shut_rd:
                    if self.peer_dest is not None:
                        self.error = errno.ECONNREFUSED
                    target = None
                elif target.peer_dest not in (None, source) or not self._has_room(target, len(data)):  # type: ignore[attr-defined]
                    target = None
                else:
                    target.queue(Message(bytes(data), source, files, creds))
        if target is not None:
            target.notify()
        else:
            self.notify()
        return len(data)

    def recv(self, length, flags):
        with self.stack.lock:
            if not self.rx:
                return self.nothing_queued()
            m = self.rx[0]
            if not flags & MSG_PEEK:
                self.rx.popleft()
                self.rx_bytes -= len(m.data)
            source = self.family.pack(m.source, self) if m.source is not None else None
            senders = list(self.senders)
        self.notify()  # room for unix senders waiting on this socket
        for s in senders:
            s.notify()
        trunc = MSG_TRUNC if len(m.data) > length else 0
        files = None if flags & MSG_PEEK else m.files
        return Received(m.data[:length], source, files, m.creds, trunc, len(m.data))

    def pending_bytes(self) -> int:
        with self.stack.lock:
            return len(self.rx[0].data) if self.rx else 0

    def shutdown(self, how: int) -> None:
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise SyscallError(errno.EINVAL)
        with self.stack.lock:
            if self.peer_dest is None and not self._unix():
                raise SyscallError(errno.ENOTCONN)
            self.shut_rd |= how != SHUT_WR
            self.shut_wr |= how != SHUT_RD
        self.notify()

    def peername(self) -> bytes:
        with self.stack.lock:
            dest = self.peer_dest
            if dest is None:
                raise SyscallError(errno.ENOTCONN)
            return self.family.pack(dest.local if isinstance(dest, Socket) else dest, self)

    def readiness(self) -> int:
        with self.stack.lock:
            ev = POLLERR if self.error else 0
            if self.rx or self.shut_rd or self.error:
                ev |= POLLIN
            if self.shut_rd and self.shut_wr:
                ev |= POLLHUP
            target = self.peer_dest
            if not isinstance(target, Socket) or target.closed or self._has_room(target, 1):
                ev |= POLLOUT
            return ev
