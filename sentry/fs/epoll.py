"""epoll: an interest list over other files' readiness.

In a nutshell: each ``Item`` subscribes to its file; the callback marks
the item ``triggered`` and notifies the epoll file's own subscribers (the
waiting epoll_wait calls, or an outer poll/epoll). ``collect`` scans the
interest list: level-triggered items report whenever their file is ready;
edge-triggered (EPOLLET) items only if a new event came since they last
reported; EPOLLONESHOT items are disabled after one report until
EPOLL_CTL_MOD. A callback does not say which event happened, and a pipe
calls back on any change (its two ends share one subscriber list), so an
edge-triggered item on a pipe keeps a snapshot of it (``_edge_state``) and
re-arms only on what Linux's keyed wake-ups would report (``_is_edge``):
data written (EPOLLIN), a read from a full pipe (EPOLLOUT), an end opened
or closed; on other files every callback re-arms. Epoll files may watch
epoll files, without loops and at most MAX_NESTS deep (ELOOP), so
readiness checks always end. An item goes away with its file: once the
last descriptor of the file is closed (refs == 0) the scan drops it, as
Linux does at close.

Lock order: EpollFile.lock > whatever a file's ``readiness`` takes.
Callbacks take only EpollFile.edge_lock (a leaf), then set a flag and notify.
"""
from __future__ import annotations

import errno
import threading
from typing import Callable

from sentry.errors import SyscallError
from sentry.fs.anon import AnonFile
from sentry.fs.file import POLLIN, POLLOUT, DirFile, OpenFile, SeekableFile
from sentry.fs.pipe import PIPE_BUF, PipeEnd

EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP = 0x1, 0x2, 0x4, 0x8, 0x10, 0x2000
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
_ALWAYS = EPOLLERR | EPOLLHUP
_EVENT_BITS = 0xFFFF | EPOLLRDHUP
_POLLRDNORM, _POLLWRNORM = 0x40, 0x100
MAX_NESTS = 4  # Linux's EP_MAX_NESTS: epoll files watching epoll files, at most this deep


def _edge_state(file: OpenFile) -> tuple | None:
    """What an edge-triggered item on ``file`` compares between callbacks
    to tell a new event from other activity; None where every callback is
    an event. Read without the file's lock: a callback comes after the
    change it reports."""
    if isinstance(file, PipeEnd):
        p = file.pipe
        return len(p.buf), p.readers, p.writers, p.read_opens, p.write_opens
    return None


def _is_edge(item: "Item", before: tuple | None, after: tuple | None) -> bool:
    """Whether the change from ``before`` to ``after`` re-arms ``item``, as
    Linux's pipe wake-ups do (fs/pipe.c, filtered by ep_poll_callback on
    the item's events): every write wakes the readers with EPOLLIN; a read
    wakes the writers with EPOLLOUT only if the pipe was full (here: not
    writable) when it began; an open or a close wakes everyone."""
    if before is None or after is None or before[1:] != after[1:]:
        return True
    file = item.file
    grew, shrank = after[0] > before[0], after[0] < before[0]
    if grew and file.reads and item.events & (EPOLLIN | _POLLRDNORM):
        return True
    was_full = file.pipe.capacity - before[0] < PIPE_BUF
    return shrank and was_full and file.writes and bool(item.events & (EPOLLOUT | _POLLWRNORM))


class Item:
    __slots__ = ("file", "fd", "events", "data", "triggered", "disabled", "callback", "state")

    def __init__(self, file: OpenFile, fd: int, events: int, data: int, callback: Callable[[], None]):
        self.file = file
        self.fd = fd
        self.events = events
        self.data = data
        self.triggered = True  # a new or modified item is checked once even if edge-triggered
        self.disabled = False  # EPOLLONESHOT fired
        self.callback = callback
        self.state = _edge_state(file)  # as of the last callback (or ADD/MOD); guarded by edge_lock


