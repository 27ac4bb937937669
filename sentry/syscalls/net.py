"""Socket system calls: thin handlers over sentry.net.

Each handler reads its arguments from guest memory (sockaddrs, msghdrs,
iovecs, control messages), calls the socket and writes results back.
Blocking is done here: a socket method that would block raises
``WouldBlock``; unless the file is O_NONBLOCK or the call says
MSG_DONTWAIT, the task waits in the kernel's trio loop (``wait_until``)
for what it names and retries. A signal interrupts the wait (ERESTARTSYS:
restarted under SA_RESTART, else EINTR); SO_RCVTIMEO/SO_SNDTIMEO turn an
expired wait into EAGAIN.
"""
from __future__ import annotations

import errno
import signal as _signal
import struct
from typing import Callable, TypeVar

from sentry.errors import SyscallError
from sentry.fs.file import O_CLOEXEC, O_NONBLOCK, OpenFile
from sentry.kernel import signals as sig
from sentry.kernel.task import Task
from sentry.kernel.wait import WaitQueue, wait_until
from sentry.net.addr import FAMILIES, InetFamily
from sentry.net.conn import CONNECTED, ConnSocket
from sentry.net.dgram import DgramSocket
from sentry.net.socket import (AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, MSG_CMSG_CLOEXEC, MSG_CTRUNC,
                               MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, MSG_WAITALL, SO_PASSCRED, SO_RCVTIMEO,
                               SO_SNDTIMEO, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, SOCK_TYPE_MASK, SOL_SOCKET,
                               Creds, Received, Socket, WouldBlock)
from sentry.net.stack import stack_of
from sentry.syscalls.spec import (FD, Enum, Flags, Int, OutStruct, Ptr, ReadBuf, RecvMsgHdr, SendMsgHdr, Size, Struct,
                                  WriteBuf, entries, partial, s32, supported)

SOCK_NONBLOCK, SOCK_CLOEXEC = O_NONBLOCK, O_CLOEXEC
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
SCM_MAX_FD = 253
MSG_WAITFORONE = 0x10000
MAX_ADDR = 128  # sizeof(struct sockaddr_storage)
MAX_IOV = 1024
MAX_OPT = 1024
MAX_CONTROL = 1 << 16
MAX_SEND = 1 << 26  # bytes one send takes at most (a short count, as files' MAX_RW)
_MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
_MMSGHDR_SIZE = _MSGHDR.size + 8  # + unsigned msg_len, padded
_CMSG = struct.Struct("<Qii")  # len, level, type
_UCRED = struct.Struct("<iII")

DOMAINS = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
# Only the flag bits have names: the type number (1 stream, 2 dgram, 5 seqpacket) shows in hex.
TYPES = {0o4000: "SOCK_NONBLOCK", 0o2000000: "SOCK_CLOEXEC"}
MSG_FLAGS = {0x1: "MSG_OOB", 0x2: "MSG_PEEK", 0x20: "MSG_TRUNC", 0x40: "MSG_DONTWAIT", 0x100: "MSG_WAITALL",
             0x4000: "MSG_NOSIGNAL", 0x8000: "MSG_MORE", 0x40000000: "MSG_CMSG_CLOEXEC"}
LEVELS = {1: "SOL_SOCKET", 0: "IPPROTO_IP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP", 41: "IPPROTO_IPV6"}
SHUT = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}

T = TypeVar("T")


# --- helpers -------------------------------------------------------------------
def _sock(t: Task, fd: int) -> Socket:
    f = t.fds.get(s32(fd))
    if not isinstance(f, Socket):
        raise SyscallError(errno.ENOTSOCK)
    return f


def _blocking(t: Task, sock: Socket, op: Callable[[], T], flags: int = 0, timeout: int | None = None) -> T:
    """``op()``, retried after waiting while it raises WouldBlock (EAGAIN
    at once if non-blocking; EAGAIN when ``timeout`` ns pass)."""
    while True:
        try:
            return op()
        except WouldBlock as e:
            if sock.flags & O_NONBLOCK or flags & MSG_DONTWAIT:
                raise SyscallError(errno.EAGAIN) from None
            q = WaitQueue()
            for s in e.watch:
                s.subscribe(q.notify)
            try:
                if not wait_until(t, [q], e.ready, timeout):
                    raise SyscallError(errno.EAGAIN) from None
            finally:
                for s in e.watch:
                    s.unsubscribe(q.notify)


