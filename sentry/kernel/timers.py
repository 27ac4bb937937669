"""Interval timers (alarm, setitimer ITIMER_REAL) and POSIX timers
(timer_create with SIGEV_SIGNAL/SIGEV_THREAD_ID), as trio tasks in the
kernel's loop that send a signal when they fire.

A ``Timer`` is armed with (value, interval) in nanoseconds; re-arming or
disarming cancels the running trio task and starts a new one. Times are
CLOCK_MONOTONIC based (CLOCK_REALTIME timers too: the sandbox never steps
its clock).
"""
from __future__ import annotations

import time
from typing import Callable

from sentry.kernel.wait import LOOP


class Timer:
    def __init__(self, fire: Callable[[], None]):
        self._fire = fire
        self._scope = None
        self._deadline = 0  # monotonic ns of the next expiry, 0 = disarmed
        self.interval = 0
        self.overrun = 0

    def remaining(self) -> tuple[int, int]:
        """(ns until the next expiry or 0 if disarmed, interval ns)."""
        if not self._deadline:
            return 0, self.interval
        return max(1, self._deadline - time.monotonic_ns()), self.interval

    def arm(self, value_ns: int, interval_ns: int) -> tuple[int, int]:
        """Arm (value 0 disarms); returns the previous ``remaining()``."""
        old = self.remaining()
        self.cancel()
        self.interval = interval_ns
        if value_ns:
            self._deadline = time.monotonic_ns() + value_ns
            LOOP.start_soon(self._run, self._deadline)
        return old

    def cancel(self) -> None:
        self._deadline = 0
        scope, self._scope = self._scope, None
        if scope is not None:
            LOOP.run_sync(scope.cancel)

    async def _run(self, deadline: int) -> None:
        import trio

        with trio.CancelScope() as scope:
            if self._deadline != deadline:
                return
            self._scope = scope
            while True:
                await trio.sleep(max(0, deadline - time.monotonic_ns()) / 1e9)
                self._fire()
                if not self.interval:
                    self._deadline = 0
                    return
                deadline += self.interval
                self._deadline = deadline
