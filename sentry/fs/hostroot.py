"""HostRoot: the only door from the Sentry's VFS to the host file system.

In a nutshell: the rootfs directory is opened once (``O_PATH``); every host
access names a path *relative* to it, built by the overlay from components
it resolved and checked itself (no '.', '..', '/', NUL; every directory
component was lstat'ed as a real directory, never a symlink). As defence
in depth, files are opened with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` so even a host-side race
cannot make an open escape the rootfs or follow a link. Everything is read-only: nothing here can write to the host.
"""
from __future__ import annotations

import ctypes
import errno
import os

from sentry.errors import SyscallError

_SYS_openat2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _oserror(e: OSError) -> SyscallError:
    return SyscallError(e.errno or errno.EIO)


class HostRoot:
    """Read-only access to the host directory ``path`` (the rootfs).
    Paths passed in are relative (b"" is the root itself). Every method
    raises SyscallError with the host's errno."""

    def __init__(self, path: str):
        self.path = os.path.realpath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.dev, self.ino = st.st_dev, st.st_ino

    def close(self) -> None:
        """Close the directory fd. Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def lstat(self, rel: bytes) -> os.stat_result:
        try:
            return os.stat(rel or b".", dir_fd=self.fd, follow_symlinks=False)
        except OSError as e:
            raise _oserror(e) from None

    def readlink(self, rel: bytes) -> bytes:
        try:
            return os.readlink(rel, dir_fd=self.fd)
        except OSError as e:
            raise _oserror(e) from None

    def open(self, rel: bytes, directory: bool = False) -> int:
        """A new read-only host fd (O_CLOEXEC) of ``rel``; never follows a
        symlink and never leaves the root."""
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0)
        how = _OpenHow(flags, 0, _RESOLVE)
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
