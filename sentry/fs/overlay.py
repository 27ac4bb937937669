"""The overlay: the host rootfs, read-only, under an in-memory upper layer.

In a nutshell: the overlay is a tree of nodes built lazily as the guest
looks names up. A node found in the host rootfs (the lower layer) records
its host path relative to the rootfs (``lower``) and reads metadata and
data from the host through ``HostRoot``. The first change copies up:

- metadata (chmod, chown, utimens, link counts, directory mtimes) into a
  Sentry-owned ``Stat`` (``meta``);
- file content (an open for writing, truncate) into a ``FileData``
  (``data``: in memory, sparse as tmpfs); the host file is never opened
  for writing.

Directories hold a ``children`` dict: every name looked up or created
(upper entries and cached lower ones) and a ``whiteouts`` set: lower names
that were deleted. A directory created by the guest has no lower part, so
it is opaque. Renaming a lower directory moves the node: it keeps reading
its content from its original host path, and a whiteout hides the old name.
With ``host=None`` the same classes make a tmpfs (nothing below).

Hard links of the rootfs stay linked, as in Linux's overlayfs with
index=on and in gVisor: every name of one lower inode (a non-directory
whose host link count is above 1, keyed by host dev and inode) resolves to
one node, so its copy-up (content, metadata, link count) is seen through
every name (``OverlayFS.lower_node``).

``writable=False`` (``--overlay=none``) makes every mutation fail with
EROFS.

Content in memory is charged (``OverlayFS.charge``) to the file system's
own limit and to the sandbox's ``--memory`` budget, with guest memory
(sentry.mm.memfile.MemoryBudget): past either, ENOSPC. Host fds held for
guests are counted in ``HOST_FDS``: past its cap, ENFILE.

Lock order: OpenFile.lock > OverlayFS.lock (one lock per file system,
guarding every namespace change, metadata copy-up and file data write).
Lookups of cached names take no lock.
"""
from __future__ import annotations

import errno
import os
import stat as S
import threading

from sentry.errors import SyscallError
from sentry.fs.file import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, O_ACCMODE, O_NONBLOCK,
                            O_RDONLY, O_TRUNC, O_WRONLY, DirFile, SeekableFile)
from sentry.fs.hostroot import HostRoot
from sentry.fs.node import BLKSIZE, RENAME_EXCHANGE, RENAME_NOREPLACE, DirMoves, FileSystem, Node, Stat, check_rename, dtype_of, err
from sentry.fs.pipe import Pipe, open_end
from sentry.mm.memfile import sandbox_budget
from sentry.mm.pagecache import MAPPED, read_through

OVERLAYFS_SUPER_MAGIC = 0x794C7630
NAME_MAX = 255
_ABSENT_MAX = 4096


