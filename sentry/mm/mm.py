"""MemoryManager: one guest address space — its VMAs, their MemoryFile
backing, and the platform AddressSpace that mirrors them.

In a nutshell: every VMA is a range of guest addresses backed by a range of
the MemoryFile (a ``Backing``). Mappings are made eagerly and whole: each
mmap/mprotect/munmap is mirrored at once into the platform AddressSpace, so
a guest access the host refuses is a real guest fault (SIGSEGV), never a
demand fault the Sentry must resolve. All guest memory I/O (``copy_in``,
``copy_out``, strings, iovecs) goes through the Sentry's own mapping of the
MemoryFile after checking the VMA's protection: a bad pointer is EFAULT.

Private read-only file mappings share one ``Backing`` per (file identity,
offset, length) across the sandbox — the page cache — so ``libc.so`` is
read once per sandbox. Such a backing is never writable: mprotect adding
PROT_WRITE copies it first (copy-on-write, done eagerly). Shared file
mappings map the sandbox's one copy of each file page (``PageCache.shared``),
so a mapping may be several VMA pieces over several backings. Private
mappings of a file the sandbox may change (``MappedFile.mutable``) map
those pages too, marked ``cow``: a page not yet written sees the file's
writes (as on Linux), the first write copies that one page. A file
shrinking makes its mapped pages past the end fault (``file_truncated``).

Pages of a file mapping wholly past the end of the file (at mapping time)
are pieces marked ``past_eof`` and mapped with no access: the guest's
fault there is SIGBUS (BUS_ADRERR), the Sentry's own access EFAULT, as on
Linux, unless the file has grown to cover the page since (then it is
mapped at the fault). ``mremap`` moves pieces, never their pages: a moved
shared mapping stays the file's (or the other process's) memory.

Fork is copy-on-write in the Sentry, as in gVisor: the child gets the
parent's VMAs over the same backings, and private writable VMAs of both
are marked ``cow`` and mapped read-only on the host. The first write fault
(``handle_fault``) — or a Sentry write (``copy_out``) — copies the chunk
around the address (``COW_CHUNK``) into a backing of its own.

Locking: an mm is used by the threads of one process; ``lock`` guards the
VMA list. ``COW_LOCK`` guards what mms share: ``Backing.refs`` and the
decision to free a backing, so a backing is looked up in the page cache
and mapped, or found unmapped and released, atomically.
Lock order: MemoryManager.lock > COW_LOCK > PageCache._lock > MemoryFile._lock.
"""
from __future__ import annotations

import bisect
import enum
import errno
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Iterator

from platforms.base import PROT_EXEC, PROT_READ, PROT_WRITE, AddressSpace
from sentry.errors import SyscallError
from sentry.mm.memfile import MemoryFile, OutOfMemory

if TYPE_CHECKING:
    from sentry.mm.pagecache import PageCache

PAGE = 4096
COW_CHUNK = 64 * PAGE
COW_LOCK = threading.RLock()  # guards Backing.refs across mms
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC
MAP_SHARED, MAP_PRIVATE = 0x01, 0x02
MAP_FIXED, MAP_ANONYMOUS = 0x10, 0x20
MAP_GROWSDOWN, MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x100, 0x4000, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def page_down(n: int) -> int:
    return n & ~(PAGE - 1)


class Fault(enum.Enum):
    """What ``MemoryManager.handle_fault`` made of a guest's fault."""

    RESOLVED = 0  # the Sentry's own doing, now undone: the guest retries the access
    GUEST = 1  # the guest's own fault: the platform's signal stands
    PAST_EOF = 2  # a page of a file mapping past the end of the file: SIGBUS, BUS_ADRERR


class Backing:
    """A MemoryFile range shared by the VMA pieces that map it.
    ``cache_key`` is set for page-cache backings (never written)."""

    __slots__ = ("offset", "length", "refs", "cache_key", "forked", "file", "file_offset", "shared_key", "freed")

    def __init__(self, offset: int, length: int, cache_key: Hashable | None = None,
                 file: "MappedFile | None" = None, file_offset: int = 0):
        self.offset = offset
        self.length = length
        self.refs = 0  # VMA pieces (in any mm) mapping part of it; guarded by COW_LOCK once forked
        self.cache_key = cache_key
        self.forked = False  # shared by fork: parts are never zeroed while refs > 0
        self.file = file  # for MAP_SHARED file mappings: written back at msync and when unmapped
        self.file_offset = file_offset
        self.shared_key: Hashable | None = None  # its key in PageCache's shared-mapping registry
        self.freed = False  # given back to the MemoryFile (guarded by COW_LOCK): never twice


