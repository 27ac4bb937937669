"""Open files: what a file descriptor refers to (Linux's ``struct file``).

In a nutshell: ``OpenFile`` holds the node, the sandbox path it was opened
by, the status flags and the offset; subclasses implement the I/O:

- ``SeekableFile``: offset-based I/O on top of ``pread``/``pwrite``/``size``
  (regular files of every file system derive from it);
- ``BytesFile``: a read-only snapshot taken at open (/proc files);
- ``DirFile``: getdents64 over ``node.readdir``.
Pipes (pipe.py), devices (dev.py) and host stdio (stdio.py) derive from
``OpenFile`` directly.

Descriptors share an OpenFile (dup, fork): ``incref``/``decref`` count the
descriptor references; the last ``decref`` calls ``release`` (a pipe end
closes: its peer sees EOF or EPIPE). Host resources (a regular file's host
fd) are not tied to that count but to the object's life (``__del__``): a
mapping that keeps the object keeps the fd open after the guest closed its
descriptor, as a Linux VMA keeps its file, and a dropped object frees it
at once (CPython's reference counting).

Lock order: OpenFile.lock (offset) > the file system's lock > Pipe.cond.
"""
from __future__ import annotations

import errno
import os
import threading
from typing import TYPE_CHECKING, Callable, Hashable

from abi.fs_structs import DT_DIR, dirent64
from sentry.fs import locks
from sentry.errors import SyscallError

if TYPE_CHECKING:
    from sentry.fs.node import Node

O_ACCMODE = 0o3
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT = 0o100
O_EXCL = 0o200
O_NOCTTY = 0o400
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_NONBLOCK = 0o4000
O_DSYNC = 0o10000
O_ASYNC = 0o20000
O_DIRECT = 0o40000
O_LARGEFILE = 0o100000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_NOATIME = 0o1000000
O_CLOEXEC = 0o2000000
O_SYNC = 0o4010000
O_PATH = 0o10000000
O_TMPFILE = 0o20200000
# Flags F_SETFL may change.
SETFL_MASK = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME
# Flags kept in the file (F_GETFL shows them).
KEPT_FLAGS = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_ASYNC | O_DIRECT | O_NOATIME | O_SYNC | O_PATH

SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
# fallocate modes (<linux/falloc.h>): KEEP_SIZE is a flag, the others are
# exclusive modes (none set: allocate).
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_NO_HIDE_STALE = 0x01, 0x02, 0x04
FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE = 0x08, 0x10, 0x20
FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_WRITE_ZEROES = 0x40, 0x80
MAX_OFFSET = (1 << 63) - 1


