"""PageCache: MemoryFile copies of file ranges, shared by every private
read-only mapping of the same file range in the sandbox.

Keyed by (file identity, offset, length): the identity (from the open
file's ``mmap_identity``) changes whenever the file's contents may have, so
a stale entry is never found. Entries stay cached while unused, up to
``max_unused`` bytes, dropping the least recently released first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable

from sentry.mm.memfile import MemoryFile, OutOfMemory
from sentry.mm.mm import Backing, MappedFile
from sentry.errors import SyscallError
import errno


class PageCache:
    def __init__(self, memory: MemoryFile, max_unused: int = 256 << 20):
        self.memory = memory
        self.max_unused = max_unused
        self._lock = threading.Lock()
        self._entries: dict[Hashable, Backing] = {}
        self._unused: OrderedDict[Hashable, Backing] = OrderedDict()
        self._unused_bytes = 0
        self.hits = self.misses = 0
        self._shared: dict[Hashable, Backing] = {}  # MAP_SHARED file ranges, while mapped

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

    def shared(self, file: MappedFile, offset: int, length: int) -> Backing:
        """The one backing of file[offset:offset+length] for every MAP_SHARED
        mapping of it in the sandbox, so processes see each other's writes
        (sqlite's -shm). Keyed by the open file's inode object; written back
        to the file at msync and when the last mapping goes."""
        node = getattr(file, "node", None)
        key = (id(node), offset, length) if node is not None else None
        with self._lock:
            b = self._shared.get(key) if key is not None else None
            if b is not None:
                return b
            try:
                off = self.memory.allocate(length)
            except OutOfMemory:
                raise SyscallError(errno.ENOMEM) from None
            self.memory.write(off, file.pread(length, offset))
            b = Backing(off, length, file=file, file_offset=offset)
            if key is not None:
                b.shared_key = key
                self._shared[key] = b
            return b

    def forget_shared(self, backing: Backing) -> None:
        """The last mapping of a shared file range went away."""
        with self._lock:
            if backing.shared_key is not None and self._shared.get(backing.shared_key) is backing:
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