class MappedFile:
    """What a file mapping needs from an open file (sentry.fs implements it)."""

    path: str

    def pread(self, length: int, offset: int) -> bytes: ...

    def size(self) -> int: ...

    def mmap_identity(self) -> Hashable | None: ...

    def mutable(self) -> bool:
        """Whether the sandbox may change the file's content: its private
        mappings then share the page cache's pages until written. Optional
        (``getattr``): a file without it never changes while mapped."""


@dataclass(eq=False)
class VMA:
    start: int
    end: int
    prot: int
    shared: bool
    backing: Backing
    backing_offset: int  # offset of `start` within backing
    file: MappedFile | None = None
    file_offset: int = 0
    name: str = ""  # "[heap]", "[stack]", a path, or ""
    cow: bool = False  # private, writable, backing shared with another mm since a fork
    past_eof: bool = False  # a file mapping's pages wholly past the end of the file when mapped

    @property
    def memfd_offset(self) -> int:
        return self.backing.offset + self.backing_offset

    @property
    def host_prot(self) -> int:
        """The protection the platform maps: none past the end of the file
        (the fault decides), no write while copy-on-write."""
        if self.past_eof:
            return 0
        return self.prot & ~PROT_WRITE if self.cow else self.prot

    def slice(self, start: int, end: int) -> "VMA":
        delta = start - self.start
        return VMA(start, end, self.prot, self.shared, self.backing, self.backing_offset + delta,
                   self.file, self.file_offset + delta if self.file else 0, self.name, self.cow, self.past_eof)

    def continued_by(self, other: "VMA") -> bool:
        """Whether ``other`` continues this piece as one mapping would (one
        VMA on Linux, which merges such neighbours): adjacent, same
        protection, kind and name, the same open file at the next offset."""
        return (other.start == self.end and other.prot == self.prot and other.shared == self.shared
                and other.file is self.file and other.name == self.name
                and (self.file is None or other.file_offset == self.file_offset + (self.end - self.start)))


_TASK_SIZE = (1 << 47) - PAGE  # Linux x86-64 user space ends here


