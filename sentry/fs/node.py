"""Nodes: the inodes of the Sentry's VFS, and the interface every file
system implements (overlay over the host rootfs, tmpfs, /proc, /dev).

In a nutshell: a ``Node`` is one file, directory, symlink or device. The
VFS (vfs.py) walks paths through ``Dir.lookup`` one component at a time,
follows symlinks through ``readlink`` (or ``jump`` for /proc's magic
links), and opens files through ``open``. Mutations are methods of the
directory that holds the name. A file system that does not support one
raises ``SyscallError`` (EROFS, EPERM, EACCES) from the default here.

Metadata is a ``Stat``: the attribute names of ``os.stat_result``, so a
host stat result and a Sentry-owned one are used interchangeably
(abi.fs_structs.pack_stat takes either).

``ctx`` arguments are the calling Task (or None when there is none, e.g.
in unit tests and at exec); only /proc and /dev look at it.
"""
from __future__ import annotations

import errno
import itertools
import stat as S
import time
from typing import TYPE_CHECKING, Iterable

from abi.fs_structs import DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, DT_UNKNOWN
from sentry.errors import SyscallError

if TYPE_CHECKING:
    from sentry.fs.file import OpenFile

BLKSIZE = 4096
# Device numbers of the Sentry's own file systems (anonymous devices, as
# Linux gives tmpfs/proc: major 0).
_next_minor = itertools.count(0x40)
_next_ino = itertools.count(2)


def new_dev() -> int:
    """A fresh anonymous device number (major 0)."""
    m = next(_next_minor)
    return ((m & ~0xFF) << 12) | (m & 0xFF)


def new_ino() -> int:
    return next(_next_ino)


def now_ns() -> int:
    return time.time_ns()


class Stat:
    """Mutable metadata with the attribute names of ``os.stat_result``."""

    __slots__ = ("st_dev", "st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev",
                 "st_size", "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")

    def __init__(self, mode: int, uid: int = 0, gid: int = 0, *, dev: int = 0, ino: int = 0,
                 nlink: int = 1, rdev: int = 0, size: int = 0):
        t = now_ns()
        self.st_dev, self.st_ino, self.st_mode, self.st_nlink = dev, ino or new_ino(), mode, nlink
        self.st_uid, self.st_gid, self.st_rdev, self.st_size = uid, gid, rdev, size
        self.st_blksize, self.st_blocks = BLKSIZE, (size + 511) // 512
        self.st_atime_ns = self.st_mtime_ns = self.st_ctime_ns = t

    @classmethod
    def copy_of(cls, st) -> "Stat":
        """A Sentry-owned copy of any stat-like object (e.g. a host lstat)."""
        new = cls.__new__(cls)
        for name in cls.__slots__:
            setattr(new, name, getattr(st, name))
        return new

    def set_size(self, size: int) -> None:
        self.st_size = size
        self.st_blocks = (size + 511) // 512

    def touch(self, mtime: bool = True) -> None:
        t = now_ns()
        self.st_ctime_ns = t
        if mtime:
            self.st_mtime_ns = t


_DTYPE = {S.S_IFREG: DT_REG, S.S_IFDIR: DT_DIR, S.S_IFLNK: DT_LNK, S.S_IFCHR: DT_CHR,
          S.S_IFBLK: DT_BLK, S.S_IFIFO: DT_FIFO, S.S_IFSOCK: DT_SOCK}


def dtype_of(mode: int) -> int:
    return _DTYPE.get(S.S_IFMT(mode), DT_UNKNOWN)


# Access masks, as in access(2).
R_OK, W_OK, X_OK = 4, 2, 1


def may_access(st, creds, mask: int) -> bool:
    """Whether ``creds`` (uid/gid/groups, effective ids used) may access a
    file with metadata ``st`` for ``mask`` (R_OK|W_OK|X_OK). Root may do
    anything but execute a file without any exec bit."""
    mode = st.st_mode
    uid = creds.euid if creds is not None else 0
    if uid == 0:
        return not (mask & X_OK) or S.S_ISDIR(mode) or bool(mode & 0o111)
    if uid == st.st_uid:
        bits = mode >> 6
    elif st.st_gid == creds.egid or st.st_gid in creds.groups:
        bits = mode >> 3
    else:
        bits = mode
    return (bits & mask & 7) == mask


class DirMoves:
    """Counts directories put in or taken out of the tree (mkdir, rmdir,
    rename, mount): a cached directory path older than ``count`` is stale.
    Bump with ``DirMoves.count += 1`` whenever a directory's parent or name
    changes."""

    count = 0


