"""One page cache, as Linux has: a file's mappings and its read(2),
write(2) and truncate see each other at once (sentry/mm/pagecache.py).

tests/progs/mm_coherence.c prints what each side sees (two mappings in one
process, a mapping in another process, ftruncate shorter and longer with
SIGBUS past the end, fallocate, O_TRUNC, private pages before and after
the mapper writes them); the sandbox's lines must equal native ones on
every platform, for a file in /tmp (memory), on a --volume (host file)
and in a copied-up file of the rootfs overlay. The unit tests drive the
MemoryManager over a tmpfs file directly: the books stay right, and a
file nobody maps leaves nothing behind."""
from __future__ import annotations

import contextlib
import random

import pytest

from conftest import native
from platforms.base import PROT_READ, PROT_WRITE
from sentry.errors import SyscallError
from sentry.fs.file import O_RDWR
from sentry.fs.overlay import OverlayFS
from sentry.mm.memfile import MemoryFile
from sentry.mm.mm import MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PAGE, Fault, MemoryManager
from sentry.mm.pagecache import MAPPED, PageCache

FILE = "mm-coherence"  # the name the program gives its file


def _lines(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode().splitlines()


@pytest.fixture
def want(cprog, tmp_path) -> list[str]:
    (tmp_path / "native").mkdir()
    return _lines(native(cprog("mm_coherence"), str(tmp_path / "native")))


def test_mm_coherence_in_tmp_matches_native(sentry, cprog, want):
    assert _lines(sentry.run(cprog("mm_coherence"), "/tmp")) == want


def test_mm_coherence_on_a_volume_matches_native(sentry, cprog, tmp_path, want):
    vol = tmp_path / "vol"
    vol.mkdir()
    assert _lines(sentry.run(cprog("mm_coherence"), "/vol", options=("--volume", f"{vol}:/vol"))) == want
    assert not (vol / FILE).exists()  # made and removed on the host


def test_mm_coherence_on_a_copied_up_rootfs_file_matches_native(sentry, cprog, tmp_path, want):
    """The file exists in the rootfs (the host's /): the program's open
    copies it up into the memory overlay; the host file never changes."""
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / FILE).write_bytes(b"from the rootfs" * 1000)
    assert _lines(sentry.run(cprog("mm_coherence"), str(lower))) == want
    assert (lower / FILE).read_bytes() == b"from the rootfs" * 1000


# ------------------------------------------------------------ unit tests
class _Space:
    """A platform address space that maps nothing."""

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None: ...

    def unmap(self, addr: int, length: int) -> None: ...

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def release(self) -> None: ...


LOW, PAGES = 0x10000, 64


def _setup(size: int):
    memory = MemoryFile(1 << 30)
    cache = PageCache(memory, max_unused=0)
    fs = OverlayFS(None)
    node = fs.root.create(b"f", 0o644, None)
    f = node.open("/f", O_RDWR, None)
    f.pwrite(bytes(i % 251 for i in range(size)), 0)
    return memory, cache, node, f


def _mm(memory, cache) -> MemoryManager:
    mm = MemoryManager(memory, _Space(), cache, LOW, LOW + PAGES * PAGE)
    mm.mmap_base = mm.max_address
    return mm


def test_a_mapped_file_and_its_io_see_each_other():
    memory, cache, node, f = _setup(3 * PAGE)
    mm = _mm(memory, cache)
    assert id(node) not in MAPPED
    a = mm.mmap(0, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    p = mm.mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0)
    assert MAPPED[id(node)] is cache
    mm.copy_out(a + 10, b"store")
    assert f.pread(5, 10) == b"store" and f.read(15)[10:] == b"store"
    f.pwrite(b"write", PAGE)
    assert mm.copy_in(a + PAGE, 5) == b"write" == mm.copy_in(p + PAGE, 5)
    mm.copy_out(p + 3, b"own")  # copies page 0 of the private mapping only
    f.pwrite(b"later", 0)
    f.pwrite(b"later", PAGE + 5)
    assert mm.copy_in(p, 8) == bytes([0, 1, 2]) + b"own" + bytes([6, 7])  # its own copy
    assert mm.copy_in(p + PAGE + 5, 5) == b"later"  # still the file's
    f.truncate(PAGE + 1)
    assert mm.handle_fault(a + 2 * PAGE) is Fault.PAST_EOF
    assert mm.copy_in(a + PAGE + 1, 10) == bytes(10)  # the tail of the last page: zeros
    f.truncate(3 * PAGE)
    assert mm.copy_in(a + 2 * PAGE, 8) == bytes(8)
    mm.munmap(p, 2 * PAGE)
    mm.munmap(a, 3 * PAGE)
    assert id(node) not in MAPPED  # nobody maps it: reads and writes are as before
    assert memory.allocated == 0
    assert f.pread(5, 10) == b"store"  # written back


