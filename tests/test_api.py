"""The Python API on every platform: run with stdin and capture, exit
statuses and signals, streaming, timeouts, errors, and two sandboxes at
once from a trio program."""
from __future__ import annotations

import signal
import threading

import pytest
import trio

from sentry.api import PIPE, Limits, Result, Sandbox, SandboxError
from sentry.policy import Policy

TIMEOUT = 90


def test_run_captures(platform):
    box = Sandbox(platform=platform, env={"PATH": "/usr/bin:/bin", "WHO": "api"})
    r = box.run(["/bin/sh", "-c", "echo out $WHO; echo err >&2; cat; exit 7"], stdin=b"in\n", timeout=TIMEOUT)
    assert (r.exit_status, r.signal, r.stdout, r.stderr) == (7, None, b"out api\nin\n", b"err\n")
    assert r.returncode == 7 and not r.timed_out
    assert r.stats.memory_peak > 0 and r.stats.elapsed > 0


def test_signal_and_timeout(platform):
    box = Sandbox(platform=platform)
    r = box.run(["/bin/sh", "-c", "kill -TERM $$"], timeout=TIMEOUT)
    assert (r.exit_status, r.signal, r.returncode) == (None, signal.SIGTERM, 128 + signal.SIGTERM)
    r = box.run(["/bin/sh", "-c", "echo started; exec sleep 1000"], timeout=2)
    assert r.timed_out and r.signal == signal.SIGKILL and r.returncode == 124 and r.stdout == b"started\n"


def test_streaming(platform):
    box = Sandbox(platform=platform)
    with box.start(["/bin/sh", "-c", "while read x; do echo got $x; done"], stdin=PIPE, stdout=PIPE) as p:
        for word in (b"a", b"b"):
            p.stdin.write(word + b"\n")
            assert p.stdout.readline() == b"got " + word + b"\n"  # each answer before the next question
        p.stdin.close()
        assert p.stdout.read() == b""  # EOF once the sandbox ended, without a wait()
        assert p.wait() == 0 and p.returncode == 0


def test_errors(platform):
    box = Sandbox(platform=platform)
    with pytest.raises(SandboxError, match="no-such") as e:
        box.run(["/no-such-program"])
    assert e.value.exit_code == 127
    with pytest.raises(ValueError, match="network"):
        Sandbox(platform=platform, network="bridge")
    with pytest.raises(SandboxError, match="unknown platform"):
        Sandbox(platform="nope")


def test_memory_limit(platform):
    box = Sandbox(platform=platform, limits=Limits(memory=64 << 20))
    r = box.run(["/usr/bin/python3", "-S", "-c", "b = bytearray(256 << 20)"], timeout=TIMEOUT)
    assert r.exit_status != 0 and b"MemoryError" in r.stderr


def test_limits_and_volumes_as_the_cli_flags(platform, tmp_path):
    """Limits(pids, nofile) and volumes reach the guest as --pids,
    --nofile and --volume do; bad values are ValueError."""
    (tmp_path / "in").write_text("from the host\n")
    box = Sandbox(platform=platform, limits=Limits(pids=3, nofile=64), volumes=[(str(tmp_path), "/vol", False)])
    script = ("ulimit -Hn; cat /vol/in; echo from the guest > /vol/out; "
              "sleep 2 & sleep 2 & sleep 2 & wait; echo not reached")
    r = box.run(["/bin/sh", "-c", script], timeout=TIMEOUT)
    assert r.stdout == b"64\nfrom the host\n", r.stdout + r.stderr
    assert r.stderr == b"/bin/sh: 0: Cannot fork\n"  # the third child (sh and two sleeps live): EAGAIN
    assert (tmp_path / "out").read_text() == "from the guest\n"
    for bad in (dict(pids=0), dict(memory=-1), dict(nofile=1)):
        with pytest.raises(ValueError):
            Limits(**bad)
    with pytest.raises(ValueError, match="not a directory"):
        Sandbox(platform=platform, volumes=[(str(tmp_path / "missing"), "/vol", True)])


def test_trio_two_sandboxes_at_once(platform):
    """Each guest's uname waits in a hook until the other guest's uname
    has run: only two sandboxes running at the same time can finish."""
    meet = threading.Barrier(2, timeout=60)
    policy = Policy()

    @policy.syscall("uname")
    def rendezvous(call):
        meet.wait()
    box = Sandbox(platform=platform, policy=policy)
    results: dict[str, Result] = {}

    async def one(name: str) -> None:
        results[name] = await box.run_async(["/bin/sh", "-c", f"uname -s; echo {name}"], timeout=TIMEOUT)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "first")
            nursery.start_soon(one, "second")

    trio.run(main)
    assert results["first"].stdout == b"Linux\nfirst\n"
    assert results["second"].stdout == b"Linux\nsecond\n"


def test_trio_cancel_kills(platform):
    started = threading.Event()
    policy = Policy()

    @policy.syscall("nanosleep", "clock_nanosleep")
    def sleeping(call):
        started.set()
    box = Sandbox(platform=platform, policy=policy)

    async def main() -> bool:
        with trio.CancelScope() as scope:
            async def cancel_when_sleeping() -> None:
                await trio.to_thread.run_sync(started.wait)
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_sleeping)
                await box.run_async(["/bin/sleep", "1000"])
        return scope.cancelled_caught

    assert trio.run(main)
