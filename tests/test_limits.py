"""Resource limits on every platform: --pids contains a fork bomb and the
sandbox still ends cleanly, --memory gives ENOMEM (or kills the process a
copy-on-write fault cannot be served for), --nofile and --cpus hold, and
getrlimit/prlimit64 report them. Programs: progs/escape_limits.c."""
from __future__ import annotations

import subprocess
import sys

import pytest

from test_escape import leaked_stubs
from test_processes import _stubs


def test_fork_bomb_is_contained(sentry, cprog):
    before = _stubs()
    got = sentry.run(cprog("escape_limits"), "forks", options=("--pids", "16"))
    assert got.stdout == b"children 15 errno EAGAIN\nreaped 15\n", got.stderr
    assert got.returncode == 0
    assert not leaked_stubs(before)


def test_thread_bomb_is_contained(sentry, cprog):
    got = sentry.run(cprog("escape_limits"), "threads", options=("--pids", "8"))
    assert got.stdout == b"threads 7 errno EAGAIN\njoined 7\n", got.stderr
    assert got.returncode == 0


def test_shell_fork_bomb_ends_with_the_sandbox(sentry):
    """The classic bomb never stops by itself: --timeout ends it, every
    process goes, no stub remains, the Sentry reports no error."""
    before = _stubs()
    got = sentry.run("/bin/bash", "-c", "b() { b | b & }; b; sleep 100",
                     options=("--pids", "24", "--timeout", "6"), timeout=120)
    assert got.returncode == 124, got.stderr[-2000:]
    assert b"internal error" not in got.stderr
    assert not leaked_stubs(before)


def test_memory_limit_gives_enomem(sentry, cprog):
    got = sentry.run(cprog("escape_limits"), "memory", options=("--memory", "64M"))
    assert got.returncode == 0, got.stderr
    mib = int(got.stdout.split()[1])
    assert 16 <= mib < 64, got.stdout


def test_copy_on_write_past_memory_limit_kills_only_that_process(sentry, cprog):
    got = sentry.run(cprog("escape_limits"), "cow", "40", options=("--memory", "64M"))
    assert (got.returncode, got.stdout) == (0, b"child killed by KILL\n"), got.stderr


def test_memory_limit_refuses_one_big_mapping(sentry, cprog):
    got = sentry.run(cprog("escape_limits"), "cow", "100", options=("--memory", "64M"))
    assert (got.returncode, got.stdout) == (0, b"mmap ENOMEM\n"), got.stderr


def test_limits_are_reported_and_cannot_be_raised(sentry):
    script = ("ulimit -Hn; ulimit -Sn; ulimit -Hu; ulimit -Hv; "
              "ulimit -Hn 100000 2>/dev/null || echo nofile-refused; "
              "ulimit -Hu unlimited 2>/dev/null || echo nproc-refused; "
              "ulimit -Hv unlimited 2>/dev/null || echo as-refused; "
              "ulimit -Sn 40 && ulimit -Sn")
    got = sentry.run("/bin/bash", "-c", script, options=("--nofile", "50", "--pids", "30", "--memory", "128M"))
    assert got.stdout.split() == [b"50", b"50", b"30", str(128 * 1024).encode(),
                                  b"nofile-refused", b"nproc-refused", b"as-refused", b"40"], got.stderr


def test_soft_nofile_limit_holds(sentry):
    got = sentry.run("/usr/bin/python3.11", "-c", "\n".join([
        "import os, resource",
        "resource.setrlimit(resource.RLIMIT_NOFILE, (20, 50))",
        "fds = []",
        "try:",
        "    while True: fds.append(os.open('/', os.O_RDONLY))",
        "except OSError as e: print(max(fds), e.errno)",
    ]), options=("--nofile", "50"))
    assert got.stdout == b"19 24\n", got.stderr  # 24: EMFILE


def test_cpus_limits_the_cpus_the_guest_sees(sentry):
    got = sentry.run("/usr/bin/nproc", options=("--cpus", "1"))
    assert got.stdout == b"1\n", got.stderr


@pytest.mark.parametrize("flag", [["--memory", "12Q"], ["--memory", "-5"], ["--pids", "0"], ["--cpus", "x"],
                                  ["--nofile", "-1"]])
def test_bad_limit_is_one_line(flag):
    got = subprocess.run([sys.executable, "-m", "sentry", "run", *flag, "--", "/bin/true"],
                         capture_output=True, timeout=60)
    assert got.returncode == 2
    assert len(got.stderr.strip().splitlines()) == 1 and b"Traceback" not in got.stderr
