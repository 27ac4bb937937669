"""Policy hooks on every platform: a denied openat, a rewritten uname, an
exec allow-list, kill and substitute decisions, the ready policies, and
`sentry run --policy`; plus the no-cost property of the wrapped table."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from sentry.api import DEVNULL, Sandbox, SandboxError
from sentry.policy import (Deny, Kill, Policy, PolicyError, Return, WriteLog, compose, exec_allowlist,
                           load_policy_file, no_network, read_only)
from sentry.syscalls.table import dispatch_list

UTSNAME_FIELD = 65
TIMEOUT = 90


def run(platform: str, policy: Policy | None, script: str):
    return Sandbox(platform=platform, policy=policy).run(["/bin/sh", "-c", script], timeout=TIMEOUT)


# ------------------------------------------------------------ no cost

def test_no_hooks_is_the_same_table():
    base = dispatch_list()
    assert Policy().table(base) is base
    p = Policy()
    p.event("exit")(lambda e: None)
    assert p.table(base) is base  # exit events are the kernel's, not the table's


def test_only_hooked_entries_change():
    base = dispatch_list()
    p = Policy()
    p.syscall("getppid")(lambda call: None)
    table = p.table(base)
    changed = [nr for nr, (a, b) in enumerate(zip(base, table)) if a is not b]
    assert changed == [110]
    assert table[110].name == "getppid" and table[110].handler is not base[110].handler
    assert p.table(base) is table  # built once


def test_bad_names_are_one_line_errors(tmp_path):
    with pytest.raises(PolicyError, match="unknown system call 'opne'"):
        Policy().syscall("opne")
    with pytest.raises(PolicyError, match="unknown process event"):
        Policy().event("fork")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(PolicyError, match="defines no `policy`"):
        load_policy_file(str(bad))
    bad.write_text("def f(:\n")
    with pytest.raises(PolicyError, match="syntax error"):
        load_policy_file(str(bad))


# ------------------------------------------------------------ must show

def test_deny_openat_of_one_path(platform):
    policy = Policy()
    seen = []

    @policy.syscall("openat", "open")
    def no_passwd(call):
        seen.append(call.path)
        if call.path == "/etc/passwd":
            return Deny(errno.EACCES)
        return None

    r = run(platform, policy, "cat /etc/passwd; echo rc=$?; cd /etc && cat ../etc/./passwd; "
                              "ln -s /etc/passwd /tmp/link && cat /tmp/link; head -c 5 /etc/group; echo")
    assert r.stdout.startswith(b"rc=1\n"), r
    assert r.stderr.count(b"Permission denied") == 3, r.stderr  # by name, by .., through a symlink
    assert r.stdout.endswith(b"root:\n")  # other opens work
    assert "/etc/group" in seen


def test_uname_rewritten(platform):
    policy = Policy()

    @policy.after("uname")
    def other_host(call):
        buf = call.args[0]
        return Return(call.result, writes=((buf + UTSNAME_FIELD, b"policybox\0"),))

    r = run(platform, policy, "uname -n; uname -s")
    assert r.stdout == b"policybox\nLinux\n", r


def test_exec_allowlist(platform):
    policy = exec_allowlist(["/bin/sh", "/bin/echo"])
    r = run(platform, policy, "/bin/ls /; echo ls=$?; /bin/echo hi")
    assert r.stdout == b"ls=126\nhi\n", r
    assert b"Permission denied" in r.stderr
    with pytest.raises(SandboxError, match="exec denied by policy") as e:
        Sandbox(platform=platform, policy=policy).run(["/bin/ls"])
    assert e.value.exit_code == 126


# ------------------------------------------------------------ decisions and events

def test_kill_and_substitute(platform):
    policy = Policy()
    policy.syscall("getppid")(lambda call: Return(4242))
    policy.syscall("uname")(lambda call: Kill(signal.SIGSYS))
    r = run(platform, policy, "echo $PPID; uname; echo uname=$?")
    assert r.stdout == b"4242\nuname=%d\n" % (128 + signal.SIGSYS), r  # the shell saw uname die of SIGSYS
    r = Sandbox(platform=platform, policy=policy).run(["/bin/uname"])
    assert r.signal == signal.SIGSYS and r.stdout == b""


def test_process_events(platform):
    events = []
    policy = Policy()
    for kind in ("exec", "clone", "exit"):
        policy.event(kind)(lambda e: events.append((e.kind, e.pid, e.path or e.child or e.status)))
    r = run(platform, policy, "/bin/true; exit 3")
    assert r.exit_status == 3
    kinds = [k for k, _, _ in events]
    assert kinds[0] == "exec" and events[0][1] == 1
    assert "clone" in kinds
    child = next(v for k, _, v in events if k == "clone")
    assert ("exec", child) in [(k, p) for k, p, _ in events]
    assert events[-1] == ("exit", 1, 3 << 8)


def test_hook_that_raises_ends_the_run(platform):
    policy = Policy()
    policy.syscall("uname")(lambda call: 1 / 0)
    with pytest.raises(PolicyError, match="ZeroDivisionError"):
        run(platform, policy, "uname")


@pytest.mark.parametrize("kind", ["exit", "exec", "clone"])
def test_event_hook_that_raises_ends_the_run(platform, kind):
    """As a raising system-call hook does: at once, with PolicyError (an
    exit hook that raised kept the sandbox from ending until the timeout)."""
    policy = Policy()
    policy.event(kind)(lambda event: 1 / 0)
    sandbox = Sandbox(platform=platform, policy=policy)
    with sandbox.start(["/bin/sh", "-c", "/bin/true; /bin/true"], stdout=DEVNULL, stderr=DEVNULL) as proc:
        with pytest.raises(PolicyError, match=f"on {kind} raised ZeroDivisionError"):
            proc.wait(TIMEOUT)
        assert not proc.timed_out


# ------------------------------------------------------------ ready policies

def test_read_only_and_write_log(platform):
    log = WriteLog()
    r = run(platform, log, "echo a > /tmp/w1; mkdir /tmp/d; mv /tmp/w1 /tmp/d/w2; rm /tmp/d/w2; "
                           "cat /etc/passwd > /dev/null")
    assert r.exit_status == 0
    assert [(x.op, x.path) for x in log.records] == [
        ("open", "/tmp/w1"), ("mkdir", "/tmp/d"), ("rename", "/tmp/d/w2"), ("unlink", "/tmp/d/w2"),
        ("open", "/dev/null")]
    r = run(platform, compose(read_only(), no_network()),
            "echo a > /tmp/w1; echo rc=$?; mkdir /tmp/d; echo b > /dev/null && cat /etc/hostname >/dev/null && echo ok")
    assert r.stdout == b"rc=2\nok\n", r
    assert r.stderr.count(b"Read-only file system") == 2


def test_no_network(platform):
    code = "import socket\ntry:\n socket.socket()\nexcept PermissionError: print('denied')\n" \
           "socket.socket(socket.AF_UNIX); print('unix ok')"
    r = Sandbox(platform=platform, policy=no_network()).run([sys.executable, "-S", "-c", code], timeout=TIMEOUT)
    assert r.stdout == b"denied\nunix ok\n", r


# ------------------------------------------------------------ command line

def test_cli_policy_file(platform, tmp_path):
    pol = tmp_path / "pol.py"
    pol.write_text(textwrap.dedent("""
        import errno
        from sentry.policy import Deny, Policy
        policy = Policy()
        @policy.syscall("openat")
        def no_group(call):
            return Deny(errno.EACCES) if call.path == "/etc/group" else None
    """))
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", platform, "--policy", str(pol), "--",
           "/bin/sh", "-c", "cat /etc/group; echo rc=$?"]
    p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    assert p.stdout == b"rc=1\n" and b"Permission denied" in p.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('no')\n")
    cmd[cmd.index(str(pol))] = str(bad)
    p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1 and b"RuntimeError: no" in p.stderr


def test_views_read_only(platform):
    got = {}
    policy = Policy()

    @policy.syscall("openat")
    def look(call):
        if call.path == "/etc/passwd":
            got.update(text=call.args_text, pid=call.pid, tid=call.tid, comm=call.comm,
                       has_task=hasattr(call, "task"), cwd=call.cwd)

    run(platform, policy, "cd /etc && exec cat passwd > /dev/null")
    assert got["text"][0] == "AT_FDCWD /etc" and got["text"][1].endswith('"passwd"')
    assert got["pid"] == got["tid"] == 1 and got["comm"] == "cat" and got["cwd"] == "/etc"
    assert not got["has_task"]
    assert os.path.exists("/etc/passwd")


def test_hook_on_a_call_the_sentry_lacks(platform):
    """A call missing from the table (acct) is ENOSYS unless a hook answers;
    its hook sees the six argument registers."""
    seen = []
    policy = Policy()

    @policy.syscall("acct")
    def answer(call):
        seen.append(call.args[:3])
        return Return(77) if call.args[0] == 1 else None

    code = "import ctypes; s = ctypes.CDLL(None, use_errno=True).syscall; " \
           "print(s(163, 1, 2, 3), s(163, 0, 0, 0), ctypes.get_errno())"
    r = Sandbox(platform=platform, policy=policy).run([sys.executable, "-S", "-c", code], timeout=TIMEOUT)
    assert r.stdout == b"77 -1 %d\n" % errno.ENOSYS, r
    assert seen == [(1, 2, 3), (0, 0, 0)]


def test_hook_on_every_call(platform):
    names = []
    policy = Policy()
    policy.syscall()(lambda call: names.append(call.name))
    r = Sandbox(platform=platform, policy=policy).run(["/bin/sh", "-c", "echo hi"], timeout=TIMEOUT)
    assert r.stdout == b"hi\n"
    assert names[-2:] == ["write", "exit_group"] and "openat" in names
