"""The host's socket calls, on host fds the Sentry owns (``--network=host``).

Thin ctypes wrappers over libc: raw sockaddr bytes in and out (the host
kernel parses and checks them, for the socket's own family), failures as
``SyscallError(errno)``. Every fd passed here is non-blocking, so no call
ever blocks the calling thread; ctypes releases the GIL around each.
Only ``sentry.net.hostinet`` calls these, and only on the AF_INET/AF_INET6
sockets it made: the Sentry's seccomp filter allows ``socket`` for nothing
else (``sentry.seccomp_self``).
"""
from __future__ import annotations

import ctypes
import os

from sentry.errors import SyscallError

MAX_ADDR = 128  # sizeof(struct sockaddr_storage)

_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: no library search at run time
_socklen = ctypes.c_uint32
_ADDR_OUT = (ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_socklen))


def _fn(name: str, restype, *argtypes):
    f = getattr(_libc, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


_socket = _fn("socket", ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)
_bind = _fn("bind", ctypes.c_int, ctypes.c_int, ctypes.c_void_p, _socklen)
_connect = _fn("connect", ctypes.c_int, ctypes.c_int, ctypes.c_void_p, _socklen)
_listen = _fn("listen", ctypes.c_int, ctypes.c_int, ctypes.c_int)
_accept4 = _fn("accept4", ctypes.c_int, *_ADDR_OUT, ctypes.c_int)
_getsockname = _fn("getsockname", ctypes.c_int, *_ADDR_OUT)
_getpeername = _fn("getpeername", ctypes.c_int, *_ADDR_OUT)
_setsockopt = _fn("setsockopt", ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, _socklen)
_getsockopt = _fn("getsockopt", ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                  ctypes.POINTER(_socklen))
_shutdown = _fn("shutdown", ctypes.c_int, ctypes.c_int, ctypes.c_int)
_sendto = _fn("sendto", ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
              ctypes.c_void_p, _socklen)
_recvfrom = _fn("recvfrom", ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                ctypes.c_void_p, ctypes.POINTER(_socklen))
_ioctl = _fn("ioctl", ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)


def _check(rc: int) -> int:
    if rc < 0:
        raise SyscallError(ctypes.get_errno())
    return rc


def _addr_call(fn, fd: int, *more) -> tuple[int, bytes]:
    buf = ctypes.create_string_buffer(MAX_ADDR)
    n = _socklen(MAX_ADDR)
    rc = _check(fn(fd, buf, ctypes.byref(n), *more))
    return rc, buf.raw[:min(n.value, MAX_ADDR)]


def socket(domain: int, stype: int, protocol: int) -> int:
    return _check(_socket(domain, stype, protocol))


def bind(fd: int, raw: bytes) -> None:
    _check(_bind(fd, raw, len(raw)))


def connect(fd: int, raw: bytes) -> None:
    _check(_connect(fd, raw, len(raw)))


def listen(fd: int, backlog: int) -> None:
    _check(_listen(fd, backlog))


def accept4(fd: int, flags: int) -> tuple[int, bytes]:
    """(the new connection's fd, the peer's sockaddr)."""
    return _addr_call(_accept4, fd, flags)


def getsockname(fd: int) -> bytes:
    return _addr_call(_getsockname, fd)[1]


def getpeername(fd: int) -> bytes:
    return _addr_call(_getpeername, fd)[1]


def setsockopt(fd: int, level: int, name: int, value: bytes) -> None:
    _check(_setsockopt(fd, level, name, value, len(value)))


def getsockopt(fd: int, level: int, name: int, size: int) -> bytes:
    buf = ctypes.create_string_buffer(size)
    n = _socklen(size)
    _check(_getsockopt(fd, level, name, buf, ctypes.byref(n)))
    return buf.raw[:min(n.value, size)]


def shutdown(fd: int, how: int) -> None:
    _check(_shutdown(fd, how))


def sendto(fd: int, data: bytes, flags: int, dest: bytes | None) -> int:
    return _check(_sendto(fd, data, len(data), flags, dest, len(dest) if dest else 0))


def recvfrom(fd: int, size: int, flags: int) -> tuple[int, bytes, bytes]:
    """(what the host returned: bytes received, or a datagram's whole
    length under MSG_TRUNC; the bytes that fit in ``size``; the source's
    sockaddr, b"" if none)."""
    buf = ctypes.create_string_buffer(size)
    addr = ctypes.create_string_buffer(MAX_ADDR)
    alen = _socklen(MAX_ADDR)
    n = _check(_recvfrom(fd, buf, size, flags, addr, ctypes.byref(alen)))
    return n, buf.raw[:min(n, size)], addr.raw[:min(alen.value, MAX_ADDR)]


def ioctl_int(fd: int, request: int) -> int:
    """An ioctl that fills in an int (FIONREAD, TIOCOUTQ, SIOCATMARK)."""
    v = ctypes.c_int(0)
    _check(_ioctl(fd, request, ctypes.byref(v)))
    return v.value


def close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
