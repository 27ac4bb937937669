"""FSContext: a task's root, working directory and umask (Linux's
``fs_struct``), shared by the threads of a process unless a clone says
otherwise (CLONE_FS)."""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from sentry.errors import ExecError, SyscallError
from sentry.fs.vfs import path_of

if TYPE_CHECKING:
    from sentry.fs.node import Node
    from sentry.fs.vfs import VFS


class FSContext:
    """``root``: the directory '/' resolves to; ``cwd``: where relative
    paths start; both are directory nodes of ``vfs``. Assignments to
    ``cwd``/``umask`` are atomic (single attribute stores)."""

    __slots__ = ("vfs", "root", "cwd", "umask")

    def __init__(self, vfs: "VFS", root: "Node", cwd: "Node", umask: int = 0o022):
        self.vfs = vfs
        self.root = root
        self.cwd = cwd
        self.umask = umask

    @classmethod
    def initial(cls, vfs: "VFS", cwd: str = "/") -> "FSContext":
        """The first process's context, in sandbox directory ``cwd``.
        Raises ExecError (the program cannot start: errno and a one-line
        message) if cwd cannot be entered."""
        ctx = cls(vfs, vfs.root, vfs.root)
        try:
            node = vfs.lookup(ctx, None, os.fsencode(cwd))
            if node.kind != 0o040000:
                raise SyscallError(errno.ENOTDIR)
        except SyscallError as e:
            raise ExecError(e.errno, f"cannot enter working directory {cwd}: {os.strerror(e.errno)}") from None
        ctx.cwd = node
        return ctx

    def fork(self) -> "FSContext":
        return FSContext(self.vfs, self.root, self.cwd, self.umask)

    def cwd_path(self) -> str:
        return path_of(self.cwd, self.root)
