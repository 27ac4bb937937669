"""/dev: a tmpfs populated with the Sentry's own devices.

In a nutshell: /dev is an in-memory directory (the overlay classes with
nothing below, so the guest may create files in it, as in devtmpfs) that
holds null, zero, full, random, urandom, tty (the user's terminal, if the
Sentry has one), the stdin/stdout/stderr and fd symlinks into /proc/self,
shm/ (a writable sticky directory for POSIX shared memory) and pts/: the
host terminals the guest's stdio are, and nothing else (stdio.Terminals).
No host device is ever opened on the guest's behalf except /dev/tty.
"""
from __future__ import annotations

import errno
import os
import stat as S
from typing import Callable

from abi.fs_structs import makedev
from sentry.errors import SyscallError
from sentry.fs.file import O_RDONLY, OpenFile, SeekableFile
from sentry.fs.node import Stat
from sentry.fs.overlay import OverlayFS, OvNode
from sentry.fs.stdio import STDIOFS, HostPassthrough
from sentry.fs.synth import SynthDir, SynthFS


class DevNode(OvNode):
    """A character device: ``opener(node, path, flags)`` makes its file."""

    __slots__ = ("opener",)
    kind = S.S_IFCHR

    def __init__(self, fs: OverlayFS, rdev: int, opener: Callable[..., OpenFile], mode: int = 0o666):
        super().__init__(fs, None, Stat(S.S_IFCHR | mode, dev=fs.dev, rdev=rdev, size=0))
        self.opener = opener

    def open(self, path, flags, ctx):
        return self.opener(self, path, flags)


class _Device(SeekableFile):
    """Base of the memory-like devices: the offset is accepted and ignored."""

    __slots__ = ()

    def size(self) -> int:
        return 0

    def read(self, length: int) -> bytes:
        return self.pread(length, 0)

    def write(self, data: bytes) -> int:
        return self.pwrite(data, 0)

    def seek(self, offset: int, whence: int) -> int:
        return 0


class NullFile(_Device):
    __slots__ = ()
    mappable = False

    def pread(self, length, offset):
        return b""

    def pwrite(self, data, offset):
        return len(data)


class ZeroFile(_Device):
    """/dev/zero; a private mapping of it reads zeros (anonymous memory)."""

    __slots__ = ()

    def pread(self, length, offset):
        return bytes(length)

    def pwrite(self, data, offset):
        return len(data)


class FullFile(ZeroFile):
    __slots__ = ()
    mappable = False

    def pwrite(self, data, offset):
        raise SyscallError(errno.ENOSPC)


class RandomFile(_Device):
    __slots__ = ()
    mappable = False

    def pread(self, length, offset):
        return os.urandom(min(length, 1 << 25))

    def pwrite(self, data, offset):
        return len(data)


def _open_tty(node, path, flags):
    try:
        fd = os.open("/dev/tty", (flags & 3) | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise SyscallError(e.errno) from None
    return HostPassthrough(node, path, flags, fd, owned=True)


def _has_tty() -> bool:
    try:
        os.close(os.open("/dev/tty", O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def make_devfs() -> OverlayFS:
    fs = OverlayFS(None, writable=True, root_mode=0o755)
    root = fs.root
    devices = {b"null": (1, 3, NullFile), b"zero": (1, 5, ZeroFile), b"full": (1, 7, FullFile),
               b"random": (1, 8, RandomFile), b"urandom": (1, 9, RandomFile)}
    for name, (ma, mi, cls) in devices.items():
        root.add_node(name, DevNode(fs, makedev(ma, mi), lambda node, path, flags, cls=cls: cls(node, path, flags)))
    if _has_tty():
        root.add_node(b"tty", DevNode(fs, makedev(5, 0), _open_tty))
    for i, name in enumerate((b"stdin", b"stdout", b"stderr")):
        root.symlink(name, b"/proc/self/fd/%d" % i, None)
    root.symlink(b"fd", b"/proc/self/fd", None)
    root.mkdir(b"shm", 0o1777, None)
    root.add_node(b"pts", _pts_dir())
    return fs


def _pts_dir() -> SynthDir:
    """/dev/pts: N for each host terminal /dev/pts/N that is one of the
    guest's stdio (per sandbox: the calling task's kernel.terminals), read-only."""
    def terminals(ctx):  # ctx: the calling Task, or None
        return ctx.kernel.terminals if ctx is not None else None

    def lookup(name: bytes, ctx):
        ts = terminals(ctx)
        return ts.pts.get(name) if ts is not None else None

    def names(ctx):
        ts = terminals(ctx)
        return list(ts.pts) if ts is not None else []

    return SynthDir(SynthFS("devpts", STDIOFS.magic), mode=0o755, dyn_lookup=lookup, dyn_list=names)