class OverlayFS(FileSystem):
    """An overlay over ``host`` (a host directory) or, with host None, a
    tmpfs. ``root_mode``: the mode of a tmpfs root."""

    def __init__(self, host: str | None, writable: bool = True, root_mode: int = 0o755,
                 size_limit: int | None = None):
        super().__init__()
        self.host = HostRoot(host) if host is not None else None
        self.writable = writable
        self.lock = threading.RLock()
        # The node of each hard-linked lower inode, by host (st_dev, st_ino):
        # kept for the life of the file system, since a copied-up node must
        # stay the one its other names find even while no directory caches it.
        self.lower_links: dict[tuple[int, int], OvNode] = {}
        # Bytes of file content held in memory, and the most allowed (as a
        # tmpfs: half the host's memory by default); beyond it, ENOSPC.
        self.used = 0
        self.size_limit = size_limit if size_limit is not None else \
            os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
        # The sandbox's --memory, shared with guest memory and its other
        # file systems (None: made outside a sandbox).
        self.budget = sandbox_budget()
        if self.host is not None:
            self.fs_type, self.magic = "overlay", OVERLAYFS_SUPER_MAGIC
            root = OvDir(self, b"", None)
        else:
            st = Stat(S.S_IFDIR | root_mode, dev=self.dev, nlink=2, size=BLKSIZE)
            st.st_blocks = 0  # as tmpfs shows
            root = OvDir(self, None, st)
        self.root = root

    def statfs(self) -> tuple[int, int, int, int, int, int]:
        if self.host is not None:
            v = self.host.statvfs()
            return (v.f_bsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree)
        limit, room = self.size_limit, self.budget.available() if self.budget is not None else None
        if room is not None:
            limit = min(limit, self.used + room)
        blocks, free = limit // BLKSIZE, max(0, limit - self.used) // BLKSIZE
        return (BLKSIZE, blocks, free, free, 1 << 20, 1 << 20)

    def charge(self, delta: int) -> None:
        """Account ``delta`` bytes of content (negative: freed); ENOSPC if
        that would pass the limit or the sandbox's memory budget. Caller
        holds lock."""
        if delta > 0 and self.used + delta > self.size_limit:
            raise err(errno.ENOSPC)
        if self.budget is not None and not self.budget.take(delta):
            raise err(errno.ENOSPC)
        self.used += delta

    def check_writable(self) -> None:
        if not self.writable:
            raise err(errno.EROFS)

    def lower_node(self, rel: bytes, st: os.stat_result) -> "OvNode":
        """The node for the lower entry at ``rel`` (host lstat ``st``): a new
        one, or for a hard-linked inode the node its other names share."""
        fmt = S.S_IFMT(st.st_mode)
        linked = fmt != S.S_IFDIR and st.st_nlink > 1
        if linked:
            node = self.lower_links.get((st.st_dev, st.st_ino))
            if node is not None:
                return node
        cls = OvDir if fmt == S.S_IFDIR else OvFile if fmt == S.S_IFREG else \
            OvSymlink if fmt == S.S_IFLNK else OvSpecial
        node = cls(self, rel, None)
        node.hstat = st
        if linked:
            with self.lock:
                node = self.lower_links.setdefault((st.st_dev, st.st_ino), node)
        return node


class OvNode(Node):
    """An overlay node: ``lower`` (host path relative to the rootfs, or
    None), ``meta`` (Sentry-owned metadata once copied up, else None),
    ``hstat`` (the host's lstat, cached: the rootfs is assumed not to
    change under a running sandbox, as gVisor assumes by default)."""

    __slots__ = ("lower", "meta", "hstat")

    def __init__(self, fs: OverlayFS, lower: bytes | None, meta: Stat | None, hstat=None):
        super().__init__(fs)
        self.lower = lower
        self.meta = meta
        self.hstat = hstat

    def stat(self):
        m = self.meta
        if m is not None:
            return m
        h = self.hstat
        if h is None:
            h = self.hstat = self.fs.host.lstat(self.lower)
        return h

    def own_meta(self) -> Stat:
        """The Sentry-owned metadata, copied up from the host on first use.
        Caller holds fs.lock."""
        if self.meta is None:
            self.meta = Stat.copy_of(self.stat())
        return self.meta

    def setattr(self, *, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None) -> None:
        self.fs.check_writable()
        if size is not None:
            self.set_size(size)
        with self.fs.lock:
            m = self.own_meta()
            if mode is not None:
                m.st_mode = S.S_IFMT(m.st_mode) | (mode & 0o7777)
            if uid is not None:
                m.st_uid = uid
            if gid is not None:
                m.st_gid = gid
            if atime_ns is not None:
                m.st_atime_ns = atime_ns
            if mtime_ns is not None:
                m.st_mtime_ns = mtime_ns
            m.touch(mtime=False)

    def set_size(self, size: int) -> None:
        raise err(errno.EISDIR if self.kind == S.S_IFDIR else errno.EINVAL)

    def change_nlink(self, delta: int) -> None:
        """Caller holds fs.lock."""
        m = self.own_meta()
        m.st_nlink = max(0, m.st_nlink + delta)
        m.touch(mtime=False)


class OvSpecial(OvNode):
    """A device, FIFO or socket found in the host rootfs: visible, never
    opened (that would hand the guest a host object)."""

    __slots__ = ()

    def open(self, path, flags, ctx):
        raise err(errno.EPERM)


class OvFifo(OvNode):
    """A named pipe made by mknod/mkfifo: its Pipe lives as long as the node."""

    __slots__ = ("pipe",)
    kind = S.S_IFIFO

    def __init__(self, fs, lower, meta):
        super().__init__(fs, lower, meta)
        self.pipe = Pipe()

    def open(self, path, flags, ctx):
        if flags & O_ACCMODE == O_WRONLY and flags & O_NONBLOCK and not self.pipe.readers:
            raise err(errno.ENXIO)
        return open_end(self.pipe, self, path, flags)


