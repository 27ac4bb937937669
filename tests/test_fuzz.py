"""Fuzzing, short and seeded, on every platform: random system calls made
inside the sandbox (progs/fuzz_syscalls.c) and Debian's trinity must leave
no Sentry crash (exit 125, a traceback), no hang, no leaked stub and no host
change. The long runs: bench/fuzz_long.py. Corrupt ELF files give one clear
line (with the other bad programs in test_faults.py)."""
from __future__ import annotations

import os
import pathlib
import re
import shutil

import pytest

from test_escape import _tree_digest, leaked_stubs
from test_processes import _stubs

SEEDS = (1, 2)
CALLS = 1500  # per seed and platform: about 10 s


def fuzz_root(tmp_path: pathlib.Path, binary: str) -> pathlib.Path:
    """A small rootfs holding only the fuzzer: what it may damage is known."""
    root = tmp_path / "root"
    for d in ("tmp", "etc", "dev", "proc"):
        (root / d).mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    shutil.copy(binary, root / "fuzz")
    return root


def assert_sentry_survived(got, before_stubs: set[int]) -> None:
    assert got.returncode != 125 and b"internal error" not in got.stderr, got.stderr[-3000:]
    assert b"Traceback" not in got.stderr, got.stderr[-3000:]
    assert not leaked_stubs(before_stubs)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_syscalls(sentry, cprog, tmp_path, seed):
    root = fuzz_root(tmp_path, cprog("fuzz_syscalls"))
    before_tree, before_stubs = _tree_digest(root), _stubs()
    got = sentry.run("/fuzz", str(seed), str(CALLS), options=("--rootfs", str(root), "--pids", "64",
                                                              "--memory", "512M", "--timeout", "240"), timeout=300)
    assert_sentry_survived(got, before_stubs)
    assert got.returncode == 0, got.stderr[-3000:]
    fields = got.stdout.split()
    assert fields[0] == b"calls" and int(fields[1]) > CALLS // 2, got.stdout
    assert _tree_digest(root) == before_tree


TRINITY = shutil.which("trinity")


@pytest.mark.skipif(TRINITY is None, reason="trinity is not installed (apt-get install trinity)")
def test_trinity(sentry, tmp_path):
    """Debian's trinity, a few hundred calls from two children, as root
    with the host / (read-only, under the overlay) as its root. Its socket
    cache is off: trinity crashes by itself when most families are absent."""
    before_stubs = _stubs()
    host_tmp = sorted(os.listdir("/tmp"))
    got = sentry.run(TRINITY, "--dangerous", "-N", "300", "-C", "2", "-s", "7", "-q", "-a", "64", "-l", "off",
                     "--disable-fds=sockets", options=("--pids", "64", "--memory", "1G", "--timeout", "200"),
                     timeout=260, cwd=str(tmp_path))
    assert_sentry_survived(got, before_stubs)
    assert got.returncode == 0, (got.stdout[-2000:], got.stderr[-2000:])  # it finished: no hang
    ran = re.search(rb"Ran (\d+) syscalls", got.stdout)
    assert ran and int(ran.group(1)) >= 300, got.stdout[-2000:]
    assert set(host_tmp) <= set(os.listdir("/tmp"))  # nothing of the host's went