def test_a_file_shrinking_faults_in_every_process():
    memory, cache, node, f = _setup(2 * PAGE)
    parent = _mm(memory, cache)
    a = parent.mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
    child = parent.fork()
    child.activate(_Space())
    other = _mm(memory, cache)
    b = other.mmap(0, 2 * PAGE, PROT_READ, MAP_PRIVATE, f, 0)
    f.truncate(PAGE)
    for mm, addr in ((parent, a), (child, a), (other, b)):
        assert mm.handle_fault(addr + PAGE) is Fault.PAST_EOF
        with pytest.raises(SyscallError):
            mm.copy_in(addr + PAGE, 1)
    f.pwrite(b"grown", PAGE)
    assert child.copy_in(a + PAGE, 5) == other.copy_in(b + PAGE, 5) == b"grown"
    for mm in (parent, child, other):
        mm.release()
    assert id(node) not in MAPPED and memory.allocated == 0


@pytest.mark.parametrize("seed", range(25))
def test_random_io_and_mappings_stay_coherent(seed):
    """mmap/munmap/fork/stores/pwrite/truncate in random order over one
    tmpfs file, against a model of its content: pread, every shared page
    and every private page not yet written read as the model, and once all
    is unmapped nothing is left and the file is the model."""
    rnd = random.Random(seed)
    memory, cache, node, f = _setup(3 * PAGE + 5)
    model = bytearray(f.pread(3 * PAGE + 5, 0))
    mms = [_mm(memory, cache)]
    for _ in range(200):
        mm = rnd.choice(mms)
        addr, length = LOW + rnd.randrange(PAGES) * PAGE, rnd.randrange(1, 6) * PAGE
        op = rnd.randrange(8)
        try:
            if op == 0:
                mm.mmap(addr, length, rnd.choice([1, 3]), rnd.choice([MAP_PRIVATE, MAP_SHARED]) | MAP_FIXED,
                        f, rnd.randrange(4) * PAGE)
            elif op == 1:
                mm.munmap(addr, length)
            elif op == 2 and len(mms) < 4:
                child = mm.fork()
                child.activate(_Space())
                mms.append(child)
            elif op == 3 and len(mms) > 1:
                mms.remove(mm)
                mm.release()
            elif op == 4:  # a store inside the file through one VMA
                vmas = [v for v in mm.vmas() if v.prot & PROT_WRITE and not v.past_eof]
                v = rnd.choice(vmas) if vmas else None
                room = min(v.end - v.start, len(model) - v.file_offset) if v else 0
                if room > 0:
                    at, n = rnd.randrange(room), rnd.randrange(1, 12)
                    n = min(n, room - at)
                    data = bytes([rnd.randrange(256)]) * n
                    mm.copy_out(v.start + at, data)
                    if v.shared:
                        model[v.file_offset + at:v.file_offset + at + n] = data
            elif op == 5:
                data, at = bytes([rnd.randrange(256)]) * rnd.randrange(1, 3 * PAGE), rnd.randrange(5 * PAGE)
                f.pwrite(data, at)
                model.extend(bytes(max(0, at - len(model))))
                model[at:at + len(data)] = data
            elif op == 6:
                size = rnd.randrange(6 * PAGE)
                f.truncate(size)
                del model[size:]
                model.extend(bytes(size - len(model)))
            elif op == 7:
                mm.msync(addr, length)
        except SyscallError:
            pass
        size = len(model)
        assert f.size() == size and f.pread(size + 10, 0) == model
        for m in mms:
            for v in m.vmas():
                assert v.backing.refs > 0 and not v.backing.freed
                if v.past_eof or not (v.shared or v.backing.shared_key is not None):
                    continue
                n = min(v.end - v.start, size - v.file_offset)
                if n > 0 and v.prot & PROT_READ:
                    assert m.copy_in(v.start, n) == model[v.file_offset:v.file_offset + n], (v, size)
    for m in mms:
        m.release()
    assert id(node) not in MAPPED
    assert memory.allocated == 0 and bytes(node.data) == model
    memory.close()