class OvSocket(OvNode):
    """A socket inode made by mknod(S_IFSOCK): nobody listens on it (bound
    Unix sockets are sentry.net's own nodes)."""

    __slots__ = ()
    kind = S.S_IFSOCK

    def open(self, path, flags, ctx):
        raise err(errno.ENXIO)


class OvSymlink(OvNode):
    __slots__ = ("target",)
    kind = S.S_IFLNK

    def __init__(self, fs, lower, meta, target: bytes | None = None):
        super().__init__(fs, lower, meta)
        self.target = target  # cached (lower) or own (upper) target

    def readlink(self, ctx) -> bytes:
        t = self.target
        if t is None:
            t = self.target = self.fs.host.readlink(self.lower)
        return t


class OvFile(OvNode):
    """A regular file: ``data`` is its content once copied up (or created
    in the upper layer); ``version`` counts content changes."""

    __slots__ = ("data", "version", "linkable")
    kind = S.S_IFREG

    def __init__(self, fs, lower, meta, data: bytearray | FileData | None = None):
        super().__init__(fs, lower, meta)
        self.data = data if data is None or isinstance(data, FileData) else FileData(data)  # charged by the caller
        self.version = 0
        self.linkable = False  # an O_TMPFILE file (without O_EXCL) may get a name

    def copy_up(self) -> FileData:
        """The content in memory, read from the host on first call."""
        with self.fs.lock:
            if self.data is None:
                size = self.stat().st_size
                self.fs.charge(size)
                try:
                    data = FileData(self.fs.host.read_all(self.lower))
                finally:
                    self.fs.charge(-size)
                self.fs.charge(data.held)
                meta = self.own_meta()
                meta.set_size(len(data))
                meta.st_blocks = _blocks(data.held)
                self.data = data
            return self.data

    def __del__(self) -> None:
        if self.data is not None:
            with self.fs.lock:
                self.fs.charge(-self.data.held)

    def open(self, path, flags, ctx):
        if (flags & O_ACCMODE) != O_RDONLY or flags & O_TRUNC:
            self.fs.check_writable()
            self.copy_up()
            if flags & O_TRUNC:
                self.set_size(0)
        hostfd = None if self.data is not None else self._open_host()
        return OvRegularFile(self, path, flags, hostfd)

    def _open_host(self) -> int:
        """A host fd of the lower file, counted in HOST_FDS (ENFILE past
        its cap); OvRegularFile releases it."""
        HOST_FDS.acquire()
        try:
            return self.fs.host.open(self.lower)
        except BaseException:
            HOST_FDS.release()
            raise

    def set_size(self, size: int) -> None:
        self.fs.check_writable()
        data = self.copy_up()
        with self.fs.lock:
            self.fs.charge(data.truncate(size))  # sparse: growing holds nothing
            self.meta.set_size(size)
            self.meta.st_blocks = _blocks(data.held)
            self.meta.touch()
            self.version += 1
        cache = MAPPED.get(id(self))
        if cache is not None:  # mapped: pages past the end go
            cache.truncated(self, size)

    def write_at(self, buf: bytes, offset: int) -> int:
        if offset + len(buf) > MAX_OFFSET:  # as rw_verify_area: the end must be an offset
            raise err(errno.EINVAL)
        data = self.copy_up()
        with self.fs.lock:
            self.fs.charge(data.cost(offset, offset + len(buf)))  # a hole written costs its chunks only
            data.write(offset, buf)
            if len(data) != self.meta.st_size:
                self.meta.set_size(len(data))
            self.meta.st_blocks = _blocks(data.held)
            self.meta.touch()
            self.version += 1
        return len(buf)

    def zero_range(self, offset: int, length: int, keep_size: bool) -> None:
        """fallocate's PUNCH_HOLE (``keep_size``) and ZERO_RANGE: zeros over
        [offset, offset+length), the file growing to its end unless
        ``keep_size``. The range holds no memory afterwards (a hole)."""
        data = self.copy_up()
        with self.fs.lock:
            end = offset + length
            if not keep_size and end > len(data):
                data.truncate(end)
                self.meta.set_size(end)
            self.fs.charge(data.zero(offset, end))
            self.meta.st_blocks = _blocks(data.held)
            self.meta.touch()
            self.version += 1
        cache = MAPPED.get(id(self))
        if cache is not None:
            cache.zeroed(self, offset, length)

    def allocate(self, offset: int, end: int, keep_size: bool) -> None:
        """fallocate's allocation (mode 0, KEEP_SIZE): zeros held over
        [offset, end) and charged, as tmpfs allocates pages; the file grows
        to ``end`` unless ``keep_size`` (then nothing past its end is
        held). ENOSPC past the limits, the file unchanged."""
        self.fs.check_writable()
        data = self.copy_up()
        old = len(data)
        if keep_size and end > old:  # ENOSPC if it could not be held, as tmpfs (held: only up to the end)
            with self.fs.lock:
                beyond = end - max(offset, old)
                self.fs.charge(beyond)
                self.fs.charge(-beyond)
        if not keep_size and end > old:
            self.set_size(end)  # sparse: costs nothing yet
        try:
            with self.fs.lock:
                stop = min(end, len(data))
                self.fs.charge(data.cost(offset, stop))
                data.allocate(offset, stop)
                self.meta.st_blocks = _blocks(data.held)
        except SyscallError:
            if len(data) == end > old:
                self.set_size(old)
            raise


