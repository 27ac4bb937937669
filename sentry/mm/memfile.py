"""MemoryFile: the one memfd that holds every byte of guest memory.

The Sentry maps the whole file once (``base``) and does all guest memory
I/O through that mapping; platforms map ranges of the same file into guest
address spaces. Allocation is in pages, first fit over a free list; freed
ranges are punched out of the file so the host gets the memory back.
The file is sparse: ``capacity`` is address space, not memory.

Thread safety: ``allocate``/``free`` take ``_lock``; reads and writes of
allocated ranges need no lock (their owner serializes them).

``--memory`` caps one ``MemoryBudget`` per sandbox, which counts guest
memory (this file's allocated pages) and the content of in-memory files
(the overlay's upper layer, /tmp, /dev/shm: sentry.fs.overlay), as Linux
counts tmpfs pages as memory. The file systems find the budget of their
sandbox with ``sandbox_budget()``: the Kernel makes its MemoryFile, then,
on the same thread, its VFS.
"""
from __future__ import annotations

import bisect
import ctypes
import fcntl
import mmap
import os
import threading
import weakref

PAGE = 4096
DEFAULT_CAPACITY = 64 << 30
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def _above_stdio(fd: int) -> int:
    """``fd`` moved to 3 or above: a caller that runs with its stdio closed
    must never pass guest memory through as a guest's stdin or stdout."""
    if fd > 2:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return high


class OutOfMemory(Exception):
    """The MemoryFile has no free range of the requested size (or the
    sandbox's memory limit is reached)."""


class MemoryBudget:
    """The bytes of memory one sandbox may hold (``limit``; None: no limit,
    only counted): guest memory and in-memory file content together.
    Thread-safe."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self._lock = threading.Lock()
        self.used = 0  # guarded by _lock

    def take(self, n: int) -> bool:
        """Count ``n`` more bytes (n <= 0: give -n back); False, counting
        nothing, if that would pass the limit."""
        with self._lock:
            if n > 0 and self.limit is not None and self.used + n > self.limit:
                return False
            self.used += n
            return True

    def available(self) -> int | None:
        """Bytes that may still be taken (None: no limit)."""
        return None if self.limit is None else max(0, self.limit - self.used)


_current = threading.local()  # .memfile: a weakref to the MemoryFile made last on this thread


def sandbox_budget() -> MemoryBudget | None:
    """The budget of the MemoryFile made last on this thread, while it is
    open (else None): what a sandbox's file systems, made after its
    MemoryFile, count their content against."""
    ref = getattr(_current, "memfile", None)
    memfile = ref() if ref is not None else None
    return memfile.budget if memfile is not None and not memfile.closed else None


class MemoryFile:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, limit: int | None = None):
        self.fd: int = _above_stdio(os.memfd_create("sentry-memory", os.MFD_CLOEXEC))
        self.capacity = capacity
        os.ftruncate(self.fd, capacity)
        self.map = mmap.mmap(self.fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.base: int = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.limit = limit
        self.budget = MemoryBudget(limit)  # shared with the sandbox's in-memory files
        self.closed = False
        _current.memfile = weakref.ref(self)
        self._lock = threading.Lock()
        # Sorted, disjoint, coalesced free ranges: starts and the matching ends.
        self._free_starts: list[int] = [0]
        self._free_ends: list[int] = [capacity]
        self.allocated = 0  # bytes currently allocated (guarded by _lock)
        self.peak = 0

    def allocate(self, length: int) -> int:
        """Offset of a new zero-filled range of ``length`` bytes.
        Preconditions: length > 0, page-aligned. Raises OutOfMemory."""
        with self._lock:
            if not self.budget.take(length):  # --memory: guest memory and file content together
                raise OutOfMemory(length)
            for i, (start, end) in enumerate(zip(self._free_starts, self._free_ends)):
                if end - start >= length:
                    if end - start == length:
                        del self._free_starts[i], self._free_ends[i]
                    else:
                        self._free_starts[i] = start + length
                    self.allocated += length
                    self.peak = max(self.peak, self.allocated)
                    return start
            self.budget.take(-length)
            raise OutOfMemory(length)

    def free(self, offset: int, length: int) -> None:
        """Return a range; its memory goes back to the host at once."""
        if _libc.fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length):
            raise OSError(ctypes.get_errno(), "fallocate(PUNCH_HOLE) on the MemoryFile")
        with self._lock:
            i = bisect.bisect_left(self._free_starts, offset)
            end = offset + length
            if (i > 0 and self._free_ends[i - 1] > offset) or (i < len(self._free_starts) and self._free_starts[i] < end):
                raise AssertionError(f"MemoryFile: double free of [{offset:#x}, {end:#x})")
            self.allocated -= length
            self.budget.take(-length)
            if i > 0 and self._free_ends[i - 1] == offset:
                i -= 1
                self._free_ends[i] = end
            else:
                self._free_starts.insert(i, offset)
                self._free_ends.insert(i, end)
            if i + 1 < len(self._free_starts) and self._free_starts[i + 1] == self._free_ends[i]:
                self._free_ends[i] = self._free_ends[i + 1]
                del self._free_starts[i + 1], self._free_ends[i + 1]

    def read(self, offset: int, length: int) -> bytes:
        return self.map[offset:offset + length]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.map[offset:offset + len(data)] = data

    def zero(self, offset: int, length: int) -> None:
        """Zero a range (dropping its pages)."""
        if _libc.fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length):
            raise OSError(ctypes.get_errno(), "fallocate(PUNCH_HOLE) on the MemoryFile")

    def resident(self, offset: int, length: int) -> int:
        """Bytes of ``[offset, offset+length)`` that hold pages (were written
        and not dropped): the file's data ranges, found with SEEK_DATA and
        SEEK_HOLE, so nothing is touched or faulted in."""
        end, pos, total = offset + length, offset, 0
        while pos < end:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data past pos
                break
            if data >= end:
                break
            hole = min(os.lseek(self.fd, data, os.SEEK_HOLE), end)
            total += hole - data
            pos = hole
        return total

    def copy(self, dst: int, src: int, length: int) -> None:
        self.map.move(dst, src, length)

    def close(self) -> None:
        self.closed = True
        try:
            self.map.close()
        except BufferError:
            pass  # a cffi buffer still points into it; the process is ending
        os.close(self.fd)
