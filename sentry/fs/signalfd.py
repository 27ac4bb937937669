"""signalfd: pending signals read as signalfd_siginfo records.

A read dequeues the pending signals (thread-directed first, then
process-directed; each queued instance of a real-time signal) that are in
the file's mask, 128 bytes each; EAGAIN if none. Readiness is POLLIN while such a signal is pending. Callers block the
signals in the mask, so delivery never takes them first.

Limits: the signals are those of the task that created the file (Linux
uses the reading task; they differ only when another thread or a forked
child reads it). The file listens on its process's ``signal_listeners``,
so a waiter on any thread wakes when a signal arrives.
"""
from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.fs.anon import AnonFile
from sentry.fs.file import POLLIN

if TYPE_CHECKING:
    from sentry.kernel.task import Task

SIGINFO_SIZE = 128
UNBLOCKABLE = (1 << 8) | (1 << 18)  # SIGKILL, SIGSTOP
_SSI = struct.Struct("<IiiIIiIIIIiiQQQQH")  # signalfd_siginfo up to ssi_addr_lsb
_SIGCHLD = 17


def _ssi(signo: int, info: bytes) -> bytes:
    """A signalfd_siginfo from a kernel siginfo_t."""
    _, err, code = struct.unpack_from("<iii", info)
    pid, uid, word = struct.unpack_from("<iIi", info, 16)
    ptr = struct.unpack_from("<Q", info, 24)[0]
    status = word if signo == _SIGCHLD else 0
    return _SSI.pack(signo, err, code, pid & 0xFFFFFFFF, uid, 0, 0, 0, 0, 0, status, word, ptr, 0, 0, 0,
                     0).ljust(SIGINFO_SIZE, b"\0")


class SignalFD(AnonFile):
    kind = "signalfd"
    can_block = True

    def __init__(self, task: "Task", mask: int, flags: int):
        super().__init__(flags)
        self.task = task
        self.mask = mask & ~UNBLOCKABLE
        task.group.signal_listeners.append(self.notify)  # readiness follows arrivals

    def release(self) -> None:
        listeners = self.task.group.signal_listeners
        if self.notify in listeners:
            listeners.remove(self.notify)

    def set_mask(self, mask: int) -> None:
        self.mask = mask & ~UNBLOCKABLE
        self.notify()

    def _pending(self) -> int:
        t = self.task
        return (t.pending | t.group.pending) & self.mask

    def read(self, length: int) -> bytes:
        if length < SIGINFO_SIZE:
            raise SyscallError(errno.EINVAL)
        from sentry.kernel.signals import SI_KERNEL, siginfo
        from sentry.kernel.task import dequeue_signal

        t = self.task
        out = []
        with t.kernel.lock:
            while len(out) < length // SIGINFO_SIZE:
                got = dequeue_signal(t, self.mask)  # one instance: a real-time signal's next stays queued
                if got is None:
                    break
                signo, info = got
                out.append(_ssi(signo, info or siginfo(signo, SI_KERNEL)))
        if not out:
            raise SyscallError(errno.EAGAIN)
        return b"".join(out)

    def readiness(self) -> int:
        return POLLIN if self._pending() else 0
