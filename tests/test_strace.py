"""`sentry run --strace`: golden lines for a fixed program, the JSON
events against their schema, filters and CLI errors, on every platform.

The golden program (progs/strace_golden.c) makes raw system calls on
static buffers after a getppid() marker; lines before the marker (static
glibc's start-up) are not ours to pin. Times, durations and addresses are
normalized away; everything else must match byte for byte.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import pytest

from sentry.strace import decode, names, tracefile

SCHEMA = json.loads((pathlib.Path(__file__).parent.parent / "sentry/strace/schema.json").read_text())
OPTIONS = ("--cwd", "/", "--strace-log-size", "32")

GOLDEN = r"""
[   1:   1] strace_golden E getppid()
[   1:   1] strace_golden X getppid() = 0 (0x0) (DUR)
[   1:   1] strace_golden E write(0x1 pipe:[INO], ADDR "hello \"strace\"\n", 15)
[   1:   1] strace_golden X write(0x1 pipe:[INO], ..., 15) = 15 (0xf) (DUR)
[   1:   1] strace_golden E write(0x1 pipe:[INO], ADDR "0123456789abcdefghijklmnopqrstuv"..., 37)
[   1:   1] strace_golden X write(0x1 pipe:[INO], ..., 37) = 37 (0x25) (DUR)
[   1:   1] strace_golden E write(0x63 (bad FD), ADDR "x", 1)
[   1:   1] strace_golden X write(0x63 (bad FD), ..., 1) = -9 (0xfffffffffffffff7) errno=9 (EBADF) (DUR)
[   1:   1] strace_golden E openat(AT_FDCWD /, ADDR "/nonexistent/file", 0x80000 (O_CLOEXEC), 0x0)
[   1:   1] strace_golden X openat(AT_FDCWD /, ADDR "/nonexistent/file", 0x80000 (O_CLOEXEC), 0x0) = -2 (0xfffffffffffffffe) errno=2 (ENOENT) (DUR)
[   1:   1] strace_golden E clock_getres(CLOCK_MONOTONIC, ADDR)
[   1:   1] strace_golden X clock_getres(CLOCK_MONOTONIC, ADDR {sec=0 nsec=1}) = 0 (0x0) (DUR)
[   1:   1] strace_golden E getrandom(ADDR, 0, 0x1 (GRND_NONBLOCK))
[   1:   1] strace_golden X getrandom(ADDR "", 0, 0x1 (GRND_NONBLOCK)) = 0 (0x0) (DUR)
[   1:   1] strace_golden E rt_sigprocmask(SIG_BLOCK, ADDR [SIGUSR1], ADDR, 8)
[   1:   1] strace_golden X rt_sigprocmask(SIG_BLOCK, ADDR [SIGUSR1], ADDR, 8) = 0 (0x0) (DUR)
[   1:   1] strace_golden E rt_sigaction(SIGUSR2, ADDR {Handler: SIG_IGN, Flags: 0x0, Restorer: 0x0, Mask: [SIGTERM]}, 0x0, 8)
[   1:   1] strace_golden X rt_sigaction(SIGUSR2, ADDR {Handler: SIG_IGN, Flags: 0x0, Restorer: 0x0, Mask: [SIGTERM]}, 0x0, 8) = 0 (0x0) (DUR)
[   1:   1] strace_golden E mmap(0x0, 8192, 0x3 (PROT_READ|PROT_WRITE), 0x22 (MAP_PRIVATE|MAP_ANONYMOUS), -1, 0x0)
[   1:   1] strace_golden X mmap(0x0, 8192, 0x3 (PROT_READ|PROT_WRITE), 0x22 (MAP_PRIVATE|MAP_ANONYMOUS), -1, 0x0) = NUM (ADDR) (DUR)
[   1:   1] strace_golden E munmap(ADDR, 8192)
[   1:   1] strace_golden X munmap(ADDR, 8192) = 0 (0x0) (DUR)
[   1:   1] strace_golden E nanosleep(ADDR {sec=0 nsec=1000}, 0x0)
[   1:   1] strace_golden X nanosleep(ADDR {sec=0 nsec=1000}, 0x0) = 0 (0x0) (DUR)
[   1:   1] strace_golden E uname(ADDR)
[   1:   1] strace_golden X uname(ADDR {sysname="Linux", nodename="sentry", release="6.1.0-sentry", version="#1 SMP Sentry", machine="x86_64", domainname="(none)"}) = 0 (0x0) (DUR)
[   1:   1] strace_golden E write(0x1 pipe:[INO], 0x10 (error decoding buffer: EFAULT), 4)
[   1:   1] strace_golden X write(0x1 pipe:[INO], ..., 4) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_golden E openat(AT_FDCWD /, 0x10 (error decoding path: EFAULT), 0x0, 0x0)
[   1:   1] strace_golden X openat(AT_FDCWD /, 0x10 (error decoding path: EFAULT), 0x0, 0x0) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_golden E rt_sigaction(SIGUSR2, 0x10 (error decoding sigaction: EFAULT), 0x0, 8)
[   1:   1] strace_golden X rt_sigaction(SIGUSR2, 0x10 (error decoding sigaction: EFAULT), 0x0, 8) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_golden E execve(ADDR "/bin/sh", 0x10 (error decoding vector: EFAULT), null)
[   1:   1] strace_golden X execve(ADDR "/bin/sh", 0x10 (error decoding vector: EFAULT), null) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_golden E exit_group(3)
[   1:   1] strace_golden P exit(status=768 (exited 3))
""".strip().splitlines()

_STAMP = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6}  ")
_DURATION = re.compile(r" \((?:\d+h)?(?:\d+m)?[\d.]+(?:ns|µs|ms|s)\)$")
_ADDR = re.compile(r"\b0x[0-9a-f]{6,12}\b")  # user addresses, not -errno
_MMAP_RESULT = re.compile(r"= \d{7,} ")
_INODE = re.compile(r":\[\d+\]")  # pipe:[1234]: stdout is the test's pipe


def normalize(line: str) -> str:
    line = _STAMP.sub("", line)
    line = _DURATION.sub(" (DUR)", line)
    line = _ADDR.sub("ADDR", line)
    line = _INODE.sub(":[INO]", line)
    return _MMAP_RESULT.sub("= NUM ", line)


def golden_part(log: str) -> list[str]:
    lines = [normalize(line) for line in log.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.endswith(" E getppid()"))
    return lines[start:]


@pytest.fixture(scope="module")
def golden_prog(cprog, tmp_path_factory) -> str:
    """The program under a fixed name (its comm shows in every line)."""
    path = tmp_path_factory.mktemp("golden") / "strace_golden"
    shutil.copy(cprog("strace_golden", "static"), path)
    return str(path)


def test_golden_strace_lines(sentry, golden_prog):
    got = sentry.run(golden_prog, options=("--strace", *OPTIONS))
    assert got.returncode == 3, got.stderr
    assert got.stdout == b'hello "strace"\n0123456789abcdefghijklmnopqrstuvwxyz\n'
    log = got.stderr.decode()
    assert re.search(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6}  \[   1:   1\] strace_golden P exec\(path=\".*strace_golden", log, re.M)
    assert golden_part(log) == GOLDEN


def test_strace_log_file_and_filter(sentry, golden_prog, tmp_path):
    log = tmp_path / "trace.log"
    got = sentry.run(golden_prog, options=("--strace-log", str(log), "--strace-syscalls", "write,openat", *OPTIONS))
    assert got.returncode == 3
    assert b" E " not in got.stderr  # the log went to the file
    calls = [re.search(r"\] strace_golden ([EXP]) (\w+)\(", line).groups() for line in log.read_text().splitlines()]
    enters = [name for what, name in calls if what == "E"]
    assert enters[-6:] == ["write", "write", "write", "openat", "write", "openat"]
    assert set(enters) == {"write", "openat"}
    assert ("P", "exit") in calls  # process events are never filtered


IOVEC_GOLDEN = r"""
[   1:   1] strace_iovec E getppid()
[   1:   1] strace_iovec X getppid() = 0 (0x0) (DUR)
[   1:   1] strace_iovec E writev(0x1 pipe:[INO], ADDR [{base=ADDR, len=6, "hello "}, {base=ADDR, len=0}, {base=ADDR, len=6, "world\n"}], 3)
[   1:   1] strace_iovec X writev(0x1 pipe:[INO], ..., 3) = 12 (0xc) (DUR)
[   1:   1] strace_iovec E writev(0x1 pipe:[INO], ADDR [{base=ADDR, len=20, "0123456789abcdefghij"}, {base=ADDR, len=17, "klmnopqrstuv"...}], 2)
[   1:   1] strace_iovec X writev(0x1 pipe:[INO], ..., 2) = 37 (0x25) (DUR)
[   1:   1] strace_iovec E writev(0x4 pipe:[INO], ADDR [{base=ADDR, len=6, "hello "}], 1)
[   1:   1] strace_iovec X writev(0x4 pipe:[INO], ..., 1) = 6 (0x6) (DUR)
[   1:   1] strace_iovec E readv(0x3 pipe:[INO], ADDR, 2)
[   1:   1] strace_iovec X readv(0x3 pipe:[INO], ADDR [{base=ADDR, len=4, "hell"}, {base=ADDR, len=8, "o "}], 2) = 6 (0x6) (DUR)
[   1:   1] strace_iovec E pwritev(0x4 pipe:[INO], ADDR [{base=ADDR, len=6, "hello "}, {base=ADDR, len=0}, {base=ADDR, len=6, "world\n"}], 3, 0, 0)
[   1:   1] strace_iovec X pwritev(0x4 pipe:[INO], ..., 3, 0, 0) = -29 (0xffffffffffffffe3) errno=29 (ESPIPE) (DUR)
[   1:   1] strace_iovec E pwritev2(0x4 pipe:[INO], ADDR [{base=ADDR, len=6, "hello "}, {base=ADDR, len=0}, {base=ADDR, len=6, "world\n"}], 3, -1, -1, 0x0)
[   1:   1] strace_iovec X pwritev2(0x4 pipe:[INO], ..., 3, -1, -1, 0x0) = 12 (0xc) (DUR)
[   1:   1] strace_iovec E preadv(0x3 pipe:[INO], ADDR, 2, 0, 0)
[   1:   1] strace_iovec X preadv(0x3 pipe:[INO], ADDR, 2, 0, 0) = -29 (0xffffffffffffffe3) errno=29 (ESPIPE) (DUR)
[   1:   1] strace_iovec E preadv2(0x3 pipe:[INO], ADDR, 2, -1, -1, 0x0)
[   1:   1] strace_iovec X preadv2(0x3 pipe:[INO], ADDR [{base=ADDR, len=4, "hell"}, {base=ADDR, len=8, "o world\n"}], 2, -1, -1, 0x0) = 12 (0xc) (DUR)
[   1:   1] strace_iovec E writev(0x1 pipe:[INO], ADDR [{base=ADDR, len=6, "hello "}, {base=0x10, len=4, error decoding buffer: EFAULT}], 2)
[   1:   1] strace_iovec X writev(0x1 pipe:[INO], ..., 2) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_iovec E writev(0x1 pipe:[INO], 0x10 (error decoding iovec: EFAULT), 1)
[   1:   1] strace_iovec X writev(0x1 pipe:[INO], ..., 1) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_iovec E writev(0x1 pipe:[INO], ADDR (error decoding iovecs: invalid iovcnt), -1)
[   1:   1] strace_iovec X writev(0x1 pipe:[INO], ..., -1) = -22 (0xffffffffffffffea) errno=22 (EINVAL) (DUR)
[   1:   1] strace_iovec E sendmsg(0x5 socket:[INO], ADDR {name=0x0, namelen=0, iovecs=[{base=ADDR, len=6, "hello "}, {base=ADDR, len=0}, {base=ADDR, len=6, "world\n"}], control={base=0x0, len=0}, flags=0x0}, 0x0)
[   1:   1] strace_iovec X sendmsg(0x5 socket:[INO], ..., 0x0) = 12 (0xc) (DUR)
[   1:   1] strace_iovec E recvmsg(0x6 socket:[INO], ADDR, 0x20 (MSG_TRUNC))
[   1:   1] strace_iovec X recvmsg(0x6 socket:[INO], ADDR {name=0x0, namelen=0, iovecs=[{base=ADDR, len=4, "hell"}, {base=ADDR, len=8, "o world\n"}], control={base=0x0, len=0}, flags=0x0}, 0x20 (MSG_TRUNC)) = 12 (0xc) (DUR)
[   1:   1] strace_iovec E sendmsg(0x5 socket:[INO], 0x10 (error decoding msghdr: EFAULT), 0x0)
[   1:   1] strace_iovec X sendmsg(0x5 socket:[INO], ..., 0x0) = -14 (0xfffffffffffffff2) errno=14 (EFAULT) (DUR)
[   1:   1] strace_iovec E exit_group(0)
[   1:   1] strace_iovec P exit(status=0 (exited 0))
""".strip().splitlines()


def test_iovec_contents(sentry, cprog, tmp_path):
    """readv/writev, their p/p*2 forms and sendmsg/recvmsg's msghdr show
    each iovec with its bytes, as runsc does: written ones on entry, read ones after the call, sized
    by its result; cut at --strace-log-size; bad pointers decoded as errors."""
    prog = tmp_path / "strace_iovec"
    shutil.copy(cprog("strace_iovec", "static"), prog)
    got = sentry.run(str(prog), options=("--strace", *OPTIONS))
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hello world\n0123456789abcdefghijklmnopqrstuvwxyz\n"
    assert golden_part(got.stderr.decode()) == IOVEC_GOLDEN


def test_signal_events_show_names(sentry, tmp_path):
    """A signal shows by name in the text log (its number stays JSON's
    ``signo``), and one that kills by its default action has its event."""
    js = tmp_path / "t.json"
    got = sentry.run("/bin/sh", "-c", "/bin/true; kill -TERM $$",
                     options=("--strace", "--strace-json", str(js), "--strace-syscalls", "kill"))
    assert got.returncode == 128 + signal.SIGTERM, got.stderr
    shown = [line.split(" P ", 1)[1] for line in got.stderr.decode().splitlines() if "[   1:   1] " in line
             and " P " in line]
    assert shown[-2:] == ["signal(signo=15 (SIGTERM))", "exit(status=15 (killed by SIGTERM))"], shown
    assert all(re.fullmatch(r"signal\(signo=\d+ \(SIG[A-Z0-9+]+\)\)", e) for e in shown if e.startswith("signal"))
    records = [json.loads(line) for line in js.read_text().splitlines()]
    for r in records:
        check(r, SCHEMA)
    assert [r["detail"] for r in records if r["type"] == "signal"][-1] == {"signo": 15}
    assert [e for e in tracefile.load(str(js)).records if e.kind == "signal"][-1].detail == {"signo": 15}


# ------------------------------------------------------------ a trace that cannot be written

def test_a_sink_that_fails_is_dropped(sentry, golden_prog):
    """A trace file whose writes fail (ENOSPC) stops; the guest goes on to
    its own exit status, and sentry says so in one line at the end (this
    was taken for a Sentry crash: 125, or a hang)."""
    got = sentry.run(golden_prog, options=("--strace-log", "/dev/full", "--strace-json", "/dev/full"), timeout=60)
    assert got.returncode == 3, got.stderr
    assert got.stdout == b'hello "strace"\n0123456789abcdefghijklmnopqrstuvwxyz\n'
    assert got.stderr.count(b"\n") == 1 and b"/dev/full: No space left on device" in got.stderr, got.stderr


@pytest.mark.parametrize("stderr", ["broken pipe", "closed"])
def test_strace_to_a_gone_stderr(sentry, golden_prog, stderr):
    """`sentry run --strace ... 2>&1 | head -1` (EPIPE) and `2>&-` (no
    sys.stderr at all) ran the guest to its end, then hung for ever."""
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", sentry.platform, "--strace", "--", golden_prog]
    if stderr == "closed":
        got = subprocess.run(cmd, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), timeout=60)
    else:
        reader, writer = os.pipe()
        os.close(reader)
        try:
            got = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=writer, timeout=60)
        finally:
            os.close(writer)
    assert got.returncode == 3
    assert got.stdout == b'hello "strace"\n0123456789abcdefghijklmnopqrstuvwxyz\n'


# ------------------------------------------------------------ JSON

class SchemaError(AssertionError):
    pass


def check(value, schema: dict, where: str = "$") -> None:
    """The subset of JSON Schema schema.json uses: type (incl. lists),
    const, enum, required, properties, additionalProperties: false, items,
    maxItems, minimum, maximum, maxLength, pattern, oneOf."""
    if "oneOf" in schema:
        fits = []
        for sub in schema["oneOf"]:
            try:
                check(value, sub, where)
                fits.append(sub)
            except SchemaError:
                pass
        if len(fits) != 1:
            raise SchemaError(f"{where}: matches {len(fits)} of oneOf")
    kinds = schema.get("type")
    if kinds is not None:
        types = {"object": dict, "array": list, "string": str, "null": type(None)}
        ok = False
        for k in kinds if isinstance(kinds, list) else [kinds]:
            if k == "integer":
                ok |= isinstance(value, int) and not isinstance(value, bool)
            else:
                ok |= isinstance(value, types[k])
        if not ok:
            raise SchemaError(f"{where}: {value!r} is not {kinds}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise SchemaError(f"{where}: {value} out of range")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", len(value)):
            raise SchemaError(f"{where}: too long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            raise SchemaError(f"{where}: too many items")
        for i, item in enumerate(value):
            check(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise SchemaError(f"{where}: no {key}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                check(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties", True) is False:
                raise SchemaError(f"{where}: unexpected {key}")


def test_the_schema_checker_rejects_what_it_should():
    good = {"v": 1, "type": "exit", "ts_ns": 1, "pid": 1, "tid": 1, "comm": "x", "detail": {"status": 0}}
    check(good, SCHEMA)
    for bad in ({**good, "pid": "1"}, {**good, "extra": 1}, {k: v for k, v in good.items() if k != "tid"},
                {**good, "type": "syscall"}, {**good, "detail": {"status": 1 << 20}}):
        with pytest.raises(SchemaError):
            check(bad, SCHEMA)


def test_json_events_follow_the_schema(sentry, golden_prog, tmp_path):
    out = tmp_path / "trace.json"
    got = sentry.run(golden_prog, options=("--strace-json", str(out), *OPTIONS))
    assert got.returncode == 3
    assert b" E " not in got.stderr  # JSON only: no text log
    events = [json.loads(line) for line in out.read_text().splitlines()]
    for e in events:
        check(e, SCHEMA)
    try:
        import jsonschema
    except ImportError:
        pass
    else:
        validator = jsonschema.Draft202012Validator(SCHEMA)
        for e in events:
            validator.validate(e)
    assert events[0]["type"] == "exec" and events[0]["detail"]["path"].endswith("strace_golden")
    assert events[-1] == {**events[-1], "type": "exit", "detail": {"status": 3 << 8}}
    calls = [e for e in events if e["type"] == "syscall"]
    start = next(i for i, e in enumerate(calls) if e["name"] == "getppid")
    mine = calls[start:]
    assert [e["name"] for e in mine] == ["getppid", "write", "write", "write", "openat", "clock_getres", "getrandom",
                                         "rt_sigprocmask", "rt_sigaction", "mmap", "munmap", "nanosleep", "uname",
                                         "write", "openat", "rt_sigaction", "execve", "exit_group"]
    bad_write, openat, exit_group = mine[3], mine[4], mine[-1]
    assert bad_write["raw_args"][0] == "0x63" and bad_write["result"] == -9 and bad_write["errno"] == "EBADF"
    assert openat["errno"] == "ENOENT" and openat["result"] == -2
    assert openat["args"][1].endswith(' "/nonexistent/file"')
    assert mine[1]["args"][1].endswith(r' "hello \"strace\"\n"') and mine[1]["result"] == 15
    assert exit_group["result"] is None and exit_group["duration_ns"] is None
    assert all(e["duration_ns"] >= 0 and e["pid"] == e["tid"] == 1 for e in mine[:-1])
    assert [e["ts_ns"] for e in events] == sorted(e["ts_ns"] for e in events)


# ------------------------------------------------------------ CLI errors

@pytest.mark.parametrize("options, message", [
    (("--strace-syscalls", "openat,nosuchcall"), b"unknown system call nosuchcall"),
    (("--strace-json", "/nonexistent-dir/t.json"), b"cannot write trace /nonexistent-dir/t.json"),
])
def test_strace_option_errors_are_one_line(golden_prog, options, message):
    got = subprocess.run([sys.executable, "-m", "sentry", "run", *options, "--", golden_prog],
                         capture_output=True, timeout=60)
    assert got.returncode == 2
    assert message in got.stderr and got.stderr.count(b"\n") == 1, got.stderr


# ------------------------------------------------------------ pure formatting

@pytest.mark.parametrize("ns, text", [(0, "0s"), (850, "850ns"), (45_100, "45.1µs"),
                                      (1_000, "1µs"), (1_500_000, "1.5ms"), (2_000_000_000, "2s"),
                                      (90_500_000_000, "1m30.5s"), (3_600_000_000_000, "1h0m0s")])
def test_go_durations(ns, text):
    assert decode.go_duration(ns) == text
    assert tracefile.parse_go_duration(text) == ns


def test_names():
    assert names.open_flags(0o2000000) == "O_RDONLY|O_CLOEXEC"
    assert names.open_flags(0o4010101) == "O_WRONLY|O_SYNC|O_CREAT"
    assert names.clone_flags(0x01200011) == "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"
    assert names.file_mode(0o100644) == "S_IFREG|0o644"
    assert names.futex_op(0x189) == "FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG|FUTEX_CLOCK_REALTIME"
    assert names.futex_op(0x81) == "FUTEX_WAKE|FUTEX_PRIVATE_FLAG"
    assert names.flag_names(0x40 | 0x1, {0x1: "A"}) == "A|0x40"
    assert names.sigset_names((1 << 1) | (1 << 33)) == "[SIGINT SIGRTMIN+2]"
    assert names.errno_name(11) == "EAGAIN" and names.errno_name(35) == "EDEADLK" and names.errno_name(9999) == "9999"
    assert decode.quote(b'a"\\\n\x00\xff') == r'"a\"\\\n\x00\xff"'
    assert decode.result_text(-2, 1500) == "-2 (0xfffffffffffffffe) errno=2 (ENOENT) (1.5µs)"
    assert decode._sockaddr_text(b"\x02\x00\x00\x50\x7f\x00\x00\x01" + bytes(8)) == \
        "{Family: AF_INET, Addr: 127.0.0.1, Port: 80}"
    assert decode._sockaddr_text(b"\x01\x00\x00sock\x00") == '{Family: AF_UNIX, Addr: @"sock\\x00"}'
    assert decode._sockaddr_text(b"\x01\x00/tmp/s\x00junk") == '{Family: AF_UNIX, Addr: "/tmp/s"}'
    assert decode.result_text(1 << 46, 5) == f"{1 << 46} ({1 << 46:#x}) (5ns)"
