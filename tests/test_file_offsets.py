"""Huge, negative and overflowing file offsets on every platform
(progs/file_offsets.c, from the hardening audit's mmapneg.c and offs.c:
mmap, mremap, pread, preadv, lseek, read, pwrite, ftruncate, truncate,
fallocate, sendfile, copy_file_range):
``mmap(..., fd, -4096)`` of a host file crashed the Sentry (`internal
error: OverflowError`: the unsigned offset reached os.pread); now each
call gives Linux's result, checked against the same program run natively
on tmpfs (the sandbox's /tmp and overlay are in memory, as tmpfs)."""
from __future__ import annotations

import os
import shutil
import tempfile

from conftest import native

# Lines where the Sentry differs from Linux, and why (none is a crash).
KNOWN = {
    # The host's /etc/passwd lives on a disk file system whose largest offset
    # is below 2^63; the Sentry's overlay allows tmpfs's (LLONG_MAX).
    "host lseek SEEK_SET LLONG_MAX", "host read at LLONG_MAX",
    # rw_verify_area's EINVAL for offset + count past LLONG_MAX is missing
    # in the read system calls (sentry/syscalls/files.py); host files get it
    # from the host.
    "memory pread LLONG_MAX", "memory read at LLONG_MAX",
    # Growing a host file's mapping past the largest offset: the host's
    # pread refuses (EINVAL), Linux maps pages that SIGBUS.
    "host mremap past LLONG_MAX",
    # A negative loff_t is EINVAL in copy_file_range (files.py's
    # _offset_arg), EOVERFLOW on Linux.
    "memory copy_file_range in -1", "memory copy_file_range out -1",
}


def _lines(out: bytes) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in out.decode().splitlines() if " = " in line)


def test_file_offsets_as_linux(sentry, cprog):
    prog = cprog("file_offsets")
    scratch = tempfile.mkdtemp(dir="/dev/shm")  # tmpfs, as the sandbox's /tmp
    try:
        shutil.copy("/etc/hostname", os.path.join(scratch, "victim"))
        want = native(prog, "/etc/passwd", os.path.join(scratch, "victim"), scratch)
    finally:
        shutil.rmtree(scratch)
    assert want.returncode == 0 and want.stdout.endswith(b"still alive\n"), want
    # In the sandbox: a host file of the rootfs (read through a host fd), a
    # rootfs file to truncate (copied up, sparse) and the tmpfs /tmp.
    got = sentry.run(prog, "/etc/passwd", "/etc/hostname", "/tmp")
    assert got.returncode == 0 and b"internal error" not in got.stderr, got.stderr[-2000:]
    assert got.stdout.endswith(b"still alive\n"), got.stdout
    mine, linux = _lines(got.stdout), _lines(want.stdout)
    assert mine.keys() == linux.keys()
    assert {k: v for k, v in mine.items() if k not in KNOWN} == {k: v for k, v in linux.items() if k not in KNOWN}
    assert mine["host mmap private -4096"] == "-1 EOVERFLOW"  # the audit's crash
    assert mine["host mmap shared -4096"] == "-1 EOVERFLOW"

