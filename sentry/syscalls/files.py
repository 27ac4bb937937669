"""File system calls: thin handlers over sentry.fs (VFS, FDTable, OpenFile).

Each handler converts raw registers (fds, dirfds and flags are C ints:
``s32``; offsets are ``s64``), reads paths from guest memory, calls the
VFS and writes results back. Blocking (pipes) is done here, not in
sentry.fs: a file whose ``can_block`` is true raises EAGAIN to mean "would
block", and ``_read``/``_write`` then wait on the kernel's wait queues for
its readiness to change (unless O_NONBLOCK).
"""
from __future__ import annotations

import errno
import os
import signal as _signal
import stat as S
import time

from abi.fs_structs import FLOCK, TIMESPEC, pack_stat, pack_statfs, pack_statx
from sentry.errors import SyscallError
from sentry.fs.file import (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE,
                            FALLOC_FL_PUNCH_HOLE, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE,
                            O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECT, O_NONBLOCK, O_PATH, O_TRUNC, O_WRONLY, MAX_OFFSET,
                            POLLERR, POLLHUP, POLLIN, POLLOUT, SEEK_CUR, SEEK_END, SEEK_SET, SETFL_MASK, OpenFile,
                            SeekableFile)
from sentry.fs import locks
from sentry.fs.anon import AnonNode
from sentry.fs.node import W_OK, X_OK, Node, may_access
from sentry.fs.pipe import PipeEnd, PipeNode, new_pipe
from sentry.fs.synth import SynthFS
from sentry.fs.vfs import PATH_MAX, check_access, creds_of
from sentry.kernel import signals as sig
from sentry.kernel.task import Task
from sentry.kernel.wait import WaitQueue, wait_until
from sentry.syscalls.spec import (FD, Arg, Enum, Flags, Hex, Int, OutStruct, Path, Ptr, ReadBuf, Size, Str, UInt,
                                  WriteBuf, entries, partial, s32, s64, supported)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EACCESS = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
AT_STATX_SYNC_TYPE = 0x6000
CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 2, 4
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
MAX_RW = 1 << 26  # bytes moved per read/write call at most (short counts are legal)
_DIR = S.S_IFDIR

# fcntl commands
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW, F_SETOWN, F_GETOWN = 5, 6, 7, 8, 9
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_SETLEASE, F_GETLEASE = 1024, 1025
F_DUPFD_CLOEXEC, F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1030, 1031, 1032, 1033, 1034
FD_CLOEXEC = 1
# ioctls handled by the descriptor layer itself
FIONCLEX, FIOCLEX, FIONBIO, FIONREAD = 0x5450, 0x5451, 0x5421, 0x541B

OPEN_FLAGS = {0o1: "O_WRONLY", 0o2: "O_RDWR", 0o100: "O_CREAT", 0o200: "O_EXCL", 0o400: "O_NOCTTY",
              0o1000: "O_TRUNC", 0o2000: "O_APPEND", 0o4000: "O_NONBLOCK", 0o200000: "O_DIRECTORY",
              0o400000: "O_NOFOLLOW", 0o2000000: "O_CLOEXEC", 0o10000000: "O_PATH"}
AT_FLAGS = {0x100: "AT_SYMLINK_NOFOLLOW", 0x200: "AT_REMOVEDIR", 0x400: "AT_SYMLINK_FOLLOW",
            0x800: "AT_NO_AUTOMOUNT", 0x1000: "AT_EMPTY_PATH"}
FCNTL_CMDS = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK",
              6: "F_SETLK", 7: "F_SETLKW", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ",
              1032: "F_GETPIPE_SZ"}
WHENCE = {0: "SEEK_SET", 1: "SEEK_CUR", 2: "SEEK_END", 3: "SEEK_DATA", 4: "SEEK_HOLE"}
DirFD = FD
WriteIOVec = Arg("iniovec")  # iovecs the call takes data from (count: the next argument)
ReadIOVec = Arg("outiovec", after=True)  # iovecs the call fills: shown after it, sized by the result


# --- helpers ---------------------------------------------------------------------
def _path(t: Task, addr: int) -> bytes:
    return t.mm.read_cstring(addr, PATH_MAX)


def _start(t: Task, dirfd: int, path: bytes) -> Node | None:
    """Where a relative ``path`` starts for ``dirfd`` (None: the cwd)."""
    dirfd = s32(dirfd)
    if dirfd == AT_FDCWD or path[:1] == b"/":
        return None
    node = t.fds.get(dirfd).node
    if node is None or node.kind != _DIR:
        raise SyscallError(errno.ENOTDIR)
    return node


def _node_at(t: Task, dirfd: int, addr: int, flags: int, follow: bool = True) -> Node:
    """The node named by (dirfd, path at ``addr``), honouring AT_EMPTY_PATH
    (and AT_SYMLINK_NOFOLLOW when ``follow`` is its default)."""
    path = _path(t, addr) if addr or not flags & AT_EMPTY_PATH else b""
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise SyscallError(errno.ENOENT)
        dirfd = s32(dirfd)
        if dirfd == AT_FDCWD:
            return t.fs.cwd
        node = t.fds.get(dirfd).node
        if node is None:
            raise SyscallError(errno.EBADF)
        return node
    follow = follow and not flags & AT_SYMLINK_NOFOLLOW
    return t.kernel.vfs.lookup(t.fs, _start(t, dirfd, path), path, follow, t)


def _wait_ready(t: Task, f: OpenFile, mask: int) -> None:
    _wait(t, f, lambda: bool(f.readiness() & (mask | POLLHUP | POLLERR)))


def _wait(t: Task, f, ready) -> None:
    """Block until ``ready()``, rechecked whenever ``f`` (a file or a lock
    table: anything with subscribe/unsubscribe) says its state changed.
    Raises SyscallError(ERESTARTSYS) on a signal."""
    q = WaitQueue()
    f.subscribe(q.notify)
    try:
        wait_until(t, [q], ready)
    finally:
        f.unsubscribe(q.notify)


def _read(t: Task, f: OpenFile, length: int) -> bytes:
    f.job_control(t, _signal.SIGTTIN)
    while True:
        try:
            return f.read(length)
        except SyscallError as e:
            if e.errno != errno.EAGAIN or not f.can_block or f.flags & O_NONBLOCK:
                raise
        _wait_ready(t, f, POLLIN)


