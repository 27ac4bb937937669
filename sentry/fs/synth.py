"""Synthetic nodes: files, directories and symlinks whose content the
Sentry computes when they are opened or read (/proc, /sys).

In a nutshell: a ``SynthFile`` holds a generator ``gen(ctx) -> bytes``
called at open (the content is a snapshot, as Linux's seq_file gives for
small files); a ``SynthDir`` holds fixed entries and optionally dynamic
ones (``dyn_lookup``/``dyn_list``); a ``SynthLink`` computes its target and,
for magic links, the node it stands for (``jump``). Nothing here can be
changed by the guest: mutations fail with EACCES (as /proc does for root).
"""
from __future__ import annotations

import errno
import stat as S
from typing import Callable, Iterable

from sentry.errors import SyscallError
from sentry.fs.file import O_ACCMODE, O_RDONLY, BytesFile, DirFile
from sentry.fs.node import FileSystem, Node, Stat, dtype_of, err

PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572


class SynthFS(FileSystem):
    readonly_errno = errno.EACCES

    def __init__(self, fs_type: str, magic: int):
        super().__init__()
        self.fs_type, self.magic = fs_type, magic


class SynthNode(Node):
    __slots__ = ("meta",)

    def __init__(self, fs: SynthFS, mode: int, uid: int = 0, gid: int = 0, ino: int = 0):
        super().__init__(fs)
        nlink = 2 if S.S_ISDIR(mode) else 1
        self.meta = Stat(mode, uid, gid, dev=fs.dev, ino=ino, nlink=nlink)

    def stat(self):
        return self.meta


class SynthFile(SynthNode):
    __slots__ = ("gen",)
    kind = S.S_IFREG

    def __init__(self, fs: SynthFS, gen: Callable[[object], bytes], mode: int = 0o444, **kw):
        super().__init__(fs, S.S_IFREG | mode, **kw)
        self.gen = gen

    def open(self, path, flags, ctx):
        if flags & O_ACCMODE != O_RDONLY:
            raise err(errno.EACCES)
        return BytesFile(self, path, flags, self.gen(ctx))


class SynthLink(SynthNode):
    """``target(ctx)``: the link text; ``to(ctx)``: for a magic link, the
    node it stands for (None: follow the text)."""

    __slots__ = ("target", "to")
    kind = S.S_IFLNK

    def __init__(self, fs: SynthFS, target: Callable[[object], bytes],
                 to: Callable[[object], Node | None] | None = None, **kw):
        super().__init__(fs, S.S_IFLNK | 0o777, **kw)
        self.target = target
        self.to = to

    def readlink(self, ctx) -> bytes:
        return self.target(ctx)

    def jump(self, ctx) -> Node | None:
        return self.to(ctx) if self.to is not None else None


class SynthDir(SynthNode):
    """Fixed ``entries`` plus, optionally, names computed per call:
    ``dyn_lookup(name, ctx) -> Node | None`` and ``dyn_list(ctx) ->
    iterable of names``."""

    __slots__ = ("entries", "dyn_lookup", "dyn_list")
    kind = S.S_IFDIR

    def __init__(self, fs: SynthFS, entries: dict[bytes, Node] | None = None, mode: int = 0o555,
                 dyn_lookup: Callable[[bytes, object], Node | None] | None = None,
                 dyn_list: Callable[[object], Iterable[bytes]] | None = None, **kw):
        super().__init__(fs, S.S_IFDIR | mode, **kw)
        self.entries: dict[bytes, Node] = {}
        self.dyn_lookup = dyn_lookup
        self.dyn_list = dyn_list
        for name, node in (entries or {}).items():
            self.add(name, node)

    def add(self, name: bytes, node: Node) -> Node:
        self.entries[name] = node
        if node.kind == S.S_IFDIR:
            node.parent, node.name = self, name
        return node

    def open(self, path, flags, ctx):
        if flags & O_ACCMODE != O_RDONLY:
            raise err(errno.EISDIR)
        return DirFile(self, path, flags, ctx)

    def lookup(self, name, ctx):
        node = self.entries.get(name)
        if node is None and self.dyn_lookup is not None:
            node = self.dyn_lookup(name, ctx)
            if node is not None and node.kind == S.S_IFDIR:
                node.parent, node.name = self, name
        if node is None:
            raise err(errno.ENOENT)
        return node

    def readdir(self, ctx):
        out = [(name, n.stat().st_ino, dtype_of(n.stat().st_mode)) for name, n in self.entries.items()]
        if self.dyn_list is not None:
            for name in self.dyn_list(ctx):
                try:
                    n = self.lookup(name, ctx)
                except SyscallError:
                    continue  # gone since listed
                out.append((name, n.stat().st_ino, dtype_of(n.stat().st_mode)))
        return out

