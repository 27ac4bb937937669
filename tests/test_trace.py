"""`sentry trace summary` and `sentry trace diff` on real traces: the
sandbox's (JSON and text log of one run) and strace(1)'s of the native run,
including one where strace injects a fault the diff must find."""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from sentry.strace import tracefile

needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace(1) is not installed")
# An excerpt of a real `runsc --debug --debug-log=DIR/ --strace do /bin/ls /nonexistent` boot log
# (runsc 20221219, ptrace): its header, spec and loader lines, then strace lines from line 65 on.
RUNSC_LOG = str(pathlib.Path(__file__).parent / "traces" / "runsc-ls-nonexistent.boot.txt")


def trace_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentry", "trace", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def golden_prog(cprog, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("golden") / "strace_golden"
    shutil.copy(cprog("strace_golden", "static"), path)
    return str(path)


@pytest.fixture
def sandbox_traces(sentry, golden_prog, tmp_path) -> tuple[str, str]:
    """(JSON, text log) of one run of the golden program."""
    js, log = tmp_path / "t.json", tmp_path / "t.log"
    got = sentry.run(golden_prog, options=("--strace-json", str(js), "--strace-log", str(log)))
    assert got.returncode == 3, got.stderr
    return str(js), str(log)


def native_strace(prog: str, out: str, *extra: str) -> None:
    subprocess.run(["strace", "-f", "-o", out, *extra, prog], capture_output=True, timeout=60)


def table(text: str) -> dict[str, tuple[int, int]]:
    """syscall -> (calls, errors) from a summary's strace -c table."""
    rows = {}
    for m in re.finditer(r"^ *[\d.]+ +[\d.]+ +[\d-]+ +(\d+) +(\d*) (\w+)$", text, re.M):
        rows[m[3]] = (int(m[1]), int(m[2] or 0))
    return rows


def test_summary_counts_calls_errors_and_time(sandbox_traces):
    js, log = sandbox_traces
    got = trace_cli("summary", js)
    assert got.returncode == 0, got.stderr
    rows = table(got.stdout)
    assert rows["write"][1] == 2 and rows["write"][0] >= 4
    assert rows["openat"] == (2, 2) and rows["uname"] == (1, 0) and rows["exit_group"] == (1, 0)
    assert rows["total"][0] == sum(v[0] for k, v in rows.items() if k != "total")
    assert re.search(r"^ +1 openat ENOENT$", got.stdout, re.M) and re.search(r"^ +1 write EBADF$", got.stdout, re.M)
    assert "(no durations" not in got.stdout
    # The text log of the same run says the same, to the nanosecond.
    again = trace_cli("summary", log)
    assert again.stdout.split("\n", 1)[1] == got.stdout.split("\n", 1)[1]


def test_diff_of_one_run_two_formats_agrees(sandbox_traces):
    got = trace_cli("diff", *sandbox_traces)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "no divergence" in got.stdout


def test_diff_across_platforms(golden_prog, tmp_path):
    """Every available platform runs the program through the same calls."""
    from conftest import Sentry
    from platforms import base

    names = [n for n in base.names() if base.lookup(n).available()[0]]
    if len(names) < 2:
        pytest.skip(f"only {names} available")
    traces = []
    for name in names:
        out = tmp_path / f"{name}.json"
        got = Sentry(name).run(golden_prog, options=("--strace-json", str(out)))
        assert got.returncode == 3, (name, got.stderr)
        traces.append(str(out))
    for other in traces[1:]:
        got = trace_cli("diff", traces[0], other)
        assert got.returncode == 0, got.stdout


@needs_strace
def test_diff_against_native_strace(sandbox_traces, golden_prog, tmp_path):
    js, _ = sandbox_traces
    native = str(tmp_path / "native.strace")
    native_strace(golden_prog, native)
    # rseq is the one call the sandbox refuses on purpose (glibc copes).
    same = trace_cli("diff", "--ignore", "rseq", js, native)
    assert same.returncode == 0, same.stdout
    injected = str(tmp_path / "injected.strace")
    native_strace(golden_prog, injected, "-e", "inject=openat:error=EACCES:when=1")
    got = trace_cli("diff", "--ignore", "rseq", "--context", "1", js, injected)
    assert got.returncode == 1, got.stdout
    hunk = got.stdout.split("@@", 2)[2].splitlines()[1:]
    assert [line[:2] for line in hunk] == ["  ", "- ", "+ ", "  "], got.stdout
    assert hunk[0].startswith("  write(") and hunk[3].startswith("  clock_getres(")
    assert hunk[1].startswith("- openat(") and hunk[1].endswith("= -1 ENOENT")
    assert hunk[2].startswith('+ openat(AT_FDCWD, "/nonexistent/file"') and hunk[2].endswith("= -1 EACCES")


