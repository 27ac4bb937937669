"""Memory management as Linux does it, where an audit found the Sentry
different: each section of tests/progs/mm_linux.c prints in the sandbox,
on every platform, what it prints natively. And the MemoryManager's books
(VMAs, backing references, the MemoryFile) under random calls."""
from __future__ import annotations

import contextlib
import random

import pytest

from conftest import native
from platforms.base import PROT_WRITE
from sentry.errors import SyscallError
from sentry.mm.memfile import MemoryFile
from sentry.mm.mm import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PAGE, MemoryManager
from sentry.mm.pagecache import PageCache

SECTIONS = {
    "mremap-shared": "mremap keeps MAP_SHARED memory the file's and the other process's",
    "mremap-fixed": "MREMAP_FIXED and MREMAP_DONTUNMAP",
    "dontneed-fork": "MADV_DONTNEED on pages shared copy-on-write since a fork",
    "hint": "an unaligned mmap hint without MAP_FIXED is advisory",
    "sigbus": "SIGBUS past the end of a mapped file",
}


@pytest.mark.parametrize("section", SECTIONS)
def test_memory_management_matches_native(sentry, cprog, section):
    prog = cprog("mm_linux", "static")
    want = native(prog, section)
    assert want.returncode == 0 and b" FAIL\n" not in want.stdout, want.stdout  # the program itself is right
    got = sentry.run(prog, section)
    assert got.stdout.decode() == want.stdout.decode(), got.stderr
    assert got.returncode == 0


# --------------------------------------------- bookkeeping under random calls
class _Space:
    """A platform address space that maps nothing (the MemoryManager's
    own bookkeeping is under test)."""

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None: ...

    def unmap(self, addr: int, length: int) -> None: ...

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def release(self) -> None: ...


class _File:
    """A writable regular file that grows when asked."""

    writable = True
    path = "/f"

    def __init__(self, size: int):
        self.data = bytearray(b"f" * size)
        self.node = object()

    def pread(self, length: int, offset: int) -> bytes:
        return bytes(self.data[offset:offset + length])

    def pwrite(self, data: bytes, offset: int) -> int:
        self.data[offset:offset + len(data)] = data
        return len(data)

    def size(self) -> int:
        return len(self.data)

    def mmap_identity(self):
        return (id(self), len(self.data), bytes(self.data))


@pytest.mark.parametrize("seed", range(40))
def test_random_memory_calls_keep_the_books(seed):
    """mmap/munmap/mremap/mprotect/madvise/fork/faults/exit in random order
    over anonymous, private and shared file memory (the file growing now
    and then): VMAs stay sorted and disjoint, no VMA maps a freed backing,
    and once every mm is released the MemoryFile holds nothing."""
    rnd = random.Random(seed)
    memory = MemoryFile(1 << 32)
    cache = PageCache(memory, max_unused=0)
    file = _File(3 * PAGE + 5)
    low, pages = 0x10000, 64

    def new_mm() -> MemoryManager:
        mm = MemoryManager(memory, _Space(), cache, low, low + pages * PAGE)
        mm.mmap_base = mm.max_address
        return mm

    mms = [new_mm()]
    for _ in range(300):
        mm = rnd.choice(mms)
        addr, length = low + rnd.randrange(pages) * PAGE, rnd.randrange(1, 8) * PAGE
        op = rnd.randrange(9)
        try:
            if op == 0:
                mm.mmap(addr, length, rnd.choice([1, 3]), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
            elif op == 1:
                mm.mmap(addr, length, rnd.choice([1, 3]), rnd.choice([MAP_PRIVATE, MAP_SHARED]) | MAP_FIXED,
                        file, rnd.randrange(4) * PAGE)
            elif op == 2:
                mm.munmap(addr, length)
            elif op == 3:
                mm.mremap(addr, rnd.randrange(1, 4) * PAGE, length, rnd.choice([0, 1, 3, 5]),
                          low + rnd.randrange(pages) * PAGE)
            elif op == 4:
                mm.mprotect(addr, length, rnd.choice([0, 1, 3]))
            elif op == 5:
                mm.madvise_dontneed(addr, length)
            elif op == 6 and len(mms) < 4:
                child = mm.fork()
                child.activate(_Space())
                mms.append(child)
            elif op == 7 and len(mms) > 1:
                mms.remove(mm)
                mm.release()
            elif op == 8:
                mm.handle_fault(addr, PROT_WRITE)
                mm.copy_out(addr, b"x" * 10)
        except SyscallError:
            pass
        if rnd.random() < 0.05:
            file.data.extend(b"g" * PAGE)
        for m in mms:
            vmas = list(m.vmas())
            assert all(a.end <= b.start for a, b in zip(vmas, vmas[1:]))
            assert all(v.start < v.end and v.backing.refs > 0 and not v.backing.freed for v in vmas)
    for m in mms:
        m.release()
    assert memory.allocated == 0
    memory.close()