def _read_addr(t: Task, addr: int, length: int) -> bytes:
    length = s32(length)
    if length < 0 or length > MAX_ADDR:
        raise SyscallError(errno.EINVAL)
    return t.mm.copy_in(addr, length) if length else b""


def _write_addr(t: Task, addr: int, len_ptr: int, raw: bytes | None) -> None:
    """Copy a sockaddr out to (addr, *len_ptr) as accept/getsockname do:
    cut to the caller's length, the full length stored back."""
    if not addr:
        return
    have = s32(t.mm.read_u32(len_ptr))
    if have < 0:
        raise SyscallError(errno.EINVAL)
    raw = raw or b""
    if raw and have:
        t.mm.copy_out(addr, raw[:have])
    t.mm.write_u32(len_ptr, len(raw))


def _creds(t: Task) -> Creds:
    return (t.pid, t.creds.uid, t.creds.gid)


def _sigpipe(t: Task) -> None:
    info = sig.siginfo(_signal.SIGPIPE, 0, pid=t.pid, uid=t.creds.uid)
    sig.send(t.kernel, t.group, _signal.SIGPIPE, info, task=t)


# --- creating and naming ---------------------------------------------------------
def _new_socket(t: Task, domain: int, stype: int, protocol: int) -> Socket:
    flags = stype & ~SOCK_TYPE_MASK
    kind = stype & SOCK_TYPE_MASK
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    family = FAMILIES.get(domain)
    if family is None:
        raise SyscallError(errno.EAFNOSUPPORT)
    if domain == AF_UNIX:
        if kind not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
            raise SyscallError(errno.ESOCKTNOSUPPORT)
        if protocol not in (0, AF_UNIX):
            raise SyscallError(errno.EPROTONOSUPPORT)
        protocol = 0
    else:
        wanted = {SOCK_STREAM: IPPROTO_TCP, SOCK_DGRAM: IPPROTO_UDP}.get(kind)
        if wanted is None:
            raise SyscallError(errno.EPERM if kind == 3 else errno.ESOCKTNOSUPPORT)  # SOCK_RAW needs a real net
        if protocol not in (0, wanted):
            raise SyscallError(errno.EPROTONOSUPPORT)
        protocol = wanted
        if t.kernel.config.network == "host":  # a host socket the Sentry owns (sentry.net.hostinet)
            from sentry.net.hostinet import new_socket

            return new_socket(t, domain, kind, protocol, flags, _creds(t))
    cls = DgramSocket if kind == SOCK_DGRAM else ConnSocket
    return cls(stack_of(t.kernel), family, kind, protocol, flags, _creds(t))


def sys_socket(t: Task, domain: int, stype: int, protocol: int) -> int:
    sock = _new_socket(t, s32(domain), s32(stype), s32(protocol))
    return t.fds.install(sock, bool(s32(stype) & SOCK_CLOEXEC))


def sys_socketpair(t: Task, domain: int, stype: int, protocol: int, sv: int) -> int:
    domain, stype = s32(domain), s32(stype)
    if domain in (AF_INET, AF_INET6):
        raise SyscallError(errno.EOPNOTSUPP)
    a = _new_socket(t, domain, stype, s32(protocol))
    b = _new_socket(t, domain, stype, s32(protocol))
    a.pair_with(b)  # type: ignore[attr-defined]
    cloexec = bool(stype & SOCK_CLOEXEC)
    try:
        fa = t.fds.install(a, cloexec)
    except SyscallError:
        b.decref()
        raise
    try:
        fb = t.fds.install(b, cloexec)
    except SyscallError:
        t.fds.close(fa)
        raise
    try:
        t.mm.copy_out(sv, struct.pack("<ii", fa, fb))
    except SyscallError:
        t.fds.close(fa)
        t.fds.close(fb)
        raise
    return 0


