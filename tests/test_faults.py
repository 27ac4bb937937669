"""Guest faults and bad programs: the guest dies as it would natively, and
the user gets one clear line, never a Python traceback."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import native


def _one_line(stderr: bytes) -> bytes:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and b"Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_null_dereference_is_sigsegv(sentry, cprog, mode):
    prog = cprog("segv", mode)
    got = sentry.run(prog)
    assert native(prog).returncode == -11  # natively: killed by SIGSEGV
    assert got.returncode == 139
    assert got.stdout == b"before\n"


def test_write_to_readonly_page_is_sigsegv(sentry, cprog):
    got = sentry.run(cprog("writeprot"))
    assert (got.returncode, got.stdout) == (139, b"mapped\n")


def test_missing_program(sentry):
    got = sentry.run("/no/such/program")
    assert got.returncode == 127
    assert b"/no/such/program" in _one_line(got.stderr)


def test_bare_name_is_searched_in_path_only(sentry, tmp_path):
    """As execvp: a name without '/' that PATH lacks is 127, even when the
    current directory holds it; a path through a file is 126 (ENOTDIR),
    as bash and env say."""
    shutil.copy("/bin/true", tmp_path / "only-here")
    got = sentry.run("only-here", cwd=str(tmp_path))
    assert got.returncode == 127
    assert b"only-here: No such file or directory" in _one_line(got.stderr)
    got = sentry.run("/bin/true/x")
    assert got.returncode == 126
    assert b"Not a directory" in _one_line(got.stderr)


def test_not_executable(sentry, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello\n")
    path.chmod(0o644)
    got = sentry.run(str(path))
    assert got.returncode == 126
    _one_line(got.stderr)


@pytest.mark.parametrize("content", [
    b"\x7fELF",  # truncated header
    b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(40),  # no phdrs
    b"\x7fELF\x01\x01\x01" + bytes(60),  # 32-bit
    b"MZ this is not ELF at all" * 4,
], ids=["truncated", "no-phdrs", "elf32", "not-elf"])
def test_corrupt_elf_gives_one_line(sentry, tmp_path, content):
    path = tmp_path / "bad"
    path.write_bytes(content)
    path.chmod(0o755)
    got = sentry.run(str(path))
    assert got.returncode == 126, got.stderr
    assert b"cannot execute" in _one_line(got.stderr)


def test_huge_segment_is_rejected(sentry, cprog, tmp_path):
    data = bytearray(open(cprog("segv"), "rb").read())
    phoff = int.from_bytes(data[32:40], "little")
    # First program header: set p_memsz absurdly large.
    data[phoff + 40:phoff + 48] = (1 << 62).to_bytes(8, "little")
    path = tmp_path / "huge"
    path.write_bytes(bytes(data))
    path.chmod(0o755)
    got = sentry.run(str(path))
    assert got.returncode == 126
    _one_line(got.stderr)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentry", *args], capture_output=True, timeout=60)


def test_unknown_platform():
    got = _cli("run", "--platform", "nosuch", "--", "/bin/true")
    assert got.returncode == 2
    assert b"unknown platform" in _one_line(got.stderr)


def test_bad_flag():
    got = _cli("run", "--no-such-flag", "--", "/bin/true")
    assert got.returncode == 2
    _one_line(got.stderr)


def test_no_program():
    got = _cli("run")
    assert got.returncode == 2
    _one_line(got.stderr)


def test_platforms_lists_every_backend():
    got = _cli("platforms")
    assert got.returncode == 0
    names = [line.split()[0] for line in got.stdout.decode().splitlines()]
    assert names[:1] == ["ptrace"] and set(names) >= {"ptrace"}


def test_syscalls_listing():
    got = _cli("syscalls")
    assert got.returncode == 0
    lines = got.stdout.decode().splitlines()
    by_name = {line.split()[1]: line.split()[2] for line in lines[:-1]}
    assert by_name["getppid"] == "supported"
    assert by_name["mremap"] == "partial"
    assert by_name["kexec_load"] == "ENOSYS"
    assert "supported" in lines[-1]


def test_stub_platforms_unavailable_without_namespaces():
    """Where stubs cannot get their own namespaces, `sentry platforms` says
    why and `sentry run` gives one line and 2 (it exited 137 silently)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    sentry = f"{sys.executable} -m sentry"
    script = (f"echo 0 > /proc/sys/user/max_user_namespaces && {sentry} platforms && "
              f"{sentry} run --platform ptrace -- /bin/true; echo rc=$?; "
              f"{sentry} run --platform vmexec -- /bin/true; echo rc=$?")
    got = subprocess.run(["unshare", "-Ur", "sh", "-c", script], capture_output=True, timeout=60)
    for name in ("ptrace", "vmexec"):
        assert f"{name}   unavailable  user namespaces are disabled".encode() in got.stdout, got.stdout + got.stderr
    assert got.stdout.count(b"rc=2\n") == 2
    assert got.stderr.count(b"\n") == 2 and b"Traceback" not in got.stderr, got.stderr
