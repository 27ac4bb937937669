"""Futex requeue and wake-op, timers and CPU clocks as Linux has them:
C programs print facts (never raw times) in the sandbox as they do
natively, on every available platform.

- futex_ops: a waiter requeued from A to B is woken by a wake on B at
  once; requeue counts and errors; FUTEX_WAKE_OP's signed 12-bit
  operands, OPARG_SHIFT masking, ENOSYS cases, and its read-modify-write
  atomic against a guest thread's atomic adds.
- timers_linux: CLOCK_REALTIME TIMER_ABSTIME timers fire; overruns;
  re-arming or deleting drops the pending signal; ITIMER_VIRTUAL and
  ITIMER_PROF; interrupted sleeps write the time left; the CPU-time clocks
  are the guest's; POSIX timers end at execve, ITIMER_REAL goes on.
"""
from __future__ import annotations

import pytest

from conftest import native


@pytest.mark.parametrize("argv", [("futex_ops",), ("timers_linux",), ("timers_linux", "exec")],
                         ids=["futex_ops", "timers", "timers_exec"])
def test_matches_native(sentry, cprog, argv):
    prog = cprog(argv[0], "static")
    want = native(prog, *argv[1:])
    assert want.returncode == 0, want.stderr
    got = sentry.run(prog, *argv[1:], timeout=180)
    assert got.stdout.decode().splitlines() == want.stdout.decode().splitlines(), got.stderr.decode()
    assert got.returncode == 0


def test_futex_ops_dynamic(sentry, cprog):
    """The same through glibc's dynamic loader (its own futex users run too)."""
    prog = cprog("futex_ops", "dynamic")
    want = native(prog)
    got = sentry.run(prog, timeout=180)
    assert got.stdout.decode().splitlines() == want.stdout.decode().splitlines(), got.stderr.decode()
    assert got.returncode == want.returncode == 0
