"""Scheduling attributes, nice values, pidfds and child subreapers: C
programs printing in the sandbox what they print natively, on every
available platform, and the shell's ``nice``."""
from __future__ import annotations

import shutil

import pytest

from conftest import native
from sentry.syscalls.table import listing

NEW_CALLS = ("sched_get_priority_max", "sched_get_priority_min", "sched_setscheduler", "sched_setparam",
             "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_setattr", "sched_getattr",
             "getpriority", "setpriority", "pidfd_open", "pidfd_send_signal")


def test_calls_are_in_the_table():
    status = {name: st for _nr, name, st, _note in listing()}
    assert [n for n in NEW_CALLS if status[n] not in ("supported", "partial")] == []


@pytest.mark.parametrize("name, mode", [("sched_prio", "static"), ("pidfd", "dynamic"), ("subreaper", "static")])
def test_c_programs(sentry, cprog, name, mode):
    prog = cprog(name, mode)
    want = native(prog)
    assert want.returncode == 0, want.stderr
    if b"rt refused" in want.stdout:
        pytest.skip("the host refuses SCHED_FIFO to root: no native reference")
    got = sentry.run(prog, timeout=120)
    assert got.stdout == want.stdout, got.stderr
    assert got.returncode == 0


def test_nice_reaches_children_and_proc(sentry):
    if shutil.which("nice") is None:
        pytest.skip("no nice(1)")
    script = "nice; cut -d' ' -f18,19 /proc/self/stat; nice -n 3 nice"
    want = native("nice", "-n", "5", "sh", "-c", script)
    got = sentry.run("nice", "-n", "5", "sh", "-c", script)
    assert want.stdout == b"5\n25 5\n8\n"
    assert got.stdout == want.stdout, got.stderr
