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
ranges, see each other's writes. Private mappings of a file the sandbox
may change map them too, copy-on-write page by page, so their pages not
yet written see the file's writes, as on Linux.

Coherence with read(2) and write(2), as Linux's one page cache gives: an
inode with extents is in ``MAPPED``, the one check the file systems make
(a dict lookup: a file nobody maps pays nothing more). Their reads take
the bytes the extents hold (``read``: stores through shared mappings not
yet written back), their writes go to the file and then into the extents
(``written``), a size change drops what lies past the end (``truncated``:
zeros, and every mapping's pages wholly past it fault with SIGBUS). The
cache's own fills read through ``read`` harmlessly (no extent overlaps the
gap being filled); its write-backs are not copied back (``write_back``).
"""
from __future__ import annotations

import bisect
import errno
import threading
import weakref
from collections import OrderedDict
from typing import Hashable, Iterator

from sentry.errors import SyscallError
from sentry.mm.memfile import MemoryFile, OutOfMemory
from sentry.mm.mm import PAGE, Backing, MappedFile, MemoryManager


def _file_offset(b: Backing) -> int:
    return b.file_offset


# id(inode) -> the PageCache holding extents of it, while it holds any.
# Guarded by that PageCache's _lock.
MAPPED: dict[int, "PageCache"] = {}


def read_through(node: Hashable, offset: int, data: bytes) -> bytes:
    """What a read(2) of ``node`` returns: ``data`` (its bytes from
    ``offset`` as its file system holds them), or, while it is mapped, the
    pages' bytes over it (``PageCache.read``). One dict lookup when not."""
    cache = MAPPED.get(id(node))
    return data if cache is None else cache.read(node, offset, data)


