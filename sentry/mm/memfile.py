"""MemoryFile: the one memfd that holds every byte of guest memory.

The Sentry maps the whole file once (``base``) and does all guest memory
I/O through that mapping; platforms map ranges of the same file into guest
address spaces. Allocation is in pages, first fit over a free list; freed
ranges are punched out of the file so the host gets the memory back.
The file is sparse: ``capacity`` is address space, not memory.

Thread safety: ``allocate``/``free`` take ``_lock``; reads and writes of
allocated ranges need no lock (their owner serializes them).
"""
from __future__ import annotations

import bisect
import ctypes
import fcntl
import mmap
import os
import threading

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


class MemoryFile:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, limit: int | None = None):
        self.fd: int = _above_stdio(os.memfd_create("sentry-memory", os.MFD_CLOEXEC))
        self.capacity = capacity
        os.ftruncate(self.fd, capacity)
        self.map = mmap.mmap(self.fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.base: int = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.limit = limit
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
            if self.limit is not None and self.allocated + length > self.limit:
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
        try:
            self.map.close()
        except BufferError:
            pass  # a cffi buffer still points into it; the process is ending
        os.close(self.fd)
