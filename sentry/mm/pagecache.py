"""PageCache: MemoryFile copies of file ranges, shared by every private
read-only mapping of the same file range in the sandbox; and the one copy
of each page of a file that MAP_SHARED mappings of it map.

Private copies are keyed by (file identity, offset, length): the identity
(from the open file's ``mmap_identity``) changes whenever the file's
contents may have, so a stale entry is never found. Entries stay cached
while unused, up to ``max_unused`` bytes, dropping the least recently
released first.

Shared copies are extents (disjoint file ranges, each one ``Backing``) per
inode, kept only while mapped: a new mapping maps the extents it overlaps
and new extents for the gaps, so any two shared mappings of a file, of any
ranges, see each other's writes.
"""
from __future__ import annotations

import bisect
import errno
import threading
from collections import OrderedDict
from typing import Hashable

from sentry.errors import SyscallError
from sentry.mm.memfile import MemoryFile, OutOfMemory
from sentry.mm.mm import Backing, MappedFile


def _file_offset(b: Backing) -> int:
    return b.file_offset


class PageCache:
    def __init__(self, memory: MemoryFile, max_unused: int = 256 << 20):
        self.memory = memory
        self.max_unused = max_unused
        self._lock = threading.Lock()
        self._entries: dict[Hashable, Backing] = {}
        self._unused: OrderedDict[Hashable, Backing] = OrderedDict()
        self._unused_bytes = 0
        self.hits = self.misses = 0
        # MAP_SHARED file extents while mapped: id(inode) -> backings sorted
        # by file_offset, disjoint.
        self._shared: dict[Hashable, list[Backing]] = {}

    def get(self, identity: Hashable, file: MappedFile, offset: int, length: int) -> Backing:
        """The shared backing for file[offset:offset+length], read on a miss.
        Its ``refs`` counts the VMA pieces using it (the caller adds one)."""
        key = (identity, offset, length)
        with self._lock:
            b = self._entries.get(key)
            if b is not None:
                self.hits += 1
                if self._unused.pop(key, None) is not None:
                    self._unused_bytes -= b.length
                return b
            self.misses += 1
            try:
                off = self.memory.allocate(length)
            except OutOfMemory:
                raise SyscallError(errno.ENOMEM) from None
            self.memory.write(off, file.pread(length, offset))
            b = self._entries[key] = Backing(off, length, key)
            return b

    def shared(self, file: MappedFile, offset: int, length: int) -> list[tuple[Backing, int, int]]:
        """The sandbox's one copy of each page of file[offset:offset+length]
        for every MAP_SHARED mapping of it, so mappings and processes see
        each other's writes whatever ranges they map (sqlite's -shm, a
        mapping grown by mremap): (backing, offset in it, length) runs in
        file order. Pages nobody maps yet are read now, into one new backing
        per gap. Each backing is one extent of the file (``file_offset``,
        ``length``), registered by the open file's inode object while
        mapped, written back at msync and when its last mapping goes (see
        ``forget_shared``) through the last writable open file that mapped
        it. A file without an inode gets a private copy.
        The caller maps the runs before another mm may release them
        (holds COW_LOCK). ENOMEM if the MemoryFile is full."""
        node = getattr(file, "node", None)
        with self._lock:
            if node is None:
                return [(self._read_extent(file, offset, length, None), 0, length)]
            extents = self._shared.setdefault(id(node), [])
            runs: list[tuple[Backing, int, int]] = []
            made: list[Backing] = []
            pos, end = offset, offset + length
            i = max(bisect.bisect_right(extents, pos, key=_file_offset) - 1, 0)
            try:
                while pos < end:
                    b = extents[i] if i < len(extents) else None
                    if b is not None and b.file_offset + b.length <= pos:
                        i += 1
                        continue
                    if b is not None and b.file_offset <= pos:
                        n = min(end, b.file_offset + b.length) - pos
                        runs.append((b, pos - b.file_offset, n))
                        if getattr(file, "writable", False):
                            b.file = file  # write back through an fd that may write
                    else:
                        n = (min(end, b.file_offset) if b is not None else end) - pos
                        b = self._read_extent(file, pos, n, id(node))
                        extents.insert(i, b)
                        made.append(b)
                        runs.append((b, 0, n))
                    i += 1
                    pos += n
            except SyscallError:
                for b in made:
                    extents.remove(b)
                    self.memory.free(b.offset, b.length)
                if not extents:
                    del self._shared[id(node)]
                raise
            return runs

    def _read_extent(self, file: MappedFile, offset: int, length: int, key: Hashable | None) -> Backing:
        """A new backing holding file[offset:offset+length] (zeros past
        the end of the file). Caller holds _lock. ENOMEM if full."""
        try:
            off = self.memory.allocate(length)
        except OutOfMemory:
            raise SyscallError(errno.ENOMEM) from None
        self.memory.write(off, file.pread(length, offset))
        b = Backing(off, length, file=file, file_offset=offset)
        b.shared_key = key
        return b

    def forget_shared(self, backing: Backing) -> None:
        """The last mapping of a shared file extent went away: later
        mappings read the file again. Caller holds COW_LOCK."""
        with self._lock:
            extents = self._shared.get(backing.shared_key)
            if extents is not None and backing in extents:
                extents.remove(backing)
                if not extents:
                    del self._shared[backing.shared_key]

    def unused(self, backing: Backing) -> None:
        """No VMA maps ``backing`` any more: keep it for reuse, within bounds."""
        with self._lock:
            key = backing.cache_key
            if self._entries.get(key) is not backing or key in self._unused:
                return
            self._unused[key] = backing
            self._unused_bytes += backing.length
            while self._unused_bytes > self.max_unused:
                old_key, old = self._unused.popitem(last=False)
                del self._entries[old_key]
                self._unused_bytes -= old.length
                self.memory.free(old.offset, old.length)
