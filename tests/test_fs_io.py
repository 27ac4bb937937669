"""Data movement between files, as Linux does it, on every platform:
splice, tee, vmsplice, sync_file_range, pipe sizes (F_SETPIPE_SZ),
fallocate modes, and small errno cases (FIONREAD on files, fsync on pipes
and sockets, overlapping copy_file_range, SCM_CREDENTIALS pids).
tests/progs/fs_io.c prints one line per call; the sandbox's lines must
equal native ones, in the memory overlay and on a writable volume."""
from __future__ import annotations

import errno

import pytest

from conftest import native
from sentry.errors import SyscallError
from sentry.fs.pipe import PIPE_MAX_SIZE, Pipe, new_pipe, transfer
from sentry.syscalls.table import listing
from test_fs_vfs import snapshot


def _lines(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode().splitlines()


def test_fs_io_matches_native(sentry, cprog, tmp_path):
    prog = cprog("fs_io")
    (tmp_path / "native").mkdir()
    (tmp_path / "sandbox").mkdir()
    want = _lines(native(prog, str(tmp_path / "native")))
    before = snapshot(str(tmp_path / "sandbox"))
    got = _lines(sentry.run(prog, str(tmp_path / "sandbox")))
    assert got == want
    assert snapshot(str(tmp_path / "sandbox")) == before  # the overlay kept every change


def test_fs_io_on_a_volume_matches_native(sentry, cprog, tmp_path):
    """Host files of a writable volume: fallocate's modes pass through."""
    prog = cprog("fs_io")
    (tmp_path / "native").mkdir()
    (tmp_path / "vol").mkdir()
    want = _lines(native(prog, str(tmp_path / "native")))
    got = _lines(sentry.run(prog, "/vol", options=("--volume", f"{tmp_path / 'vol'}:/vol")))
    assert got == want
    assert (tmp_path / "vol" / "fa").stat().st_size == 10000  # the host file changed


def test_pipe_size_past_max_is_eperm(sentry, cprog, tmp_path):
    """Past /proc/sys/fs/pipe-max-size: EPERM even for root, as gVisor
    (Linux lets CAP_SYS_RESOURCE pass)."""
    got = _lines(sentry.run(cprog("fs_io"), str(tmp_path), "max"))
    assert got == ["setpipe 2097152: -1 EPERM", "getpipe: 65536"]


def test_splice_calls_are_in_the_table():
    status = {name: st for _, name, st, _ in listing()}
    for name in ("splice", "tee", "vmsplice", "sync_file_range"):
        assert status[name] in ("supported", "partial"), name


@pytest.mark.parametrize("arg,size", [(0, 4096), (1, 4096), (4096, 4096), (4097, 8192), (100000, 131072),
                                      (PIPE_MAX_SIZE, PIPE_MAX_SIZE)])
def test_set_capacity_rounds_to_pages_power_of_two(arg, size):
    p = Pipe()
    assert p.set_capacity(arg) == size and p.capacity == size


@pytest.mark.parametrize("arg,err", [(PIPE_MAX_SIZE + 1, errno.EPERM), (1 << 31, errno.EPERM),
                                     ((1 << 31) + 1, errno.EINVAL), (-1, errno.EINVAL)])
def test_set_capacity_errors(arg, err):
    with pytest.raises(SyscallError) as e:
        Pipe().set_capacity(arg)
    assert e.value.errno == err


def test_capacity_bounds_writes_and_busy():
    r, w = new_pipe()
    assert w.pipe.set_capacity(4096) == 4096
    assert w.write(b"x" * 10000) == 4096
    with pytest.raises(SyscallError) as e:
        w.write(b"y")
    assert e.value.errno == errno.EAGAIN
    assert w.pipe.set_capacity(8192) == 8192
    assert w.write(b"y" * 5000) == 4096  # more than PIPE_BUF: what fits
    with pytest.raises(SyscallError) as e:
        w.pipe.set_capacity(4096)  # holds 8192
    assert e.value.errno == errno.EBUSY
    assert r.read(100000) == b"x" * 4096 + b"y" * 4096
    r.decref()
    w.decref()


def test_transfer_moves_or_copies_what_fits():
    a_r, a_w = new_pipe()
    b_r, b_w = new_pipe()
    a, b = a_r.pipe, b_r.pipe
    a_w.write(b"abcdef")
    b.set_capacity(4096)
    b_w.write(b"z" * 4093)
    assert transfer(a, b, 100, consume=False) == 3  # tee: room for 3
    assert a.buf == b"abcdef" and b.buf.endswith(b"zabc")
    with pytest.raises(SyscallError) as e:
        transfer(a, b, 100)  # the output is full
    assert e.value.errno == errno.EAGAIN
    b_r.read(4096)
    assert transfer(a, b, 4) == 4 and a.buf == b"ef" and b.buf == b"abcd"
    a_w.decref()
    assert transfer(a, b, 100) == 2 and transfer(a, b, 100) == 0  # then EOF
    b_r.decref()
    with pytest.raises(SyscallError) as e:
        transfer(a, b, 100)
    assert e.value.errno == errno.EPIPE
    a_r.decref()
    b_w.decref()
