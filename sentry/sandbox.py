"""Running one program in a sandbox: the layer `sentry run` stands on.

``run_program(config, argv)`` builds a Kernel on the chosen platform,
starts PID 1 on its own OS thread (the thread that will trace its stub),
waits for it and returns a wait(2) status. Errors the user can act on are
``SandboxError`` with a one-line message and a shell-style exit code.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys

from platforms import base
from sentry.errors import ExecError
from sentry.config import Config
from sentry.kernel.kernel import Kernel, exec_error_status


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


def run_program(config: Config, argv: list[bytes], envp: list[bytes]) -> int:
    """Run argv in a new sandbox; return the init process's wait(2) status."""
    platform = pick_platform(config.platform)
    tracer = None
    if config.strace:
        from sentry.strace import make_tracer

        try:
            tracer = make_tracer(config)
        except OSError as e:
            raise SandboxError(f"cannot write the trace: {e}", 2) from None
    kernel = Kernel(config, platform)
    kernel.tracer = tracer
    sys.setswitchinterval(0.001)
    try:
        try:
            kernel.start(argv, envp)
        except ExecError as e:
            raise SandboxError(e.message, exec_error_status(e)) from None
        with _forward_signals(kernel):
            timed_out = not kernel.done.wait(config.timeout)
        if timed_out:
            kernel.debug(f"--timeout {config.timeout}s reached: ending the sandbox")
            kernel.end()
            return 124 << 8
    finally:
        kernel.close()
    if kernel.crash is not None:
        if config.debug:
            import traceback

            traceback.print_exception(kernel.crash)
        raise SandboxError(f"internal error: {type(kernel.crash).__name__}: {kernel.crash}", 125)
    status = kernel.init_status
    assert status is not None
    return status


@contextlib.contextmanager
def _forward_signals(kernel: Kernel):
    """SIGINT, SIGTERM and SIGHUP sent to the Sentry go to the guest's
    foreground process group (init's), as a terminal would send them."""
    def forward(signo, _frame) -> None:
        from sentry.kernel import signals

        init = kernel.init
        if init is None:
            return
        with kernel.lock:
            groups = [g for g in kernel.groups.values() if g.pgid == init.pgid and not g.zombie]
        for g in groups:
            signals.send(kernel, g, signo, signals.siginfo(signo, signals.SI_USER))

    previous = {signo: signal.signal(signo, forward) for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
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