def err(code: int) -> SyscallError:
    return SyscallError(code)


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def check_rename(olddir: Node, newdir: Node, flags: int) -> None:
    """The checks every file system's rename makes before it looks at names:
    both directories on one file system (else EXDEV), flags known and not
    contradictory (else EINVAL), the file system writable (else EROFS)."""
    if newdir.fs is not olddir.fs:
        raise err(errno.EXDEV)
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
        raise err(errno.EINVAL)
    olddir.fs.check_writable()


class Node:
    """Base of every inode. Subclasses override what they support.

    ``parent``/``name``: for directories only, the directory holding this one
    and its name there (None for a file system's root until mounted); the
    VFS uses them for ``..`` and to build paths (getcwd, /proc/self/cwd).
    ``mounts``: names mounted over entries of this directory (or None).
    ``fs``: the owning file system (for EXDEV checks and statfs).
    """

    __slots__ = ("parent", "name", "mounts", "fs", "path_cache", "__weakref__")
    kind = 0  # S_IFMT bits of this node's type

    def __init__(self, fs: "FileSystem"):
        self.parent: Node | None = None
        self.name = b""
        self.mounts: dict[bytes, Node] | None = None
        self.fs = fs
        # (DirMoves.count, root, path) of the last vfs.path_of, for dirs
        self.path_cache: tuple[int, Node, str] | None = None

    # --- any node -----------------------------------------------------
    def stat(self):
        raise NotImplementedError

    def open(self, path: str, flags: int, ctx) -> "OpenFile":
        """An open file of this node, reached by sandbox ``path``. The VFS
        has checked permissions, O_DIRECTORY and O_CREAT/O_EXCL already."""
        raise err(errno.ENXIO)

    def setattr(self, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None) -> None:
        raise err(self.fs.readonly_errno)

    # --- symlinks -----------------------------------------------------
    def readlink(self, ctx) -> bytes:
        raise err(errno.EINVAL)

    def jump(self, ctx) -> "Node | None":
        """For magic links (/proc/self/fd/N, cwd, exe): the node the link
        stands for, or None for an ordinary symlink (follow readlink)."""
        return None

    # --- directories --------------------------------------------------
    def lookup(self, name: bytes, ctx) -> "Node":
        """The child named ``name`` (never '.' or '..'); ENOENT if none.
        Precondition: self is a directory."""
        raise err(errno.ENOTDIR)

    def readdir(self, ctx) -> Iterable[tuple[bytes, int, int]]:
        """(name, ino, d_type) of every entry but '.' and '..'."""
        raise err(errno.ENOTDIR)

    def create(self, name: bytes, mode: int, creds) -> "Node":
        """A new empty regular file; EEXIST if the name is taken."""
        raise err(self.fs.readonly_errno)

    def tmpfile(self, mode: int, creds, linkable: bool) -> "Node":
        """An unnamed regular file (O_TMPFILE); ``linkable``: linkat may
        give it a name later."""
        raise err(errno.EOPNOTSUPP)

    def mkdir(self, name: bytes, mode: int, creds) -> "Node":
        raise err(self.fs.readonly_errno)

    def mknod(self, name: bytes, mode: int, creds) -> "Node":
        """A regular file, FIFO or socket name (by the S_IFMT bits of
        mode); EPERM for devices."""
        raise err(self.fs.readonly_errno)

    def symlink(self, name: bytes, target: bytes, creds) -> "Node":
        raise err(self.fs.readonly_errno)

    def link(self, name: bytes, node: "Node") -> None:
        raise err(self.fs.readonly_errno)

    def unlink(self, name: bytes) -> None:
        raise err(self.fs.readonly_errno)

    def rmdir(self, name: bytes) -> None:
        raise err(self.fs.readonly_errno)

    def rename(self, old: bytes, newdir: "Node", new: bytes, flags: int) -> None:
        raise err(self.fs.readonly_errno)


class FileSystem:
    """What a file system tells the VFS about itself (statfs, mounts)."""

    readonly_errno = errno.EROFS
    magic = 0x01021994  # TMPFS_MAGIC
    fs_type = "tmpfs"

    def __init__(self):
        self.dev = new_dev()
        self.root: Node | None = None

    def statfs(self) -> tuple[int, int, int, int, int, int]:
        """(bsize, blocks, bfree, bavail, files, ffree)."""
        return (BLKSIZE, 0, 0, 0, 0, 0)