def _write(t: Task, f: OpenFile, data: bytes) -> int:
    f.job_control(t, _signal.SIGTTOU)
    done = 0
    while True:
        try:
            done += f.write(data[done:] if done else data)
            if done >= len(data) or not f.can_block or f.flags & O_NONBLOCK:
                return done  # all, or what fit without waiting
        except SyscallError as e:
            if e.errno == errno.EPIPE:
                _sigpipe(t)
            if e.errno != errno.EAGAIN or not f.can_block or f.flags & O_NONBLOCK or done:
                if done:
                    return done
                raise
        try:
            _wait_ready(t, f, POLLOUT)
        except SyscallError:
            if done:
                return done
            raise


def _sigpipe(t: Task) -> None:
    """A write to a pipe without readers: SIGPIPE to the writing thread."""
    info = sig.siginfo(_signal.SIGPIPE, 0, pid=t.pid, uid=t.creds.uid)  # SI_USER, as Linux's send_sig
    sig.send(t.kernel, t.group, _signal.SIGPIPE, info, task=t)


def _readable(t: Task, fd: int) -> OpenFile:
    f = t.fds.get(s32(fd))
    if not f.readable:
        raise SyscallError(errno.EBADF)
    return f


def _writable(t: Task, fd: int) -> OpenFile:
    f = t.fds.get(s32(fd))
    if not f.writable:
        raise SyscallError(errno.EBADF)
    return f


def _scatter(t: Task, iovs: list[tuple[int, int]], data: bytes) -> None:
    pos = 0
    for base, length in iovs:
        if pos >= len(data):
            break
        chunk = data[pos:pos + length]
        if chunk:
            t.mm.copy_out(base, chunk)
        pos += len(chunk)


def _gather(t: Task, iovs: list[tuple[int, int]]) -> bytes:
    return b"".join(t.mm.copy_in(base, length) for base, length in iovs if length)


def _offset(off: int) -> int:
    off = s64(off)
    if off < 0:
        raise SyscallError(errno.EINVAL)
    return off


# --- read and write ----------------------------------------------------------------
# Reads this large from a file backed by a host fd go straight into guest
# memory (one copy, as natively); smaller ones are cheaper as a pread.
DIRECT_READ_MIN = 64 << 10


def _read_direct(t: Task, f: OpenFile, buf: int, count: int, offset: int | None) -> int | None:
    """``read_into`` guest memory at ``buf``; None if ``f`` has no direct fd."""
    views = t.mm.writable_views(buf, count)
    try:
        return f.read_into(views, offset)
    finally:
        for v in views:
            v.release()


def sys_read(t: Task, fd: int, buf: int, count: int) -> int:
    f = _readable(t, fd)
    if count >= DIRECT_READ_MIN and f.direct_fd() is not None:
        n = _read_direct(t, f, buf, min(count, MAX_RW), None)
        if n is not None:
            return n
    data = _read(t, f, min(count, MAX_RW))
    if data:
        t.mm.copy_out(buf, data)
    return len(data)


def sys_write(t: Task, fd: int, buf: int, count: int) -> int:
    f = _writable(t, fd)
    return _write(t, f, t.mm.copy_in(buf, min(count, MAX_RW)) if count else b"")


def sys_pread64(t: Task, fd: int, buf: int, count: int, off: int) -> int:
    f = _readable(t, fd)
    if count >= DIRECT_READ_MIN and f.direct_fd() is not None:
        n = _read_direct(t, f, buf, min(count, MAX_RW), _offset(off))
        if n is not None:
            return n
    data = f.pread(min(count, MAX_RW), _offset(off))
    if data:
        t.mm.copy_out(buf, data)
    return len(data)


def sys_pwrite64(t: Task, fd: int, buf: int, count: int, off: int) -> int:
    f = _writable(t, fd)
    return f.pwrite(t.mm.copy_in(buf, min(count, MAX_RW)), _offset(off))


def _iov_total(iovs: list[tuple[int, int]]) -> int:
    return min(sum(length for _, length in iovs), MAX_RW)


def sys_readv(t: Task, fd: int, iov: int, cnt: int) -> int:
    f = _readable(t, fd)
    iovs = t.mm.read_iovecs(iov, cnt)
    data = _read(t, f, _iov_total(iovs))
    _scatter(t, iovs, data)
    return len(data)


def sys_writev(t: Task, fd: int, iov: int, cnt: int) -> int:
    f = _writable(t, fd)
    return _write(t, f, _gather(t, t.mm.read_iovecs(iov, cnt)))


def sys_preadv(t: Task, fd: int, iov: int, cnt: int, off: int, off_hi: int) -> int:
    f = _readable(t, fd)
    iovs = t.mm.read_iovecs(iov, cnt)
    data = f.pread(_iov_total(iovs), _offset(off))
    _scatter(t, iovs, data)
    return len(data)


def sys_pwritev(t: Task, fd: int, iov: int, cnt: int, off: int, off_hi: int) -> int:
    f = _writable(t, fd)
    return f.pwrite(_gather(t, t.mm.read_iovecs(iov, cnt)), _offset(off))


RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND = 1, 2, 4, 8, 16


def _rwf(flags: int) -> None:
    if flags & ~(RWF_HIPRI | RWF_DSYNC | RWF_SYNC):
        raise SyscallError(errno.EOPNOTSUPP)  # NOWAIT, APPEND and unknown bits


def sys_preadv2(t: Task, fd: int, iov: int, cnt: int, off: int, off_hi: int, flags: int) -> int:
    _rwf(flags)
    if s64(off) == -1:
        return sys_readv(t, fd, iov, cnt)
    return sys_preadv(t, fd, iov, cnt, off, off_hi)


def sys_pwritev2(t: Task, fd: int, iov: int, cnt: int, off: int, off_hi: int, flags: int) -> int:
    _rwf(flags)
    if s64(off) == -1:
        return sys_writev(t, fd, iov, cnt)
    return sys_pwritev(t, fd, iov, cnt, off, off_hi)


def sys_sendfile(t: Task, out_fd: int, in_fd: int, offset_ptr: int, count: int) -> int:
    src, dst = _readable(t, in_fd), _writable(t, out_fd)
    if not src.mappable or dst.flags & O_APPEND:
        raise SyscallError(errno.EINVAL)
    count = min(count, MAX_RW)
    if offset_ptr:
        off = int.from_bytes(t.mm.copy_in(offset_ptr, 8), "little", signed=True)
        if off < 0:
            raise SyscallError(errno.EINVAL)
        n = _write(t, dst, src.pread(count, off)) if count else 0
        t.mm.copy_out(offset_ptr, (off + n).to_bytes(8, "little"))
        return n
    with src.lock:
        start = src.offset
    n = _write(t, dst, src.pread(count, start)) if count else 0
    src.seek(start + n, SEEK_SET)
    return n


