"""Address families: how names are parsed, bound, found and formatted.

``UnixFamily`` (AF_UNIX): a name is the sockaddr_un the socket was bound
with. Path names are socket nodes (``UnixNode``) created in the VFS by
bind, so they show in directory listings, need write permission on the
directory, and unlink removes them (the socket stays bound, unreachable);
connect resolves the path like open does. Abstract names (a leading NUL)
live in ``Stack.abstract``. bind with only the family picks an abstract
name of five hex digits (autobind), as Linux.

``InetFamily`` (AF_INET, AF_INET6): the only interface is a loopback inside
the sandbox. A name is (16-byte address, port); IPv4 addresses are kept in
their IPv4-mapped IPv6 form so an AF_INET6 socket bound to :: (without
IPV6_V6ONLY) also receives IPv4 connections, as on Linux. Only wildcard
and loopback addresses can be bound (else EADDRNOTAVAIL), only loopback
destinations reached (0.0.0.0 and :: mean loopback; anything else is
ENETUNREACH). Unbound sockets get an ephemeral port when they connect or
send.

Every method whose docstring says so runs with ``Stack.lock`` held; the
others take it themselves (the VFS is never called under it).
"""
from __future__ import annotations

import errno
import stat as S
import struct
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.fs.node import W_OK, X_OK, Stat
from sentry.fs.overlay import OvDir, OvNode
from sentry.fs.vfs import PATH_MAX, check_access, creds_of
from sentry.net.socket import (AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP,
                               IPV6_V6ONLY, SO_REUSEADDR, SO_REUSEPORT, SOCK_STREAM, SOL_SOCKET)

if TYPE_CHECKING:
    from sentry.net.socket import Socket

UNIX_PATH_MAX = 108
SUN_OFFSET = 2  # offsetof(struct sockaddr_un, sun_path)
_MAPPED = bytes(10) + b"\xff\xff"
ANY4 = _MAPPED + bytes(4)
ANY6 = bytes(16)
LOOP4 = _MAPPED + bytes((127, 0, 0, 1))
LOOP6 = bytes(15) + b"\x01"


class Family:
    """The operations of one address family (see the module docstring)."""

    domain = AF_UNSPEC
    v6 = False

    def bind(self, t, sock: "Socket", raw: bytes) -> None:
        """Bind unbound ``sock`` to the name in ``raw`` (a sockaddr)."""
        raise NotImplementedError

    def unbind(self, sock: "Socket") -> None:
        """Forget ``sock``'s name (it is closing). Stack.lock held."""

    def pack(self, name: object, sock: "Socket") -> bytes:
        """The sockaddr of ``name`` (None: unnamed) as ``sock`` shows it."""
        raise NotImplementedError

    def resolve(self, t, sock: "Socket", raw: bytes) -> object:
        """The destination named by sockaddr ``raw`` (errors: EINVAL,
        EAFNOSUPPORT, ENOENT, ECONNREFUSED, ENETUNREACH...)."""
        raise NotImplementedError

    def find(self, sock: "Socket", dest: object) -> "Socket | None":
        """The socket ``dest`` reaches for a socket like ``sock`` (a
        listener for streams), or None. Stack.lock held."""
        raise NotImplementedError

    def autobind(self, sock: "Socket") -> None:
        """Give an unbound ``sock`` a name before it connects or sends.
        Stack.lock held."""

    def source(self, sock: "Socket", dest: object) -> object:
        """``sock``'s name once it talks to ``dest`` (after autobind).
        Stack.lock held."""
        return sock.local


# ---------------------------------------------------------------- AF_UNIX

class UnixNode(OvNode):
    """A socket's name in the file system (made by bind)."""

    __slots__ = ("sock",)
    kind = S.S_IFSOCK

    def __init__(self, fs, meta: Stat, sock: "Socket"):
        super().__init__(fs, None, meta)
        self.sock: "Socket | None" = sock  # guarded by Stack.lock; None once closed


