"""Running one program in a sandbox: the layer `sentry run` stands on.

``run_program(config, argv, envp)`` runs a program through the Python
API (``sentry.api``: a Kernel on the chosen platform, PID 1 on its own OS
thread) on the Sentry's own stdio, with signal forwarding, and returns a
wait(2) status. Errors the user can act on are ``SandboxError`` with a
one-line message and a shell-style exit code.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
from typing import TYPE_CHECKING

from platforms import base
from sentry.config import Config

if TYPE_CHECKING:
    from sentry.api import Process
    from sentry.policy import Policy


class SandboxError(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def pick_platform(name: str) -> type[base.Platform]:
    try:
        cls = base.lookup(name)
    except KeyError:
        why = base.load_errors().get(name)
        if why is not None:
            raise SandboxError(f"platform {name} is not available here: {why}", 2) from None
        raise SandboxError(f"unknown platform {name!r} (have: {', '.join(base.names())})", 2) from None
    ok, why = cls.available()
    if not ok:
        raise SandboxError(f"platform {name} is not available here: {why}", 2)
    return cls


def run_program(config: Config, argv: list[bytes], envp: list[bytes], policy: "Policy | None" = None) -> int:
    """Run argv in a new sandbox on the caller's stdio, forwarding SIGINT,
    SIGTERM and SIGHUP to the guest; return the init process's wait(2)
    status (124 << 8 after ``config.timeout``). A thin layer over
    ``sentry.api``; raises SandboxError, or PolicyError if a hook raised."""
    from sentry.api import INHERIT, Sandbox

    sandbox = Sandbox.from_config(dataclasses.replace(config, env=list(envp)), policy)
    proc = sandbox.start(argv, stdin=INHERIT, stdout=INHERIT, stderr=INHERIT)
    with _forward_signals(proc):
        status = proc.wait(config.timeout)
    _report_lost_trace(proc)
    return status


def _report_lost_trace(proc: "Process") -> None:
    """One line on stderr if tracing stopped on a sink whose write failed
    (``--strace 2>&1 | head``: EPIPE). Best effort, never raises: stderr
    may be the very pipe that broke."""
    tracer = proc.kernel.tracer
    if tracer is None or not tracer.failures or sys.stderr is None:
        return
    try:
        print(f"sentry: --strace: stopped writing {'; '.join(tracer.failures)}", file=sys.stderr, flush=True)
    except OSError:
        pass


@contextlib.contextmanager
def _forward_signals(proc: "Process"):
    """SIGINT, SIGTERM and SIGHUP sent to the Sentry go to the guest's
    foreground process group (``Process.send_signal``), as a terminal
    would send them."""
    previous = {signo: signal.signal(signo, lambda signo, _frame: proc.send_signal(signo))
                for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def exit_code(status: int) -> int:
    """Shell exit code for a wait(2) status: the code, or 128+signal."""
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def host_environment() -> list[bytes]:
    return [k + b"=" + v for k, v in os.environb.items()]