def sys_copy_file_range(t: Task, in_fd: int, off_in: int, out_fd: int, off_out: int, length: int,
                        flags: int) -> int:
    if flags:
        raise SyscallError(errno.EINVAL)
    src, dst = _readable(t, in_fd), _writable(t, out_fd)
    for f in (src, dst):
        if f.is_directory:
            raise SyscallError(errno.EISDIR)
        if not f.mappable or f.node is None or f.node.kind != S.S_IFREG:
            raise SyscallError(errno.EINVAL)
    if dst.flags & O_APPEND:
        raise SyscallError(errno.EBADF)
    length = min(length, MAX_RW)
    pos_in = _offset_arg(t, off_in, src)
    pos_out = _offset_arg(t, off_out, dst)
    if src.node is dst.node:  # one file: the ranges (shortened to EOF) must not overlap
        count = max(0, min(length, src.stat().st_size - pos_in))
        if pos_out + count > pos_in and pos_out < pos_in + count:
            raise SyscallError(errno.EINVAL)
    data = src.pread(length, pos_in)
    n = dst.pwrite(data, pos_out) if data else 0
    for ptr, f, pos in ((off_in, src, pos_in), (off_out, dst, pos_out)):
        if ptr:
            t.mm.copy_out(ptr, (pos + n).to_bytes(8, "little"))
        else:
            f.seek(pos + n, SEEK_SET)
    return n


def _offset_arg(t: Task, ptr: int, f: OpenFile) -> int:
    """The offset a loff_t pointer holds, or the file's own if NULL."""
    if not ptr:
        return f.offset
    off = int.from_bytes(t.mm.copy_in(ptr, 8), "little", signed=True)
    if off < 0:
        raise SyscallError(errno.EINVAL)
    return off


# The exclusive fallocate modes, and whether each must (True), may (None) or
# must not (False) come with FALLOC_FL_KEEP_SIZE, as vfs_fallocate checks.
_FALLOC_MODES = {0: None, FALLOC_FL_UNSHARE_RANGE: None, FALLOC_FL_ZERO_RANGE: None, FALLOC_FL_PUNCH_HOLE: True,
                 FALLOC_FL_COLLAPSE_RANGE: False, FALLOC_FL_INSERT_RANGE: False, FALLOC_FL_WRITE_ZEROES: False}


def sys_fallocate(t: Task, fd: int, mode: int, offset: int, length: int) -> int:
    f = t.fds.get(s32(fd))
    offset, length, mode = s64(offset), s64(length), s32(mode)
    if offset < 0 or length <= 0:
        raise SyscallError(errno.EINVAL)
    base = mode & ~FALLOC_FL_KEEP_SIZE
    if base not in _FALLOC_MODES or _FALLOC_MODES[base] not in (None, bool(mode & FALLOC_FL_KEEP_SIZE)):
        raise SyscallError(errno.EOPNOTSUPP)  # unknown bits, two modes, or KEEP_SIZE where it must (not) be
    if not f.writable:
        raise SyscallError(errno.EBADF)
    kind = f.node.kind if f.node is not None else 0
    if kind != S.S_IFREG:
        raise SyscallError(errno.ESPIPE if kind == S.S_IFIFO else errno.EISDIR if kind == _DIR else errno.ENODEV)
    if offset + length > MAX_OFFSET:
        raise SyscallError(errno.EFBIG)
    f.fallocate(mode, offset, length)
    return 0


def sys_lseek(t: Task, fd: int, off: int, whence: int) -> int:
    return t.fds.get(s32(fd)).seek(s64(off), s32(whence))


# --- open and close ---------------------------------------------------------------
def _open(t: Task, dirfd: int, addr: int, flags: int, mode: int) -> int:
    flags = s32(flags)
    path = _path(t, addr)
    f = t.kernel.vfs.open(t.fs, _start(t, dirfd, path), path, flags, mode & 0o7777, t)
    if isinstance(f, PipeEnd) and f.node.kind == S.S_IFIFO and not isinstance(f.node, PipeNode) \
            and not flags & O_NONBLOCK and not f.peer_opened():
        try:  # a FIFO: wait for the other side to open
            _wait(t, f, f.peer_opened)
        except SyscallError:
            f.decref()
            raise
    return t.fds.install(f, cloexec=bool(flags & O_CLOEXEC))


def sys_open(t: Task, path: int, flags: int, mode: int) -> int:
    return _open(t, AT_FDCWD, path, flags, mode)


def sys_openat(t: Task, dirfd: int, path: int, flags: int, mode: int) -> int:
    return _open(t, dirfd, path, flags, mode)


def sys_creat(t: Task, path: int, mode: int) -> int:
    return _open(t, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode)


def sys_close(t: Task, fd: int) -> int:
    t.fds.close(s32(fd))
    return 0


def sys_close_range(t: Task, first: int, last: int, flags: int) -> int:
    first, last = first & 0xFFFFFFFF, last & 0xFFFFFFFF
    if flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) or first > last:
        raise SyscallError(errno.EINVAL)
    t.fds.close_range(first, last, cloexec_only=bool(flags & CLOSE_RANGE_CLOEXEC))
    return 0


def _dup(t: Task, f: OpenFile, lowest: int, cloexec: bool) -> int:
    return t.fds.install(f.incref(), cloexec=cloexec, lowest=lowest)


def sys_dup(t: Task, fd: int) -> int:
    return _dup(t, t.fds.get(s32(fd)), 0, False)


def sys_dup2(t: Task, old: int, new: int) -> int:
    f = t.fds.get(s32(old))
    if s32(old) == s32(new):
        return s32(new)
    t.fds.install_at(s32(new), f.incref())
    return s32(new)


def sys_dup3(t: Task, old: int, new: int, flags: int) -> int:
    if s32(old) == s32(new) or s32(flags) & ~O_CLOEXEC:
        raise SyscallError(errno.EINVAL)
    f = t.fds.get(s32(old))
    t.fds.install_at(s32(new), f.incref(), cloexec=bool(s32(flags) & O_CLOEXEC))
    return s32(new)


