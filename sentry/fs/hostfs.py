"""HostFS: a host directory passed through (``--volume HOST:GUEST[:ro]``).

In a nutshell: a node stands for the host entry at a relative path
(``rel``) below the volume's directory, and every operation is done on the
host through ``HostRoot`` (confined: no symlink in the directory leads a
call outside it). Nothing is cached but the node objects themselves (so a
directory keeps its identity for '..', mounts and cwd, and a file for
shared mappings): metadata, entries and data are read from the host each
time, so changes made on the host show at once. Writable volumes change
the host directory itself; read-only ones fail every change with EROFS.

What the guest cannot do to the host: follow a symlink (the Sentry
resolves symlinks itself, as for the rootfs), open a device, FIFO or socket
found there (EPERM; FIFOs it makes are the sandbox's own pipes), make a
device node, or leave a set-user-ID or set-group-ID file behind (those
mode bits are not stored on the host: the Sentry runs as root).

Lock order: OpenFile.lock > HostFS.lock (namespace changes and the node
cache). Reads and lookups take no lock.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat as S
import threading

from sentry.errors import SyscallError
from sentry.fs.file import (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_PUNCH_HOLE,
                            FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE, O_ACCMODE, O_RDONLY, O_TRUNC, DirFile,
                            SeekableFile)
from sentry.fs.hostroot import HostRoot
from sentry.fs.node import RENAME_EXCHANGE, DirMoves, FileSystem, Node, check_rename, dtype_of, err
from sentry.fs.pipe import Pipe, open_end
from sentry.mm.pagecache import MAPPED, read_through

_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc, as sentry.net.hostcalls
_fallocate = _libc.fallocate  # os has only posix_fallocate (no modes)
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate.restype = ctypes.c_int
V9FS_MAGIC = 0x01021997  # what gVisor shows for its gofer mounts
_SUID_SGID = S.S_ISUID | S.S_ISGID


class HostFS(FileSystem):
    """The host directory ``path`` as a file system; ``writable=False``
    makes every change fail with EROFS."""

    fs_type = "9p"
    magic = V9FS_MAGIC

    def __init__(self, path: str, writable: bool):
        super().__init__()
        self.host = HostRoot(path, writable=writable)
        self.writable = writable
        self.lock = threading.RLock()
        self.pipes: dict[tuple[int, int], Pipe] = {}  # FIFOs made here, by host inode; guarded by lock
        self.root = HostDir(self, b"")

    def statfs(self) -> tuple[int, int, int, int, int, int]:
        v = self.host.statvfs()
        return (v.f_bsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree)

    def check_writable(self) -> None:
        if not self.writable:
            raise err(errno.EROFS)

    def node_for(self, rel: bytes, st: os.stat_result) -> "HostNode":
        fmt = S.S_IFMT(st.st_mode)
        cls = HostDir if fmt == S.S_IFDIR else HostFile if fmt == S.S_IFREG else \
            HostSymlink if fmt == S.S_IFLNK else HostFifo if fmt == S.S_IFIFO else HostSpecial
        node = cls(self, rel)
        node.last = st
        return node


class HostNode(Node):
    """``rel``: the host path (relative to the volume) this node stands
    for; ``last``: its last host lstat, shown once the entry is gone (an
    unlinked file still open)."""

    __slots__ = ("rel", "last")

    def __init__(self, fs: HostFS, rel: bytes):
        super().__init__(fs)
        self.rel = rel
        self.last: os.stat_result | None = None

    def stat(self):
        try:
            self.last = self.fs.host.lstat(self.rel)
        except SyscallError:
            if self.last is None:
                raise
        return self.last

    def setattr(self, *, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None) -> None:
        fs = self.fs
        fs.check_writable()
        host = fs.host
        if size is not None:
            fd = host.open(self.rel, flags=os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
            except OSError as e:
                raise SyscallError(e.errno) from None
            finally:
                os.close(fd)
            cache = MAPPED.get(id(self))
            if cache is not None:  # mapped: pages past the end go
                cache.truncated(self, size)
        if mode is not None:
            host.chmod(self.rel, _host_mode(self.stat().st_mode, mode))
        if uid is not None or gid is not None:
            host.chown(self.rel, -1 if uid is None else uid, -1 if gid is None else gid)
        if atime_ns is not None or mtime_ns is not None:
            st = self.stat()
            host.utime(self.rel, st.st_atime_ns if atime_ns is None else atime_ns,
                       st.st_mtime_ns if mtime_ns is None else mtime_ns)


def _host_mode(st_mode: int, mode: int) -> int:
    """The permission bits stored on the host: no set-ID bits on files."""
    mode &= 0o7777
    return mode if S.S_ISDIR(st_mode) else mode & ~_SUID_SGID


class HostSpecial(HostNode):
    """A device or socket found on the host: visible, never opened."""

    __slots__ = ()

    @property
    def kind(self) -> int:  # type: ignore[override]
        return S.S_IFMT(self.last.st_mode)

    def open(self, path, flags, ctx):
        raise err(errno.EPERM)


class HostFifo(HostNode):
    """A FIFO on the host: opened as a pipe of the sandbox (one per host
    inode), never as the host FIFO."""

    __slots__ = ()
    kind = S.S_IFIFO

    def open(self, path, flags, ctx):
        st = self.stat()
        with self.fs.lock:
            pipe = self.fs.pipes.setdefault((st.st_dev, st.st_ino), Pipe())
        return open_end(pipe, self, path, flags)


class HostSymlink(HostNode):
    __slots__ = ()
    kind = S.S_IFLNK

    def readlink(self, ctx) -> bytes:
        return self.fs.host.readlink(self.rel)


class HostFile(HostNode):
    __slots__ = ()
    kind = S.S_IFREG

    def open(self, path, flags, ctx):
        acc = flags & O_ACCMODE
        if acc != O_RDONLY or flags & O_TRUNC:
            self.fs.check_writable()
        host_flags = {0: os.O_RDONLY, 1: os.O_WRONLY}.get(acc, os.O_RDWR) | (os.O_TRUNC if flags & O_TRUNC else 0)
        f = HostOpenFile(self, path, flags, self.fs.host.open(self.rel, flags=host_flags))
        cache = MAPPED.get(id(self)) if flags & O_TRUNC else None
        if cache is not None:  # mapped: every page goes
            cache.truncated(self, 0)
        return f


class HostOpenFile(SeekableFile):
    """An open host file: I/O on the Sentry's own host fd (opened with the
    guest's access mode, never O_APPEND: SeekableFile places appends)."""

    __slots__ = ("hostfd",)

    def __init__(self, node: HostFile, path: str, flags: int, hostfd: int):
        super().__init__(node, path, flags)
        self.hostfd = hostfd

    def _fstat(self) -> os.stat_result:
        try:
            return os.fstat(self.hostfd)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def stat(self):
        return self._fstat()

    def size(self) -> int:
        return self._fstat().st_size

    def direct_fd(self) -> int | None:
        return self.hostfd if id(self.node) not in MAPPED else None  # mapped: reads go through the pages

    def pread(self, length: int, offset: int) -> bytes:
        try:
            data = os.pread(self.hostfd, length, offset)
        except OSError as e:
            raise SyscallError(e.errno) from None
        return read_through(self.node, offset, data)

    def pwrite(self, data: bytes, offset: int) -> int:
        try:
            n = os.pwrite(self.hostfd, data, offset)
        except OSError as e:
            raise SyscallError(e.errno) from None
        except OverflowError:
            raise SyscallError(errno.EFBIG) from None
        cache = MAPPED.get(id(self.node))
        if cache is not None:  # mapped: the pages take the write too
            cache.written(self.node, offset, data[:n])
        return n

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.hostfd, size)
        except OSError as e:
            raise SyscallError(e.errno) from None
        except OverflowError:
            raise SyscallError(errno.EFBIG) from None
        cache = MAPPED.get(id(self.node))
        if cache is not None:  # mapped: pages past the end go
            cache.truncated(self.node, size)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """Every mode passes through to the host file (a writable volume);
        a mapped file's pages follow, as Linux's page cache: zeroed over a
        punched or zeroed range; written back before a collapse or insert
        moves the content, read again after it."""
        cache = MAPPED.get(id(self.node))
        moves = mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)
        if cache is not None and moves:
            cache.sync(self.node)
        if _fallocate(self.hostfd, mode, offset, length) != 0:
            raise SyscallError(ctypes.get_errno())
        if cache is None:
            return
        if moves:
            cache.reload(self.node, lambda n, off: os.pread(self.hostfd, n, off))
            cache.truncated(self.node, self.size())
        elif mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_WRITE_ZEROES):
            cache.zeroed(self.node, offset, length)

    def fsync(self) -> None:
        cache = MAPPED.get(id(self.node))
        if cache is not None:  # stores through shared mappings reach the host file first
            cache.sync(self.node)
        try:
            os.fsync(self.hostfd)
        except OSError as e:
            raise SyscallError(e.errno) from None

    def mutable(self) -> bool:
        return self.node.fs.writable

    def mmap_identity(self):
        st = self._fstat()
        return ("host", st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def __del__(self) -> None:
        os.close(self.hostfd)


class HostDir(HostNode):
    """A host directory; ``children``: the nodes handed out for its
    entries (kept while the host entry is the same inode)."""

    __slots__ = ("children",)
    kind = S.S_IFDIR

    def __init__(self, fs: HostFS, rel: bytes):
        super().__init__(fs, rel)
        self.children: dict[bytes, HostNode] = {}

    def _rel(self, name: bytes) -> bytes:
        return self.rel + b"/" + name if self.rel else name

    def open(self, path, flags, ctx):
        if flags & O_ACCMODE != O_RDONLY:
            raise err(errno.EISDIR)
        return DirFile(self, path, flags)

    def lookup(self, name: bytes, ctx) -> Node:
        rel = self._rel(name)
        st = self.fs.host.lstat(rel)
        c = self.children.get(name)
        if c is not None and c.last is not None and c.last.st_ino == st.st_ino \
                and S.S_IFMT(c.last.st_mode) == S.S_IFMT(st.st_mode):
            c.last = st
            return c
        node = self.fs.node_for(rel, st)
        if isinstance(node, HostDir):
            node.parent, node.name = self, name
        with self.fs.lock:
            self.children[name] = node
        return node

    def readdir(self, ctx) -> list[tuple[bytes, int, int]]:
        out = []
        for name, ino, fmt in self.fs.host.scandir(self.rel):
            if fmt is None:
                fmt = S.S_IFMT(self.fs.host.lstat(self._rel(name)).st_mode)
            out.append((name, ino, dtype_of(fmt)))
        return out

    # --- changing ---------------------------------------------------------
    def _made(self, name: bytes, creds) -> Node:
        """The node of a name just made; owned by the caller's ids."""
        rel = self._rel(name)
        if creds is not None and os.geteuid() == 0:
            self.fs.host.chown(rel, creds.euid, creds.egid)
        DirMoves.count += 1
        return self.lookup(name, None)

    def create(self, name, mode, creds):
        self.fs.check_writable()
        fd = self.fs.host.open(self._rel(name), flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                               mode=_host_mode(S.S_IFREG, mode))
        os.close(fd)
        return self._made(name, creds)

    def mkdir(self, name, mode, creds):
        self.fs.check_writable()
        self.fs.host.mkdir(self._rel(name), mode & 0o7777)
        return self._made(name, creds)

    def mknod(self, name, mode, creds):
        self.fs.check_writable()
        fmt = S.S_IFMT(mode)
        if fmt == S.S_IFREG:
            return self.create(name, mode, creds)
        if fmt != S.S_IFIFO:
            raise err(errno.EPERM)  # no device nodes or socket files on the host
        self.fs.host.mkfifo(self._rel(name), _host_mode(fmt, mode))
        return self._made(name, creds)

    def symlink(self, name, target, creds):
        self.fs.check_writable()
        self.fs.host.symlink(target, self._rel(name))
        return self._made(name, creds)

    def link(self, name, node):
        if node.fs is not self.fs:
            raise err(errno.EXDEV)
        self.fs.check_writable()
        self.fs.host.link(node.rel, self._rel(name))

    def _busy(self, name: bytes) -> bool:
        return bool(self.mounts) and name in self.mounts

    def unlink(self, name):
        self.fs.check_writable()
        with self.fs.lock:
            if self.lookup(name, None).kind == S.S_IFDIR:
                raise err(errno.EISDIR)
            if self._busy(name):
                raise err(errno.EBUSY)
            self.fs.host.unlink(self._rel(name))
            self.children.pop(name, None)

    def rmdir(self, name):
        self.fs.check_writable()
        with self.fs.lock:
            node = self.lookup(name, None)
            if node.kind != S.S_IFDIR:
                raise err(errno.ENOTDIR)
            if self._busy(name) or node.mounts:
                raise err(errno.EBUSY)
            self.fs.host.rmdir(self._rel(name))
            self.children.pop(name, None)
            DirMoves.count += 1

    def rename(self, old, newdir, new, flags):
        check_rename(self, newdir, flags)
        with self.fs.lock:
            src = self.lookup(old, None)
            if self._busy(old) or newdir._busy(new) or src.mounts:
                raise err(errno.EBUSY)
            self.fs.host.rename(self._rel(old), newdir._rel(new), flags)
            dst = newdir.children.pop(new, None)
            self.children.pop(old, None)
            _move(src, newdir, new)
            if flags & RENAME_EXCHANGE and dst is not None:
                _move(dst, self, old)
            DirMoves.count += 1


def _move(node: HostNode, newdir: HostDir, name: bytes) -> None:
    """Record that ``node`` is now ``newdir``/``name`` (with everything
    below it, for a directory). Caller holds fs.lock."""
    newdir.children[name] = node
    if isinstance(node, HostDir):
        node.parent, node.name = newdir, name
    stack = [(node, newdir._rel(name))]
    while stack:
        n, rel = stack.pop()
        n.rel = rel
        if isinstance(n, HostDir):
            stack.extend((c, rel + b"/" + cname) for cname, c in n.children.items())
