"""Advisory file locks: POSIX record locks and OFD locks (fcntl), and
whole-file flock locks, as Linux keeps them.

In a nutshell: each inode that was ever locked has a ``LockTable`` (held in
a WeakKeyDictionary on the node, so it goes with the node). A lock is a
byte range [start, end) (end None: to the end of any file) of a type
(read or write) held by an owner:

- POSIX locks: the FDTable (Linux's files_struct: the process), released
  when that table closes *any* descriptor of the file (``FDTable`` calls
  ``forget``) or the process exits;
- OFD locks and flock locks: the OpenFile, released when its last
  descriptor closes (``OpenFile.decref`` calls ``forget``).
POSIX and OFD locks conflict with each other; flock locks live in their
own table, as on Linux. Locks never conflict with their own owner's; a
new lock replaces the owner's lock on the overlapping range (splitting
it). Setting a lock that conflicts fails with EAGAIN; the system-call
layer waits (F_SETLKW, flock without LOCK_NB) on ``subscribe`` and retries.
No deadlock detection (EDEADLK) yet.

Lock order: LockTable.lock is a leaf; callbacks run after it is released.
"""
from __future__ import annotations

import errno
import threading
import weakref
from dataclasses import dataclass
from typing import Callable

from sentry.errors import SyscallError

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2


@dataclass
class Lock:
    owner: object
    type: int  # F_RDLCK or F_WRLCK
    start: int
    end: int | None  # exclusive; None: to infinity
    pid: int  # for F_GETLK (-1 for OFD locks)

    def overlaps(self, start: int, end: int | None) -> bool:
        return (end is None or self.start < end) and (self.end is None or start < self.end)


class LockTable:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ranges: list[Lock] = []  # POSIX and OFD locks
        self.flocks: list[Lock] = []  # flock locks (whole file)
        self.subscribers: list[Callable[[], None]] = []

    # --- waiting (the syscall layer's _wait uses these) --------------------------------
    def subscribe(self, cb: Callable[[], None]) -> None:
        with self.lock:
            self.subscribers.append(cb)

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        with self.lock:
            if cb in self.subscribers:
                self.subscribers.remove(cb)

    def _notify(self) -> None:
        for cb in list(self.subscribers):
            cb()

    # --- locks ------------------------------------------------------------------------
    def conflict(self, owner: object, ltype: int, start: int, end: int | None, flock: bool = False) -> Lock | None:
        """The first lock of another owner that a ``ltype`` lock on
        [start, end) would conflict with, or None."""
        with self.lock:
            return self._conflict(self.flocks if flock else self.ranges, owner, ltype, start, end)

    @staticmethod
    def _conflict(locks: list[Lock], owner, ltype, start, end) -> Lock | None:
        for lk in locks:
            if lk.owner is not owner and (lk.type == F_WRLCK or ltype == F_WRLCK) and lk.overlaps(start, end):
                return lk
        return None

    def set(self, owner: object, ltype: int, start: int, end: int | None, pid: int, flock: bool = False) -> None:
        """Take (or with F_UNLCK drop) ``owner``'s lock on [start, end).
        EAGAIN if another owner's lock conflicts."""
        with self.lock:
            locks = self.flocks if flock else self.ranges
            if ltype != F_UNLCK and self._conflict(locks, owner, ltype, start, end):
                raise SyscallError(errno.EAGAIN)
            kept: list[Lock] = []
            for lk in locks:
                if lk.owner is not owner or not lk.overlaps(start, end):
                    kept.append(lk)
                    continue
                if lk.start < start:  # the part before the new range stays
                    kept.append(Lock(lk.owner, lk.type, lk.start, start, lk.pid))
                if end is not None and (lk.end is None or lk.end > end):  # and the part after
                    kept.append(Lock(lk.owner, lk.type, end, lk.end, lk.pid))
            if ltype != F_UNLCK:
                kept.append(Lock(owner, ltype, start, end, pid))
            locks[:] = kept
        self._notify()

    def forget(self, owner: object) -> None:
        """Drop every lock ``owner`` holds here."""
        with self.lock:
            before = len(self.ranges) + len(self.flocks)
            self.ranges[:] = [lk for lk in self.ranges if lk.owner is not owner]
            self.flocks[:] = [lk for lk in self.flocks if lk.owner is not owner]
            changed = before != len(self.ranges) + len(self.flocks)
        if changed:
            self._notify()


_TABLES: "weakref.WeakKeyDictionary[object, LockTable]" = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def table(node: object) -> LockTable:
    """The lock table of ``node``, made on first use."""
    t = _TABLES.get(node)
    if t is None:
        with _TABLES_LOCK:
            t = _TABLES.setdefault(node, LockTable())
    return t


def forget(node: object, owner: object) -> None:
    """Drop ``owner``'s locks on ``node``, if it ever had any (cheap when
    the node was never locked: this runs on every close)."""
    t = _TABLES.get(node) if node is not None else None
    if t is not None:
        t.forget(owner)