def sys_fcntl(t: Task, fd: int, cmd: int, arg: int) -> int:
    fd, cmd = s32(fd), s32(cmd)
    f = t.fds.get(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        return _dup(t, f, s32(arg), cmd == F_DUPFD_CLOEXEC)
    if cmd == F_GETFD:
        return FD_CLOEXEC if t.fds.get_cloexec(fd) else 0
    if cmd == F_SETFD:
        t.fds.set_cloexec(fd, bool(arg & FD_CLOEXEC))
        return 0
    if cmd == F_GETFL:
        return f.flags
    if cmd == F_SETFL:
        if f.flags & O_PATH:
            raise SyscallError(errno.EBADF)
        f.flags = (f.flags & ~SETFL_MASK) | (s32(arg) & SETFL_MASK)
        return 0
    if cmd in (F_GETLK, F_OFD_GETLK, F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        return _record_lock(t, f, cmd, arg)
    if cmd == F_GETOWN:
        return 0
    if cmd == F_SETOWN:
        return 0
    if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ):
        if not isinstance(f, PipeEnd):  # a pipe or a FIFO
            raise SyscallError(errno.EBADF)
        return f.pipe.capacity if cmd == F_GETPIPE_SZ else f.pipe.set_capacity(arg)
    if cmd == F_GET_SEALS:
        raise SyscallError(errno.EINVAL)
    if cmd == F_GETLEASE:
        return locks.F_UNLCK
    raise SyscallError(errno.EINVAL)


def _lock_range(t: Task, f: OpenFile, whence: int, start: int, length: int) -> tuple[int, int | None]:
    """A struct flock's range as [start, end) (end None: to infinity)."""
    if whence == SEEK_CUR:
        start += f.offset
    elif whence == SEEK_END:
        start += f.stat().st_size
    elif whence != SEEK_SET:
        raise SyscallError(errno.EINVAL)
    if length < 0:
        start, length = start + length, -length
    if start < 0 or start + length > MAX_OFFSET:
        raise SyscallError(errno.EINVAL)
    return start, (start + length if length else None)


def _record_lock(t: Task, f: OpenFile, cmd: int, arg: int) -> int:
    """fcntl's POSIX (owner: the fd table) and OFD (owner: the open file)
    record locks."""
    if f.node is None or f.flags & O_PATH:
        raise SyscallError(errno.EBADF)
    ltype, whence, start, length, pid = FLOCK.unpack(t.mm.copy_in(arg, FLOCK.size))
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    if ofd and pid != 0:
        raise SyscallError(errno.EINVAL)
    if ltype not in (locks.F_RDLCK, locks.F_WRLCK, locks.F_UNLCK):
        raise SyscallError(errno.EINVAL)
    owner: object = f if ofd else t.fds
    lo, hi = _lock_range(t, f, whence, start, length)
    table = locks.table(f.node)
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype == locks.F_UNLCK:
            raise SyscallError(errno.EINVAL)
        c = table.conflict(owner, ltype, lo, hi)
        out = FLOCK.pack(locks.F_UNLCK, SEEK_SET, start, length, pid) if c is None else \
            FLOCK.pack(c.type, SEEK_SET, c.start, 0 if c.end is None else c.end - c.start, c.pid)
        t.mm.copy_out(arg, out)
        return 0
    if (ltype == locks.F_RDLCK and not f.readable) or (ltype == locks.F_WRLCK and not f.writable):
        raise SyscallError(errno.EBADF)
    wait = cmd in (F_SETLKW, F_OFD_SETLKW)
    _lock(t, table, lambda: table.set(owner, ltype, lo, hi, -1 if ofd else t.pid), wait,
          lambda: table.conflict(owner, ltype, lo, hi) is None)
    return 0


def _lock(t: Task, table: "locks.LockTable", take, wait: bool, free) -> None:
    """Run ``take()``; if it fails with EAGAIN and ``wait``, wait until
    ``free()`` and retry (a signal ends the wait: EINTR via ERESTARTSYS)."""
    while True:
        try:
            take()
            return
        except SyscallError as e:
            if e.errno != errno.EAGAIN or not wait:
                raise
        _wait(t, table, free)


def sys_ioctl(t: Task, fd: int, request: int, arg: int) -> int:
    fd = s32(fd)
    request &= 0xFFFFFFFF
    f = t.fds.get(fd)
    if request in (FIOCLEX, FIONCLEX):
        t.fds.set_cloexec(fd, request == FIOCLEX)
        return 0
    if request == FIONBIO:
        on = int.from_bytes(t.mm.copy_in(arg, 4), "little") != 0
        f.flags = (f.flags | O_NONBLOCK) if on else (f.flags & ~O_NONBLOCK)
        return 0
    if f.flags & O_PATH:
        raise SyscallError(errno.EBADF)
    if request == FIONREAD and isinstance(f, SeekableFile) and f.node is not None and f.node.kind == S.S_IFREG:
        # As Linux's do_vfs_ioctl: the size less the offset, as a C int (negative past EOF).
        t.mm.copy_out(arg, ((f.stat().st_size - f.offset) & 0xFFFFFFFF).to_bytes(4, "little"))
        return 0
    return f.ioctl(t, request, arg)


def sys_pipe2(t: Task, addr: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise SyscallError(errno.EINVAL)
    r, w = new_pipe(flags)
    cloexec = bool(flags & O_CLOEXEC)
    try:
        rfd = t.fds.install(r, cloexec)
    except SyscallError:
        w.decref()
        raise
    try:
        wfd = t.fds.install(w, cloexec)
    except SyscallError:
        t.fds.close(rfd)
        raise
    try:
        t.mm.copy_out(addr, rfd.to_bytes(4, "little") + wfd.to_bytes(4, "little"))
    except SyscallError:
        t.fds.close(rfd)
        t.fds.close(wfd)
        raise
    return 0


def sys_pipe(t: Task, addr: int) -> int:
    return sys_pipe2(t, addr, 0)


# --- metadata ---------------------------------------------------------------------
def sys_stat(t: Task, path: int, buf: int) -> int:
    return sys_newfstatat(t, AT_FDCWD, path, buf, 0)


def sys_lstat(t: Task, path: int, buf: int) -> int:
    return sys_newfstatat(t, AT_FDCWD, path, buf, AT_SYMLINK_NOFOLLOW)


def sys_fstat(t: Task, fd: int, buf: int) -> int:
    t.mm.copy_out(buf, pack_stat(t.fds.get(s32(fd)).stat()))
    return 0


def sys_newfstatat(t: Task, dirfd: int, path: int, buf: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT):
        raise SyscallError(errno.EINVAL)
    st = _stat_at(t, dirfd, path, flags)
    t.mm.copy_out(buf, pack_stat(st))
    return 0


def _stat_at(t: Task, dirfd: int, addr: int, flags: int):
    """stat of (dirfd, path) where an empty path with AT_EMPTY_PATH means
    the open file itself (its own stat: a pipe or a host stdio fd)."""
    if flags & AT_EMPTY_PATH and (not addr or not _path(t, addr)):
        if s32(dirfd) == AT_FDCWD:
            return t.fs.cwd.stat()
        return t.fds.get(s32(dirfd)).stat()
    return _node_at(t, dirfd, addr, flags & ~AT_EMPTY_PATH).stat()


def sys_statx(t: Task, dirfd: int, path: int, flags: int, mask: int, buf: int) -> int:
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE) or \
            flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & 0x80000000:
        raise SyscallError(errno.EINVAL)
    st = _stat_at(t, dirfd, path, flags)
    t.mm.copy_out(buf, pack_statx(st))
    return 0


def _access(t: Task, dirfd: int, addr: int, mode: int, flags: int) -> int:
    if mode & ~7 or flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    node = _node_at(t, dirfd, addr, flags)
    if mode & W_OK and not getattr(node.fs, "writable", True) and node.kind in (S.S_IFREG, _DIR, S.S_IFLNK):
        raise SyscallError(errno.EROFS)
    c = t.group.creds
    creds = c if flags & AT_EACCESS else _RealIds(c)
    if mode and not may_access(node.stat(), creds, mode):
        raise SyscallError(errno.EACCES)
    return 0


class _RealIds:
    """access(2) checks with the real ids, not the effective ones."""

    def __init__(self, c):
        self.euid, self.egid, self.groups = c.uid, c.gid, c.groups


def sys_access(t: Task, path: int, mode: int) -> int:
    return _access(t, AT_FDCWD, path, s32(mode), 0)


def sys_faccessat(t: Task, dirfd: int, path: int, mode: int) -> int:
    return _access(t, dirfd, path, s32(mode), 0)


def sys_faccessat2(t: Task, dirfd: int, path: int, mode: int, flags: int) -> int:
    return _access(t, dirfd, path, s32(mode), s32(flags))


def _readlink(t: Task, dirfd: int, addr: int, buf: int, size: int) -> int:
    size = s32(size)
    if size <= 0:
        raise SyscallError(errno.EINVAL)
    path = _path(t, addr)
    if not path:
        raise SyscallError(errno.ENOENT)
    target = t.kernel.vfs.readlink(t.fs, _start(t, dirfd, path), path, t)[:size]
    t.mm.copy_out(buf, target)
    return len(target)


def sys_readlink(t: Task, path: int, buf: int, size: int) -> int:
    return _readlink(t, AT_FDCWD, path, buf, size)


def sys_readlinkat(t: Task, dirfd: int, path: int, buf: int, size: int) -> int:
    return _readlink(t, dirfd, path, buf, size)


def _setattr(t: Task, node: Node, **changes) -> int:
    t.kernel.vfs.setattr(node, t, **changes)
    return 0


def sys_chmod(t: Task, path: int, mode: int) -> int:
    return _setattr(t, _node_at(t, AT_FDCWD, path, 0), mode=mode & 0o7777)


def sys_fchmodat(t: Task, dirfd: int, path: int, mode: int) -> int:
    return _setattr(t, _node_at(t, dirfd, path, 0), mode=mode & 0o7777)


def sys_fchmod(t: Task, fd: int, mode: int) -> int:
    return _setattr(t, _fd_node(t, fd), mode=mode & 0o7777)


def _fd_node(t: Task, fd: int) -> Node:
    f = t.fds.get(s32(fd))
    if f.node is None:
        raise SyscallError(errno.EBADF)
    return f.node


def _ids(uid: int, gid: int) -> dict:
    uid, gid = uid & 0xFFFFFFFF, gid & 0xFFFFFFFF
    return {"uid": None if uid == 0xFFFFFFFF else uid, "gid": None if gid == 0xFFFFFFFF else gid}


def sys_chown(t: Task, path: int, uid: int, gid: int) -> int:
    return _setattr(t, _node_at(t, AT_FDCWD, path, 0), **_ids(uid, gid))


def sys_lchown(t: Task, path: int, uid: int, gid: int) -> int:
    return _setattr(t, _node_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW), **_ids(uid, gid))