class OvRegularFile(SeekableFile):
    """An open overlay file. Reads come from the node's memory copy if it
    has one (even if copied up after this open), else from a host fd."""

    __slots__ = ("hostfd", "host_key")

    def __init__(self, node: OvFile, path: str, flags: int, hostfd: int | None):
        super().__init__(node, path, flags)
        self.hostfd = hostfd
        self.host_key = None
        if hostfd is not None:
            st = node.stat()  # the host's (cached) lstat: see OvNode.hstat
            self.host_key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def size(self) -> int:
        data = self.node.data
        return len(data) if data is not None else self.host_key[3]

    def direct_fd(self) -> int | None:
        return self.hostfd if self.node.data is None else None

    def pread(self, length: int, offset: int) -> bytes:
        data = self.node.data
        if data is not None:
            out = bytes(data[offset:offset + length])
        else:
            try:
                out = os.pread(self.hostfd, length, offset)
            except OSError as e:
                raise SyscallError(e.errno) from None
        return read_through(self.node, offset, out)

    def pwrite(self, data: bytes, offset: int) -> int:
        n = self.node.write_at(data, offset)
        cache = MAPPED.get(id(self.node))
        if cache is not None:  # mapped: the pages take the write too
            cache.written(self.node, offset, data)
        return n

    def truncate(self, size: int) -> None:
        self.node.set_size(size)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        base = mode & ~FALLOC_FL_KEEP_SIZE
        if base in (FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE):
            self.node.fs.check_writable()
            self.node.zero_range(offset, length, bool(mode & FALLOC_FL_KEEP_SIZE))
        elif base == 0:
            self.node.allocate(offset, offset + length, bool(mode & FALLOC_FL_KEEP_SIZE))
        else:
            super().fallocate(mode, offset, length)

    def mutable(self) -> bool:
        """Content in memory changes in place; a host (lower) file never."""
        return self.node.data is not None

    def mmap_identity(self):
        node = self.node
        if node.data is not None:
            return ("upper", id(node.fs), node.meta.st_ino, node.version)
        return self.host_key

    def __del__(self) -> None:
        # The host fd lives as long as this object, not as long as guest
        # descriptors: a file mapping (a VMA) keeps the object, and with it
        # the fd, after the guest closed its descriptor, as Linux does.
        if self.hostfd is not None:
            os.close(self.hostfd)
            HOST_FDS.release()


