"""The namespaces the stubs of one platform share (stub/native/stubns.h).

gVisor's stubs all live in the sandbox's namespaces. Here the first stub a
platform spawns gets fresh user, pid, net, mount and ipc namespaces; the
platform then holds its user, net, mount and ipc namespaces open by fd and
every later stub joins them (with a fresh pid namespace of its own), which
saves ~1 ms of namespace creation per stub (a thread's on ptrace, a fork's
on both stub platforms). Stubs still share nothing with the host: the
namespaces are the sandbox's own, and each stub's seccomp filter still
allows only the calls the Sentry injects.
"""
from __future__ import annotations

import os
import threading

from stub._native import ffi, lib

SHARED = ("user", "net", "mnt", "ipc")  # the order of stubns.h's array
assert len(SHARED) == lib.SENTRY_STUB_NS_KINDS, "stub/native/stubns.h and platforms/stubns.py disagree"


class StubNamespaces:
    """Lock order: a leaf."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: list[int] = []  # guarded by _lock
        self._array = ffi.NULL  # the C array of _fds once held; NULL before

    def for_spawn(self):
        """What a spawn passes as ``shared_ns``: NULL (fresh namespaces of
        every kind) until a stub's are held, then theirs."""
        return self._array

    def adopt(self, pid: int) -> None:
        """Stub ``pid`` was just spawned with ``for_spawn()`` NULL: keep its
        namespaces for the next stubs (the first such stub's win). Best
        effort: if they cannot be opened, later stubs make their own."""
        with self._lock:
            if self._fds:
                return
            fds: list[int] = []
            try:
                for kind in SHARED:
                    fds.append(os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                for fd in fds:
                    os.close(fd)
                return
            self._fds = fds
            self._array = ffi.new("int[]", fds)

    def close(self) -> None:
        """Let the namespaces go (the stubs in them keep them alive). Idempotent."""
        with self._lock:
            fds, self._fds, self._array = self._fds, [], ffi.NULL
        for fd in fds:
            os.close(fd)