def sys_fchown(t: Task, fd: int, uid: int, gid: int) -> int:
    return _setattr(t, _fd_node(t, fd), **_ids(uid, gid))


def sys_fchownat(t: Task, dirfd: int, path: int, uid: int, gid: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    return _setattr(t, _node_at(t, dirfd, path, flags), **_ids(uid, gid))


def sys_truncate(t: Task, path: int, length: int) -> int:
    length = s64(length)
    if length < 0:
        raise SyscallError(errno.EINVAL)
    node = _node_at(t, AT_FDCWD, path, 0)
    if node.kind == _DIR:
        raise SyscallError(errno.EISDIR)
    return _setattr(t, node, size=length)


def sys_ftruncate(t: Task, fd: int, length: int) -> int:
    length = s64(length)
    f = t.fds.get(s32(fd))
    if length < 0 or not f.writable:
        raise SyscallError(errno.EINVAL)
    f.truncate(length)
    return 0


def sys_utimensat(t: Task, dirfd: int, path: int, times: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    node = _node_at(t, dirfd, path, flags) if path else _fd_node(t, dirfd)  # NULL path: futimens
    if not times:
        return _set_times(t, node, None)
    stamps = []
    for sec, nsec in TIMESPEC.iter_unpack(t.mm.copy_in(times, 2 * TIMESPEC.size)):
        if nsec in (UTIME_NOW, UTIME_OMIT):
            stamps.append(nsec)
        elif not 0 <= nsec < 1_000_000_000:
            raise SyscallError(errno.EINVAL)
        else:
            stamps.append(sec * 1_000_000_000 + nsec)
    return _set_times(t, node, stamps)


_TIME_MIN, _TIME_MAX = -(1 << 63), (1 << 63) - 1  # what a stat can show, in ns (the fs clamps)


def _set_times(t: Task, node: Node, stamps: list[int] | None) -> int:
    """(atime, mtime) in ns, each possibly UTIME_NOW or UTIME_OMIT; None:
    both now, which needs only write access (explicit times need owner)."""
    now = time.time_ns()
    if stamps is None:
        check_access(node, creds_of(t), W_OK)
        node.setattr(atime_ns=now, mtime_ns=now)
        return 0
    changes = {key: now if v == UTIME_NOW else max(_TIME_MIN, min(v, _TIME_MAX))
               for key, v in zip(("atime_ns", "mtime_ns"), stamps) if v != UTIME_OMIT}
    if not changes:
        return 0
    if all(v == UTIME_NOW for v in stamps):
        check_access(node, creds_of(t), W_OK)
        node.setattr(**changes)
        return 0
    return _setattr(t, node, **changes)


def _timevals(t: Task, addr: int) -> list[int] | None:
    """Two struct timeval (utimes, futimesat) as ns; NULL: None (now)."""
    if not addr:
        return None
    out = []
    for sec, usec in TIMESPEC.iter_unpack(t.mm.copy_in(addr, 2 * TIMESPEC.size)):
        if not 0 <= usec < 1_000_000:
            raise SyscallError(errno.EINVAL)
        out.append(sec * 1_000_000_000 + usec * 1000)
    return out


def sys_utimes(t: Task, path: int, times: int) -> int:
    return _set_times(t, _node_at(t, AT_FDCWD, path, 0), _timevals(t, times))


def sys_futimesat(t: Task, dirfd: int, path: int, times: int) -> int:
    node = _node_at(t, dirfd, path, 0) if path else _fd_node(t, dirfd)
    return _set_times(t, node, _timevals(t, times))


def sys_utime(t: Task, path: int, times: int) -> int:
    node = _node_at(t, AT_FDCWD, path, 0)
    if not times:
        return _set_times(t, node, None)
    actime, modtime = TIMESPEC.unpack(t.mm.copy_in(times, TIMESPEC.size))  # struct utimbuf: two time_t
    return _set_times(t, node, [actime * 1_000_000_000, modtime * 1_000_000_000])


def sys_umask(t: Task, mask: int) -> int:
    old = t.fs.umask
    t.fs.umask = mask & 0o777
    return old


ST_RDONLY, ST_VALID, ST_RELATIME = 0x1, 0x20, 0x1000  # statfs f_flags (ST_VALID: "f_flags is set")


def _statfs(t: Task, node: Node, buf: int) -> int:
    fs = node.fs
    bsize, blocks, bfree, bavail, files, ffree = fs.statfs()
    flags = ST_VALID | ST_RELATIME | (0 if getattr(fs, "writable", True) else ST_RDONLY)
    t.mm.copy_out(buf, pack_statfs(fs.magic, bsize, blocks, bfree, bavail, files, ffree, flags=flags))
    return 0


def sys_statfs(t: Task, path: int, buf: int) -> int:
    return _statfs(t, _node_at(t, AT_FDCWD, path, 0), buf)


def sys_fstatfs(t: Task, fd: int, buf: int) -> int:
    return _statfs(t, _fd_node(t, fd), buf)


# --- extended attributes: none here ------------------------------------------------------
def _no_xattr(node: Node) -> int:
    raise SyscallError(errno.EOPNOTSUPP if isinstance(node.fs, SynthFS) else errno.ENODATA)


def sys_getxattr(t: Task, path: int, name: int, value: int, size: int) -> int:
    return _no_xattr(_node_at(t, AT_FDCWD, path, 0))


def sys_lgetxattr(t: Task, path: int, name: int, value: int, size: int) -> int:
    return _no_xattr(_node_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW))


def sys_fgetxattr(t: Task, fd: int, name: int, value: int, size: int) -> int:
    return _no_xattr(_fd_node(t, fd))


def sys_listxattr(t: Task, path: int, buf: int, size: int) -> int:
    _node_at(t, AT_FDCWD, path, 0)
    return 0


def sys_llistxattr(t: Task, path: int, buf: int, size: int) -> int:
    _node_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW)
    return 0


