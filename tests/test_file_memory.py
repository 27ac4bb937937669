"""Files in memory from Python: FileData (sparse content, what it holds)
against a plain bytearray, the one memory budget a sandbox's MemoryFile
and file systems share, the cap on host fds held for guests, and vmexec's
spawner turning a host error into a PlatformError. The same on real
programs: tests/test_limits.py."""
from __future__ import annotations

import errno
import os
import random
import threading

import pytest

from platforms.base import PlatformError
from sentry.errors import SyscallError
from sentry.fs.context import FSContext
from sentry.fs.file import O_CREAT, O_RDONLY, O_RDWR
from sentry.fs.overlay import CHUNK, FileData, HostFds
from sentry.fs.vfs import VFS
from sentry.mm.memfile import MemoryFile, OutOfMemory, sandbox_budget


def test_filedata_reads_as_a_bytearray_would():
    rng = random.Random(8)
    data, model = FileData(b"seed" * 1000), bytearray(b"seed" * 1000)
    for _ in range(3000):
        op = rng.randrange(5)
        off = rng.choice([rng.randrange(0, 4 * CHUNK), rng.randrange(0, 64), CHUNK - 1, CHUNK, 3 * CHUNK + 7])
        n = rng.choice([0, 1, 5, 100, CHUNK, CHUNK + 3, rng.randrange(0, 3 * CHUNK)])
        if op == 0:
            buf = bytes(rng.randrange(256) for _ in range(min(n, 300))) * (n // 300 + 1)
            buf = buf[:n]
            cost = data.cost(off, off + len(buf))
            held = data.held
            data.write(off, buf)
            assert data.held == held + cost
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + len(buf)] = buf
        elif op == 1:
            size = rng.choice([0, off, off + n, len(model) // 2])
            assert data.truncate(size) <= 0
            del model[size:]
            model.extend(bytes(size - len(model)))
        elif op == 2:
            assert data.zero(off, off + n) <= 0
            stop = min(off + n, len(model))
            if off < stop:
                model[off:stop] = bytes(stop - off)
        elif op == 3:
            cost = data.cost(off, min(off + n, len(model)))
            assert data.allocate(off, off + n) == cost
        else:
            assert data[off:off + n] == bytes(model[off:off + n])
        assert len(data) == len(model)
        assert 0 <= data.held <= len(model) + CHUNK
    assert bytes(data) == bytes(model)
    assert data.held == sum(len(c) for c in data.chunks.values())


def test_filedata_holes_hold_nothing():
    d = FileData()
    d.truncate(2 << 30)
    assert (len(d), d.held, d[1 << 30:(1 << 30) + 3]) == (2 << 30, 0, b"\0\0\0")
    d.write((2 << 30) - 1, b"z")
    assert d.held <= CHUNK and d[(2 << 30) - 2:] == b"\0z"
    assert d.zero(0, 2 << 30) < 0
    assert d.held == 0 and len(d) == 2 << 30 and d.chunks == {}


def test_filedata_huge_sparse_ranges_take_no_time():
    """Punching, costing and truncating ranges of a file of 2^63 - 1 bytes
    walk the chunks it holds, never every chunk of the range (trinity's
    fallocate(PUNCH_HOLE) over such a file hung the Sentry)."""
    d = FileData(b"abc")
    d.truncate((1 << 63) - 1)
    d.write(1 << 40, b"x" * (3 * CHUNK))
    assert d.cost(0, (1 << 63) - 1) == (1 << 63) - 1 - d.held
    assert d.zero(1, (1 << 63) - 1) == -(2 + 3 * CHUNK) and d.held == 1
    assert d.allocate(0, 10) == 9 and d[0:2] == b"a\0"
    assert d.truncate(0) == -10 and d.held == 0


@pytest.fixture
def sandbox_fs(tmp_path):
    """What Kernel.__init__ makes, in its order: a MemoryFile with a
    --memory limit, then (same thread) the VFS."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "big").write_bytes(b"b" * (3 << 20))
    memory = MemoryFile(capacity=1 << 30, limit=8 << 20)
    vfs = VFS(rootfs=str(tmp_path), overlay="memory")
    vfs.mount_tmp()
    yield memory, vfs, FSContext.initial(vfs, "/")
    memory.close()


def test_file_systems_share_the_sandboxs_memory_budget(sandbox_fs):
    memory, vfs, fs = sandbox_fs
    assert vfs.rootfs.budget is memory.budget
    assert all(f.budget is memory.budget for _path, f in vfs.mount_table if hasattr(f, "budget"))
    f = vfs.open(fs, None, b"/tmp/a", O_CREAT | O_RDWR, 0o600)
    f.truncate(1 << 40)  # sparse: free
    assert memory.budget.used == 0
    assert f.pwrite(b"x" * (5 << 20), 0) == 5 << 20
    assert memory.budget.used == 5 << 20
    with pytest.raises(OutOfMemory):  # guest memory and file content: one limit
        memory.allocate(4 << 20)
    off = memory.allocate(2 << 20)
    with pytest.raises(SyscallError) as e:
        vfs.open(fs, None, b"/etc/big", O_RDWR, 0)  # a copy-up is content too
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(SyscallError) as e:
        f.fallocate(0, 5 << 20, 2 << 20)
    assert e.value.errno == errno.ENOSPC and f.stat().st_size == 1 << 40
    memory.free(off, 2 << 20)
    f.truncate(0)
    assert memory.budget.used == 0
    f.decref()


def test_budget_is_the_open_memoryfile_of_this_thread(tmp_path):
    memory = MemoryFile(capacity=1 << 20, limit=1 << 20)
    assert sandbox_budget() is memory.budget
    seen = []
    t = threading.Thread(target=lambda: seen.append(sandbox_budget()))
    t.start()
    t.join()
    assert seen == [None]  # another thread's sandbox is not this one's
    memory.close()
    assert sandbox_budget() is None  # a closed sandbox's budget is never reused
    assert VFS(rootfs=str(tmp_path)).rootfs.budget is None


def test_host_fds_for_guests_are_capped(tmp_path):
    (tmp_path / "f").write_text("x")
    fds = HostFds()
    fds.cap = 2
    fds.acquire()
    fds.acquire()
    with pytest.raises(SyscallError) as e:
        fds.acquire()
    assert e.value.errno == errno.ENFILE
    fds.release()
    fds.acquire()
    assert fds.held == 2


def test_rootfs_files_release_their_host_fd(tmp_path):
    from sentry.fs.overlay import HOST_FDS

    (tmp_path / "f").write_text("x")
    vfs = VFS(rootfs=str(tmp_path))
    fs = FSContext.initial(vfs, "/")
    before = HOST_FDS.held
    f = vfs.open(fs, None, b"/f", O_RDONLY, 0)
    assert HOST_FDS.held == before + 1 and f.pread(1, 0) == b"x"
    f.decref()
    del f
    import gc

    gc.collect()
    assert HOST_FDS.held == before


def test_vmexec_spawner_reports_host_errors_as_platform_errors():
    from platforms.vmexec.spawner import Spawner

    def out_of_fds():
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    spawner = Spawner()
    try:
        with pytest.raises(PlatformError, match="Too many open files"):
            spawner.submit(out_of_fds).result()
    finally:
        spawner.shutdown()
