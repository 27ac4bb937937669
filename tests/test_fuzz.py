"""Fuzzing, short and seeded, on every platform: random system calls made
inside the sandbox (progs/fuzz_syscalls.c) and Debian's trinity must leave
no Sentry crash (exit 125, a traceback), no hang, no leaked stub and no host
change. The long runs: bench/fuzz_long.py. Corrupt ELF files (23 variants:
overlapping, truncated, huge and misplaced segments, bad PT_INTERP) give one
clear line or run as a guest; never a crash or a hang."""
from __future__ import annotations

import os
import pathlib
import re
import shutil

import pytest

from conftest import native
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
    with the host / (read-only, under the overlay) as its root, aimed at a
    directory of victim files that must stay as they are on the host. Its
    socket cache is off: trinity crashes by itself when most address
    families are absent."""
    victims = tmp_path / "victims"
    (victims / "sub").mkdir(parents=True)
    for i in range(8):
        (victims / f"file{i}").write_bytes(os.urandom(4096))
    (victims / "sub" / "link").symlink_to("../file0")
    before_tree, before_stubs = _tree_digest(victims), _stubs()
    got = sentry.run(TRINITY, "--dangerous", "-N", "300", "-C", "2", "-s", "7", "-q", "-a", "64", "-l", "off",
                     "--disable-fds=sockets", "-V", str(victims),
                     options=("--pids", "64", "--memory", "1G", "--timeout", "200"), timeout=260, cwd=str(tmp_path))
    assert_sentry_survived(got, before_stubs)
    assert got.returncode == 0, (got.stdout[-2000:], got.stderr[-2000:])  # it finished: no hang
    ran = re.search(rb"Ran (\d+) syscalls", got.stdout)
    assert ran and int(ran.group(1)) >= 300, got.stdout[-2000:]
    assert _tree_digest(victims) == before_tree


# ------------------------------------------------------------ corrupt ELF
# Each variant of a real static-pie program must give one clear line and
# exit 126/127, or start and end as a guest (a signal is fine): never a
# Sentry crash. test_faults.py has the plain cases (truncated header, no
# program headers, ELF32, not ELF, one huge segment).

PT_LOAD, PT_INTERP = 1, 3


def _phdrs(data: bytearray) -> list[int]:
    """Offsets of the program headers."""
    phoff, phentsize, phnum = (int.from_bytes(data[32:40], "little"), int.from_bytes(data[54:56], "little"),
                               int.from_bytes(data[56:58], "little"))
    return [phoff + i * phentsize for i in range(phnum)]


def _set(data: bytearray, at: int, size: int, value: int) -> None:
    data[at:at + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def _first(data: bytearray, kind: int) -> int:
    return next(p for p in _phdrs(data) if int.from_bytes(data[p:p + 4], "little") == kind)


def _mutations(original: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}

    def variant(name: str, edit) -> None:
        data = bytearray(original)
        edit(data)
        out[name] = bytes(data)

    loads = [p for p in _phdrs(bytearray(original)) if int.from_bytes(original[p:p + 4], "little") == PT_LOAD]
    variant("overlapping-segments", lambda d: _set(d, loads[1] + 16, 8, int.from_bytes(d[loads[0] + 16:loads[0] + 24], "little")))
    variant("filesz-past-file", lambda d: _set(d, loads[0] + 32, 8, 1 << 40))
    variant("offset-past-file", lambda d: _set(d, loads[0] + 8, 8, 1 << 50))
    variant("memsz-below-filesz", lambda d: _set(d, loads[0] + 40, 8, 1))
    variant("vaddr-in-kernel", lambda d: _set(d, loads[0] + 16, 8, 0xFFFFFFFF81000000))
    variant("vaddr-wraps", lambda d: _set(d, loads[0] + 16, 8, (1 << 64) - 4096))
    variant("misaligned-offset", lambda d: _set(d, loads[0] + 8, 8, 123))
    variant("phnum-huge", lambda d: _set(d, 56, 2, 0xFFFF))
    variant("phoff-past-file", lambda d: _set(d, 32, 8, 1 << 40))
    variant("phentsize-small", lambda d: _set(d, 54, 2, 8))
    variant("entry-unmapped", lambda d: _set(d, 24, 8, 0x10))
    variant("no-load-segments", lambda d: [_set(d, p, 4, 6) for p in loads])  # all PT_PHDR-like
    for cut in (64, 200, len(original) // 3, len(original) - 1):
        out[f"truncated-{cut}"] = original[:cut]
    return out


def _interp_variants(dynamic: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    interp = _first(bytearray(dynamic), PT_INTERP)
    off, size = int.from_bytes(dynamic[interp + 8:interp + 16], "little"), int.from_bytes(dynamic[interp + 32:interp + 40], "little")

    def variant(name: str, path: bytes | None = None, **fields: int) -> None:
        data = bytearray(dynamic)
        if path is not None:
            data[off:off + size] = path.ljust(size, b"\0")[:size]
        for field, value in fields.items():
            _set(data, interp + {"offset": 8, "filesz": 32}[field], 8, value)
        out[name] = bytes(data)

    variant("interp-missing", b"/no/such/ld.so")
    variant("interp-directory", b"/tmp")
    variant("interp-not-terminated", b"/lib64/ld-linux-x86-64.so.2".ljust(size, b"A"))
    variant("interp-empty", b"")
    variant("interp-huge", filesz=1 << 40)
    variant("interp-offset-past-file", offset=1 << 40)
    variant("interp-itself", b"/proc/self/exe")
    return out


def test_corrupt_elf_files(sentry, cprog, tmp_path):
    normal = native(cprog("hello_fp", "static-pie")).returncode  # what a variant that still runs returns
    variants = _mutations(open(cprog("hello_fp", "static-pie"), "rb").read())
    variants.update(_interp_variants(open(cprog("hello_fp", "dynamic"), "rb").read()))
    outcomes = {}
    for name, content in variants.items():
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0o755)
        got = sentry.run(str(path), timeout=60, options=("--timeout", "30"))
        assert got.returncode != 125 and b"Traceback" not in got.stderr, (name, got.stderr[-2000:])
        if got.returncode in (126, 127):
            lines = got.stderr.strip().splitlines()
            assert len(lines) == 1, (name, got.stderr)
        else:
            assert got.returncode == normal or got.returncode > 128, (name, got.returncode, got.stderr[-2000:])
        outcomes[name] = got.returncode
    assert outcomes["interp-missing"] in (126, 127) and outcomes["interp-huge"] == 126, outcomes
    assert outcomes["overlapping-segments"] != normal and outcomes["truncated-64"] == 126, outcomes