def sys_flistxattr(t: Task, fd: int, buf: int, size: int) -> int:
    _fd_node(t, fd)
    return 0


def _no_setxattr(node: Node) -> int:
    raise SyscallError(errno.EOPNOTSUPP)


def sys_setxattr(t: Task, path: int, name: int, value: int, size: int, flags: int) -> int:
    return _no_setxattr(_node_at(t, AT_FDCWD, path, 0))


def sys_lsetxattr(t: Task, path: int, name: int, value: int, size: int, flags: int) -> int:
    return _no_setxattr(_node_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW))


def sys_fsetxattr(t: Task, fd: int, name: int, value: int, size: int, flags: int) -> int:
    return _no_setxattr(_fd_node(t, fd))


def sys_removexattr(t: Task, path: int, name: int) -> int:
    _node_at(t, AT_FDCWD, path, 0)
    raise SyscallError(errno.ENODATA)


def sys_lremovexattr(t: Task, path: int, name: int) -> int:
    _node_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW)
    raise SyscallError(errno.ENODATA)


def sys_fremovexattr(t: Task, fd: int, name: int) -> int:
    _fd_node(t, fd)
    raise SyscallError(errno.ENODATA)


# --- directories and names -----------------------------------------------------------
def sys_getdents64(t: Task, fd: int, dirp: int, count: int) -> int:
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH:
        raise SyscallError(errno.EBADF)
    data = f.getdents(min(count, MAX_RW))
    if data:
        t.mm.copy_out(dirp, data)
    return len(data)


def sys_getcwd(t: Task, buf: int, size: int) -> int:
    cwd = t.fs.cwd
    if cwd.kind == _DIR and cwd.stat().st_nlink == 0:
        raise SyscallError(errno.ENOENT)  # removed
    path = os.fsencode(t.fs.cwd_path()) + b"\0"
    if len(path) > size:
        raise SyscallError(errno.ERANGE)
    t.mm.copy_out(buf, path)
    return len(path)


def _chdir(t: Task, node: Node) -> int:
    if node.kind != _DIR:
        raise SyscallError(errno.ENOTDIR)
    check_access(node, creds_of(t), X_OK)
    t.fs.cwd = node
    return 0


def sys_chdir(t: Task, path: int) -> int:
    return _chdir(t, _node_at(t, AT_FDCWD, path, 0))


def sys_fchdir(t: Task, fd: int) -> int:
    return _chdir(t, _fd_node(t, fd))


def sys_chroot(t: Task, path: int) -> int:
    node = _node_at(t, AT_FDCWD, path, 0)
    if node.kind != _DIR:
        raise SyscallError(errno.ENOTDIR)
    check_access(node, creds_of(t), X_OK)
    if t.creds.euid != 0:
        raise SyscallError(errno.EPERM)
    t.fs.root = node  # the cwd may stay outside, as on Linux
    return 0


def sys_mkdir(t: Task, path: int, mode: int) -> int:
    return sys_mkdirat(t, AT_FDCWD, path, mode)


def sys_mkdirat(t: Task, dirfd: int, path: int, mode: int) -> int:
    p = _path(t, path)
    t.kernel.vfs.mkdir(t.fs, _start(t, dirfd, p), p, mode & 0o7777, t)
    return 0


def sys_mknodat(t: Task, dirfd: int, path: int, mode: int, dev: int) -> int:
    mode &= 0xFFFFFFFF
    fmt = S.S_IFMT(mode) or S.S_IFREG
    if fmt in (S.S_IFCHR, S.S_IFBLK):
        raise SyscallError(errno.EPERM)
    if fmt not in (S.S_IFREG, S.S_IFIFO, S.S_IFSOCK):
        raise SyscallError(errno.EINVAL)
    p = _path(t, path)
    t.kernel.vfs.mknod(t.fs, _start(t, dirfd, p), p, fmt | (mode & 0o7777), t)
    return 0


