"""pidfd: a file that stands for a process (pidfd_open, CLONE_PIDFD).

It reads nothing (EINVAL); poll, select and epoll see POLLIN once the
process has exited (a zombie, or reaped: then POLLHUP too, as Linux >= 6.9),
and it names the process for pidfd_send_signal and waitid(P_PIDFD). It
holds the ThreadGroup itself, never a pid number, so a reused pid never
redirects it.

How readiness reaches subscribers, without a hook in the kernel's exit
path: every exit notifies the parent's ``child_events`` WaitQueue
(``Kernel._become_zombie``), and a process's parent changes only when an
ancestor exits, which notifies that ancestor's parent. So a ``_Watch``
waits on the ``child_events`` of every ancestor of the process: any wake
re-checks it, re-arms on the ancestors it has now, or calls the file's
subscribers once it exited. The watch sits in a WaitQueue's set of trio
Events, whose ``_wake`` only calls ``set()`` (in the trio thread); it is
added and removed in the trio thread too, as the WaitQueue requires, and
looks at the process after it is armed (the race-free order of
sentry.kernel.wait).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sentry.fs.anon import AnonFile
from sentry.fs.file import POLLHUP, POLLIN

if TYPE_CHECKING:
    from sentry.kernel.kernel import Kernel
    from sentry.kernel.task import ThreadGroup

POLLRDNORM = 0x40


class PidFD(AnonFile):
    kind = "pidfd"

    def __init__(self, kernel: "Kernel", group: "ThreadGroup", flags: int):
        super().__init__(flags)
        self.kernel = kernel
        self.group = group
        self._watch: _Watch | None = None  # touched only in the trio thread

    def exited(self) -> bool:
        """The process has ended (its last thread is gone)."""
        return self.group.zombie

    def reaped(self) -> bool:
        """Exited and waited for (a dict read: no lock, so readiness may be
        asked under any file's lock)."""
        return self.group.zombie and self.kernel.groups.get(self.group.pid) is not self.group

    def readiness(self) -> int:
        if not self.exited():
            return 0
        return POLLIN | POLLRDNORM | (POLLHUP if self.reaped() else 0)

    def subscribe(self, cb) -> None:
        super().subscribe(cb)
        from sentry.kernel.wait import LOOP

        if LOOP.in_loop():
            self._arm()
        else:
            LOOP.token().run_sync_soon(self._arm)

    def release(self) -> None:
        with self._sub_lock:
            self.subscribers.clear()  # a pending watch then ends at its next wake

    def _arm(self) -> None:
        """In the trio thread: watch the process's ancestors, unless a
        watch is armed already or nobody listens."""
        if self._watch is not None or not self.subscribers:
            return
        with self.kernel.lock:
            queues, g = [], self.group.parent
            while g is not None:
                queues.append(g.child_events)
                g = g.parent
        self._watch = _Watch(self, queues)
        for q in queues:
            q._events.add(self._watch)
        if self.exited():
            self._fire()

    def _fire(self) -> None:
        """In the trio thread: an ancestor saw a child event."""
        watch, self._watch = self._watch, None
        if watch is not None:
            for q in watch.queues:
                q._events.discard(watch)
        if self.exited():
            self.notify()
        else:
            self._arm()  # the process may have a new parent now


class _Watch:
    """Stands in WaitQueues' sets of trio Events: ``set`` is all they call."""

    __slots__ = ("pidfd", "queues")

    def __init__(self, pidfd: PidFD, queues: list):
        self.pidfd = pidfd
        self.queues = queues

    def set(self) -> None:
        if self.pidfd._watch is self:  # else a wake-up already handled
            self.pidfd._fire()
