"""Every file system call with hostile arguments: the only exception a
handler may raise is SyscallError (the guest's errno); anything else would
be a Sentry crash. Deterministic (seeded), no waiting: the task always has
a signal pending, so a call that would block ends with ERESTARTSYS."""
from __future__ import annotations

import random
import struct
import threading
import types

import pytest

from sentry.errors import SyscallError
from sentry.fs.context import FSContext
from sentry.fs.fdtable import FDTable
from sentry.fs.file import O_CREAT, O_RDONLY, O_RDWR
from sentry.fs.pipe import new_pipe
from sentry.fs.vfs import VFS
from sentry.kernel.task import Task, ThreadGroup
from sentry.syscalls import files

BASE, SIZE = 0x10000, 1 << 16


class FuzzMM:
    """One writable region of guest memory; anything else is EFAULT."""

    def __init__(self, rng: random.Random):
        self.mem = bytearray(rng.randbytes(SIZE))
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0

    def _range(self, addr: int, length: int) -> slice:
        if length < 0 or addr < BASE or addr + length > BASE + SIZE:
            raise SyscallError(14)  # EFAULT
        return slice(addr - BASE, addr - BASE + length)

    def copy_in(self, addr: int, length: int) -> bytes:
        return bytes(self.mem[self._range(addr, length)])

    def copy_out(self, addr: int, data: bytes) -> None:
        self.mem[self._range(addr, len(data))] = data

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        raw = self.copy_in(addr, max(0, min(limit, BASE + SIZE - addr)))
        end = raw.find(b"\0")
        if end < 0:
            raise SyscallError(36 if len(raw) >= limit else 14)  # ENAMETOOLONG / EFAULT
        return raw[:end]

    def read_iovecs(self, addr: int, count: int) -> list[tuple[int, int]]:
        if count > 1024:
            raise SyscallError(22)
        raw = self.copy_in(addr, 16 * count)
        return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]

    def vmas(self):
        return []


PATHS = [b"/etc/passwd", b"/tmp/fz", b"/tmp/fz/a", b"/proc/self/fd/3", b"/proc/self/fd", b"/dev/null",
         b"/dev/fd/4", b"..", b".", b"/", b"", b"x" * 300, b"/proc/1/cwd/tmp", b"/dev/shm/f", b"/sys",
         b"/etc/passwd/", b"/usr/bin/../lib", b"/tmp/fz/../fz2", b"/proc/self/root/etc"]
INTS = [0, 1, 2, 3, 4, 5, 6, 7, 100, 1023, 1024, (1 << 32) - 100, (1 << 64) - 1, (1 << 63), (1 << 31),
        (1 << 31) - 1, 0o100 | 2, 0o1000 | 1, 0o200000, 0x1000, 0x100, 0x200, 4096, 65536]


def arg(rng: random.Random, mm: FuzzMM) -> int:
    r = rng.random()
    if r < 0.35:
        return rng.choice(INTS)
    if r < 0.6:  # a pointer to a path
        path = rng.choice(PATHS)
        off = rng.randrange(0, SIZE - len(path) - 1) & ~7
        mm.mem[off:off + len(path) + 1] = path + b"\0"
        return BASE + off
    if r < 0.8:  # a pointer into memory (an iovec, a struct, a buffer)
        off = rng.randrange(0, SIZE - 64) & ~7
        if rng.random() < 0.5:  # make it a plausible iovec
            mm.mem[off:off + 16] = struct.pack("<QQ", BASE + rng.randrange(0, SIZE // 2), rng.randrange(0, 512))
        return BASE + off
    return rng.getrandbits(64)


@pytest.fixture(scope="module")
def task():
    vfs = VFS("/", "memory")
    vfs.rootfs.size_limit = vfs.rootfs.used + (64 << 20)
    kernel = types.SimpleNamespace(tasks={}, vfs=vfs, lock=threading.Lock())
    group = ThreadGroup(1, None, "/bin/sh")
    t = Task(kernel, 1, group, FuzzMM(random.Random(0)), FDTable(), FSContext.initial(vfs, "/"), None,
             types.SimpleNamespace(interrupt=lambda: None))
    t.pending = 1 << 9  # SIGUSR1 pending: every wait ends at once (ERESTARTSYS)
    group.tasks.append(t)
    kernel.tasks[1] = t
    return t


def refill(t: Task) -> None:
    """Keep fds 0-5 open on files of every kind (the fuzz closes them)."""
    vfs, fs = t.kernel.vfs, FSContext.initial(t.kernel.vfs, "/")
    opened = (lambda: vfs.open(fs, None, b"/etc/passwd", O_RDONLY),
              lambda: vfs.open(fs, None, b"/tmp/fuzzfile", O_RDWR | O_CREAT, 0o600),
              lambda: vfs.open(fs, None, b"/usr", O_RDONLY), lambda: vfs.open(fs, None, b"/dev/null", O_RDWR),
              lambda: new_pipe()[0], lambda: new_pipe()[1])
    for fd, make in enumerate(opened):
        try:
            t.fds.get(fd)
            continue
        except SyscallError:
            pass
        try:
            t.fds.install_at(fd, make())
        except SyscallError:  # the fuzz renamed or removed it: any file will do
            t.fds.install_at(fd, new_pipe()[0])


@pytest.mark.parametrize("seed", range(8))
def test_handlers_raise_only_syscall_errors(task, seed):
    rng = random.Random(seed)
    entries = [e for e in files.ENTRIES.values() if e.handler is not None]
    for i in range(2500):
        if i % 25 == 0:
            refill(task)
            task.fs.root = task.kernel.vfs.root  # undo a chroot
        e = rng.choice(entries)
        args = [arg(rng, task.mm) for _ in range(e.nargs)]
        try:
            r = e.handler(task, *args)
        except SyscallError:
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"{e.name}{tuple(hex(a) for a in args)} raised {exc!r}") from exc
        assert isinstance(r, int), (e.name, r)
