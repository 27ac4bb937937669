"""FDTable: a process's file descriptors (Linux's ``files_struct``).

In a nutshell: a dict fd -> OpenFile plus the set of close-on-exec fds.
``get`` is the hot path: one dict lookup, no lock (a dict read is atomic
under the GIL). Changes take ``lock``; files are released (decref) after
it is dropped, since a release may wake pipe peers.

Closing a descriptor also drops the POSIX locks this table (the process)
holds on the file (locks.py).

Lock order: FDTable.lock is a leaf: nothing else is taken under it.
"""
from __future__ import annotations

import errno
import threading

from sentry.errors import SyscallError
from sentry.fs import locks
from sentry.fs.file import OpenFile

DEFAULT_LIMIT = 1024  # RLIMIT_NOFILE soft limit


class FDTable:
    def __init__(self, limit: int = DEFAULT_LIMIT):
        self._files: dict[int, OpenFile] = {}
        self._cloexec: set[int] = set()
        self.limit = limit
        self.lock = threading.Lock()

    @classmethod
    def stdio(cls, host_fds: tuple[int, int, int] = (0, 1, 2)) -> "FDTable":
        """A table whose 0, 1, 2 pass through to the host's stdio (or to
        the borrowed host fds ``host_fds``; -1: that fd starts closed)."""
        from sentry.fs.stdio import stdio_files

        table = cls()
        for fd, f in enumerate(stdio_files(host_fds)):
            if f is not None:
                table._files[fd] = f
        return table

    def get(self, fd: int) -> OpenFile:
        """The file at ``fd``; EBADF if none."""
        try:
            return self._files[fd]
        except KeyError:
            raise SyscallError(errno.EBADF) from None

    def fds(self) -> list[int]:
        return sorted(self._files)

    def get_cloexec(self, fd: int) -> bool:
        self.get(fd)
        return fd in self._cloexec

    def set_cloexec(self, fd: int, on: bool) -> None:
        with self.lock:
            if fd not in self._files:
                raise SyscallError(errno.EBADF)
            (self._cloexec.add if on else self._cloexec.discard)(fd)

    def install(self, file: OpenFile, cloexec: bool = False, lowest: int = 0) -> int:
        """Put ``file`` (taking over the caller's reference) at the lowest
        free fd >= ``lowest``. EMFILE if none below the limit (the caller's
        reference is then dropped). EINVAL if lowest is out of range."""
        if lowest < 0 or lowest >= self.limit:
            file.decref()
            raise SyscallError(errno.EINVAL if lowest < 0 else errno.EMFILE)
        with self.lock:
            fd = lowest
            files = self._files
            while fd in files:
                fd += 1
            if fd < self.limit:
                files[fd] = file
                if cloexec:
                    self._cloexec.add(fd)
                else:
                    self._cloexec.discard(fd)
                return fd
        file.decref()
        raise SyscallError(errno.EMFILE)

    def install_at(self, fd: int, file: OpenFile, cloexec: bool = False) -> None:
        """dup2 semantics: put ``file`` (taking over the caller's
        reference) at ``fd``, closing what was there. EBADF if fd is out of
        range."""
        if fd < 0 or fd >= self.limit:
            file.decref()
            raise SyscallError(errno.EBADF)
        with self.lock:
            old = self._files.get(fd)
            self._files[fd] = file
            (self._cloexec.add if cloexec else self._cloexec.discard)(fd)
        if old is not None:
            self._drop(old)

    def close(self, fd: int) -> None:
        """EBADF if fd is not open."""
        with self.lock:
            f = self._files.pop(fd, None)
            self._cloexec.discard(fd)
        if f is None:
            raise SyscallError(errno.EBADF)
        self._drop(f)

    def close_range(self, first: int, last: int, cloexec_only: bool = False) -> None:
        with self.lock:
            fds = [fd for fd in self._files if first <= fd <= last]
            if cloexec_only:
                self._cloexec.update(fds)
                return
            closed = [self._files.pop(fd) for fd in fds]
            self._cloexec.difference_update(fds)
        for f in closed:
            self._drop(f)

    def _drop(self, f: OpenFile) -> None:
        """A descriptor of ``f`` is gone: this table's (the process's)
        POSIX locks on the file go with it, as on Linux."""
        locks.forget(f.node, self)
        f.decref()

    def fork(self) -> "FDTable":
        """A copy sharing every open file (each gains a reference)."""
        new = FDTable(self.limit)
        with self.lock:
            new._files = dict(self._files)
            new._cloexec = set(self._cloexec)
        for f in new._files.values():
            f.incref()
        return new

    def close_on_exec(self) -> None:
        with self.lock:
            closed = [self._files.pop(fd) for fd in self._cloexec if fd in self._files]
            self._cloexec.clear()
        for f in closed:
            self._drop(f)

    def close_all(self) -> None:
        """Drop every descriptor (the process exits)."""
        with self.lock:
            closed = list(self._files.values())
            self._files.clear()
            self._cloexec.clear()
        for f in closed:
            self._drop(f)

    def __len__(self) -> int:
        return len(self._files)
