"""epoll (level-triggered, EPOLLET, EPOLLONESHOT) over a pipe, a socket
and eventfds, eventfd semaphores, timerfd and signalfd; EPOLLET on pipes;
ppoll, pselect6 and epoll_pwait(2) under a temporary signal mask. On every
platform: the output must match a native run."""
from __future__ import annotations

import os

import pytest

from tests.conftest import native

PYTHON = "/usr/bin/python3.11"


@pytest.mark.parametrize("part", ["epoll", "eventfd", "timerfd", "signalfd"])
def test_events_match_native(sentry, cprog, part):
    sentry.matches_native(cprog("net_events"), part, timeout=120)


@pytest.mark.parametrize("prog", ["epoll_edge", "wait_sigmask"])
def test_matches_native(sentry, cprog, prog):
    """epoll_edge: an EPOLLET item on a pipe reports again only on a new
    event (a write; a read from a full pipe; a close), not on any activity.
    wait_sigmask: a signal the temporary mask of ppoll, pselect6,
    epoll_pwait or epoll_pwait2 lets in runs its handler under that mask
    and the call returns EINTR (it used to restart forever)."""
    binary = cprog(prog)
    want = native(binary)
    assert want.returncode == 0, want.stdout
    got = sentry.run(binary, timeout=60)
    assert got.returncode == 0, got.stdout.decode() + got.stderr.decode()[-2000:]
    assert got.stdout.decode() == want.stdout.decode()


@pytest.mark.skipif(not os.path.exists(PYTHON), reason="python3.11 not installed")
def test_python_asyncio_epoll(sentry):
    """asyncio's default selector is epoll: a TCP echo over loopback."""
    code = (
        "import asyncio\n"
        "async def handle(r, w):\n"
        "    w.write((await r.readline()).upper()); await w.drain(); w.close()\n"
        "async def main():\n"
        "    srv = await asyncio.start_server(handle, '127.0.0.1', 0)\n"
        "    port = srv.sockets[0].getsockname()[1]\n"
        "    r, w = await asyncio.open_connection('127.0.0.1', port)\n"
        "    w.write(b'echo me\\n'); await w.drain()\n"
        "    print((await r.readline()).decode(), end='')\n"
        "    w.close(); srv.close(); await srv.wait_closed()\n"
        "asyncio.run(main())\n"
    )
    got = sentry.run(PYTHON, "-c", code, timeout=120)
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    assert got.stdout.decode() == "ECHO ME\n"