class MemoryManager:
    def __init__(self, memory: MemoryFile, space: AddressSpace | None, cache: "PageCache",
                 min_address: int, max_address: int):
        self.memory = memory
        self.space = space
        self.cache = cache
        self.min_address = min_address
        self.max_address = max_address
        self.lock = threading.RLock()
        self._vmas: list[VMA] = []  # sorted by start, disjoint
        self._starts: list[int] = []
        self.mmap_base = max_address  # top of the top-down mmap area (set by the loader)
        self.brk_start = self.brk = 0
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0
        self.stack_top = 0
        self.released = False

    # ----------------------------------------------------------------- VMAs
    def vmas(self) -> Iterator[VMA]:
        """The VMAs in address order (a snapshot, for /proc/PID/maps)."""
        with self.lock:
            return iter(list(self._vmas))

    def vma_at(self, addr: int) -> VMA | None:
        """The VMA containing ``addr``, or None."""
        with self.lock:
            return self._find(addr)

    def _find(self, addr: int) -> VMA | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._vmas[i].end:
            return self._vmas[i]
        return None

    def _insert(self, vma: VMA) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._vmas.insert(i, vma)
        self._starts.insert(i, vma.start)
        with COW_LOCK:
            vma.backing.refs += 1

    def _carve(self, start: int, end: int) -> list[VMA]:
        """Split VMAs at start and end; remove and return those inside."""
        removed: list[VMA] = []
        i = bisect.bisect_right(self._starts, start) - 1
        i = max(i, 0)
        while i < len(self._vmas) and self._vmas[i].start < end:
            v = self._vmas[i]
            if v.end <= start:
                i += 1
                continue
            del self._vmas[i], self._starts[i]
            with COW_LOCK:
                v.backing.refs -= 1
            for piece in (v.slice(v.start, start) if v.start < start else None,
                          v.slice(end, v.end) if v.end > end else None):
                if piece is not None:
                    self._insert(piece)
            inner = v.slice(max(v.start, start), min(v.end, end))
            removed.append(inner)
            i = bisect.bisect_left(self._starts, min(v.end, end))
        return removed

    def _release(self, pieces: list[VMA]) -> None:
        """Give back what no VMA maps any more, once ``pieces`` are carved
        out and whatever replaces them is inserted: a backing no mm maps is
        returned to the page cache, or freed (a shared file extent written
        back first); the pages of a private backing still mapped elsewhere
        in this mm are zeroed. Each backing once, though several pieces of
        it (or several mms) may go together."""
        dead: list[Backing] = []
        with COW_LOCK:
            for v in pieces:
                b = v.backing
                if b.refs == 0:
                    if b.cache_key is not None:
                        self.cache.unused(b)
                    elif not b.freed:
                        b.freed = True
                        if b.file is not None or b.shared_key is not None:  # before another mm reads the file
                            self.write_back(b)
                            self.cache.forget_shared(b)
                        dead.append(b)
                elif not v.shared and not b.forked and b.cache_key is None and b.shared_key is None:
                    self.memory.zero(v.memfd_offset, v.end - v.start)
        for b in dead:
            self.memory.free(b.offset, b.length)

    def _overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._starts, end) - 1
        return i >= 0 and self._vmas[i].end > start

    def _covered(self, start: int, end: int) -> bool:
        """Whether every page of [start, end) is mapped."""
        pos = start
        for v in self._vmas[max(bisect.bisect_right(self._starts, start) - 1, 0):]:
            if v.start >= end or v.start > pos:
                break
            pos = max(pos, v.end)
        return pos >= end

    def _one_mapping(self, start: int, end: int) -> None:
        """EFAULT unless [start, end) lies in one mapping: pieces that
        continue each other, as in one VMA of Linux's."""
        v = self._find(start)
        if v is None:
            raise SyscallError(errno.EFAULT)
        while v.end < end:
            w = self._find(v.end)
            if w is None or not v.continued_by(w):
                raise SyscallError(errno.EFAULT)
            v = w

    def _map(self, pieces: list[VMA]) -> None:
        """Insert pieces (their range carved out already) and map them on
        the platform (else ``activate`` will)."""
        for v in pieces:
            self._insert(v)
            if self.space is not None:
                self.space.map_file(v.start, v.memfd_offset, v.end - v.start, v.host_prot)

    def find_free(self, length: int, hint: int = 0) -> int:
        """An unmapped range of ``length`` bytes: at ``hint`` if free, else
        the highest one below mmap_base. ENOMEM if none."""
        if hint and self.min_address <= hint and hint + length <= self.max_address and \
                not self._overlaps(hint, hint + length):
            return hint
        top = self.mmap_base
        i = bisect.bisect_left(self._starts, top) - 1
        while True:
            below = self._vmas[i].end if i >= 0 else self.min_address
            if below < top and top - max(below, self.min_address) >= length:
                return top - length
            if i < 0:
                raise SyscallError(errno.ENOMEM)
            top = min(top, self._vmas[i].start)
            i -= 1

    # ------------------------------------------------------------ mappings
    def mmap(self, addr: int, length: int, prot: int, flags: int,
             file: MappedFile | None = None, file_offset: int = 0, name: str = "") -> int:
        """Map ``length`` bytes (anonymous, or ``file`` from ``file_offset``)
        and return the address. Without MAP_FIXED ``addr`` is a hint, used
        (rounded down to a page, as x86-64 Linux does) if the range is
        free. Errors: EINVAL (alignment of a fixed address or the offset,
        zero length), ENOMEM (no room, or the memory limit), EEXIST
        (MAP_FIXED_NOREPLACE over a mapping)."""
        fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)
        if length <= 0 or (fixed and addr & (PAGE - 1)) or file_offset & (PAGE - 1):
            raise SyscallError(errno.EINVAL)
        length = page_up(length)
        with self.lock:
            if fixed:
                self._check_fixed(addr, length)
                if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and self._overlaps(addr, addr + length):
                    raise SyscallError(errno.EEXIST)
            else:
                addr = self.find_free(length, page_down(addr))
            with COW_LOCK:
                pieces = self._new_pieces(addr, length, prot, bool(flags & MAP_SHARED), file, file_offset,
                                          name or (file.path if file else ""))
                removed = self._carve(addr, addr + length)
                self._map(pieces)  # before the release: a shared extent may be the one it replaces
                self._release(removed)
            return addr

    def _check_fixed(self, addr: int, length: int) -> None:
        """EPERM below the lowest address a mapping may have, ENOMEM past
        the top: the checks of a fixed address (mmap, mremap)."""
        if addr < self.min_address or addr + length > self.max_address:
            raise SyscallError(errno.ENOMEM if addr + length > self.max_address else errno.EPERM)

    def _new_pieces(self, start: int, length: int, prot: int, shared: bool, file: MappedFile | None,
                    file_offset: int, name: str) -> list[VMA]:
        """Pieces, not inserted, mapping [start, start+length) afresh:
        zeros, or ``file`` from ``file_offset``: private pages read now
        (read-only ones shared through the page cache), shared ones the
        sandbox's copy of each file page; pages past the end of the file
        are ``past_eof``. Private pages of a ``mutable`` file are its shared
        pages, copy-on-write. Caller holds COW_LOCK until the pieces are
        inserted. ENOMEM if the MemoryFile is full."""
        mutable = getattr(file, "mutable", None)
        cow = not shared and mutable is not None and mutable()
        if file is not None and (shared or cow):
            runs = self.cache.shared(file, file_offset, length, self, private=cow)
        else:
            runs = [(self._new_backing(length, prot, file, file_offset), 0, length)]
        pieces, pos = [], start
        for backing, offset, n in runs:
            pieces.append(VMA(pos, pos + n, prot, shared, backing, offset, file,
                              file_offset + (pos - start) if file else 0, name, cow))
            pos += n
        return self._split_at_eof(pieces)

    def _split_at_eof(self, pieces: list[VMA]) -> list[VMA]:
        """``pieces`` (of one mapping) split where the object they map ends
        now — a file at its size, shared anonymous memory at the end of its
        backing (its size at mmap, as Linux's shmem object) — the part
        wholly past the end marked ``past_eof``, the rest not; private
        anonymous pieces as they are."""
        out, size = [], None
        for v in pieces:
            if v.file is not None:
                size = page_up(v.file.size()) if size is None else size
                inside = size - v.file_offset
            elif v.shared:
                inside = v.backing.length - v.backing_offset
            else:
                out.append(v)
                continue
            cut = min(max(v.start + inside, v.start), v.end)
            for lo, hi, past in ((v.start, cut, False), (cut, v.end, True)):
                if lo < hi:
                    piece = v.slice(lo, hi)
                    piece.past_eof = past
                    out.append(piece)
        return out

    def _refill(self, v: VMA) -> list[VMA]:
        """Pieces, not inserted, mapping ``v``'s range as a new mapping of
        its kind would: the same pages if shared (they are the file's or
        the shared memory's), else zeros or the file's contents now.
        Caller holds COW_LOCK."""
        if v.shared:
            return self._split_at_eof([v.slice(v.start, v.end)])
        return self._new_pieces(v.start, v.end - v.start, v.prot, False, v.file, v.file_offset, v.name)

    def _replace(self, start: int, end: int) -> None:
        """Map [start, end) afresh, piece by piece (``_refill``). Caller
        holds self.lock."""
        with COW_LOCK:
            removed = self._carve(start, end)
            self._map([p for v in removed for p in self._refill(v)])
            self._release(removed)

    # --------------------------------------------------------------- fork
    def fork(self) -> "MemoryManager":
        """A copy-on-write copy of this address space, with no platform
        address space yet: the child's own thread calls ``activate``."""
        with self.lock, COW_LOCK, self.space.batch():
            child = MemoryManager(self.memory, None, self.cache, self.min_address, self.max_address)
            for name in ("mmap_base", "brk_start", "brk", "arg_start", "arg_end", "env_start", "env_end", "stack_top"):
                setattr(child, name, getattr(self, name))
            for v in self._vmas:
                c = v.slice(v.start, v.end)
                if v.backing.shared_key is not None:  # the file's pages (shared, or private not yet written)
                    self.cache.add_mapper(v.backing.shared_key, child)
                elif not v.shared and v.backing.cache_key is None:
                    v.backing.forked = True
                    if v.prot & PROT_WRITE and not v.cow:
                        v.cow = True
                        self.space.map_file(v.start, v.memfd_offset, v.end - v.start, v.host_prot)
                    c.cow = v.cow
                child._insert(c)
            return child

    def activate(self, space: AddressSpace) -> None:
        """Give a forked mm its platform address space, mapping every VMA
        (from the thread that will run the child)."""
        with self.lock, space.batch():
            self.space = space
            for v in self._vmas:
                space.map_file(v.start, v.memfd_offset, v.end - v.start, v.host_prot)

    def handle_fault(self, addr: int, access: int = 0) -> Fault:
        """What a guest's fault at ``addr`` is (``access``: its PROT_* type
        if the platform knows it, else 0). RESOLVED: the Sentry's own doing,
        undone now: a copy-on-write page (copied), a page of a file mapping
        that the file has grown to cover since it was mapped (mapped).
        PAST_EOF: a page wholly past the end of its file (SIGBUS). GUEST:
        anything else, the signal the platform reported. ENOMEM if no page
        is left for a copy."""
        with self.lock:
            v = self._find(addr)
            if v is None or not v.prot or access & ~v.prot:
                return Fault.GUEST
            if v.past_eof:
                return Fault.RESOLVED if self._file_grew(v, addr) else Fault.PAST_EOF
            if not v.cow or not v.prot & PROT_WRITE:
                return Fault.GUEST
            self._break_cow(v, addr, 1)
            return Fault.RESOLVED

    def _file_grew(self, v: VMA, addr: int) -> bool:
        """Whether ``addr``, in ``v`` (past the end of its file when
        mapped), is inside the file now; if so the pages of ``v`` the file
        covers now are mapped as a new mapping would map them."""
        if v.file is None:
            return False  # shared anonymous memory never grows
        with self.lock:
            cut = min(v.start + page_up(v.file.size()) - v.file_offset, v.end)
            if addr >= cut:
                return False
            self._replace(v.start, cut)
            return True

    def _break_cow(self, v: VMA, addr: int, length: int) -> None:
        """Give [addr, addr+length) of ``v`` (chunk-aligned outward; page-
        aligned over a file's pages, the others must go on seeing the file)
        its own backing, mapped writable. Caller holds self.lock."""
        chunk = PAGE if v.backing.shared_key is not None else COW_CHUNK
        lo = max(v.start, addr & ~(chunk - 1))
        hi = min(v.end, (addr + length + chunk - 1) & ~(chunk - 1))
        with COW_LOCK:
            for piece in self._carve(lo, hi):
                if piece.backing.refs == 0 and piece.backing.shared_key is None:  # nobody else maps it: take it over
                    piece.cow = False
                    self._map([piece])
                else:
                    self._map([self._copied(piece)])
                    self._release([piece])

    def _new_backing(self, length: int, prot: int, file: MappedFile | None, file_offset: int) -> Backing:
        """Private memory: zeros, or file[file_offset:file_offset+length]
        (from the page cache if read-only). ENOMEM if the MemoryFile is full."""
        if file is not None and not prot & PROT_WRITE:
            key = file.mmap_identity()
            if key is not None:
                return self.cache.get(key, file, file_offset, length)
        try:
            offset = self.memory.allocate(length)
        except OutOfMemory:
            raise SyscallError(errno.ENOMEM) from None
        if file is not None:
            data = file.pread(length, file_offset)
            self.memory.write(offset, data)
        return Backing(offset, length)

    def write_back(self, b: Backing) -> None:
        """Write a shared file mapping's pages back to its file, up to the
        file's size (a mapping never extends its file)."""
        self.cache.write_back(b)

    def file_truncated(self, key: Hashable, size: int) -> None:
        """The file whose pages are keyed ``key`` (``Backing.shared_key``)
        is ``size`` bytes long now: the pages of its mappings (shared or
        private, written or not) wholly past the end are mapped afresh,
        so past_eof (SIGBUS), as Linux's truncate unmaps them. Caller holds
        no mm's lock but may be any task's thread."""
        top = page_up(size)
        with self.lock:
            if self.released:
                return
            cut = []
            for v in self._vmas:
                node = getattr(v.file, "node", None)
                if node is not None and id(node) == key and not v.past_eof \
                        and v.file_offset + (v.end - v.start) > top:
                    cut.append((max(v.start, v.start + top - v.file_offset), v.end))
            for lo, hi in cut:
                self._replace(lo, hi)

    def msync(self, addr: int, length: int) -> None:
        """Write back the shared file mappings over [addr, addr+length);
        ENOMEM if part of the range is unmapped."""
        end = addr + page_up(length)
        with self.lock:
            done: set[int] = set()
            pos = addr
            for v in list(self._vmas):
                if v.end <= addr or v.start >= end:
                    continue
                if v.start > pos:
                    raise SyscallError(errno.ENOMEM)
                pos = v.end
                if v.backing.file is not None and id(v.backing) not in done:
                    done.add(id(v.backing))
                    self.write_back(v.backing)
            if pos < end:
                raise SyscallError(errno.ENOMEM)

    def munmap(self, addr: int, length: int) -> None:
        if addr & (PAGE - 1) or length <= 0 or length > _TASK_SIZE or addr > _TASK_SIZE - length:
            raise SyscallError(errno.EINVAL)  # as Linux: past the top of user space
        end = addr + page_up(length)
        with self.lock:
            removed = self._carve(addr, end)
            if removed:  # only what was mapped: the range may cover the stub's own pages
                lo, hi = min(v.start for v in removed), max(v.end for v in removed)
                self.space.unmap(lo, hi - lo)
            self._release(removed)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & (PAGE - 1) or prot & ~PROT_ALL:
            raise SyscallError(errno.EINVAL)
        end = addr + page_up(length)
        with self.lock:
            if not self._covered(addr, end):  # Linux: ENOMEM if any page of the range is unmapped
                raise SyscallError(errno.ENOMEM)
            for v in self._carve(addr, end):
                if prot & PROT_WRITE and v.backing.cache_key is not None:  # copy-on-write, now
                    copy = self._copied(v)
                    copy.prot = prot
                    self._map([copy])
                    self._release([v])
                else:
                    v.prot = prot
                    self._map([v])

    def _copied(self, v: VMA) -> VMA:
        """``v`` over a private copy of its pages (copy-on-write), not yet
        inserted. ENOMEM if the MemoryFile is full."""
        length = v.end - v.start
        try:
            offset = self.memory.allocate(length)
        except OutOfMemory:
            raise SyscallError(errno.ENOMEM) from None
        self.memory.copy(offset, v.memfd_offset, length)
        copy = v.slice(v.start, v.end)
        copy.backing, copy.backing_offset, copy.cow = Backing(offset, length), 0, False
        return copy

    def mremap(self, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
        """mremap(2): [old, old+old_len) resized to ``new_len`` bytes, in
        place, or moved (MREMAP_MAYMOVE) to a free range or (MREMAP_FIXED)
        to ``new_addr``, replacing what is there; returns the address. Pages
        move with their mapping, never copied: a shared mapping stays the
        file's, or the memory other processes map. A grown part maps what
        follows in the mapping (zeros, or the file's next pages). With
        MREMAP_DONTUNMAP (a move, same length) the old range stays mapped
        afresh: the same pages if shared, else zeros or the file's contents.
        Errors as Linux: EINVAL (flags, alignment, lengths, overlapping old
        and new ranges), EFAULT (``old`` unmapped, or the range not one
        mapping), ENOMEM (no room to grow in place and no MREMAP_MAYMOVE,
        no free range, the memory limit), EPERM (a fixed address too low).
        An old length of 0 (Linux's duplicate of a shared mapping) is EINVAL."""
        if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) or old & (PAGE - 1)
                or (flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE)
                or (flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len))):
            raise SyscallError(errno.EINVAL)
        old_len, new_len = page_up(old_len), page_up(new_len)
        if new_len == 0 or old_len == 0 or old_len > _TASK_SIZE or new_len > _TASK_SIZE:
            raise SyscallError(errno.EINVAL)
        with self.lock:
            if self._find(old) is None:
                raise SyscallError(errno.EFAULT)
            if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
                return self._remap_to(old, old_len, new_len, flags, new_addr)
            if new_len <= old_len:
                if new_len < old_len:
                    self.munmap(old + new_len, old_len - new_len)
                return old
            self._one_mapping(old, old + old_len)
            if old + new_len <= self.max_address and not self._overlaps(old + old_len, old + new_len):
                with COW_LOCK:
                    self._map(self._following(old + old_len, old + old_len, new_len - old_len))
                return old
            if not flags & MREMAP_MAYMOVE:
                raise SyscallError(errno.ENOMEM)
            return self._move(old, old_len, self.find_free(new_len), new_len, keep_old=False)

    def _remap_to(self, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
        """mremap's move to ``new_addr`` (MREMAP_FIXED; else a hint) or
        with MREMAP_DONTUNMAP, in Linux's order: the target unmapped, then
        the old range shrunk, then moved. Caller holds self.lock."""
        if new_addr & (PAGE - 1) or new_addr > _TASK_SIZE - new_len:
            raise SyscallError(errno.EINVAL)
        if old + old_len > new_addr and new_addr + new_len > old:
            raise SyscallError(errno.EINVAL)
        self._one_mapping(old, old + min(old_len, new_len))
        if flags & MREMAP_FIXED:
            self._check_fixed(new_addr, new_len)
            self.munmap(new_addr, new_len)
        if old_len > new_len:
            self.munmap(old + new_len, old_len - new_len)
            old_len = new_len
        target = new_addr if flags & MREMAP_FIXED else self.find_free(new_len, new_addr)
        return self._move(old, old_len, target, new_len, keep_old=bool(flags & MREMAP_DONTUNMAP))

    def _move(self, old: int, old_len: int, target: int, new_len: int, keep_old: bool) -> int:
        """Move the pieces of [old, old+old_len), one mapping, to the free
        range ``target`` (``new_len`` long: what follows is mapped after
        them); with ``keep_old`` the old range stays mapped afresh
        (``_refill``). Nothing changes on ENOMEM. Caller holds self.lock."""
        with COW_LOCK:
            tail = self._following(old + old_len, target + old_len, new_len - old_len) if new_len > old_len else []
            moved = self._carve(old, old + old_len)
            try:
                fresh = [p for v in moved for p in self._refill(v)] if keep_old else []
            except SyscallError:
                self._map(moved)
                raise
            if keep_old:
                self._map(fresh)
            else:
                self.space.unmap(old, old_len)
            for v in moved:
                v.start, v.end = v.start + target - old, v.end + target - old
            self._map(moved + tail)
        return target

    def _following(self, end: int, start: int, length: int) -> list[VMA]:
        """Pieces, not inserted, mapping [start, start+length) with what
        follows ``end`` in the mapping that ends there (its part grown by
        mremap): the file's next pages; for shared anonymous memory its
        next pages, past its end (SIGBUS) as on Linux; else zeros. Caller
        holds COW_LOCK."""
        last = self._find(end - 1)
        if last.shared and last.file is None:
            offset = last.backing_offset + (end - last.start)  # may lie past the backing: never accessed then
            return self._split_at_eof([VMA(start, start + length, last.prot, True, last.backing, offset,
                                           name=last.name)])
        return self._new_pieces(start, length, last.prot, last.shared, last.file,
                                last.file_offset + (end - last.start), last.name)

    def madvise_dontneed(self, addr: int, length: int) -> None:
        """MADV_DONTNEED over [addr, addr+length): private pages read back
        as a new mapping's would (zeros, or the file's contents), in this
        process only: pages it still shares since a fork are replaced, the
        other process keeps them. Shared pages keep their contents."""
        end = addr + page_up(length)
        with self.lock:
            first = max(bisect.bisect_right(self._starts, addr) - 1, 0)
            for v in [v for v in self._vmas[first:bisect.bisect_left(self._starts, end)] if v.end > addr]:
                lo, hi = max(v.start, addr), min(v.end, end)
                if v.shared or v.past_eof or v.backing.cache_key is not None or v.backing.shared_key is not None:
                    continue  # (a page-cache backing holds the file's contents already)
                if v.backing.forked:
                    self._replace(lo, hi)
                    continue
                off = v.memfd_offset + (lo - v.start)
                self.memory.zero(off, hi - lo)
                if v.file is not None:
                    self.memory.write(off, v.file.pread(hi - lo, v.file_offset + (lo - v.start)))

    def mapped(self, addr: int, length: int) -> bool:
        """Whether every page of [addr, addr+length) is mapped."""
        with self.lock:
            return self._covered(addr, addr + page_up(length))

    def set_brk(self, new: int) -> int:
        """brk(2): move the program break; returns the (possibly unchanged)
        break, as Linux does on failure."""
        with self.lock:
            if new < self.brk_start:
                return self.brk
            old_top, new_top = page_up(self.brk), page_up(new)
            try:
                if new_top > old_top:
                    if self._overlaps(old_top, new_top):
                        return self.brk
                    self.mmap(old_top, new_top - old_top, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, name="[heap]")
                elif new_top < old_top:
                    self.munmap(new_top, old_top - new_top)
            except SyscallError:
                return self.brk
            self.brk = new
            return new

    # ---------------------------------------------------------- guest I/O
    def _chunks(self, addr: int, length: int, prot: int) -> list[tuple[int, int]]:
        """MemoryFile (offset, length) pieces of [addr, addr+length), each
        VMA allowing ``prot``; EFAULT otherwise."""
        out = []
        end = addr + length
        if addr < 0 or end > self.max_address:
            raise SyscallError(errno.EFAULT)
        while addr < end:
            v = self._accessible(addr, prot)
            if v is None:
                raise SyscallError(errno.EFAULT)
            n = min(end, v.end) - addr
            out.append((v.memfd_offset + (addr - v.start), n))
            addr += n
        return out

    def _accessible(self, addr: int, prot: int) -> VMA | None:
        """The VMA at ``addr`` if the Sentry may access it for ``prot``:
        the VMA allows it and is not past the end of its file (unless the
        file has grown over ``addr`` since), else None."""
        v = self._find(addr)
        if v is None or (v.prot & prot) != prot:
            return None
        if v.past_eof and prot:
            return self._find(addr) if self._file_grew(v, addr) else None
        return v

    def copy_in(self, addr: int, length: int) -> bytes:
        """Read guest memory. EFAULT unless every byte is readable."""
        if length == 0:
            return b""
        v = self._find(addr)
        if v is not None and addr + length <= v.end and v.prot & PROT_READ and not v.past_eof:
            off = v.memfd_offset + (addr - v.start)
            return self.memory.map[off:off + length]
        return b"".join(self.memory.map[o:o + n] for o, n in self._chunks(addr, length, PROT_READ))

    def copy_out(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write guest memory. EFAULT unless every byte is writable."""
        length = len(data)
        if length == 0:
            return
        v = self._find(addr)
        if v is not None and addr + length <= v.end and v.prot & PROT_WRITE and not v.cow and not v.past_eof:
            off = v.memfd_offset + (addr - v.start)
            self.memory.map[off:off + length] = data
            return
        self._unshare(addr, length)
        pos = 0
        for o, n in self._chunks(addr, length, PROT_WRITE):
            self.memory.map[o:o + n] = data[pos:pos + n]
            pos += n

    def writable_views(self, addr: int, length: int) -> list[memoryview]:
        """Views of the MemoryFile over the writable prefix of guest
        [addr, addr+length), for the Sentry to fill in place (a host read
        straight into guest memory: short where the guest's buffer stops
        being writable, as Linux's read is); copy-on-write is broken first.
        EFAULT if not even the first byte is writable. The caller releases
        the views (the MemoryFile cannot close while one is alive)."""
        end, prefix = min(addr + length, self.max_address), addr
        while prefix < end:
            v = self._accessible(prefix, PROT_WRITE)
            if v is None:
                break
            prefix = min(end, v.end)
        if prefix == addr:
            raise SyscallError(errno.EFAULT)
        self._unshare(addr, prefix - addr)
        whole = memoryview(self.memory.map)
        try:
            return [whole[o:o + n] for o, n in self._chunks(addr, prefix - addr, PROT_WRITE)]
        finally:
            whole.release()

    def _unshare(self, addr: int, length: int, prot: int = PROT_WRITE) -> None:
        """Break copy-on-write sharing over a range the Sentry will write
        (where the VMAs allow ``prot``)."""
        with self.lock:
            end = addr + length
            while addr < end:
                v = self._find(addr)
                if v is None:
                    return  # _chunks reports the EFAULT
                if v.cow and (v.prot & prot) == prot and not v.past_eof:
                    self._break_cow(v, addr, min(end, v.end) - addr)
                addr = min(end, v.end)

    def poke(self, addr: int, data: bytes) -> None:
        """Write guest memory regardless of protection (the loader's
        set-up of read-only segments). EFAULT if unmapped."""
        self._unshare(addr, len(data), 0)  # never into a file's pages
        pos = 0
        for o, n in self._chunks(addr, len(data), 0):
            self.memory.map[o:o + n] = data[pos:pos + n]
            pos += n

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string (without the NUL). EFAULT on a bad
        pointer; ENAMETOOLONG if no NUL within ``limit`` bytes."""
        out = b""
        while len(out) < limit:
            v = self._accessible(addr, PROT_READ)
            if v is None:
                raise SyscallError(errno.EFAULT)
            off = v.memfd_offset + (addr - v.start)
            stop = off + min(v.end - addr, limit - len(out))
            nul = self.memory.map.find(b"\0", off, stop)
            if nul >= 0:
                return out + self.memory.map[off:nul]
            out += self.memory.map[off:stop]
            addr = v.end
        raise SyscallError(errno.ENAMETOOLONG)

    def read_iovecs(self, addr: int, count: int) -> list[tuple[int, int]]:
        """An iovec array as (base, length) pairs. EINVAL for a bad count."""
        if count < 0 or count > 1024:
            raise SyscallError(errno.EINVAL)
        raw = self.copy_in(addr, 16 * count)
        vecs = list(struct.iter_unpack("<QQ", raw))
        if any(n > 0x7FFF_FFFF_FFFF_FFFF for _, n in vecs):
            raise SyscallError(errno.EINVAL)
        return vecs

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.copy_in(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.copy_out(addr, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))

    def write_u32(self, addr: int, value: int) -> None:
        self.copy_out(addr, (value & 0xFFFF_FFFF).to_bytes(4, "little"))

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.copy_in(addr, 4), "little")

    # ------------------------------------------------------------ lifetime
    def release(self) -> None:
        """Drop every mapping and the platform address space. Idempotent
        (two threads sharing the mm may exit together)."""
        with self.lock, COW_LOCK:
            if self.released:
                return
            self.released = True
            pieces, self._vmas, self._starts = self._vmas, [], []
            for v in pieces:
                v.backing.refs -= 1
            self._release(pieces)
            if self.space is not None:
                self.space.release()

    def usage(self) -> int:
        """Bytes of address space mapped."""
        return sum(v.end - v.start for v in self.vmas())

    def resident(self) -> int:
        """Bytes of mapped memory that hold pages (a page shared by several
        VMAs or processes counts in each, as RSS does)."""
        return sum(self.memory.resident(v.memfd_offset, v.end - v.start) for v in self.vmas() if not v.past_eof)