def sys_bind(t: Task, fd: int, addr: int, length: int) -> int:
    sock = _sock(t, fd)
    sock.bind(t, _read_addr(t, addr, length))
    return 0


def sys_listen(t: Task, fd: int, backlog: int) -> int:
    _sock(t, fd).listen(s32(backlog))
    return 0


def sys_connect(t: Task, fd: int, addr: int, length: int) -> int:
    sock = _sock(t, fd)
    raw = _read_addr(t, addr, length)
    was_connected = isinstance(sock, ConnSocket) and sock.state == CONNECTED
    _blocking(t, sock, lambda: sock.connect(t, raw))
    if (sock.flags & O_NONBLOCK and isinstance(sock.family, InetFamily) and isinstance(sock, ConnSocket)
            and not was_connected):
        sock.in_progress = True
        raise SyscallError(errno.EINPROGRESS)  # as Linux: even loopback connects are "in progress"
    return 0


def sys_accept4(t: Task, fd: int, addr: int, len_ptr: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        raise SyscallError(errno.EINVAL)
    sock = _sock(t, fd)
    new = _blocking(t, sock, lambda: sock.accept(flags))
    try:
        _write_addr(t, addr, len_ptr, new.peername() if addr else None)
    except SyscallError:
        new.decref()
        raise
    return t.fds.install(new, bool(flags & SOCK_CLOEXEC))


def sys_accept(t: Task, fd: int, addr: int, len_ptr: int) -> int:
    return sys_accept4(t, fd, addr, len_ptr, 0)


def sys_getsockname(t: Task, fd: int, addr: int, len_ptr: int) -> int:
    _write_addr(t, addr, len_ptr, _sock(t, fd).sockname())
    return 0


def sys_getpeername(t: Task, fd: int, addr: int, len_ptr: int) -> int:
    _write_addr(t, addr, len_ptr, _sock(t, fd).peername())
    return 0


def sys_shutdown(t: Task, fd: int, how: int) -> int:
    _sock(t, fd).shutdown(s32(how))
    return 0


def sys_setsockopt(t: Task, fd: int, level: int, name: int, val: int, length: int) -> int:
    sock = _sock(t, fd)
    n = s32(length)
    if n < 0:
        raise SyscallError(errno.EINVAL)
    sock.setsockopt(s32(level), s32(name), t.mm.copy_in(val, min(n, MAX_OPT)) if n else b"")
    return 0


def sys_getsockopt(t: Task, fd: int, level: int, name: int, val: int, len_ptr: int) -> int:
    sock = _sock(t, fd)
    have = s32(t.mm.read_u32(len_ptr))
    if have < 0:
        raise SyscallError(errno.EINVAL)
    data = sock.getsockopt(s32(level), s32(name))[:have]
    if data:
        t.mm.copy_out(val, data)
    t.mm.write_u32(len_ptr, len(data))
    return 0


# --- sending ---------------------------------------------------------------------
def _send(t: Task, sock: Socket, data: bytes, dest: bytes | None, files: list[OpenFile] | None,
          creds: Creds | None, flags: int) -> int:
    """Send all of ``data`` on a stream (waiting for room; a short count
    if interrupted after some), one message otherwise. ``files`` are
    consumed (sent or dropped)."""
    stream = sock.stype == SOCK_STREAM
    if stream and not data:
        for f in files or ():
            f.decref()
        return 0
    if sock.family.domain == AF_UNIX and creds is None:
        creds = _creds(t)
    done = 0
    view = memoryview(data)  # slices without copies; the socket copies what it queues
    timeout = sock.timeout_ns(SO_SNDTIMEO)
    try:
        while True:
            pending = files
            try:
                n = _blocking(t, sock, lambda: sock.send(t, view[done:], dest, pending, creds, flags), flags, timeout)
            except SyscallError as e:
                if done:
                    return done
                if e.errno == errno.EPIPE and not flags & MSG_NOSIGNAL:
                    _sigpipe(t)
                raise
            files = None  # the first message took them
            done += n
            if done >= len(data) or not stream:
                return done
    finally:
        for f in files or ():
            f.decref()


def _read_control(t: Task, sock: Socket, addr: int, length: int) -> tuple[list[OpenFile] | None, Creds | None]:
    """The files (SCM_RIGHTS, one new reference each) and credentials
    (SCM_CREDENTIALS, checked) of a control buffer."""
    if not length:
        return None, None
    if length > MAX_CONTROL:
        raise SyscallError(errno.ENOBUFS)
    ctl = t.mm.copy_in(addr, length)
    files: list[OpenFile] = []
    creds = None
    pos = 0
    try:
        while pos + _CMSG.size <= len(ctl):
            clen, level, ctype = _CMSG.unpack_from(ctl, pos)
            if clen < _CMSG.size or pos + clen > len(ctl):
                raise SyscallError(errno.EINVAL)
            payload = ctl[pos + _CMSG.size:pos + clen]
            if level != SOL_SOCKET or sock.family.domain != AF_UNIX:
                raise SyscallError(errno.EINVAL)
            if ctype == SCM_RIGHTS:
                fds = struct.unpack(f"<{len(payload) // 4}i", payload[:len(payload) // 4 * 4])
                if len(files) + len(fds) > SCM_MAX_FD:
                    raise SyscallError(errno.EINVAL)
                for fd in fds:
                    files.append(t.fds.get(fd).incref())
            elif ctype == SCM_CREDENTIALS:
                if len(payload) < _UCRED.size:
                    raise SyscallError(errno.EINVAL)
                pid, uid, gid = _UCRED.unpack_from(payload)
                c = t.creds
                if uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
                    raise SyscallError(errno.EINVAL)  # not a valid id
                if c.euid != 0 and (pid != t.pid or uid not in (c.uid, c.euid, c.suid)
                                    or gid not in (c.gid, c.egid, c.sgid)):
                    raise SyscallError(errno.EPERM)
                if pid != t.pid and pid not in t.kernel.tasks and pid not in t.kernel.groups:
                    raise SyscallError(errno.ESRCH)  # root may name any pid of the sandbox, live or zombie
                creds = (pid, uid, gid)
            else:
                raise SyscallError(errno.EINVAL)
            pos += (clen + 7) & ~7
    except SyscallError:
        for f in files:
            f.decref()
        raise
    return files or None, creds


def _gather(t: Task, iovs: list[tuple[int, int]]) -> bytes:
    """The bytes of ``iovs``, at most MAX_SEND of them."""
    parts, total = [], 0
    for base, n in iovs:
        n = min(n, MAX_SEND - total)
        if n:
            parts.append(t.mm.copy_in(base, n))
            total += n
    return b"".join(parts)


def _sendmsg(t: Task, sock: Socket, msg: int, flags: int) -> int:
    name, namelen, iov, iovlen, control, controllen, _ = _MSGHDR.unpack(t.mm.copy_in(msg, _MSGHDR.size))
    if iovlen > MAX_IOV:
        raise SyscallError(errno.EMSGSIZE)
    dest = _read_addr(t, name, namelen) if name and namelen else None
    data = _gather(t, t.mm.read_iovecs(iov, iovlen))
    files, creds = _read_control(t, sock, control, controllen)
    return _send(t, sock, data, dest, files, creds, flags)


def sys_sendto(t: Task, fd: int, buf: int, length: int, flags: int, addr: int, addrlen: int) -> int:
    sock = _sock(t, fd)
    data = t.mm.copy_in(buf, min(length, MAX_SEND)) if length else b""
    dest = _read_addr(t, addr, addrlen) if addr else None
    return _send(t, sock, data, dest, None, None, s32(flags))


def sys_sendmsg(t: Task, fd: int, msg: int, flags: int) -> int:
    return _sendmsg(t, _sock(t, fd), msg, s32(flags))


def _each_mmsghdr(t: Task, vec: int, vlen: int, transfer: Callable[[int, int], int]) -> int:
    """sendmmsg/recvmmsg: ``transfer(hdr, done)`` for each mmsghdr of the
    vector in turn, storing its msg_len; an error after the first message
    ends the batch with the count so far, as Linux does."""
    done = 0
    for i in range(min(s32(vlen) & 0xFFFFFFFF, MAX_IOV)):
        hdr = vec + i * _MMSGHDR_SIZE
        try:
            n = transfer(hdr, done)
        except SyscallError:
            if done:
                return done
            raise
        t.mm.write_u32(hdr + _MSGHDR.size, n)
        done += 1
    return done


def sys_sendmmsg(t: Task, fd: int, vec: int, vlen: int, flags: int) -> int:
    sock = _sock(t, fd)
    return _each_mmsghdr(t, vec, vlen, lambda hdr, done: _sendmsg(t, sock, hdr, s32(flags)))


# --- receiving -------------------------------------------------------------------
def _recv(t: Task, sock: Socket, length: int, flags: int) -> Received:
    timeout = sock.timeout_ns(SO_RCVTIMEO)
    got = _blocking(t, sock, lambda: sock.recv(length, flags), flags, timeout)
    if flags & MSG_WAITALL and sock.stype == SOCK_STREAM and not flags & MSG_PEEK:
        data = bytearray(got.data)
        while got.data and not got.files and len(data) < length:
            try:
                got = _blocking(t, sock, lambda: sock.recv(length - len(data), flags), flags, timeout)
            except SyscallError:
                break
            data += got.data
        got = Received(bytes(data), got.source, got.files, got.creds, got.flags)
    return got


def _cmsg(level: int, ctype: int, data: bytes) -> bytes:
    raw = _CMSG.pack(_CMSG.size + len(data), level, ctype) + data
    return raw.ljust((len(raw) + 7) & ~7, b"\0")


def _control(t: Task, sock: Socket, got: Received, room: int, flags: int) -> tuple[bytes, int]:
    """The control messages for ``got`` that fit in ``room`` bytes and the
    MSG_CTRUNC flag if some did not (files that do not fit are closed)."""
    out = b""
    trunc = 0
    if got.creds is not None and sock.family.domain == AF_UNIX and sock.opt(SOL_SOCKET, SO_PASSCRED):
        c = _cmsg(SOL_SOCKET, SCM_CREDENTIALS, _UCRED.pack(*got.creds))
        if len(c) <= room:
            out += c
        else:
            trunc = MSG_CTRUNC
    files = got.files or []
    if files:
        fit = max(0, min(len(files), (room - len(out) - _CMSG.size) // 4))
        if fit < len(files):
            trunc = MSG_CTRUNC
        fds = []
        for i, f in enumerate(files):
            if i >= fit:
                f.decref()
                continue
            try:
                fds.append(t.fds.install(f, bool(flags & MSG_CMSG_CLOEXEC)))
            except SyscallError:
                trunc = MSG_CTRUNC
        if fds:
            c = _cmsg(SOL_SOCKET, SCM_RIGHTS, struct.pack(f"<{len(fds)}i", *fds))
            out += c[:room - len(out)]
    return out, trunc


def _recvmsg(t: Task, sock: Socket, msg: int, flags: int) -> int:
    name, namelen, iov, iovlen, control, controllen, _ = _MSGHDR.unpack(t.mm.copy_in(msg, _MSGHDR.size))
    if iovlen > MAX_IOV:
        raise SyscallError(errno.EMSGSIZE)
    if s32(namelen) < 0:
        raise SyscallError(errno.EINVAL)
    iovs = t.mm.read_iovecs(iov, iovlen)
    got = _recv(t, sock, sum(n for _, n in iovs), flags)
    pos = 0
    for base, n in iovs:
        chunk = got.data[pos:pos + n]
        if chunk:
            t.mm.copy_out(base, chunk)
        pos += len(chunk)
    ctl, trunc = _control(t, sock, got, controllen if control else 0, flags)
    if ctl:
        t.mm.copy_out(control, ctl)
    src = got.source or b""
    if name and src:
        t.mm.copy_out(name, src[:namelen])
    t.mm.write_u32(msg + 8, len(src) if name else 0)
    t.mm.copy_out(msg + 40, struct.pack("<Qi", len(ctl), got.flags | trunc))
    return got.size if flags & MSG_TRUNC and got.size >= 0 else len(got.data)


def sys_recvfrom(t: Task, fd: int, buf: int, length: int, flags: int, addr: int, len_ptr: int) -> int:
    sock = _sock(t, fd)
    flags = s32(flags)
    got = _recv(t, sock, length, flags)
    for f in got.files or ():
        f.decref()
    if got.data:
        t.mm.copy_out(buf, got.data)
    if addr:
        _write_addr(t, addr, len_ptr, got.source)
    return got.size if flags & MSG_TRUNC and got.size >= 0 else len(got.data)


def sys_recvmsg(t: Task, fd: int, msg: int, flags: int) -> int:
    return _recvmsg(t, _sock(t, fd), msg, s32(flags))


def sys_recvmmsg(t: Task, fd: int, vec: int, vlen: int, flags: int, timeout: int) -> int:
    sock = _sock(t, fd)
    flags = s32(flags)
    return _each_mmsghdr(t, vec, vlen, lambda hdr, done: _recvmsg(
        t, sock, hdr, flags | (MSG_DONTWAIT if done and flags & MSG_WAITFORONE else 0)))


SockAddr = Struct("sockaddr")
SockAddrOut = OutStruct("sockaddr")

ENTRIES = entries(
    partial("socket", sys_socket, args=(Enum(DOMAINS), Flags(TYPES), Int),
            note="AF_UNIX; AF_INET/AF_INET6 TCP and UDP on a sandbox-only loopback, or host sockets "
                 "(--network=host); others EAFNOSUPPORT"),
    supported("socketpair", sys_socketpair, args=(Enum(DOMAINS), Flags(TYPES), Int, Ptr)),
    supported("bind", sys_bind, args=(FD, SockAddr, Int)),
    supported("listen", sys_listen, args=(FD, Int)),
    partial("connect", sys_connect, args=(FD, SockAddr, Int),
            note="loopback destinations only (ENETUNREACH), any with --network=host"),
    supported("accept", sys_accept, args=(FD, SockAddrOut, Ptr)),
    supported("accept4", sys_accept4, args=(FD, SockAddrOut, Ptr, Flags(TYPES))),
    supported("getsockname", sys_getsockname, args=(FD, SockAddrOut, Ptr)),
    supported("getpeername", sys_getpeername, args=(FD, SockAddrOut, Ptr)),
    supported("shutdown", sys_shutdown, args=(FD, Enum(SHUT))),
    partial("setsockopt", sys_setsockopt, args=(FD, Enum(LEVELS), Int, Ptr, Int),
            note="options are stored and read back; most have no effect"),
    supported("getsockopt", sys_getsockopt, args=(FD, Enum(LEVELS), Int, Ptr, Ptr)),
    supported("sendto", sys_sendto, args=(FD, WriteBuf, Size, Flags(MSG_FLAGS), SockAddr, Int)),
    supported("recvfrom", sys_recvfrom, args=(FD, ReadBuf, Size, Flags(MSG_FLAGS), Ptr, Ptr)),
    partial("sendmsg", sys_sendmsg, args=(FD, SendMsgHdr, Flags(MSG_FLAGS)), note="SCM_RIGHTS and SCM_CREDENTIALS only"),
    supported("recvmsg", sys_recvmsg, args=(FD, RecvMsgHdr, Flags(MSG_FLAGS))),
    supported("sendmmsg", sys_sendmmsg, args=(FD, Ptr, Int, Flags(MSG_FLAGS))),
    partial("recvmmsg", sys_recvmmsg, args=(FD, Ptr, Int, Flags(MSG_FLAGS), Ptr), note="timeout ignored"),
)
