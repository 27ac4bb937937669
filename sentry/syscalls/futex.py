"""futex(2): wait queues keyed by the futex word's identity.

Private futexes (FUTEX_PRIVATE_FLAG), and shared ones on private memory,
are keyed by (mm, address); shared ones on shared memory by the word's
MemoryFile offset, so processes sharing memory meet on the same queue.
Waiting goes through the kernel's trio loop (sentry.kernel.wait) and is
interrupted by signals.

In a nutshell: ``_queues`` maps a key to its waiters in arrival order, all
under ``_lock``. Each waiter has its own WaitQueue, so a wake-up reaches it
wherever it is queued: FUTEX_REQUEUE and FUTEX_CMP_REQUEUE move waiters to
another key (and a later wake there reaches them), and only the waiters
woken are notified. A waiter that was woken returns 0 even if its timeout
or a signal came at the same time, as Linux (the wake-up is never lost).
FUTEX_WAKE_OP changes the word at uaddr2 with a hardware compare-and-swap
on the MemoryFile (libatomic), so guest threads' own atomic operations on
that word, running at the same time, are never lost.

Lock order: _lock > MemoryManager.lock (guest memory is read under _lock).
"""
from __future__ import annotations

import ctypes
import errno
import threading
import time
from typing import Hashable

from sentry.errors import SyscallError
from sentry.kernel.task import Task
from sentry.kernel.wait import WaitQueue, wait_until
from sentry.syscalls.spec import Enum, Hex, Int, Ptr, entries, partial, s32
from sentry.syscalls.time import read_timespec_ns

FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
OP_NAMES = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 3: "FUTEX_REQUEUE", 4: "FUTEX_CMP_REQUEUE", 5: "FUTEX_WAKE_OP",
            9: "FUTEX_WAIT_BITSET", 10: "FUTEX_WAKE_BITSET"}
_BITSET_ALL = 0xFFFF_FFFF
FUTEX_OP_SET, FUTEX_OP_ADD, FUTEX_OP_OR, FUTEX_OP_ANDN, FUTEX_OP_XOR = 0, 1, 2, 3, 4
FUTEX_OP_OPARG_SHIFT = 8


class _Waiter:
    __slots__ = ("key", "bitset", "woken", "queue")

    def __init__(self, key: Hashable, bitset: int):
        self.key = key  # where it is queued now (requeue moves it); guarded by _lock
        self.bitset = bitset
        self.woken = False  # set under _lock, when it leaves its queue
        self.queue = WaitQueue()  # this waiter's alone


_lock = threading.Lock()
_queues: dict[Hashable, list[_Waiter]] = {}  # guarded by _lock; no empty lists


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


def _take(key: Hashable, count: int, bitset: int = _BITSET_ALL) -> list[_Waiter]:
    """Remove up to ``count`` waiters on ``key`` matching ``bitset`` and mark
    them woken. _lock held; the caller notifies them (``_notify``)."""
    waiters = _queues.get(key)
    if not waiters or count <= 0:
        return []
    woken = [w for w in waiters if w.bitset & bitset][:count]
    for w in woken:
        w.woken = True
        waiters.remove(w)
    if not waiters:
        del _queues[key]
    return woken


def _notify(woken: list[_Waiter]) -> int:
    for w in woken:
        w.queue.notify()
    return len(woken)


def _wake_count(val: int) -> int:
    """Linux's futex_wake breaks out after the first wake-up once the count
    is reached, so a count <= 0 (as a C int) still wakes one."""
    return max(s32(val), 1)


def _wake(key: Hashable, count: int, bitset: int = _BITSET_ALL) -> int:
    with _lock:
        woken = _take(key, count, bitset)
    return _notify(woken)


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
            timeout_ns -= time.clock_gettime_ns(time.CLOCK_REALTIME if realtime else time.CLOCK_MONOTONIC)
    waiter = _Waiter(key, bitset)
    with _lock:
        if t.mm.read_u32(addr) != val:
            raise SyscallError(errno.EAGAIN)
        _queues.setdefault(key, []).append(waiter)
    try:
        wait_until(t, (waiter.queue,), lambda: waiter.woken, timeout_ns)
    except SyscallError:  # a signal (ERESTARTSYS)
        if _leave(waiter):
            return 0  # woken as the signal came: the wake-up counts (the signal stays pending)
        raise
    except BaseException:
        _leave(waiter)
        raise
    if _leave(waiter):
        return 0
    raise SyscallError(errno.ETIMEDOUT)


def _leave(waiter: _Waiter) -> bool:
    """Take a waiter off whichever queue it is on now; whether it was
    woken (then it was already off), as Linux's futex_unqueue."""
    with _lock:
        if waiter.woken:
            return True
        waiters = _queues.get(waiter.key)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del _queues[waiter.key]
        return False


