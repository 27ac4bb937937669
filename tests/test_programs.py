"""Real programs print in the sandbox what they print natively, on every
available platform."""
from __future__ import annotations

import shutil
import sys

import pytest

from conftest import native

LINK_MODES = ["static", "static-pie", "dynamic"]


@pytest.mark.parametrize("mode", LINK_MODES)
def test_c_program_with_floating_point(sentry, cprog, mode):
    prog = cprog("hello_fp", mode)
    want = native(prog, "a", "b")
    got = sentry.run(prog, "a", "b")
    assert got.stdout == want.stdout
    assert got.returncode == want.returncode == 7, got.stderr


@pytest.mark.parametrize("mode", LINK_MODES)
def test_registers_survive_system_calls(sentry, cprog, mode):
    got = sentry.run(cprog("regs", mode))
    assert got.stdout == b"regs ok\n", got.stdout + got.stderr
    assert got.returncode == 0


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_memory_calls_match_native(sentry, cprog, mode):
    prog = cprog("memory", mode)
    want = native(prog)
    assert b" FAIL\n" not in want.stdout  # the program itself is right
    got = sentry.run(prog)
    assert got.stdout == want.stdout, got.stderr
    assert got.returncode == 0


def test_ls_la_root(sentry):
    want = native("/bin/ls", "-la", "--time-style=+", "/usr")
    got = sentry.run("/bin/ls", "-la", "--time-style=+", "/usr")
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_ls_root_lists_the_same_names(sentry):
    want = native("/bin/ls", "-1a", "/")
    got = sentry.run("/bin/ls", "-1a", "/")
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


PY_SNIPPET = ("import json, hashlib, sqlite3, math; "
              "db = sqlite3.connect(':memory:'); db.execute('create table t(x)'); "
              "db.executemany('insert into t values (?)', [(i,) for i in range(100)]); "
              "print(json.dumps({'sum': db.execute('select sum(x) from t').fetchone()[0], "
              "'sha': hashlib.sha256(b'sentry').hexdigest(), 'pi': math.pi}))")


def test_python(sentry):
    argv = ("/usr/bin/python3.11", "-c", PY_SNIPPET)
    want = native(*argv)
    got = sentry.run(*argv)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_sqlite3(sentry):
    got = sentry.run("/usr/bin/sqlite3", ":memory:", "select 6*7")
    assert (got.returncode, got.stdout) == (0, b"42\n"), got.stderr


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox-static is not installed (apt-get install busybox-static)")
def test_busybox_sha256sum(sentry):
    argv = (shutil.which("busybox"), "sha256sum", "/etc/passwd")
    want = native(*argv)
    got = sentry.run(*argv)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_stdin_passes_through(sentry):
    got = sentry.run("/usr/bin/sqlite3", ":memory:", input=b"select 1+1;\n")
    assert got.stdout == b"2\n", got.stderr


def test_shared_file_mappings(sentry, cprog):
    prog = cprog("mmap_shared", "dynamic")
    want = native(prog)
    got = sentry.run(prog)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


def test_sqlite_wal_between_processes(sentry, tmp_path):
    script = ("import sqlite3, subprocess, sys\n"
              "db = sqlite3.connect('/tmp/wal.db'); db.execute('pragma journal_mode=wal')\n"
              "db.execute('create table t(x)'); db.execute('insert into t values (41)'); db.commit()\n"
              "other = subprocess.run(['/usr/bin/sqlite3', '/tmp/wal.db', 'update t set x = x + 1; select x from t'],"
              " capture_output=True, text=True).stdout.strip()\n"
              "print(other, db.execute('select x from t').fetchone()[0])\n")
    got = sentry.run("/usr/bin/python3.11", "-c", script)
    assert (got.returncode, got.stdout) == (0, b"42 42\n"), got.stderr


@pytest.mark.parametrize("closed", ["<&-", ">&-"])
def test_closed_stdio_stays_closed_in_the_guest(sentry, closed):
    """A stdio fd closed on the host is closed in the guest (EBADF, as
    natively), never filled by one of the Sentry's own fds (the MemoryFile
    would land there and hand the guest all of guest memory)."""
    script = "/bin/cat; echo cat=$? >&2; ls -l /proc/self/fd/ >&2"
    want = native("/bin/bash", "-c", f"/bin/sh -c '{script}' {closed}")
    cmd = " ".join([sys.executable, "-m", "sentry", "run", "--platform", sentry.platform, "--",
                    "/bin/sh", "-c", f"'{script}'"])
    got = native("/bin/bash", "-c", f"{cmd} {closed}; echo rc=$? >&2")
    assert b"memfd" not in got.stderr and b"Traceback" not in got.stderr, got.stderr
    assert b"cat=1" in got.stderr and b"cat=1" in want.stderr, (got.stderr, want.stderr)
    assert b"Bad file descriptor" in got.stderr
    assert got.stderr.endswith(b"rc=0\n")


@pytest.mark.parametrize("mode", LINK_MODES)
def test_initial_stack_and_auxv_as_native(sentry, cprog, mode):
    prog = cprog("auxv", mode)
    want = native(prog, "x")
    got = sentry.run(prog, "x")
    assert got.stdout == want.stdout, got.stderr
    assert b"AT_RANDOM present" in got.stdout and b"equals argv[0]: 1" in got.stdout


def test_seed_makes_addresses_reproducible(sentry, cprog):
    prog = cprog("auxv", "static-pie")
    runs = [sentry.run(prog, "addresses", options=("--seed", seed)).stdout for seed in ("7", "7", "8")]
    assert runs[0] == runs[1] and runs[0].startswith(b"stack 0x"), runs
    assert runs[2] != runs[0]


def test_debug_names_each_unsupported_call_once(sentry, tmp_path):
    """--debug: ENOSYS calls are reported once each, by name."""
    got = sentry.run(sys.executable, "-c", "import ctypes, os\n"
                     "libc = ctypes.CDLL(None)\n"
                     "for _ in range(3): libc.syscall(174)\n"  # create_module: gone since Linux 2.6
                     "print(ctypes.get_errno() or os.strerror(38))", options=("--debug",))
    assert got.returncode == 0, got.stderr
    lines = [line for line in got.stderr.splitlines() if b"create_module" in line]
    assert len(lines) == 1, got.stderr
