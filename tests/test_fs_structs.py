"""abi/fs_structs.py against what C sees (tests/progs/fs_layout.c)."""
from __future__ import annotations

import os
import subprocess

from abi import fs_structs as fsx
from conftest import compile_c


def c_layout() -> dict[tuple[str, str], int]:
    out = subprocess.run([compile_c("fs_layout", "dynamic")], capture_output=True, check=True).stdout
    return {(s, f): int(v) for s, f, v in (line.split() for line in out.decode().splitlines())}


def test_layouts_match_c():
    c = c_layout()
    assert c[("stat", "sizeof")] == fsx.STAT.size == 144
    assert c[("statx", "sizeof")] == fsx.STATX.size == 256
    assert c[("statfs", "sizeof")] == fsx.STATFS.size == 120
    assert c[("flock", "sizeof")] == fsx.FLOCK.size
    assert c[("timespec", "sizeof")] == fsx.TIMESPEC.size
    for struct, table in (("stat", fsx.STAT_OFFSETS), ("statx", fsx.STATX_OFFSETS),
                          ("statfs", fsx.STATFS_OFFSETS), ("linux_dirent64", fsx.DIRENT64_OFFSETS)):
        for field, off in table.items():
            assert c[(struct, field)] == off, f"{struct}.{field}"
    assert fsx.DIRENT64.size == c[("linux_dirent64", "d_name")]


def test_pack_stat_round_trips_a_host_stat():
    st = os.stat("/etc/passwd")
    raw = fsx.pack_stat(st)
    dev, ino, nlink, mode, uid, gid, _, rdev, size, blksize, blocks, *times = fsx.STAT.unpack(raw)
    assert (dev, ino, nlink, mode, size) == (st.st_dev, st.st_ino, st.st_nlink, st.st_mode, st.st_size)
    assert times[2] * 10**9 + times[3] == st.st_mtime_ns
    x = fsx.STATX.unpack(fsx.pack_statx(st))
    assert x[6] == st.st_mode and x[7] == st.st_ino and os.makedev(x[21], x[22]) == st.st_dev


def test_dirent_records_are_padded():
    rec = fsx.dirent64(5, 1, fsx.DT_REG, b"abcde")
    assert len(rec) == 32 and rec[19:25] == b"abcde\0"
    assert len(fsx.dirent64(5, 1, fsx.DT_REG, b"abcd")) == 24
    assert fsx.makedev(259, 65537) == os.makedev(259, 65537)
    assert (fsx.major(os.makedev(259, 65537)), fsx.minor(os.makedev(259, 65537))) == (259, 65537)


def test_pack_stat_times_before_1970():
    from sentry.fs.node import Stat

    st = Stat(0o100644)
    st.st_mtime_ns = -1  # one nanosecond before the epoch
    fields = fsx.STAT.unpack(fsx.pack_stat(st))
    assert fields[13:15] == (-1, 999_999_999)
    x = fsx.STATX.unpack(fsx.pack_statx(st))
    assert x[17:19] == (-1, 999_999_999)  # stx_mtime