class OpenFile:
    """An open file description. ``readable``/``writable`` come from the
    access mode (an O_PATH file is neither); the syscall layer checks them
    (EBADF) before calling read/write."""

    __slots__ = ("node", "path", "flags", "readable", "writable", "offset", "lock", "refs")
    is_directory = False
    mappable = False  # whether mmap may map it (else ENODEV)
    # Whether read/write may raise EAGAIN to mean "would block": the
    # syscall layer then waits for readiness (see subscribe) unless the
    # file is O_NONBLOCK.
    can_block = False

    def __init__(self, node: "Node | None", path: str, flags: int):
        acc = flags & O_ACCMODE
        self.node = node
        self.path = path  # sandbox path, for /proc/self/fd and maps
        self.flags = (flags & KEPT_FLAGS) | O_LARGEFILE
        path_only = bool(flags & O_PATH)
        self.readable = not path_only and acc in (O_RDONLY, O_RDWR)
        self.writable = not path_only and acc in (O_WRONLY, O_RDWR)
        self.offset = 0
        self.lock = threading.Lock()
        self.refs = 1

    # --- lifetime -------------------------------------------------------
    def incref(self) -> "OpenFile":
        with self.lock:
            self.refs += 1
        return self

    def decref(self) -> None:
        with self.lock:
            self.refs -= 1
            last = self.refs == 0
        if last:
            locks.forget(self.node, self)  # its OFD and flock locks
            self.release()

    def release(self) -> None:
        """The last reference is gone: free host resources."""

    # --- I/O (defaults: not supported) -----------------------------------
    def job_control(self, t, signo: int) -> None:
        """Before a read (``signo`` SIGTTIN) or write (SIGTTOU) by task
        ``t``: a terminal stops a background job here (see
        sentry.fs.stdio.check_job_access); every other file lets it through."""

    def direct_fd(self) -> int | None:
        """A host fd that holds this file's bytes at the same offsets, so a
        read can go straight into guest memory (one copy, as natively); None
        when the bytes live elsewhere (memory, synthesized)."""
        return None

    def read_into(self, views: list[memoryview], offset: int | None = None) -> int | None:
        """Only for a file with a ``direct_fd`` (SeekableFile)."""
        return None

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EINVAL)

    def write(self, data: bytes) -> int:
        raise SyscallError(errno.EINVAL)

    def pread(self, length: int, offset: int) -> bytes:
        raise SyscallError(errno.ESPIPE)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def seek(self, offset: int, whence: int) -> int:
        raise SyscallError(errno.ESPIPE)

    def getdents(self, size: int) -> bytes:
        raise SyscallError(errno.ENOTDIR)

    def truncate(self, size: int) -> None:
        raise SyscallError(errno.EINVAL)

    def ioctl(self, t, request: int, arg: int) -> int:
        raise SyscallError(errno.ENOTTY)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """fallocate(2) on a regular file opened for writing (the syscall
        layer checked that and the mode's shape, as vfs_fallocate does).
        By default only allocation (mode 0 or KEEP_SIZE): memory is taken
        when written, so only the size changes; other modes EOPNOTSUPP."""
        if mode & ~FALLOC_FL_KEEP_SIZE:
            raise SyscallError(errno.EOPNOTSUPP)
        if not mode & FALLOC_FL_KEEP_SIZE and offset + length > self.stat().st_size:
            self.truncate(offset + length)

    def stat(self):
        return self.node.stat()

    def fsync(self) -> None:
        """Nothing to flush: data lives in the Sentry or is read-only."""

    def readiness(self) -> int:
        """POLL* bits that hold now (for poll/select/epoll)."""
        return POLLIN | POLLOUT

    def subscribe(self, cb: Callable[[], None]) -> None:
        """Call ``cb`` (from any thread) when readiness may have changed.
        Files that are always ready never call it."""

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        """Undo ``subscribe``."""

    def mmap_identity(self) -> Hashable | None:
        """A key that is stable while the content is unchanged (the memory
        manager shares page copies of read-only private mappings under it),
        or None if the content cannot be cached."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}>"


class SeekableFile(OpenFile):
    """A file with an offset. Subclasses implement ``pread``, ``pwrite``
    (if writable) and ``size``."""

    __slots__ = ()
    mappable = True

    def size(self) -> int:
        raise NotImplementedError

    def read(self, length: int) -> bytes:
        with self.lock:
            data = self.pread(length, self.offset)
            self.offset += len(data)
        return data

    def read_into(self, views: list[memoryview], offset: int | None = None) -> int | None:
        """Read into ``views`` (guest memory) from ``offset``, or from the
        file offset (advancing it) when None, with one host preadv on
        ``direct_fd``. None: no direct fd (any more): use ``pread``."""
        with self.lock:
            fd = self.direct_fd()
            if fd is None:
                return None
            try:
                n = os.preadv(fd, views, self.offset if offset is None else offset)
            except OSError as e:
                raise SyscallError(e.errno) from None
            if offset is None:
                self.offset += n
        return n

    def write(self, data: bytes) -> int:
        with self.lock:
            if self.flags & O_APPEND:
                self.offset = self.size()
            n = self.pwrite(data, self.offset)
            self.offset += n
        return n

    def seek(self, offset: int, whence: int) -> int:
        with self.lock:
            if whence == SEEK_SET:
                new = offset
            elif whence == SEEK_CUR:
                new = self.offset + offset
            elif whence == SEEK_END:
                new = self.size() + offset
            elif whence in (SEEK_DATA, SEEK_HOLE):
                size = self.size()
                if offset < 0 or offset >= size:
                    raise SyscallError(errno.ENXIO)
                new = offset if whence == SEEK_DATA else size
            else:
                raise SyscallError(errno.EINVAL)
            if new < 0 or new > MAX_OFFSET:
                raise SyscallError(errno.EINVAL)
            self.offset = new
            return new


class BytesFile(SeekableFile):
    """Read-only content fixed at open (a /proc file)."""

    __slots__ = ("data",)

    def __init__(self, node: "Node", path: str, flags: int, data: bytes):
        super().__init__(node, path, flags)
        self.data = data

    def size(self) -> int:
        return len(self.data)

    def pread(self, length: int, offset: int) -> bytes:
        return self.data[offset:offset + length]

    def pwrite(self, data: bytes, offset: int) -> int:
        raise SyscallError(errno.EINVAL)


class DirFile(OpenFile):
    """An open directory: getdents64 walks a snapshot of the entries taken
    when reading starts at position 0 ('.' and '..' first). The offset is an
    index into the snapshot; d_off of each record is the index after it.
    ``ctx``: the task that opened it (/proc/self/fd lists the opener's fds)."""

    __slots__ = ("entries", "ctx")
    is_directory = True

    def __init__(self, node: "Node", path: str, flags: int, ctx=None):
        super().__init__(node, path, flags)
        self.entries: list[tuple[bytes, int, int]] | None = None
        self.ctx = ctx

    def getdents(self, size: int) -> bytes:
        with self.lock:
            if self.entries is None or self.offset == 0:
                node = self.node
                parent = node.parent if node.parent is not None else node
                ents = [(b".", node.stat().st_ino, DT_DIR), (b"..", parent.stat().st_ino, DT_DIR)]
                ents.extend(node.readdir(self.ctx))
                if node.mounts:  # mount points hide (or add) entries
                    ents = [e for e in ents if e[0] not in node.mounts]
                    ents.extend((name, m.stat().st_ino, DT_DIR) for name, m in node.mounts.items())
                self.entries = ents
            out = bytearray()
            pos = self.offset
            ents = self.entries
            while pos < len(ents):
                name, ino, dtype = ents[pos]
                rec = dirent64(ino, pos + 1, dtype, name)
                if len(out) + len(rec) > size:
                    if not out:
                        raise SyscallError(errno.EINVAL)
                    break
                out += rec
                pos += 1
            self.offset = pos
            return bytes(out)

    def seek(self, offset: int, whence: int) -> int:
        with self.lock:
            if whence == SEEK_SET and offset >= 0:
                self.offset = offset
            elif whence == SEEK_CUR and self.offset + offset >= 0:
                self.offset += offset
            else:
                raise SyscallError(errno.EINVAL)
            return self.offset

    def read(self, length: int) -> bytes:
        raise SyscallError(errno.EISDIR)

    def pread(self, length: int, offset: int) -> bytes:
        raise SyscallError(errno.EISDIR)


class HostFDFile(OpenFile):
    """Shared base for files backed by a host fd the Sentry owns or borrows
    (device passthrough, stdio): read/write go straight to the host fd."""

    __slots__ = ("hostfd", "owned")

    def __init__(self, node: "Node | None", path: str, flags: int, hostfd: int, owned: bool):
        super().__init__(node, path, flags)
        self.hostfd = hostfd
        self.owned = owned

    def read(self, length: int) -> bytes:
        try:
            return os.read(self.hostfd, length)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def write(self, data: bytes) -> int:
        try:
            return os.write(self.hostfd, data)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def stat(self):
        try:
            return os.fstat(self.hostfd)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def __del__(self) -> None:
        if self.owned:
            os.close(self.hostfd)
