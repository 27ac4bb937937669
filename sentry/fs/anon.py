"""Anonymous-inode files (Linux's anon_inode): eventfd, timerfd, signalfd,
epoll. They have no name in any file system; /proc/self/fd shows
``anon_inode:[KIND]`` and fstat a mode of 0600 with no type bits.

``AnonFile`` adds what each of them needs to report readiness changes:
a subscriber list (``subscribe``/``unsubscribe``) and ``notify``, to call
after the state changed and without holding the file's lock.
"""
from __future__ import annotations

import threading
from typing import Callable

from sentry.fs.file import O_NONBLOCK, O_RDWR, OpenFile
from sentry.fs.node import FileSystem, Node, Stat


class AnonFS(FileSystem):
    fs_type = "anon_inodefs"
    magic = 0x09041934


ANONFS = AnonFS()


class AnonNode(Node):
    """The one inode every anonymous file shares, as on Linux."""

    __slots__ = ("meta",)

    def __init__(self) -> None:
        super().__init__(ANONFS)
        self.meta = Stat(0o600, dev=ANONFS.dev)

    def stat(self):
        return self.meta


ANON_NODE = AnonNode()


class AnonFile(OpenFile):
    """Base of the anonymous files: ``kind`` names it (``eventfd``...)."""

    kind = "anon"

    def __init__(self, flags: int):
        super().__init__(ANON_NODE, f"anon_inode:[{self.kind}]", O_RDWR | (flags & O_NONBLOCK))
        self.subscribers: list[Callable[[], None]] = []
        self._sub_lock = threading.Lock()

    def subscribe(self, cb: Callable[[], None]) -> None:
        with self._sub_lock:
            self.subscribers.append(cb)

    def unsubscribe(self, cb: Callable[[], None]) -> None:
        with self._sub_lock:
            if cb in self.subscribers:
                self.subscribers.remove(cb)

    def notify(self) -> None:
        """Tell subscribers readiness may have changed."""
        with self._sub_lock:
            subs = list(self.subscribers)
        for cb in subs:
            cb()