class OvDir(OvNode):
    """A directory: ``children`` (names looked up or created: cached lower
    entries and upper ones), ``whiteouts`` (lower names deleted). With
    ``lower`` None the directory has nothing below (upper-only, opaque)."""

    __slots__ = ("children", "whiteouts", "absent")
    kind = S.S_IFDIR

    def __init__(self, fs, lower, meta):
        super().__init__(fs, lower, meta)
        self.children: dict[bytes, Node] = {}
        self.whiteouts: set[bytes] = set()
        # Names known missing below (bounded; cleared when full).
        self.absent: set[bytes] = set()

    def open(self, path, flags, ctx):
        if flags & O_ACCMODE != O_RDONLY:
            raise err(errno.EISDIR)
        return DirFile(self, path, flags)

    # --- reading ----------------------------------------------------------
    def lookup(self, name: bytes, ctx) -> Node:
        c = self.children.get(name)
        if c is not None:
            return c
        if self.lower is None or name in self.whiteouts or name in self.absent:
            raise err(errno.ENOENT)
        rel = self.lower + b"/" + name if self.lower else name
        try:
            st = self.fs.host.lstat(rel)
        except SyscallError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
            if len(self.absent) >= _ABSENT_MAX:
                self.absent.clear()
            self.absent.add(name)
            raise err(errno.ENOENT) from None
        node = self.fs.lower_node(rel, st)
        if node.kind == S.S_IFDIR:
            node.parent, node.name = self, name
        with self.fs.lock:
            if name in self.whiteouts:  # deleted meanwhile
                raise err(errno.ENOENT)
            return self.children.setdefault(name, node)

    def _has(self, name: bytes) -> bool:
        try:
            self.lookup(name, None)
            return True
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                return False
            raise

    def readdir(self, ctx) -> list[tuple[bytes, int, int]]:
        out: list[tuple[bytes, int, int]] = []
        children = dict(self.children)
        if self.lower is not None:
            whiteouts = self.whiteouts
            for name, ino, fmt in self.fs.host.scandir(self.lower):
                if name in whiteouts:
                    continue
                c = children.pop(name, None)
                if c is not None and (not isinstance(c, OvNode) or c.meta is not None or c.lower is None):
                    st = c.stat()
                    out.append((name, st.st_ino, dtype_of(st.st_mode)))
                    continue
                if fmt is None:
                    fmt = S.S_IFMT(self.fs.host.lstat((self.lower + b"/" if self.lower else b"") + name).st_mode)
                out.append((name, ino, dtype_of(fmt)))
        for name, c in children.items():
            st = c.stat()
            out.append((name, st.st_ino, dtype_of(st.st_mode)))
        return out

    def is_empty(self) -> bool:
        return not self.readdir(None)

    # --- changing ---------------------------------------------------------
    def _add(self, name: bytes, node: Node) -> None:
        """Caller holds fs.lock and checked the name is free."""
        if len(name) > NAME_MAX:
            raise err(errno.ENAMETOOLONG)
        self.children[name] = node
        self.whiteouts.discard(name)
        self.absent.discard(name)
        m = self.own_meta()
        if node.kind == S.S_IFDIR:
            node.parent, node.name = self, name
            DirMoves.count += 1
            m.st_nlink += 1
        m.touch()

    def _remove(self, name: bytes, node: Node) -> None:
        """Caller holds fs.lock."""
        self.children.pop(name, None)
        if self.lower is not None:
            self.whiteouts.add(name)
        m = self.own_meta()
        if node.kind == S.S_IFDIR:
            DirMoves.count += 1
            m.st_nlink -= 1
        m.touch()

    def _new(self, name: bytes, node: OvNode) -> OvNode:
        fs = self.fs
        fs.check_writable()
        with fs.lock:
            if self._has(name):
                raise err(errno.EEXIST)
            self._add(name, node)
        return node

    def create(self, name, mode, creds):
        st = Stat(S.S_IFREG | (mode & 0o7777), *_owner(creds), dev=self.fs.dev)
        return self._new(name, OvFile(self.fs, None, st, bytearray()))

    def tmpfile(self, mode: int, creds, linkable: bool) -> OvFile:
        """An unnamed regular file on this file system (O_TMPFILE)."""
        self.fs.check_writable()
        st = Stat(S.S_IFREG | (mode & 0o7777), *_owner(creds), dev=self.fs.dev, nlink=0)
        node = OvFile(self.fs, None, st, bytearray())
        node.linkable = linkable
        return node

    def mkdir(self, name, mode, creds):
        st = Stat(S.S_IFDIR | (mode & 0o7777), *_owner(creds), dev=self.fs.dev, nlink=2, size=BLKSIZE)
        if self.fs.host is None:
            st.st_blocks = 0  # as tmpfs shows
        return self._new(name, OvDir(self.fs, None, st))

    def mknod(self, name, mode, creds):
        fmt = S.S_IFMT(mode)
        st = Stat(fmt | (mode & 0o7777), *_owner(creds), dev=self.fs.dev)
        if fmt == S.S_IFREG:
            return self._new(name, OvFile(self.fs, None, st, bytearray()))
        if fmt == S.S_IFIFO:
            return self._new(name, OvFifo(self.fs, None, st))
        if fmt == S.S_IFSOCK:
            return self._new(name, OvSocket(self.fs, None, st))
        raise err(errno.EPERM)  # no device nodes

    def symlink(self, name, target, creds):
        st = Stat(S.S_IFLNK | 0o777, *_owner(creds), dev=self.fs.dev, size=len(target))
        st.st_blocks = 0  # a short target lives in the inode
        return self._new(name, OvSymlink(self.fs, None, st, target))

    def add_node(self, name: bytes, node: Node) -> Node:
        """Insert a node made elsewhere (a device, a bound Unix socket's
        name) into this directory. EROFS, EEXIST, ENAMETOOLONG."""
        return self._new(name, node)

    def link(self, name, node):
        if node.kind == S.S_IFDIR:
            raise err(errno.EPERM)
        if node.fs is not self.fs:
            raise err(errno.EXDEV)
        self.fs.check_writable()
        with self.fs.lock:
            if self._has(name):
                raise err(errno.EEXIST)
            self._add(name, node)
            node.change_nlink(+1)

    def unlink(self, name):
        self.fs.check_writable()
        with self.fs.lock:
            node = self.lookup(name, None)
            if node.kind == S.S_IFDIR:
                raise err(errno.EISDIR)
            if self.mounts and name in self.mounts:
                raise err(errno.EBUSY)
            self._remove(name, node)
            node.change_nlink(-1)

    def rmdir(self, name):
        self.fs.check_writable()
        with self.fs.lock:
            node = self.lookup(name, None)
            if node.kind != S.S_IFDIR:
                raise err(errno.ENOTDIR)
            if (self.mounts and name in self.mounts) or node.mounts:
                raise err(errno.EBUSY)
            if not node.is_empty():
                raise err(errno.ENOTEMPTY)
            self._remove(name, node)
            node.own_meta().st_nlink = 0

    def rename(self, old, newdir, new, flags):
        check_rename(self, newdir, flags)
        with self.fs.lock:
            src = self.lookup(old, None)
            try:
                dst = newdir.lookup(new, None)
            except SyscallError as e:
                if e.errno != errno.ENOENT:
                    raise
                dst = None
            if (self.mounts and old in self.mounts) or (newdir.mounts and new in newdir.mounts):
                raise err(errno.EBUSY)
            if flags & RENAME_EXCHANGE:
                if dst is None:
                    raise err(errno.ENOENT)
                for moved, target in ((src, newdir), (dst, self)):
                    if moved.kind == S.S_IFDIR:
                        _check_not_ancestor(moved, target)
                self._remove(old, src)
                newdir._remove(new, dst)
                newdir._add(new, src)
                self._add(old, dst)
                return
            if dst is not None and flags & RENAME_NOREPLACE:
                raise err(errno.EEXIST)
            if src is dst:
                return
            if src.kind == S.S_IFDIR:
                _check_not_ancestor(src, newdir)
                if dst is not None:
                    if dst.kind != S.S_IFDIR:
                        raise err(errno.ENOTDIR)
                    if dst.mounts or not dst.is_empty():
                        raise err(errno.ENOTEMPTY)
            elif dst is not None and dst.kind == S.S_IFDIR:
                raise err(errno.EISDIR)
            if dst is not None:
                newdir._remove(new, dst)
                if dst.kind == S.S_IFDIR:
                    dst.own_meta().st_nlink = 0
                else:
                    dst.change_nlink(-1)
            self._remove(old, src)
            newdir._add(new, src)
            if isinstance(src, OvNode):
                src.own_meta().touch(mtime=False)


