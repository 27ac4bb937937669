"""Kernel: the state one sandbox shares, and starting its first process.

Lock order: Kernel.lock > MemoryManager.lock > MemoryFile._lock.
"""
from __future__ import annotations

import random
import sys
import threading

from platforms.base import Platform
from sentry.config import Config
from sentry.errors import ExecError
from sentry.fs.context import FSContext
from sentry.fs.fdtable import FDTable
from sentry.fs.vfs import VFS
from sentry.kernel.task import Task, ThreadGroup
from sentry.mm.memfile import MemoryFile
from sentry.mm.mm import MemoryManager
from sentry.mm.pagecache import PageCache


class Kernel:
    def __init__(self, config: Config, platform_cls: type[Platform]):
        self.config = config
        self.memory = MemoryFile(limit=config.memory_limit)
        self.cache = PageCache(self.memory)
        self.platform = platform_cls(self.memory)
        self.vfs = VFS(rootfs=config.rootfs, overlay=config.overlay)
        self.rng = random.Random(config.seed)
        self.lock = threading.Lock()
        self._next_pid = 1
        self.tasks: dict[int, Task] = {}
        self.reported_enosys: set[int] = set()
        self.debug_out = sys.stderr
        self.boot_time_ns = 0

    def allocate_pid(self) -> int:
        with self.lock:
            pid = self._next_pid
            self._next_pid += 1
            return pid

    def new_mm(self) -> MemoryManager:
        p = self.platform
        return MemoryManager(self.memory, p.new_address_space(), self.cache, p.min_user_address, p.max_user_address)

    def debug(self, message: str) -> None:
        if self.config.debug:
            print(f"sentry: {message}", file=self.debug_out, flush=True)

    def exec_into(self, task: Task, path: bytes, argv: list[bytes], envp: list[bytes]) -> None:
        """Replace ``task``'s program (execve). Raises ExecError; on error
        the task's old image is untouched."""
        from loader.exec import load

        mm = self.new_mm()
        try:
            image = load(mm, lambda p: self.vfs.open_exec(task.fs, p), path, argv, envp, self.rng, task.creds)
        except BaseException:
            mm.release()
            raise
        old, task.mm = task.mm, mm
        if old is not None:
            old.release()
        task.group.exe = image.exe_path
        task.comm = image.exe_path.rsplit("/", 1)[-1].encode()[:15]
        regs = self.platform.new_arch_state()
        regs.regs.rip = image.entry
        regs.regs.rsp = image.stack_pointer
        task.arch = regs
        task.fds.close_on_exec()

    def start(self, argv: list[bytes], envp: list[bytes]) -> Task:
        """Create PID 1 running argv[0]. Raises ExecError."""
        pid = self.allocate_pid()
        group = ThreadGroup(pid, None, "")
        fs = FSContext.initial(self.vfs, self.config.cwd)
        task = Task(self, pid, group, None, FDTable.stdio(), fs, None, self.platform.new_context())  # type: ignore[arg-type]
        group.tasks.append(task)
        self.exec_into(task, argv[0], argv, envp)
        self.tasks[pid] = task
        return task

    def close(self) -> None:
        for task in list(self.tasks.values()):
            if task.mm is not None:
                task.mm.release()
            task.context.release()
        self.tasks.clear()
        self.platform.close()
        self.memory.close()


def exec_error_status(e: ExecError) -> int:
    """Shell-style exit status for a program that could not start."""
    import errno

    return 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
