"""futex(2): wait queues keyed by the futex word's identity.

Private futexes (FUTEX_PRIVATE_FLAG), and shared ones on private memory,
are keyed by (mm, address); shared ones on shared memory by the word's
MemoryFile offset, so processes sharing memory meet on the same queue. Waiting goes through the kernel's trio loop
(sentry.kernel.wait) and is interrupted by signals.
"""
from __future__ import annotations

import errno
import threading
from typing import Hashable

from sentry.errors import SyscallError
from sentry.kernel.task import Task
from sentry.kernel.wait import WaitQueue, wait_until
from sentry.syscalls.time import read_timespec_ns
from sentry.syscalls.spec import Enum, Hex, Int, Ptr, entries, partial

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
OP_NAMES = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP",
            9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET"}
_BITSET_ALL = 0xFFFF_FFFF


class _Waiter:
    __slots__ = ("key", "bitset", "woken")

    def __init__(self, key: Hashable, bitset: int):
        self.key = key
        self.bitset = bitset
        self.woken = False


class _Bucket:
    """The waiters on one futex word, in arrival order."""

    def __init__(self) -> None:
        self.waiters: list[_Waiter] = []
        self.queue = WaitQueue()


_lock = threading.Lock()
_buckets: dict[Hashable, _Bucket] = {}


def _key(t: Task, addr: int, private: bool) -> Hashable:
    """As Linux keys futexes: (mm, address) for private futexes and for
    shared ones on private memory; the MemoryFile offset on shared memory."""
    if addr & 3:
        raise SyscallError(errno.EINVAL)
    if not private:
        vma = t.mm.vma_at(addr)
        if vma is None:
            raise SyscallError(errno.EFAULT)
        if vma.shared:
            return ("shared", vma.memfd_offset + (addr - vma.start))
    return (id(t.mm), addr)


def _wake(key: Hashable, count: int, bitset: int = _BITSET_ALL) -> int:
    with _lock:
        bucket = _buckets.get(key)
        if bucket is None:
            return 0
        woken = [w for w in bucket.waiters if w.bitset & bitset][:count]
        for w in woken:
            w.woken = True
            bucket.waiters.remove(w)
    if woken:
        bucket.queue.notify()
    return len(woken)


def wake_address(t: Task, addr: int, count: int) -> int:
    """Wake waiters on the futex at ``addr`` (CLONE_CHILD_CLEARTID)."""
    return _wake(_key(t, addr, False), count)


def _wait(t: Task, key: Hashable, addr: int, val: int, timeout: int, absolute: bool, realtime: bool,
          bitset: int) -> int:
    if bitset == 0:
        raise SyscallError(errno.EINVAL)
    timeout_ns = None
    if timeout:
        timeout_ns = read_timespec_ns(t, timeout)
        if absolute:
            import time

            now = time.clock_gettime_ns(time.CLOCK_REALTIME if realtime else time.CLOCK_MONOTONIC)
            timeout_ns -= now
    waiter = _Waiter(key, bitset)
    with _lock:
        if t.mm.read_u32(addr) != val & 0xFFFF_FFFF:
            raise SyscallError(errno.EAGAIN)
        bucket = _buckets.setdefault(key, _Bucket())
        bucket.waiters.append(waiter)
    try:
        if wait_until(t, (bucket.queue,), lambda: waiter.woken, timeout_ns):
            return 0
        raise SyscallError(errno.ETIMEDOUT)
    finally:
        with _lock:
            if waiter in bucket.waiters:
                bucket.waiters.remove(waiter)
            if not bucket.waiters and _buckets.get(key) is bucket:
                del _buckets[key]


def _requeue(t: Task, key: Hashable, key2: Hashable, wake: int, requeue: int) -> int:
    with _lock:
        bucket = _buckets.get(key)
        if bucket is None:
            return 0
        woken = bucket.waiters[:wake]
        moved = bucket.waiters[wake:wake + requeue]
        for w in woken:
            w.woken = True
        del bucket.waiters[:wake + requeue]
        if moved:
            target = _buckets.setdefault(key2, _Bucket())
            for w in moved:
                w.key = key2
            target.waiters.extend(moved)
    if woken or moved:
        bucket.queue.notify()
    return len(woken) + len(moved)


def _wake_op(t: Task, key: Hashable, key2: Hashable, addr2: int, wake: int, wake2: int, encoded: int) -> int:
    op, cmp = (encoded >> 28) & 0xF, (encoded >> 24) & 0xF
    oparg, cmparg = (encoded >> 12) & 0xFFF, encoded & 0xFFF
    if op & 8:
        oparg = 1 << oparg
    with _lock:
        old = t.mm.read_u32(addr2)
        new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(op & 7)
        if new is None:
            raise SyscallError(errno.ENOSYS)
        t.mm.write_u32(addr2, new)
    signed = old - (1 << 32) if old & 0x8000_0000 else old
    cond = {0: signed == cmparg, 1: signed != cmparg, 2: signed < cmparg, 3: signed <= cmparg,
            4: signed > cmparg, 5: signed >= cmparg}.get(cmp)
    if cond is None:
        raise SyscallError(errno.ENOSYS)
    n = _wake(key, wake)
    if cond:
        n += _wake(key2, wake2)
    return n


def sys_futex(t: Task, uaddr: int, op: int, val: int, timeout: int, uaddr2: int, val3: int) -> int:
    private = bool(op & FUTEX_PRIVATE_FLAG)
    realtime = bool(op & FUTEX_CLOCK_REALTIME)
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    key = _key(t, uaddr, private)
    val &= 0xFFFF_FFFF
    if cmd == FUTEX_WAIT:
        return _wait(t, key, uaddr, val, timeout, False, realtime, _BITSET_ALL)
    if cmd == FUTEX_WAIT_BITSET:
        return _wait(t, key, uaddr, val, timeout, True, realtime, val3 & 0xFFFF_FFFF)
    if cmd == FUTEX_WAKE:
        return _wake(key, val)
    if cmd == FUTEX_WAKE_BITSET:
        if val3 & 0xFFFF_FFFF == 0:
            raise SyscallError(errno.EINVAL)
        return _wake(key, val, val3 & 0xFFFF_FFFF)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        if cmd == FUTEX_CMP_REQUEUE and t.mm.read_u32(uaddr) != val3 & 0xFFFF_FFFF:
            raise SyscallError(errno.EAGAIN)
        return _requeue(t, key, _key(t, uaddr2, private), val, timeout & 0x7FFF_FFFF)
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, key, _key(t, uaddr2, private), uaddr2, val, timeout & 0x7FFF_FFFF, val3)
    raise SyscallError(errno.ENOSYS)


ENTRIES = entries(
    partial("futex", sys_futex, args=(Hex, Enum(OP_NAMES), Int, Ptr, Hex, Int), note="no PI futexes"),
)