def _owner(creds) -> tuple[int, int]:
    """(uid, gid) for a new file; no creds: the Sentry itself (root)."""
    return (creds.euid, creds.egid) if creds is not None else (0, 0)


def _check_not_ancestor(d: Node, target: Node) -> None:
    """EINVAL if ``target`` is ``d`` or inside it (a directory cannot be
    moved into itself)."""
    n: Node | None = target
    while n is not None:
        if n is d:
            raise err(errno.EINVAL)
        n = n.parent


# --- file content in memory ---------------------------------------------------
CHUNK = 64 << 10  # FileData's unit of allocation
MAX_OFFSET = (1 << 63) - 1  # MAX_LFS_FILESIZE: no byte at or past it


class FileData:
    """A regular file's content in memory, sparse as tmpfs keeps it: the
    ``size`` (``len``) and the CHUNK-aligned pieces written so far, each a
    bytearray from its chunk's start up to the last byte written in it.
    Holes read as zeros and hold nothing, so a truncate up (or a write far
    past the end) costs only what is written. ``held``: bytes held, what
    the file system charges (OverlayFS.charge). Slicing (``data[a:b]``)
    reads, as a bytearray's would; ``bytes(data)`` is the whole content.
    Not thread-safe: the caller holds the file system's lock to change it.

    >>> d = FileData(b"abc")
    >>> d.truncate(1 << 40), len(d), d.held
    (0, 1099511627776, 3)
    >>> d.write(1 << 30, b"z"), d[0:4], d[(1 << 30) - 1:(1 << 30) + 2], d.held
    (1, b'abc\\x00', b'\\x00z\\x00', 4)
    """

    __slots__ = ("size", "chunks", "held")

    def __init__(self, content: bytes | bytearray = b""):
        self.size = len(content)
        self.chunks: dict[int, bytearray] = {}
        view = memoryview(content)
        for start in range(0, len(content), CHUNK):
            self.chunks[start // CHUNK] = bytearray(view[start:start + CHUNK])
        self.held = len(content)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.read(0, self.size)

    def __getitem__(self, s: slice) -> bytes:
        start, stop, step = s.indices(self.size)
        assert step == 1, "FileData: slices read a range"
        return self.read(start, stop - start)

    def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end)."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        first, last = offset // CHUNK, (end - 1) // CHUNK
        if first == last:  # the common case: one chunk
            c = self.chunks.get(first, b"")
            lo, hi = offset - first * CHUNK, end - first * CHUNK
            out = bytes(c[lo:hi])
            return out if len(out) == hi - lo else out + bytes(hi - lo - len(out))
        parts = []
        for i in range(first, last + 1):
            cs = i * CHUNK
            lo, hi = max(offset, cs) - cs, min(end, cs + CHUNK) - cs
            c = self.chunks.get(i)
            piece = c[lo:hi] if c is not None else b""
            parts.append(piece)
            if len(piece) < hi - lo:
                parts.append(bytes(hi - lo - len(piece)))
        return b"".join(parts)

    def _grow(self, offset: int, end: int, held_only: bool = False) -> list[tuple[int, int, int]]:
        """(chunk index, offset in it, end in it) of [offset, end), in
        order; ``held_only``: only chunks holding data (a range of a huge
        sparse file has more indices than the file has chunks)."""
        first, last, chunks = offset // CHUNK, (end - 1) // CHUNK, self.chunks
        indices: range | list[int] = range(first, last + 1)
        if held_only:
            indices = sorted(i for i in chunks if first <= i <= last) if last - first >= len(chunks) else \
                [i for i in indices if i in chunks]
        out = []
        for i in indices:
            cs = i * CHUNK
            out.append((i, max(offset, cs) - cs, min(end, cs + CHUNK) - cs))
        return out

    def cost(self, offset: int, end: int) -> int:
        """Bytes more ``held`` once [offset, end) holds data."""
        if end <= offset:
            return 0
        chunks, i = self.chunks, offset // CHUNK
        if end <= (i + 1) * CHUNK:  # the common case: one chunk
            return max(0, end - i * CHUNK - len(chunks.get(i, b"")))
        # Every chunk of the range from its start to the range's end in it
        # (the last one partly), less what the chunks there hold already.
        last = (end - 1) // CHUNK
        total = (last - i) * CHUNK + end - last * CHUNK
        return total - sum(min(len(chunks[j]), hi) for j, _lo, hi in self._grow(offset, end, held_only=True))

    def write(self, offset: int, buf: bytes | bytearray | memoryview) -> int:
        """Store ``buf`` at ``offset``, the file growing to its end if
        needed; returns how many bytes (all). Charge ``cost`` first."""
        n = len(buf)
        end, grown, chunks = offset + n, 0, self.chunks
        i = offset // CHUNK
        if n and end <= (i + 1) * CHUNK:  # the common case: one chunk
            c = chunks.get(i)
            if c is None:
                c = chunks[i] = bytearray()
            before, lo = len(c), offset - i * CHUNK
            if before < lo:
                c.extend(bytes(lo - before))
            c[lo:lo + n] = buf
            grown = len(c) - before
        elif n:
            view = memoryview(buf)
            for i in range(offset // CHUNK, (end - 1) // CHUNK + 1):
                cs = i * CHUNK
                lo, hi = max(offset, cs) - cs, min(end, cs + CHUNK) - cs
                src = cs + lo - offset
                c = chunks.get(i)
                if c is None:
                    if lo == 0:  # a new chunk from its start: one copy
                        chunks[i] = bytearray(view[src:src + hi])
                        grown += hi
                        continue
                    c = chunks[i] = bytearray()
                before = len(c)
                if before < lo:
                    c.extend(bytes(lo - before))
                c[lo:hi] = view[src:src + hi - lo]
                grown += len(c) - before
        self.held += grown
        if end > self.size:
            self.size = end
        return n

    def allocate(self, offset: int, end: int) -> int:
        """Hold zeros wherever [offset, end) (within the size) holds
        nothing yet, as fallocate reserves pages; returns the growth of
        ``held``."""
        end, grown = min(end, self.size), 0
        for i, _lo, hi in self._grow(offset, end) if end > offset else ():
            c = self.chunks.setdefault(i, bytearray())
            if len(c) < hi:
                grown += hi - len(c)
                c.extend(bytes(hi - len(c)))
        self.held += grown
        return grown

    def truncate(self, size: int) -> int:
        """Make the file ``size`` bytes: past the end goes, holes appear
        (nothing is allocated); returns the change of ``held`` (<= 0)."""
        freed = 0
        if size < self.size:
            for i in [i for i in self.chunks if (i + 1) * CHUNK > size]:
                c, keep = self.chunks[i], max(0, size - i * CHUNK)
                if keep == 0:
                    freed += len(self.chunks.pop(i))
                elif len(c) > keep:
                    freed += len(c) - keep
                    del c[keep:]
        self.size = size
        self.held -= freed
        return -freed

    def zero(self, offset: int, end: int) -> int:
        """Zeros over [offset, end) (within the size): whole chunks are
        dropped, and a chunk's tail; returns the change of ``held`` (<= 0)."""
        end, freed = min(end, self.size), 0
        for i, lo, hi in self._grow(offset, end, held_only=True) if end > offset else ():
            c = self.chunks[i]
            if lo >= len(c):
                continue
            if hi >= len(c):  # the rest of what the chunk holds
                freed += len(c) - lo
                del c[lo:]
                if not c:
                    del self.chunks[i]
            else:
                c[lo:hi] = bytes(hi - lo)
        self.held -= freed
        return -freed


def _blocks(held: int) -> int:
    """st_blocks of a file in memory holding ``held`` bytes (whole pages,
    as tmpfs counts them)."""
    return (held + 4095) // 4096 * 8


class HostFds:
    """The host fds the Sentry holds open for guests (files of the rootfs a
    guest opened or mapped): at most ``cap``, well under the Sentry's own
    RLIMIT_NOFILE, so that what is left stays for the Sentry and its
    platforms (stub processes, vCPUs, the rootfs walk). Past it a guest
    open fails with ENFILE (the file table is full), as Linux past
    fs.file-max; never with a Sentry error. One count per Sentry process:
    all of its sandboxes share the host's fd table. ``cap`` is three
    quarters of RLIMIT_NOFILE's soft limit when first needed (``sentry run``
    raised it to the hard limit at start)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = 0  # guarded by _lock
        self.cap: int | None = None  # set on first use

    def acquire(self) -> None:
        """Count one more host fd held for a guest; ENFILE past the cap."""
        with self._lock:
            if self.cap is None:
                import resource

                self.cap = resource.getrlimit(resource.RLIMIT_NOFILE)[0] * 3 // 4
            if self.held >= self.cap:
                raise err(errno.ENFILE)
            self.held += 1

    def release(self) -> None:
        with self._lock:
            self.held -= 1


HOST_FDS = HostFds()