@needs_strace
def test_strace_text_of_a_process_tree(tmp_path):
    """strace -f -tt -T of sh running two children: unfinished/resumed
    pairs merge, each process's exit is an event, durations are read."""
    out = str(tmp_path / "sh.strace")
    subprocess.run(["strace", "-f", "-tt", "-T", "-o", out, "/bin/sh", "-c", "/bin/true; /bin/sh -c 'exit 7'; exit 5"],
                   capture_output=True, timeout=60)
    trace = tracefile.load(out)
    assert trace.format == "strace" and trace.skipped == 0
    exits = sorted(r.detail["status"] for r in trace.records if r.kind == "exit")
    assert exits == [0, 5 << 8, 7 << 8]
    calls = [r for r in trace.records if r.kind == "syscall"]
    assert not [r for r in calls if r.result is None and r.name != "exit_group"]
    assert all(re.fullmatch(r"[a-z_0-9]+", r.name) for r in calls)
    children = {r.pid for r in trace.records} - {calls[0].pid}
    reaped = {r.result for r in calls if r.name == "wait4" and r.result is not None and r.result > 0}
    assert reaped == children
    assert sum(r.duration_ns is not None for r in calls) >= len(calls) - 3  # all but the never-returning


def test_strace_text_forms():
    lines = [
        '1700000000.000100 execve("./a", ["./a"], 0x7ffd /* 1 var */) = 0 <0.000200>',
        '1700000000.000400 openat(AT_FDCWD, "/x = y", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000010>',
        "1700000000.000500 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000 <0.000003>",
        "1700000000.000600 read(3</etc/passwd>,  <unfinished ...>",
        '1700000000.000700 <... read resumed>"root", 4) = 4 <0.000100>',
        "1700000000.000800 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=NULL} ---",
        "1700000000.000900 +++ killed by SIGSEGV (core dumped) +++",
        "openat(AT_FDCWD, 0x10, O_RDONLY)        = -1 EACCES (Permission denied) (INJECTED)",
    ]
    records, skipped = tracefile._read_strace(lines)
    assert skipped == 0
    execve, openat, mmap, read, sig, exit_, injected = records
    assert (execve.name, execve.result, execve.duration_ns) == ("execve", 0, 200_000)
    assert (openat.result, openat.errno, openat.args) == (-2, "ENOENT", 'AT_FDCWD, "/x = y", O_RDONLY')
    assert mmap.result == 0x7F00_0000_0000
    assert (read.name, read.result, read.args) == ("read", 4, '3</etc/passwd>, "root", 4')
    assert sig.detail == {"signo": 11} and exit_.detail == {"status": 11 | 0x80}
    assert (injected.args, injected.errno, injected.pid) == ("AT_FDCWD, 0x10, O_RDONLY", "EACCES", 0)


def test_summary_of_a_runsc_debug_log():
    """runsc's strace lines come after its log header (found past the first
    50 lines), and its failures read ``= 0 (0x0) errno=2 (no such file or
    directory)``: each is a failed call with its errno's name."""
    trace = tracefile.load(RUNSC_LOG)
    assert trace.format == "runsc"
    failed = [r for r in trace.records if r.errno is not None]
    assert [(r.name, r.result, r.errno) for r in failed if r.name != "openat"] == [
        ("access", -2, "ENOENT"), ("ioctl", -25, "ENOTTY"), ("statx", -22, "EINVAL")]
    got = trace_cli("summary", RUNSC_LOG)
    assert got.returncode == 0, got.stderr
    rows = table(got.stdout)
    assert rows["openat"] == (7, 6) and rows["close"] == (3, 0) and rows["total"] == (22, 9)
    assert re.search(r"^ +6 openat ENOENT$", got.stdout, re.M) and re.search(r"^ +1 statx EINVAL$", got.stdout, re.M)


def test_diff_of_runsc_debug_logs(tmp_path):
    """The diff sees runsc's failed calls: one errno changed is the one
    divergence (failed calls were dropped, so it saw none)."""
    same = trace_cli("diff", RUNSC_LOG, RUNSC_LOG)
    assert same.returncode == 0 and "no divergence" in same.stdout, same.stdout + same.stderr
    other = tmp_path / "other.boot.txt"
    text = pathlib.Path(RUNSC_LOG).read_text()
    assert text.count("errno=22 (invalid argument)") == 1
    other.write_text(text.replace("errno=22 (invalid argument)", "errno=2 (no such file or directory)"))
    got = trace_cli("diff", "--context", "1", RUNSC_LOG, str(other))
    assert got.returncode == 1, got.stdout + got.stderr
    hunk = got.stdout.split("@@", 2)[2].splitlines()[1:]
    assert [line[:2] for line in hunk] == ["  ", "- ", "+ ", "  "], got.stdout
    assert hunk[0].startswith("  ioctl(") and hunk[0].endswith("= -1 ENOTTY")
    assert hunk[1].startswith("- statx(") and hunk[1].endswith("= -1 EINVAL")
    assert hunk[2].startswith("+ statx(") and hunk[2].endswith("= -1 ENOENT")


@pytest.mark.parametrize("content, message", [
    (None, "No such file or directory"),
    ("root:x:0:0:root:/root:/bin/bash\n", "no system calls found"),
])
def test_trace_errors_are_one_line(tmp_path, content, message):
    path = tmp_path / "t"
    if content is not None:
        path.write_text(content)
    got = trace_cli("summary", str(path))
    assert got.returncode == 2 and message in got.stderr and got.stderr.count("\n") == 1, got.stderr
