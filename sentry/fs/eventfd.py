"""eventfd: a 64-bit counter as a file.

write adds to the counter (EAGAIN if it would pass 2**64 - 2); read
returns the counter and zeroes it, or in semaphore mode returns 1 and
decrements it (EAGAIN while it is 0). The file layer waits on
``readiness`` (POLLIN: counter > 0, POLLOUT: room for 1) as for pipes.
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.fs.anon import AnonFile
from sentry.fs.file import POLLIN, POLLOUT

MAX_COUNT = (1 << 64) - 2
EFD_SEMAPHORE = 1


class EventFD(AnonFile):
    kind = "eventfd"
    can_block = True

    def __init__(self, initval: int, flags: int):
        super().__init__(flags)
        self.count = initval  # guarded by lock
        self.semaphore = bool(flags & EFD_SEMAPHORE)

    def read(self, length: int) -> bytes:
        if length < 8:
            raise SyscallError(errno.EINVAL)
        with self.lock:
            if not self.count:
                raise SyscallError(errno.EAGAIN)
            value = 1 if self.semaphore else self.count
            self.count -= value
        self.notify()
        return struct.pack("<Q", value)

    def write(self, data: bytes) -> int:
        """Add the first 8 bytes; returns len(data) so that the file layer,
        which writes until all is written, never adds a second value."""
        if len(data) < 8:
            raise SyscallError(errno.EINVAL)
        value = struct.unpack_from("<Q", data)[0]
        if value == (1 << 64) - 1:
            raise SyscallError(errno.EINVAL)
        with self.lock:
            if self.count + value > MAX_COUNT:
                raise SyscallError(errno.EAGAIN)
            self.count += value
        if value:
            self.notify()
        return len(data)

    def readiness(self) -> int:
        c = self.count
        return (POLLIN if c else 0) | (POLLOUT if c < MAX_COUNT else 0)
