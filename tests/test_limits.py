"""Resource limits on every platform: --pids contains a fork bomb and the
sandbox still ends cleanly, --memory gives ENOMEM (or kills the process a
copy-on-write fault cannot be served for), --nofile and --cpus hold, and
getrlimit/prlimit64 report them. Programs: progs/escape_limits.c."""
from __future__ import annotations

import fcntl
import os
import re
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


def _kvm_max_vcpus() -> int:
    """KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPUS): the vCPUs one VM may have here."""
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, 0xAE03, 66)
    finally:
        os.close(fd)


def test_threads_past_what_the_host_gives_are_eagain(sentry, cprog):
    """A thread the platform cannot give a vCPU or stub is refused with
    EAGAIN before it exists, as Linux when out of a resource: on kvm the
    program meets KVM's vCPU limit (1024 per VM here) when it is within
    reach (up to 1100 threads); on the stub platforms (a host process or
    thread each, no limit a test can reach) 300 threads are made and
    joined, as natively."""
    limit = _kvm_max_vcpus() if sentry.platform == "kvm" else None
    want = 1100 if limit is not None else 300
    before = _stubs()
    got = sentry.run(cprog("threads_until_refused"), str(want), timeout=150)
    assert got.returncode == 0, got.stderr
    report = re.fullmatch(r"made (\d+) threads, then: (.+)\nall joined\n", got.stdout.decode())
    assert report, got.stdout
    made, then = int(report[1]), report[2]
    if limit is not None and limit < want:
        assert limit - 10 < made < limit and then == "EAGAIN", (limit, got.stdout)
    else:
        assert (made, then) == (want, "none refused"), got.stdout
    assert not leaked_stubs(before)


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
                                  ["--nofile", "-1"], ["--timeout", "inf"], ["--timeout", "1e308"],
                                  ["--timeout", "nan"], ["--timeout", "-1"], ["--timeout", "0"],
                                  ["--timeout", "-inf"], ["--timeout", "x"]])
def test_bad_limit_is_one_line(flag):
    got = subprocess.run([sys.executable, "-m", "sentry", "run", *flag, "--", "/bin/true"],
                         capture_output=True, timeout=60)
    assert got.returncode == 2
    assert len(got.stderr.strip().splitlines()) == 1 and b"Traceback" not in got.stderr


@pytest.mark.parametrize("memory", ["1", "1M", "4M", "7M", "8M"])
def test_program_that_does_not_fit_in_memory_is_one_line(sentry, memory):
    """Below what a program needs to start (its 8 MiB stack, then its
    segments), `sentry run` says so in one line and exits 126, as for any
    program that cannot be executed (was: internal error, 125)."""
    got = sentry.run("/bin/true", options=("--memory", memory))
    assert got.returncode == 126, got.stderr
    assert len(got.stderr.strip().splitlines()) == 1 and b"internal error" not in got.stderr, got.stderr
    assert b"--memory" in got.stderr or b"ENOMEM" in got.stderr, got.stderr


def _run_measured(platform: str, *argv: str, options: tuple[str, ...] = (), nofile: tuple[int, int] | None = None,
                  timeout: float = 180) -> tuple[subprocess.CompletedProcess, int]:
    """`sentry run` with RLIMIT_NOFILE ``nofile`` (soft, hard) if given;
    returns its result and its peak RSS in KiB (the Sentry's own: the
    stubs are not its children)."""
    code = ("import resource, subprocess, sys\n"
            "lim = [int(x) for x in sys.argv[1].split(':')] if sys.argv[1] else None\n"
            "pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, tuple(lim))) if lim else None\n"
            "r = subprocess.run(sys.argv[2:], preexec_fn=pre)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(r.returncode)\n")
    cmd = [sys.executable, "-c", code, f"{nofile[0]}:{nofile[1]}" if nofile else "",
           sys.executable, "-m", "sentry", "run", "--platform", platform, *options, "--", *argv]
    got = subprocess.run(cmd, capture_output=True, timeout=timeout)
    lines = got.stderr.rstrip().rsplit(b"\n", 1)
    got.stderr = lines[0] if len(lines) > 1 else b""
    return got, int(lines[-1])


def test_files_in_memory_count_against_memory_limit(platform, cprog):
    """/tmp and /dev/shm content shares --memory with guest memory, as
    tmpfs pages are memory on Linux: a 2 GiB sparse ftruncate holds nothing,
    40 MiB of files leave the other directory less than 24 MiB, fallocate
    past it is ENOSPC, mmap ENOMEM, and unlinking gives it back. The Sentry
    itself stays small (it grew to 4 GiB: file content had no bound but
    half the host's memory per file system)."""
    got, rss_kib = _run_measured(platform, cprog("file_memory"), "/tmp", "/dev/shm", options=("--memory", "64M"))
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.decode().splitlines() == [
        "sparse ftruncate 2G: ok, size 2048 MiB, 0 blocks",
        "sparse last byte written: ok, under 1 MiB held: yes",
        "sparse ftruncate 2G: ok, size 2048 MiB, 0 blocks",
        "sparse last byte written: ok, under 1 MiB held: yes",
        "sparse files took memory: no",
        "fill 40: wrote 40 (ok)",
        got.stdout.decode().splitlines()[6],  # how much fits depends on the guest's own memory
        "second directory got less than 24: yes",
        "fallocate 32: ENOSPC",
        "size after the failed fallocate: 0",
        "ftruncate 1G when full: ok",
        "fallocate KEEP_SIZE 2G when full: ENOSPC",
        "mmap 32 when full: ENOMEM",
        "mmap 32 after unlink: ok",
        "fill 20: wrote 20 (ok)",
        "done",
    ], got.stdout
    assert got.stdout.decode().splitlines()[6].endswith("(ENOSPC)"), got.stdout
    assert rss_kib < 512 << 10, f"the Sentry grew to {rss_kib >> 10} MiB"


def test_guest_cannot_exhaust_the_sentrys_fds(platform, cprog):
    """Processes that each open files up to their own RLIMIT_NOFILE would
    together take every host fd of the Sentry (vmexec: `internal error:
    OSError: Too many open files` spawning a stub; kvm: KVM_CREATE_VCPU
    failed and the sandbox died). `sentry run` raises its soft limit to the
    hard one (here 1024 -> 4096) and holds at most 3/4 of it for guests:
    past that their opens fail with ENFILE, and what is left still serves
    a fork (stub, vCPU), a thread and a pipe."""
    got, _ = _run_measured(platform, cprog("fd_exhaust"), "2", options=("--timeout", "150"), nofile=(1024, 4096))
    assert got.returncode == 0 and b"internal error" not in got.stderr, got.stderr[-2000:]
    lines = got.stdout.decode().splitlines()
    opened = int(lines[0].split()[1])
    assert 2000 < opened <= 3072, lines  # more than the soft limit it started with, at most 3/4 of 4096
    assert lines[0].endswith("(EMFILE 0, ENFILE 2, other 0)"), lines
    assert lines[1:] == ["fork ok", "child exit 123", "thread ok", "open ENFILE", "pipe ok", "released: open ok",
                         "done"], lines  # 123: exec of /bin/true failed with ENFILE (100 + 23)