class PageCache:
    def __init__(self, memory: MemoryFile, max_unused: int = 256 << 20):
        self.memory = memory
        self.max_unused = max_unused
        self._lock = threading.RLock()  # reentered by fills: a file's pread comes back to ``read``
        self._writing_back: Backing | None = None  # guarded by _lock
        self._entries: dict[Hashable, Backing] = {}
        self._unused: OrderedDict[Hashable, Backing] = OrderedDict()
        self._unused_bytes = 0
        self.hits = self.misses = 0
        # MAP_SHARED file extents while mapped: id(inode) -> backings sorted
        # by file_offset, disjoint.
        self._shared: dict[Hashable, list[Backing]] = {}
        # id(inode) -> the mms that map its extents (told when it shrinks);
        # kept as long as _shared has the inode.
        self._mappers: dict[Hashable, weakref.WeakSet[MemoryManager]] = {}

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

    def shared(self, file: MappedFile, offset: int, length: int, mapper: MemoryManager | None = None,
               private: bool = False) -> list[tuple[Backing, int, int]]:
        """The sandbox's one copy of each page of file[offset:offset+length]
        for every MAP_SHARED mapping of it, so mappings and processes see
        each other's writes whatever ranges they map (sqlite's -shm, a
        mapping grown by mremap): (backing, offset in it, length) runs in
        file order. Pages nobody maps yet are read now, into one new backing
        per gap. Each backing is one extent of the file (``file_offset``,
        ``length``), registered by the open file's inode object while
        mapped, written back at msync and when its last mapping goes (see
        ``forget_shared``) through the last writable open file that mapped
        it. A file without an inode gets a private copy. ``mapper``: the
        MemoryManager that maps the runs, told when the file shrinks
        (``file_truncated``); ``private``: for a private mapping, which
        never writes back.
        The caller maps the runs before another mm may release them
        (holds COW_LOCK). ENOMEM if the MemoryFile is full."""
        node = getattr(file, "node", None)
        with self._lock:
            if node is None:
                return [(self._read_extent(file, offset, length, None), 0, length)]
            extents = self._shared.setdefault(id(node), [])
            MAPPED[id(node)] = self  # before reading: a write from now on comes into the new extents
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
                        if not private and getattr(file, "writable", False):
                            b.file = file  # write back through an fd that may write
                    else:
                        n = (min(end, b.file_offset) if b is not None else end) - pos
                        b = self._read_extent(file, pos, n, id(node), private)
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
                    self._drop(id(node))
                raise
            if mapper is not None:
                self._mappers.setdefault(id(node), weakref.WeakSet()).add(mapper)
            return runs

    def _read_extent(self, file: MappedFile, offset: int, length: int, key: Hashable | None,
                     private: bool = False) -> Backing:
        """A new backing holding file[offset:offset+length] (zeros past
        the end of the file); ``file`` is the one to write back through
        unless ``private``. Caller holds _lock. ENOMEM if full."""
        try:
            off = self.memory.allocate(length)
        except OutOfMemory:
            raise SyscallError(errno.ENOMEM) from None
        self.memory.write(off, file.pread(length, offset))
        b = Backing(off, length, file=None if private else file, file_offset=offset)
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
                    self._drop(backing.shared_key)

    def _drop(self, key: Hashable) -> None:
        """The inode ``key`` has no extents left. Caller holds _lock."""
        del self._shared[key]
        self._mappers.pop(key, None)
        if MAPPED.get(key) is self:
            del MAPPED[key]

    def add_mapper(self, key: Hashable, mapper: MemoryManager) -> None:
        """``mapper`` (a forked mm) maps extents of the inode ``key`` too."""
        with self._lock:
            if key in self._shared:
                self._mappers.setdefault(key, weakref.WeakSet()).add(mapper)

    # ------------------------------------ coherence with read(2)/write(2)
    def _overlapping(self, key: Hashable, start: int, end: int) -> Iterator[tuple[Backing, int, int]]:
        """(extent, lo, hi): the inode's extents over file[start:end) and
        the part of the file each holds. Caller holds _lock."""
        extents = self._shared.get(key, ())
        for b in extents[max(bisect.bisect_right(extents, start, key=_file_offset) - 1, 0):]:
            if b.file_offset >= end:
                break
            lo, hi = max(start, b.file_offset), min(end, b.file_offset + b.length)
            if lo < hi:
                yield b, lo, hi

    def read(self, node: Hashable, offset: int, data: bytes) -> bytes:
        """``data``, the file's bytes from ``offset`` as its file system
        holds them, with the parts held in pages taken from the pages
        (stores through shared mappings are not written back yet)."""
        out = None
        with self._lock:
            for b, lo, hi in self._overlapping(id(node), offset, offset + len(data)):
                if out is None:
                    out = bytearray(data)
                src = b.offset + lo - b.file_offset
                out[lo - offset:hi - offset] = self.memory.map[src:src + hi - lo]
        return data if out is None else bytes(out)

    def written(self, node: Hashable, offset: int, data: bytes | bytearray | memoryview) -> None:
        """``data`` was just written to the file at ``offset``: the pages
        over that range take it too (except an extent being written back:
        its pages are where the data came from)."""
        with self._lock:
            for b, lo, hi in self._overlapping(id(node), offset, offset + len(data)):
                if b is not self._writing_back:
                    self.memory.write(b.offset + lo - b.file_offset, data[lo - offset:hi - offset])

    def truncated(self, node: Hashable, size: int) -> None:
        """The file is ``size`` bytes long now: pages past the end hold
        zeros (a later growth reads zeros there, as on Linux), and every
        mapping's pages wholly past it, shared or private, fault from now
        on (SIGBUS). Call it holding no mm's lock."""
        key = id(node)
        with self._lock:
            mappers = list(self._mappers.get(key, ()))
        for mm in mappers:
            mm.file_truncated(key, size)
        self._zero(key, size, 1 << 63)

    def zeroed(self, node: Hashable, offset: int, length: int) -> None:
        """file[offset:offset+length] became zeros (fallocate's PUNCH_HOLE,
        ZERO_RANGE): so do the pages over it."""
        self._zero(id(node), offset, offset + length)

    def _zero(self, key: Hashable, start: int, end: int) -> None:
        with self._lock:
            for b, lo, hi in self._overlapping(key, start, end):
                at = b.offset + lo - b.file_offset
                partial = min(hi, (lo + PAGE - 1) & ~(PAGE - 1)) - lo  # up to a page boundary: written
                if partial:
                    self.memory.write(at, bytes(partial))
                whole = (hi - lo - partial) & ~(PAGE - 1)  # whole pages: dropped
                if whole:
                    self.memory.zero(at + partial, whole)
                if hi - lo > partial + whole:
                    self.memory.write(at + partial + whole, bytes(hi - lo - partial - whole))

    def reload(self, node: Hashable, pread) -> None:
        """The file's content moved under its pages (fallocate's
        COLLAPSE_RANGE, INSERT_RANGE; the caller wrote them back first with
        ``sync``): each extent is read again with ``pread(length, offset)``
        (the file system's own read, not one that comes back here)."""
        with self._lock:
            for b in self._shared.get(id(node), ()):
                data = pread(b.length, b.file_offset)
                self.memory.write(b.offset, data + bytes(b.length - len(data)))

    def sync(self, node: Hashable) -> None:
        """Write back every extent of the inode (its shared mappings' stores)."""
        with self._lock:
            for b in list(self._shared.get(id(node), ())):
                self.write_back(b)

    def write_back(self, b: Backing) -> None:
        """Write a shared file extent's pages back to its file, up to the
        file's size (a mapping never extends its file), holding _lock: a
        write of the file waits, and the write-back does not come back
        into these pages (``written``), where stores may land meanwhile."""
        f = b.file
        if f is None or not getattr(f, "writable", False):
            return
        with self._lock:
            self._writing_back = b
            try:
                n = min(b.length, f.size() - b.file_offset)
                if n > 0:
                    f.pwrite(self.memory.read(b.offset, n), b.file_offset)
            except (SyscallError, OSError):
                pass  # the file refuses writes now: a failed writeback, as on Linux
            finally:
                self._writing_back = None

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
