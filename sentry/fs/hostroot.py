"""HostRoot: the only door from the Sentry's VFS to the host file system.

In a nutshell: the rootfs directory is opened once (``O_PATH``); every host
access names a path *relative* to it, built by the overlay from components
it resolved and checked itself (no '.', '..', '/', NUL; every directory
component was lstat'ed as a real directory, never a symlink). As defence
in depth, files are opened with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` so even a host-side race
cannot make an open escape the rootfs or follow a link.

A path with several components is never handed to a host call that
resolves it: its parent directory is opened first with openat2
(``RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS``), and the call acts on the last
component relative to that fd without following it (``*at`` with
``AT_SYMLINK_NOFOLLOW``, or an fd opened the same way). So no symlink in
the directory, planted by the guest or by anyone on the host, leads a call
outside it.

``writable=False`` (the rootfs, read-only volumes): every method that
would change the host raises EROFS. ``writable=True`` (a writable volume,
an ``--overlay DIR`` directory): the same calls change the host, confined
to the directory.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat as S
from typing import Iterator

from sentry.errors import SyscallError

_SYS_openat2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


_SYS_renameat2 = 316
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


class HostRoot:
    """Access to the host directory ``path``, confined to it. Paths passed
    in are relative (b"" is the root itself) with no '.', '..' or empty
    component. Every method raises SyscallError with the host's errno."""

    def __init__(self, path: str, writable: bool = False):
        self.writable = writable
        self.path = os.path.realpath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.dev, self.ino = st.st_dev, st.st_ino

    def close(self) -> None:
        """Close the directory fd. Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @contextlib.contextmanager
    def _at(self, rel: bytes) -> Iterator[tuple[int, bytes]]:
        """(directory fd, last component) of ``rel``: the parent opened
        confined, so the caller acts on one name that cannot lead out."""
        head, _, name = rel.rpartition(b"/")
        if not head:
            yield self.fd, name or b"."
            return
        fd = self.open(head, directory=True, flags=os.O_PATH)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def _check_writable(self) -> None:
        if not self.writable:
            raise SyscallError(errno.EROFS)

    def lstat(self, rel: bytes) -> os.stat_result:
        try:
            with self._at(rel) as (d, name):
                return os.stat(name, dir_fd=d, follow_symlinks=False)
        except OSError as e:
            raise _oserror(e) from None

    def readlink(self, rel: bytes) -> bytes:
        try:
            with self._at(rel) as (d, name):
                return os.readlink(name, dir_fd=d)
        except OSError as e:
            raise _oserror(e) from None

    def open(self, rel: bytes, directory: bool = False, flags: int = os.O_RDONLY, mode: int = 0) -> int:
        """A new host fd (O_CLOEXEC) of ``rel`` opened with ``flags``
        (access mode, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_PATH); never
        follows a symlink and never leaves the root. Flags that write need
        a writable root (else EROFS)."""
        if flags & _WRITE_FLAGS:
            self._check_writable()
        flags |= os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0)
        how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, _RESOLVE)
        fd = _syscall(_SYS_openat2, self.fd, rel or b".", ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            raise SyscallError(ctypes.get_errno())
        return fd

    def read_all(self, rel: bytes) -> bytearray:
        fd = self.open(rel)
        try:
            out = bytearray()
            while chunk := os.read(fd, 1 << 20):
                out += chunk
            return out
        except OSError as e:
            raise _oserror(e) from None
        finally:
            os.close(fd)

    def scandir(self, rel: bytes) -> list[tuple[bytes, int, int | None]]:
        """(name, ino, S_IFMT bits or None if unknown) of each entry."""
        fd = self.open(rel, directory=True)
        out = []
        try:
            with os.scandir(fd) as it:
                for e in it:
                    if e.is_symlink():
                        fmt = 0o120000
                    elif e.is_dir(follow_symlinks=False):
                        fmt = 0o040000
                    elif e.is_file(follow_symlinks=False):
                        fmt = 0o100000
                    else:
                        fmt = None
                    out.append((os.fsencode(e.name), e.inode(), fmt))
        except OSError as e:
            raise _oserror(e) from None
        finally:
            os.close(fd)
        return out

    def statvfs(self) -> os.statvfs_result:
        try:
            return os.statvfs(self.fd)
        except OSError as e:
            raise _oserror(e) from None

    # --- changes (writable roots only) ------------------------------------
    def _change(self, rel: bytes, fn) -> None:
        """Run ``fn(dirfd, name)`` on the confined parent of ``rel``."""
        self._check_writable()
        if not rel:
            raise SyscallError(errno.EBUSY)  # the root itself is never renamed or removed
        try:
            with self._at(rel) as (d, name):
                fn(d, name)
        except OSError as e:
            raise _oserror(e) from None
        except (OverflowError, ValueError):  # an id or time the host cannot take
            raise SyscallError(errno.EINVAL) from None

    def mkdir(self, rel: bytes, mode: int) -> None:
        self._change(rel, lambda d, n: os.mkdir(n, mode, dir_fd=d))

    def mkfifo(self, rel: bytes, mode: int) -> None:
        self._change(rel, lambda d, n: os.mkfifo(n, mode, dir_fd=d))

    def symlink(self, target: bytes, rel: bytes) -> None:
        self._change(rel, lambda d, n: os.symlink(target, n, dir_fd=d))

    def unlink(self, rel: bytes) -> None:
        self._change(rel, lambda d, n: os.unlink(n, dir_fd=d))

    def rmdir(self, rel: bytes) -> None:
        self._change(rel, lambda d, n: os.rmdir(n, dir_fd=d))

    def link(self, old: bytes, new: bytes) -> None:
        """A new name ``new`` for ``old`` (never following a link)."""
        with self._at(old) as (od, oname):
            self._change(new, lambda d, n: os.link(oname, n, src_dir_fd=od, dst_dir_fd=d, follow_symlinks=False))

    def rename(self, old: bytes, new: bytes, flags: int = 0) -> None:
        """renameat2(old, new, flags) (RENAME_NOREPLACE, RENAME_EXCHANGE)."""
        self._check_writable()
        with self._at(old) as (od, oname):
            def go(d: int, n: bytes) -> None:
                if _syscall(_SYS_renameat2, od, oname, d, n, flags) < 0:
                    raise SyscallError(ctypes.get_errno())
            self._change(new, go)

    def chown(self, rel: bytes, uid: int, gid: int) -> None:
        """lchown: a symlink itself, never its target."""
        self._change(rel, lambda d, n: os.chown(n, uid, gid, dir_fd=d, follow_symlinks=False))

    def utime(self, rel: bytes, atime_ns: int, mtime_ns: int) -> None:
        """utimensat without following a trailing symlink."""
        self._change(rel, lambda d, n: os.utime(n, ns=(atime_ns, mtime_ns), dir_fd=d, follow_symlinks=False))

    def chmod(self, rel: bytes, mode: int) -> None:
        """chmod of a file or directory (a symlink's mode never changes:
        EOPNOTSUPP). The inode is pinned with a confined O_PATH open and
        changed through its /proc/self/fd link, so nothing is followed."""
        self._check_writable()
        fd = self.open(rel, flags=os.O_PATH)
        try:
            if S.S_ISLNK(os.fstat(fd).st_mode):
                raise SyscallError(errno.EOPNOTSUPP)
            os.chmod(f"/proc/self/fd/{fd}", mode)
        except OSError as e:
            raise _oserror(e) from None
        finally:
            os.close(fd)

    def write_file(self, rel: bytes, data: bytes, mode: int) -> None:
        """Create ``rel`` (EEXIST if it exists) holding ``data``."""
        fd = self.open(rel, flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode=mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            raise _oserror(e) from None
        finally:
            os.close(fd)

    def remove_tree(self, rel: bytes) -> None:
        """Remove ``rel`` and everything below it (links are removed, never
        followed). A missing ``rel`` is not an error. Iterative: any depth."""
        stack = [(rel, False)]
        while stack:
            path, emptied = stack.pop()
            try:
                st = self.lstat(path)
            except SyscallError as e:
                if e.errno == errno.ENOENT:
                    continue
                raise
            if not S.S_ISDIR(st.st_mode):
                self.unlink(path)
            elif emptied:
                self.rmdir(path)
            else:
                stack.append((path, True))
                stack.extend((path + b"/" + name if path else name, False) for name, _i, _f in self.scandir(path))
