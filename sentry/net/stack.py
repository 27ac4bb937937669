"""The sandbox's network stack: the names sockets are reachable by.

One ``Stack`` per kernel (``stack_of``): ``lock`` guards the state of every
socket of the sandbox (queues, peers, states) and the name tables below.
The loopback is the only interface: ``ports`` maps (protocol, port) to the
sockets bound there.
"""
from __future__ import annotations

import random
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentry.net.socket import Socket

EPHEMERAL = (32768, 60999)  # Linux's default ip_local_port_range

_STACKS: "weakref.WeakKeyDictionary[object, Stack]" = weakref.WeakKeyDictionary()
_STACKS_LOCK = threading.Lock()


class Stack:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Guarded by lock.
        self.abstract: dict[bytes, "Socket"] = {}  # abstract unix name -> socket
        self.ports: dict[tuple[int, int], list["Socket"]] = {}  # (IPPROTO_*, port) -> bound sockets
        self.rng = random.Random()  # ephemeral ports, autobind names

    def free_port(self, proto: int) -> int | None:
        """An unused ephemeral port for ``proto`` (caller holds lock)."""
        lo, hi = EPHEMERAL
        start = self.rng.randint(lo, hi)
        for i in range(hi - lo + 1):
            port = lo + (start - lo + i) % (hi - lo + 1)
            if not self.ports.get((proto, port)):
                return port
        return None


def stack_of(kernel: object) -> Stack:
    """The Stack of ``kernel``'s sandbox (made on first use)."""
    with _STACKS_LOCK:
        s = _STACKS.get(kernel)
        if s is None:
            s = _STACKS[kernel] = Stack()
        return s
