"""Ready policies to compose: ``read_only() + no_network() + exec_allowlist([...])``.

- ``read_only(allow=("/dev/",))``: nothing in the file system can be
  changed: opens for writing (write access, O_CREAT, O_TRUNC) and every
  call that creates, removes, renames or changes the attributes of a file
  fail with EROFS, except under the ``allow`` path prefixes. Writes to
  descriptors the program already holds (stdio, pipes) still work.
- ``no_network()``: socket(2) of any family but AF_UNIX fails with EACCES.
- ``exec_allowlist(paths)``: execve of a program not in ``paths`` fails
  with EACCES (the initial program too: the run cannot start). Programs
  are compared as files: both sides resolved inside the sandbox through
  symlinks, so /bin/sh and /usr/bin/dash are one program when /bin/sh
  links to it, and a multi-call binary (busybox) allows all of its names.
  For a #! script the interpreter is what must be allowed.
- ``WriteLog()``: records (pid, operation, path) of every successful call
  that writes a file or changes the tree: ``log.records`` (and, given a
  ``file``, one tab-separated line each).
"""
from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from typing import IO, Iterable

from sentry.policy.core import Deny, Policy
from sentry.policy.view import Call, FileOpen, ProcessEvent

AF_UNIX = 1

# Calls that change the tree or a file's attributes by path (or by fd).
_CHANGING = ("mkdir", "mkdirat", "mknod", "mknodat", "unlink", "unlinkat", "rmdir", "rename", "renameat",
             "renameat2", "link", "linkat", "symlink", "symlinkat", "truncate", "chmod", "fchmodat", "chown",
             "lchown", "fchownat", "utimensat", "utimes", "utime", "futimesat", "setxattr", "lsetxattr",
             "removexattr", "lremovexattr")
_CHANGING_FD = ("fchmod", "fchown", "fsetxattr", "fremovexattr")


def _allowed(path: str | None, prefixes: tuple[str, ...]) -> bool:
    return path is not None and any(path == p.rstrip("/") or path.startswith(p) for p in prefixes)


def read_only(allow: Iterable[str] = ("/dev/",)) -> Policy:
    """See the module doc."""
    prefixes = tuple(allow)
    policy = Policy("read_only")

    @policy.file_open
    def no_write_open(op: FileOpen):
        if op.writing and not _allowed(op.path, prefixes):
            return Deny(errno.EROFS)
        return None

    @policy.syscall(*_CHANGING)
    def no_change(call: Call):
        paths = [p for p in call.paths]
        if not paths:  # utimensat(fd, NULL, ...): the fd's file
            return Deny(errno.EROFS)
        if all(_allowed(p, prefixes) for p in paths):
            return None
        return Deny(errno.EROFS)

    @policy.syscall(*_CHANGING_FD)
    def no_fd_change(call: Call):
        return Deny(errno.EROFS)

    return policy


def no_network() -> Policy:
    """See the module doc."""
    policy = Policy("no_network")

    @policy.syscall("socket")
    def unix_only(call: Call):
        return None if call.args[0] & 0xFFFF == AF_UNIX else Deny(errno.EACCES)

    return policy


def exec_allowlist(paths: Iterable[str]) -> Policy:
    """See the module doc."""
    allowed = tuple(paths)
    policy = Policy("exec_allowlist")

    @policy.event("exec")
    def only_listed(event: ProcessEvent):
        if event.path in {event.resolve(p) for p in allowed}:
            return None
        return Deny(errno.EACCES)

    return policy


@dataclass(frozen=True)
class WriteRecord:
    pid: int
    op: str  # open, creat, truncate, mkdir, mknod, unlink, rmdir, rename, link, symlink
    path: str


class WriteLog(Policy):
    """See the module doc. Thread-safe; ``records`` grows as the guest runs."""

    # call name -> (operation, index in call.paths of the path written)
    _CALLS = {"creat": ("creat", 0), "truncate": ("truncate", 0), "mkdir": ("mkdir", 0), "mkdirat": ("mkdir", 0),
              "mknod": ("mknod", 0), "mknodat": ("mknod", 0), "unlink": ("unlink", 0), "unlinkat": ("unlink", 0),
              "rmdir": ("rmdir", 0), "rename": ("rename", 1), "renameat": ("rename", 1),
              "renameat2": ("rename", 1), "link": ("link", 1), "linkat": ("link", 1), "symlink": ("symlink", 0),
              "symlinkat": ("symlink", 0)}

    def __init__(self, file: IO[str] | None = None):
        super().__init__("write_log")
        self.records: list[WriteRecord] = []
        self.file = file
        self._log_lock = threading.Lock()
        self.on_syscall(self._opened, "open", "openat", after=True)
        self.on_syscall(self._changed, *self._CALLS, after=True)

    def _add(self, pid: int, op: str, path: str | None) -> None:
        if path is None:
            return
        rec = WriteRecord(pid, op, path)
        with self._log_lock:
            self.records.append(rec)
            if self.file is not None:
                self.file.write(f"{pid}\t{op}\t{path}\n")
                self.file.flush()

    def _opened(self, call: Call):
        if call.result is not None and call.result >= 0 and FileOpen(call).writing:
            self._add(call.pid, "open", call.path)

    def _changed(self, call: Call):
        if call.result == 0 or (call.name == "creat" and call.result is not None and call.result >= 0):
            op, i = self._CALLS[call.name]
            paths = call.paths
            self._add(call.pid, op, paths[i] if i < len(paths) else None)