class EpollFile(AnonFile):
    kind = "eventpoll"

    def __init__(self, flags: int):
        super().__init__(flags)
        self.items: dict[tuple[int, int], Item] = {}  # (fd, id(file)) -> Item; guarded by lock
        self.edge_lock = threading.Lock()

    def ctl(self, op: int, fd: int, file: OpenFile, events: int, data: int) -> None:
        """EPOLL_CTL_ADD/MOD/DEL of (fd, file). Errors: EEXIST, ENOENT,
        EPERM (a file that cannot be polled), EINVAL (epoll itself)."""
        if file is self:
            raise SyscallError(errno.EINVAL)
        if isinstance(file, (SeekableFile, DirFile)):
            raise SyscallError(errno.EPERM)  # regular files and directories are always ready
        if op == EPOLL_CTL_ADD and isinstance(file, EpollFile) and (file._reaches(self) or file._depth() > MAX_NESTS):
            raise SyscallError(errno.ELOOP)
        key = (fd, id(file))
        with self.lock:
            item = self.items.get(key)
            if op == EPOLL_CTL_ADD:
                if item is not None:
                    raise SyscallError(errno.EEXIST)
                item = Item(file, fd, events, data, lambda: None)
                item.callback = self._callback(item)
                self.items[key] = item
            elif item is None:
                raise SyscallError(errno.ENOENT)
            elif op == EPOLL_CTL_MOD:
                if item.events & EPOLLEXCLUSIVE:
                    raise SyscallError(errno.EINVAL)
                item.events, item.data = events, data
                item.triggered, item.disabled = True, False
                with self.edge_lock:
                    item.state = _edge_state(file)
            elif op == EPOLL_CTL_DEL:
                del self.items[key]
            else:
                raise SyscallError(errno.EINVAL)
        if op == EPOLL_CTL_ADD:
            file.subscribe(item.callback)
        elif op == EPOLL_CTL_DEL:
            file.unsubscribe(item.callback)
        self.notify()

    def _nested(self) -> list["EpollFile"]:
        with self.lock:
            return [i.file for i in self.items.values() if isinstance(i.file, EpollFile)]

    def _reaches(self, target: "EpollFile") -> bool:
        """Whether ``target`` is this epoll file or watched by it, at any depth."""
        return self is target or any(e._reaches(target) for e in self._nested())

    def _depth(self) -> int:
        """How many epoll files deep the nesting under this one goes."""
        return 1 + max((e._depth() for e in self._nested()), default=0)

    def _callback(self, item: Item) -> Callable[[], None]:
        def changed() -> None:
            if item.events & EPOLLET:
                with self.edge_lock:
                    before = item.state
                    item.state = after = _edge_state(item.file)
                if not _is_edge(item, before, after):
                    return  # nothing it could report: no wake-up either
            item.triggered = True
            self.notify()
        return changed

    def collect(self, limit: int, consume: bool = True) -> list[tuple[int, int]]:
        """Up to ``limit`` (events, data) pairs that are ready now. With
        ``consume`` false (readiness of the epoll file), edge and one-shot
        state is left as is."""
        out: list[tuple[int, int]] = []
        reported: list[tuple[int, int]] = []
        gone: list[Item] = []
        with self.lock:
            for key, item in list(self.items.items()):
                if item.file.refs <= 0:
                    del self.items[key]
                    gone.append(item)
                    continue
                if item.disabled:
                    continue
                edge = item.events & EPOLLET
                if edge and not item.triggered:
                    continue
                if edge and consume:
                    item.triggered = False
                ready = item.file.readiness()
                if ready & POLLIN:
                    ready |= _POLLRDNORM
                if ready & POLLOUT:
                    ready |= _POLLWRNORM
                ready &= (item.events & _EVENT_BITS) | _ALWAYS
                if not ready:
                    continue
                out.append((ready, item.data))
                reported.append(key)
                if consume and item.events & EPOLLONESHOT:
                    item.disabled = True
                if len(out) >= limit:
                    break
            if consume and len(out) >= limit:
                # Move reported items to the end: one busy file cannot starve the others.
                for key in reported:
                    self.items[key] = self.items.pop(key)
        for item in gone:
            item.file.unsubscribe(item.callback)
        return out

    def readiness(self) -> int:
        return POLLIN if self.collect(1, consume=False) else 0

    def release(self) -> None:
        with self.lock:
            items = list(self.items.values())
            self.items.clear()
        for item in items:
            item.file.unsubscribe(item.callback)
