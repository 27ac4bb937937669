"""timerfd: a timer whose expirations are read as a 64-bit count.

A ``sentry.kernel.timers.Timer`` (a trio task in the kernel's loop) counts
expirations and notifies; read returns the count and zeroes it (EAGAIN
while it is 0). Absolute times (TFD_TIMER_ABSTIME) are converted to a
relative delay on the timer's clock when set.
"""
from __future__ import annotations

import errno
import struct
import time

from sentry.errors import SyscallError
from sentry.fs.anon import AnonFile
from sentry.fs.file import POLLIN
from sentry.kernel.timers import Timer

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM = 8, 9
CLOCKS = {CLOCK_REALTIME: time.CLOCK_REALTIME, CLOCK_MONOTONIC: time.CLOCK_MONOTONIC,
          CLOCK_BOOTTIME: time.CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM: time.CLOCK_REALTIME,
          CLOCK_BOOTTIME_ALARM: time.CLOCK_BOOTTIME}


class TimerFD(AnonFile):
    kind = "timerfd"
    can_block = True

    def __init__(self, clock: int, flags: int):
        super().__init__(flags)
        self.clock = CLOCKS[clock]
        self.expirations = 0  # guarded by lock
        self.timer = Timer(self._fire)

    def _fire(self) -> None:
        with self.lock:
            self.expirations += 1
        self.notify()

    def settime(self, value_ns: int, interval_ns: int, absolute: bool) -> tuple[int, int]:
        """Arm (value 0 disarms); returns the old (remaining, interval)."""
        if absolute and value_ns:
            value_ns = max(1, value_ns - time.clock_gettime_ns(self.clock))
        with self.lock:
            self.expirations = 0
        return self.timer.arm(value_ns, interval_ns)

    def gettime(self) -> tuple[int, int]:
        return self.timer.remaining()

    def read(self, length: int) -> bytes:
        if length < 8:
            raise SyscallError(errno.EINVAL)
        with self.lock:
            n, self.expirations = self.expirations, 0
        if not n:
            raise SyscallError(errno.EAGAIN)
        return struct.pack("<Q", n)

    def readiness(self) -> int:
        return POLLIN if self.expirations else 0

    def release(self) -> None:
        self.timer.cancel()