def _requeue(t: Task, key: Hashable, key2: Hashable, uaddr: int, wake: int, requeue: int, cmp: int | None) -> int:
    """Wake ``wake`` waiters on ``key``, move up to ``requeue`` more to
    ``key2``; with ``cmp``, only if the word at ``uaddr`` still holds it
    (EAGAIN). Returns the number woken and moved, as Linux's
    futex_requeue does for both commands."""
    if wake < 0 or requeue < 0:
        raise SyscallError(errno.EINVAL)
    with _lock:
        if cmp is not None and t.mm.read_u32(uaddr) != cmp:
            raise SyscallError(errno.EAGAIN)
        woken = _take(key, wake)
        moved: list[_Waiter] = []
        waiters = _queues.get(key)
        if waiters and requeue:
            moved = waiters[:requeue]
            del waiters[:requeue]
            if not waiters:
                del _queues[key]
            for w in moved:
                w.key = key2
            _queues.setdefault(key2, []).extend(moved)
    return _notify(woken) + len(moved)


# ------------------------------------------------------------ FUTEX_WAKE_OP

def _load_cas():
    """libatomic's 32-bit compare-and-swap (``lock cmpxchg``), or None."""
    try:
        lib = ctypes.CDLL("libatomic.so.1")
    except OSError:
        return None
    cas = lib.__atomic_compare_exchange_4
    cas.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_int]
    cas.restype = ctypes.c_bool
    return cas


_cas = _load_cas()  # loaded at import: before the Sentry's seccomp filter forbids new mappings
_SEQ_CST = 5


def _atomic_update(t: Task, addr: int, op) -> int:
    """Replace the guest word at ``addr`` by ``op(old)`` atomically with
    respect to guest threads' own atomic instructions on it (a
    compare-and-swap loop); returns the old value. EFAULT unless the word
    is writable (copy-on-write broken first). Without libatomic it is only
    atomic with respect to other futex calls (_lock is held)."""
    if _cas is None:
        old = t.mm.read_u32(addr)
        t.mm.write_u32(addr, op(old))
        return old
    views = t.mm.writable_views(addr, 4)
    try:
        if len(views[0]) < 4:
            raise SyscallError(errno.EFAULT)
        cell = ctypes.c_uint32.from_buffer(views[0])
        try:
            ptr = ctypes.addressof(cell)
            expected = ctypes.c_uint32(cell.value)
            while not _cas(ptr, ctypes.byref(expected), op(expected.value) & 0xFFFF_FFFF, _SEQ_CST, _SEQ_CST):
                pass  # a guest thread changed it: ``expected`` now holds its value
            return expected.value
        finally:
            del cell  # the MemoryFile cannot close while a buffer export lives
    finally:
        for v in views:
            v.release()


def _sign12(value: int) -> int:
    value &= 0xFFF
    return value - 0x1000 if value & 0x800 else value


_OPS = {FUTEX_OP_SET: lambda old, arg: arg, FUTEX_OP_ADD: lambda old, arg: old + arg,
        FUTEX_OP_OR: lambda old, arg: old | arg, FUTEX_OP_ANDN: lambda old, arg: old & ~arg,
        FUTEX_OP_XOR: lambda old, arg: old ^ arg}
_CMPS = {0: lambda a, b: a == b, 1: lambda a, b: a != b, 2: lambda a, b: a < b, 3: lambda a, b: a <= b,
         4: lambda a, b: a > b, 5: lambda a, b: a >= b}


def _wake_op(t: Task, key: Hashable, key2: Hashable, addr2: int, wake: int, wake2: int, encoded: int) -> int:
    """As Linux's futex_wake_op: oparg and cmparg are 12-bit signed; with
    FUTEX_OP_OPARG_SHIFT the operand is 1 << (oparg & 31); the old value is
    compared as a signed int. An unknown op is ENOSYS before the word
    changes, an unknown comparison after."""
    op, cmp = (encoded >> 28) & 7, (encoded >> 24) & 0xF
    oparg, cmparg = _sign12(encoded >> 12), _sign12(encoded)
    if encoded & (FUTEX_OP_OPARG_SHIFT << 28):
        oparg = 1 << (oparg & 31)
    fn = _OPS.get(op)
    if fn is None:
        raise SyscallError(errno.ENOSYS)
    with _lock:
        old = s32(_atomic_update(t, addr2, lambda old: fn(old, oparg)))
        compare = _CMPS.get(cmp)
        if compare is None:
            raise SyscallError(errno.ENOSYS)
        woken = _take(key, wake)
        if compare(old, cmparg):
            woken += _take(key2, wake2)
    return _notify(woken)


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
        return _wake(key, _wake_count(val))
    if cmd == FUTEX_WAKE_BITSET:
        if val3 & 0xFFFF_FFFF == 0:
            raise SyscallError(errno.EINVAL)
        return _wake(key, _wake_count(val), val3 & 0xFFFF_FFFF)
    # The other commands take a second count where the timeout pointer goes (Linux's val2).
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        cmpval = val3 & 0xFFFF_FFFF if cmd == FUTEX_CMP_REQUEUE else None
        return _requeue(t, key, _key(t, uaddr2, private), uaddr, s32(val), s32(timeout), cmpval)
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, key, _key(t, uaddr2, private), uaddr2, _wake_count(val), _wake_count(timeout), val3)
    raise SyscallError(errno.ENOSYS)


ENTRIES = entries(
    partial("futex", sys_futex, args=(Hex, Enum(OP_NAMES), Int, Ptr, Hex, Int), note="no PI futexes"),
)