def sys_mknod(t: Task, path: int, mode: int, dev: int) -> int:
    return sys_mknodat(t, AT_FDCWD, path, mode, dev)


def sys_rmdir(t: Task, path: int) -> int:
    p = _path(t, path)
    t.kernel.vfs.rmdir(t.fs, None, p, t)
    return 0


def sys_unlink(t: Task, path: int) -> int:
    p = _path(t, path)
    t.kernel.vfs.unlink(t.fs, None, p, t)
    return 0


def sys_unlinkat(t: Task, dirfd: int, path: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~AT_REMOVEDIR:
        raise SyscallError(errno.EINVAL)
    p = _path(t, path)
    start = _start(t, dirfd, p)
    if flags & AT_REMOVEDIR:
        t.kernel.vfs.rmdir(t.fs, start, p, t)
    else:
        t.kernel.vfs.unlink(t.fs, start, p, t)
    return 0


def sys_renameat2(t: Task, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    o, n = _path(t, old), _path(t, new)
    t.kernel.vfs.rename(t.fs, _start(t, olddir, o), o, _start(t, newdir, n), n, flags & 0xFFFFFFFF, t)
    return 0


def sys_rename(t: Task, old: int, new: int) -> int:
    return sys_renameat2(t, AT_FDCWD, old, AT_FDCWD, new, 0)


def sys_renameat(t: Task, olddir: int, old: int, newdir: int, new: int) -> int:
    return sys_renameat2(t, olddir, old, newdir, new, 0)


def sys_symlinkat(t: Task, target: int, dirfd: int, path: int) -> int:
    tg, p = _path(t, target), _path(t, path)
    t.kernel.vfs.symlink(t.fs, tg, _start(t, dirfd, p), p, t)
    return 0


def sys_symlink(t: Task, target: int, path: int) -> int:
    return sys_symlinkat(t, target, AT_FDCWD, path)


def sys_linkat(t: Task, olddir: int, old: int, newdir: int, new: int, flags: int) -> int:
    flags = s32(flags)
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise SyscallError(errno.EINVAL)
    n = _path(t, new)
    vfs = t.kernel.vfs
    if flags & AT_EMPTY_PATH and not (old and _path(t, old)):
        vfs.link_node(t.fs, _fd_node(t, olddir), _start(t, newdir, n), n, t)
        return 0
    o = _path(t, old)
    vfs.link(t.fs, _start(t, olddir, o), o, _start(t, newdir, n), n, bool(flags & AT_SYMLINK_FOLLOW), t)
    return 0


def sys_link(t: Task, old: int, new: int) -> int:
    return sys_linkat(t, AT_FDCWD, old, AT_FDCWD, new, 0)


# --- no-ops with checks ------------------------------------------------------------------
def sys_fsync(t: Task, fd: int) -> int:
    f = t.fds.get(s32(fd))
    node = f.node
    if node is not None and (node.kind in (S.S_IFIFO, S.S_IFSOCK) or isinstance(node, AnonNode)):
        raise SyscallError(errno.EINVAL)  # Linux: no ->fsync for pipes, sockets, anon inodes
    f.fsync()
    return 0


def sys_sync(t: Task) -> int:
    return 0


def sys_syncfs(t: Task, fd: int) -> int:
    t.fds.get(s32(fd))
    return 0


def sys_fadvise64(t: Task, fd: int, offset: int, length: int, advice: int) -> int:
    f = t.fds.get(s32(fd))
    if isinstance(f.node, PipeNode):
        raise SyscallError(errno.ESPIPE)
    if not 0 <= s32(advice) <= 5:
        raise SyscallError(errno.EINVAL)
    return 0


def sys_readahead(t: Task, fd: int, offset: int, count: int) -> int:
    f = t.fds.get(s32(fd))
    if not f.readable:
        raise SyscallError(errno.EBADF)
    if not f.mappable:
        raise SyscallError(errno.EINVAL)
    return 0


LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8


def sys_flock(t: Task, fd: int, op: int) -> int:
    f = t.fds.get(s32(fd))
    op = s32(op)
    kind = op & ~LOCK_NB
    if kind not in (LOCK_SH, LOCK_EX, LOCK_UN) or f.node is None:
        raise SyscallError(errno.EINVAL if f.node is not None else errno.EBADF)
    ltype = {LOCK_SH: locks.F_RDLCK, LOCK_EX: locks.F_WRLCK, LOCK_UN: locks.F_UNLCK}[kind]
    table = locks.table(f.node)
    _lock(t, table, lambda: table.set(f, ltype, 0, None, t.pid, flock=True), not op & LOCK_NB,
          lambda: table.conflict(f, ltype, 0, None, flock=True) is None)
    return 0


ENTRIES = entries(
    supported("read", sys_read, args=(FD, ReadBuf, Size)),
    supported("write", sys_write, args=(FD, WriteBuf, Size)),
    supported("readv", sys_readv, args=(FD, ReadIOVec, Int)),
    supported("writev", sys_writev, args=(FD, WriteIOVec, Int)),
    supported("pread64", sys_pread64, args=(FD, ReadBuf, Size, Int)),
    supported("pwrite64", sys_pwrite64, args=(FD, WriteBuf, Size, Int)),
    supported("preadv", sys_preadv, args=(FD, ReadIOVec, Int, Int, Int)),
    supported("pwritev", sys_pwritev, args=(FD, WriteIOVec, Int, Int, Int)),
    partial("preadv2", sys_preadv2, args=(FD, ReadIOVec, Int, Int, Int, Hex), note="RWF_NOWAIT/APPEND: EOPNOTSUPP"),
    partial("pwritev2", sys_pwritev2, args=(FD, WriteIOVec, Int, Int, Int, Hex), note="RWF_NOWAIT/APPEND: EOPNOTSUPP"),
    supported("sendfile", sys_sendfile, args=(FD, FD, Ptr, Size)),
    supported("copy_file_range", sys_copy_file_range, args=(FD, Ptr, FD, Ptr, Size, Hex)),
    partial("fallocate", sys_fallocate, args=(FD, Hex, Int, Int),
            note="in memory: no COLLAPSE/INSERT/UNSHARE_RANGE or WRITE_ZEROES (EOPNOTSUPP); volumes pass through"),
    supported("lseek", sys_lseek, args=(FD, Int, Enum(WHENCE))),
    supported("open", sys_open, args=(Path, Flags(OPEN_FLAGS), Hex)),
    supported("openat", sys_openat, args=(DirFD, Path, Flags(OPEN_FLAGS), Hex)),
    supported("creat", sys_creat, args=(Path, Hex)),
    supported("close", sys_close, args=(FD,)),
    supported("close_range", sys_close_range, args=(UInt, UInt, Hex)),
    supported("dup", sys_dup, args=(FD,)),
    supported("dup2", sys_dup2, args=(FD, FD)),
    supported("dup3", sys_dup3, args=(FD, FD, Flags(OPEN_FLAGS))),
    partial("fcntl", sys_fcntl, args=(FD, Enum(FCNTL_CMDS), Hex), note="no leases, seals or EDEADLK detection"),
    partial("ioctl", sys_ioctl, args=(FD, Hex, Hex), note="terminal queries on host stdio, FIONREAD, FIO*CLEX, FIONBIO"),
    supported("pipe", sys_pipe, args=(Ptr,)),
    supported("pipe2", sys_pipe2, args=(Ptr, Flags(OPEN_FLAGS))),
    supported("stat", sys_stat, args=(Path, OutStruct("stat"))),
    supported("lstat", sys_lstat, args=(Path, OutStruct("stat"))),
    supported("fstat", sys_fstat, args=(FD, OutStruct("stat"))),
    supported("newfstatat", sys_newfstatat, args=(DirFD, Path, OutStruct("stat"), Flags(AT_FLAGS))),
    supported("statx", sys_statx, args=(DirFD, Path, Flags(AT_FLAGS), Hex, OutStruct("statx"))),
    supported("access", sys_access, args=(Path, Int)),
    supported("faccessat", sys_faccessat, args=(DirFD, Path, Int)),
    supported("faccessat2", sys_faccessat2, args=(DirFD, Path, Int, Flags(AT_FLAGS))),
    supported("readlink", sys_readlink, args=(Path, ReadBuf, Size)),
    supported("readlinkat", sys_readlinkat, args=(DirFD, Path, ReadBuf, Size)),
    supported("chmod", sys_chmod, args=(Path, Hex)),
    supported("fchmod", sys_fchmod, args=(FD, Hex)),
    supported("fchmodat", sys_fchmodat, args=(DirFD, Path, Hex)),
    supported("chown", sys_chown, args=(Path, Int, Int)),
    supported("fchown", sys_fchown, args=(FD, Int, Int)),
    supported("lchown", sys_lchown, args=(Path, Int, Int)),
    supported("fchownat", sys_fchownat, args=(DirFD, Path, Int, Int, Flags(AT_FLAGS))),
    supported("truncate", sys_truncate, args=(Path, Int)),
    supported("ftruncate", sys_ftruncate, args=(FD, Int)),
    supported("utimensat", sys_utimensat, args=(DirFD, Path, Ptr, Flags(AT_FLAGS))),
    supported("utimes", sys_utimes, args=(Path, Ptr)),
    supported("futimesat", sys_futimesat, args=(DirFD, Path, Ptr)),
    supported("utime", sys_utime, args=(Path, Ptr)),
    supported("umask", sys_umask, args=(Hex,)),
    partial("statfs", sys_statfs, args=(Path, OutStruct("statfs")), note="fsid is 0"),
    partial("fstatfs", sys_fstatfs, args=(FD, OutStruct("statfs")), note="fsid is 0"),
    partial("getxattr", sys_getxattr, args=(Path, Str, Ptr, Size), note="no extended attributes"),
    partial("lgetxattr", sys_lgetxattr, args=(Path, Str, Ptr, Size), note="no extended attributes"),
    partial("fgetxattr", sys_fgetxattr, args=(FD, Str, Ptr, Size), note="no extended attributes"),
    partial("listxattr", sys_listxattr, args=(Path, Ptr, Size), note="no extended attributes"),
    partial("llistxattr", sys_llistxattr, args=(Path, Ptr, Size), note="no extended attributes"),
    partial("flistxattr", sys_flistxattr, args=(FD, Ptr, Size), note="no extended attributes"),
    partial("setxattr", sys_setxattr, args=(Path, Str, Ptr, Size, Hex), note="EOPNOTSUPP"),
    partial("lsetxattr", sys_lsetxattr, args=(Path, Str, Ptr, Size, Hex), note="EOPNOTSUPP"),
    partial("fsetxattr", sys_fsetxattr, args=(FD, Str, Ptr, Size, Hex), note="EOPNOTSUPP"),
    partial("removexattr", sys_removexattr, args=(Path, Str), note="ENODATA"),
    partial("lremovexattr", sys_lremovexattr, args=(Path, Str), note="ENODATA"),
    partial("fremovexattr", sys_fremovexattr, args=(FD, Str), note="ENODATA"),
    supported("getdents64", sys_getdents64, args=(FD, Ptr, Size)),
    supported("getcwd", sys_getcwd, args=(Ptr, Size)),
    supported("chdir", sys_chdir, args=(Path,)),
    supported("fchdir", sys_fchdir, args=(FD,)),
    supported("chroot", sys_chroot, args=(Path,)),
    supported("mkdir", sys_mkdir, args=(Path, Hex)),
    supported("mkdirat", sys_mkdirat, args=(DirFD, Path, Hex)),
    partial("mknod", sys_mknod, args=(Path, Hex, Hex), note="no device nodes (EPERM)"),
    partial("mknodat", sys_mknodat, args=(DirFD, Path, Hex, Hex), note="no device nodes (EPERM)"),
    supported("rmdir", sys_rmdir, args=(Path,)),
    supported("unlink", sys_unlink, args=(Path,)),
    supported("unlinkat", sys_unlinkat, args=(DirFD, Path, Flags(AT_FLAGS))),
    supported("rename", sys_rename, args=(Path, Path)),
    supported("renameat", sys_renameat, args=(DirFD, Path, DirFD, Path)),
    partial("renameat2", sys_renameat2, args=(DirFD, Path, DirFD, Path, Hex), note="no RENAME_WHITEOUT"),
    supported("symlink", sys_symlink, args=(Path, Path)),
    supported("symlinkat", sys_symlinkat, args=(Path, DirFD, Path)),
    supported("link", sys_link, args=(Path, Path)),
    supported("linkat", sys_linkat, args=(DirFD, Path, DirFD, Path, Flags(AT_FLAGS))),
    supported("fsync", sys_fsync, args=(FD,)),
    supported("fdatasync", sys_fsync, args=(FD,)),
    supported("sync", sys_sync),
    supported("syncfs", sys_syncfs, args=(FD,)),
    supported("fadvise64", sys_fadvise64, args=(FD, Int, Int, Int)),
    supported("readahead", sys_readahead, args=(FD, Int, Size)),
    supported("flock", sys_flock, args=(FD, Int)),
)