class UnixFamily(Family):
    domain = AF_UNIX

    @staticmethod
    def _path(raw: bytes) -> bytes:
        """sun_path of ``raw`` (EINVAL if malformed): a NUL-terminated
        path, or an abstract name (leading NUL, every byte counts)."""
        if len(raw) < SUN_OFFSET or len(raw) > SUN_OFFSET + UNIX_PATH_MAX:
            raise SyscallError(errno.EINVAL)
        if struct.unpack_from("<H", raw)[0] != AF_UNIX:
            raise SyscallError(errno.EINVAL)
        path = raw[SUN_OFFSET:]
        if path[:1] == b"\0":
            return path
        return path.split(b"\0", 1)[0]

    def bind(self, t, sock, raw):
        if len(raw) == SUN_OFFSET:
            self._autobind(sock)
            return
        path = self._path(raw)
        if not path:
            raise SyscallError(errno.EINVAL)
        if path[:1] == b"\0":
            with sock.stack.lock:
                if sock.local is not None:
                    raise SyscallError(errno.EINVAL)
                if path in sock.stack.abstract:
                    raise SyscallError(errno.EADDRINUSE)
                sock.stack.abstract[path] = sock
                sock.local = struct.pack("<H", AF_UNIX) + path
            return
        if sock.local is not None:
            raise SyscallError(errno.EINVAL)
        vfs = t.kernel.vfs
        d, name, trailing = vfs.resolve_parent(t.fs, None, path, t)
        if name in (b".", b"..") or trailing:
            raise SyscallError(errno.EADDRINUSE if name in (b".", b"..") else errno.ENOENT)
        check_access(d, creds_of(t), W_OK | X_OK)
        if not isinstance(d, OvDir):
            raise SyscallError(errno.EACCES)  # /proc, /dev...: no socket nodes
        d.fs.check_writable()
        creds = t.group.creds
        meta = Stat(S.S_IFSOCK | (0o777 & ~t.fs.umask), creds.euid, creds.egid, dev=d.fs.dev)
        node = UnixNode(d.fs, meta, sock)
        try:
            d.add_node(name, node)
        except SyscallError as e:
            raise SyscallError(errno.EADDRINUSE if e.errno == errno.EEXIST else e.errno) from None
        with sock.stack.lock:
            sock.local = struct.pack("<H", AF_UNIX) + path + b"\0"
            sock.unix_node = node

    def _autobind(self, sock) -> None:
        stack = sock.stack
        with stack.lock:
            if sock.local is not None:
                raise SyscallError(errno.EINVAL)
            for _ in range(1 << 20):
                name = b"\0" + f"{stack.rng.getrandbits(20):05x}".encode()
                if name not in stack.abstract:
                    break
            else:
                raise SyscallError(errno.ENOSPC)
            stack.abstract[name] = sock
            sock.local = struct.pack("<H", AF_UNIX) + name

    def unbind(self, sock):
        local = sock.local
        if local is None:
            return
        name = local[SUN_OFFSET:]
        if name[:1] == b"\0":
            if sock.stack.abstract.get(name) is sock:
                del sock.stack.abstract[name]
        else:
            node = getattr(sock, "unix_node", None)
            if node is not None:
                node.sock = None

    def pack(self, name, sock):
        return name if name is not None else struct.pack("<H", AF_UNIX)

    def resolve(self, t, sock, raw):
        path = self._path(raw)
        if not path:
            raise SyscallError(errno.EINVAL)
        if path[:1] == b"\0":
            return path
        if len(path) >= PATH_MAX:
            raise SyscallError(errno.ENAMETOOLONG)
        node = t.kernel.vfs.lookup(t.fs, None, path, True, t)
        check_access(node, creds_of(t), W_OK)
        if not isinstance(node, UnixNode):
            raise SyscallError(errno.ECONNREFUSED)
        return node

    def find(self, sock, dest):
        target = dest.sock if isinstance(dest, UnixNode) else sock.stack.abstract.get(dest)  # type: ignore[arg-type]
        if target is None or target.closed:
            return None
        if target.stype != sock.stype:
            raise SyscallError(errno.EPROTOTYPE)
        return target


# ---------------------------------------------------------------- AF_INET, AF_INET6

def _is_v4(ip: bytes) -> bool:
    return ip[:12] == _MAPPED


def _loopback(ip: bytes) -> bool:
    return ip == LOOP6 or (_is_v4(ip) and ip[12] == 127)


class InetFamily(Family):
    def __init__(self, v6: bool):
        self.v6 = v6
        self.domain = AF_INET6 if v6 else AF_INET

    @staticmethod
    def proto(sock: "Socket") -> int:
        return IPPROTO_TCP if sock.stype == SOCK_STREAM else IPPROTO_UDP

    def parse(self, raw: bytes, sock: "Socket") -> tuple[bytes, int]:
        """(16-byte address, port) of a sockaddr_in/sockaddr_in6."""
        if len(raw) < 2:
            raise SyscallError(errno.EINVAL)
        fam = struct.unpack_from("<H", raw)[0]
        if not self.v6:
            if len(raw) < 16:
                raise SyscallError(errno.EINVAL)
            if fam != AF_INET and not (fam == AF_UNSPEC and raw[4:8] == bytes(4)):
                raise SyscallError(errno.EAFNOSUPPORT)
            return _MAPPED + raw[4:8], struct.unpack_from(">H", raw, 2)[0]
        if len(raw) < 24:
            raise SyscallError(errno.EINVAL)
        if fam != AF_INET6:
            raise SyscallError(errno.EAFNOSUPPORT)
        ip = raw[8:24]
        if _is_v4(ip) and sock.opt(IPPROTO_IPV6, IPV6_V6ONLY):
            raise SyscallError(errno.ENETUNREACH)
        return ip, struct.unpack_from(">H", raw, 2)[0]

    def pack(self, name, sock):
        ip, port = name if name is not None else (ANY6 if self.v6 else ANY4, 0)
        if self.v6:
            return struct.pack("<H", AF_INET6) + struct.pack(">HI", port, 0) + ip + bytes(4)
        return struct.pack("<H", AF_INET) + struct.pack(">H", port) + ip[12:] + bytes(8)

    def _wild(self, ip: bytes) -> bool:
        return ip in (ANY4, ANY6)

    def _covers(self, s: "Socket", ip: bytes) -> bool:
        """Whether ``s``'s bound address receives for ``ip``."""
        bound = s.local[0]  # type: ignore[index]
        if bound == ip:
            return True
        if bound == ANY4:
            return _is_v4(ip)
        if bound == ANY6:
            return not _is_v4(ip) or not s.opt(IPPROTO_IPV6, IPV6_V6ONLY)
        return False

    @staticmethod
    def _reuse(a: "Socket", b: "Socket") -> bool:
        if a.opt(SOL_SOCKET, SO_REUSEPORT) and b.opt(SOL_SOCKET, SO_REUSEPORT):
            return True
        if a.opt(SOL_SOCKET, SO_REUSEADDR) and b.opt(SOL_SOCKET, SO_REUSEADDR):
            return a.stype != SOCK_STREAM or not (a.listening() or b.listening())
        return False

    def bind(self, t, sock, raw):
        ip, port = self.parse(raw, sock)
        if not (self._wild(ip) or _loopback(ip)):
            raise SyscallError(errno.EADDRNOTAVAIL)
        if port and port < 1024 and t.group.creds.euid != 0:
            raise SyscallError(errno.EACCES)
        with sock.stack.lock:
            if sock.local is not None:
                raise SyscallError(errno.EINVAL)
            self._bind_locked(sock, ip, port)

    def _bind_locked(self, sock: "Socket", ip: bytes, port: int) -> None:
        stack = sock.stack
        proto = self.proto(sock)
        if port == 0:
            port = stack.free_port(proto)  # type: ignore[assignment]
            if port is None:
                raise SyscallError(errno.EADDRINUSE)
        others = stack.ports.setdefault((proto, port), [])
        sock.local = (ip, port)
        for s in others:
            if (self._covers(s, ip) or self._covers(sock, s.local[0])) and not self._reuse(sock, s):  # type: ignore[index]
                sock.local = None
                if not others:
                    del stack.ports[(proto, port)]
                raise SyscallError(errno.EADDRINUSE)
        others.append(sock)

    def autobind(self, sock):
        if sock.local is None:
            self._bind_locked(sock, ANY6 if self.v6 else ANY4, 0)

    def unbind(self, sock):
        if sock.local is None or getattr(sock, "accepted", False):
            return
        key = (self.proto(sock), sock.local[1])  # type: ignore[index]
        others = sock.stack.ports.get(key, [])
        if sock in others:
            others.remove(sock)
        if not others:
            sock.stack.ports.pop(key, None)

    def resolve(self, t, sock, raw):
        ip, port = self.parse(raw, sock)
        if ip == ANY4:
            ip = LOOP4
        elif ip == ANY6:
            ip = LOOP6
        if not _loopback(ip):
            raise SyscallError(errno.ENETUNREACH)
        if port == 0:
            raise SyscallError(errno.ECONNREFUSED)
        return ip, port

    def find(self, sock, dest):
        ip, port = dest  # type: ignore[misc]
        best = None
        for s in sock.stack.ports.get((self.proto(sock), port), ()):
            if s.stype != sock.stype or s.closed or not self._covers(s, ip):
                continue
            if sock.stype == SOCK_STREAM and not s.listening():
                continue
            if s.local[0] == ip:  # type: ignore[index]
                return s
            best = best or s
        return best

    def source(self, sock, dest):
        ip, port = sock.local  # type: ignore[misc]
        if self._wild(ip):
            ip = LOOP4 if _is_v4(dest[0]) else LOOP6  # type: ignore[index]
        return ip, port


UNIX = UnixFamily()
INET = InetFamily(v6=False)
INET6 = InetFamily(v6=True)
FAMILIES = {AF_UNIX: UNIX, AF_INET: INET, AF_INET6: INET6}
