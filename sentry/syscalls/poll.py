"""poll, ppoll, select, pselect6 over the open files' readiness.

A file reports the POLL* bits that hold now (``readiness``) and calls back
when they may have changed (``subscribe``); a blocked poll waits on one
WaitQueue that those callbacks notify, in the kernel's trio loop, so
signals interrupt it (EINTR after a handler; otherwise the call goes on, as on Linux).
ppoll and pselect6 wait under a temporary signal mask (``with_sigmask``,
shared with epoll_pwait) that stays until a signal it let in is delivered.

Time left, as Linux: select, pselect6 and ppoll write it back into their
timeout argument (so a restart waits only for the rest); poll, whose
timeout is a value, resumes through restart_syscall (ERESTART_RESTARTBLOCK).
"""
from __future__ import annotations

import errno
import struct
import time

from sentry.errors import SyscallError
from sentry.fs.file import POLLERR, POLLHUP, POLLIN, POLLOUT
from sentry.kernel.signals import UNBLOCKABLE
from sentry.kernel.task import Task
from sentry.kernel.wait import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, WaitQueue, wait_until
from sentry.syscalls.time import read_timespec_ns, timespec_bytes, timeval_bytes
from sentry.syscalls.spec import Int, Ptr, Size, Struct, entries, s32, supported

POLLNVAL, POLLPRI, POLLRDNORM, POLLWRNORM = 0x20, 0x2, 0x40, 0x100
_POLLFD = struct.Struct("<ihh")
_IN_SET = POLLIN | POLLRDNORM | POLLHUP | POLLERR
_OUT_SET = POLLOUT | POLLWRNORM | POLLERR
MAX_FDS = 1 << 20


def _revents(t: Task, fd: int, events: int) -> int:
    if fd < 0:
        return 0
    try:
        f = t.fds.get(fd)
    except SyscallError:
        return POLLNVAL
    ready = f.readiness()
    if ready & POLLIN:
        ready |= POLLRDNORM
    if ready & POLLOUT:
        ready |= POLLWRNORM
    return ready & (events | POLLERR | POLLHUP)


def _block(t: Task, fds: list[int], scan, timeout_ns: int | None):
    """Run ``scan()`` until it finds something, the timeout passes, or a
    signal comes (EINTR). Returns scan's last result."""
    result = scan()
    if result or timeout_ns == 0:
        return result
    queue = WaitQueue()
    files = []
    for fd in set(fds):
        try:
            f = t.fds.get(fd)
        except SyscallError:
            continue
        f.subscribe(queue.notify)
        files.append(f)
    found = []
    try:
        def ready() -> bool:
            found[:] = [scan()]
            return bool(found[0])

        wait_until(t, (queue,), ready, timeout_ns)
    except SyscallError as e:  # a signal: EINTR once a handler runs, else resume (as Linux)
        raise SyscallError(ERESTARTNOHAND) from e
    finally:
        for f in files:
            f.unsubscribe(queue.notify)
    return found[0] if found else scan()


def _read_timespec_ns(t: Task, addr: int) -> int | None:
    return read_timespec_ns(t, addr) if addr else None


def _poll(t: Task, addr: int, nfds: int, timeout_ns: int | None) -> int:
    if nfds > MAX_FDS:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.copy_in(addr, nfds * _POLLFD.size)
    entries_ = [_POLLFD.unpack_from(raw, i * _POLLFD.size) for i in range(nfds)]

    def scan() -> list[int] | None:
        revents = [_revents(t, fd, ev & 0xFFFF) for fd, ev, _ in entries_]
        return revents if any(revents) else None

    revents = _block(t, [fd for fd, _, _ in entries_ if fd >= 0], scan, timeout_ns) or [0] * nfds
    out = b"".join(_POLLFD.pack(fd, ev, r) for (fd, ev, _), r in zip(entries_, revents))
    t.mm.copy_out(addr, out)
    return sum(1 for r in revents if r)


def sys_poll(t: Task, addr: int, nfds: int, timeout_ms: int) -> int:
    ms = s32(timeout_ms)
    return _poll_until(t, addr, nfds, None if ms < 0 else time.monotonic_ns() + ms * 1_000_000)


def _poll_until(t: Task, addr: int, nfds: int, deadline: int | None) -> int:
    """poll until the monotonic ``deadline`` (None: no timeout); interrupted
    by a signal without a handler, restart_syscall polls again until it."""
    try:
        return _poll(t, addr, nfds, None if deadline is None else max(0, deadline - time.monotonic_ns()))
    except SyscallError as e:
        if e.errno != ERESTARTNOHAND:
            raise
        t.restart_block = lambda: _poll_until(t, addr, nfds, deadline)
        raise SyscallError(ERESTART_RESTARTBLOCK) from None


def _time_left_written(t: Task, addr: int, timeout_ns: int | None, pack, call):
    """Run ``call`` and then, however it ends, write the time left of
    ``timeout_ns`` to ``addr`` in ``pack``'s layout, as Linux's
    poll_select_finish (nothing for no timeout or a zero one; a failed
    write turns a restart into EINTR and is otherwise ignored)."""
    if not addr or not timeout_ns:
        return call()
    deadline = time.monotonic_ns() + timeout_ns
    try:
        result = call()
    except SyscallError as e:
        if not _wrote(t, addr, pack(max(0, deadline - time.monotonic_ns()))) and e.errno == ERESTARTNOHAND:
            raise SyscallError(errno.EINTR) from None
        raise
    _wrote(t, addr, pack(max(0, deadline - time.monotonic_ns())))
    return result


def _wrote(t: Task, addr: int, data: bytes) -> bool:
    try:
        t.mm.copy_out(addr, data)
    except SyscallError:
        return False
    return True


def with_sigmask(t: Task, mask_addr: int, size: int, call):
    """Run ``call`` under the signal mask at ``mask_addr`` (none: as is),
    the way rt_sigsuspend does: the caller's mask waits in ``t.saved_mask``.
    If a signal ends the call (ERESTARTNOHAND; EINTR for epoll_pwait), the
    temporary mask stays in force until the signal is delivered on the way
    back to the guest (sentry.kernel.signals.deliver): a handler runs under
    it, its frame holds the saved mask for rt_sigreturn, and the call
    returns EINTR; with no handler the saved mask comes back and the call
    restarts (epoll_pwait: returns EINTR). Any other
    outcome restores the mask now, so a signal the temporary mask let
    through stays pending (Linux's restore_saved_sigmask_unless)."""
    if not mask_addr:
        return call()
    if size != 8:
        raise SyscallError(errno.EINVAL)
    mask = t.mm.read_u64(mask_addr)
    t.saved_mask = t.signal_mask
    t.signal_mask = mask & ~UNBLOCKABLE
    try:
        result = call()
    except SyscallError as e:
        if e.errno in (ERESTARTNOHAND, errno.EINTR) and t.pending | t.group.pending:
            raise  # deliver() restores the mask
        _restore_mask(t)
        raise
    _restore_mask(t)
    return result


def _restore_mask(t: Task) -> None:
    if t.saved_mask is not None:
        t.signal_mask, t.saved_mask = t.saved_mask, None


def sys_ppoll(t: Task, addr: int, nfds: int, timeout: int, mask: int, masksize: int) -> int:
    timeout_ns = _read_timespec_ns(t, timeout)
    return with_sigmask(t, mask, masksize, lambda: _time_left_written(
        t, timeout, timeout_ns, timespec_bytes, lambda: _poll(t, addr, nfds, timeout_ns)))


def _select(t: Task, nfds: int, rd: int, wr: int, ex: int, timeout_ns: int | None) -> int:
    nfds = s32(nfds)
    if not 0 <= nfds <= 1024 * 1024:
        raise SyscallError(errno.EINVAL)
    nbytes = (nfds + 63) // 64 * 8
    sets = [int.from_bytes(t.mm.copy_in(a, nbytes), "little") if a else 0 for a in (rd, wr, ex)]
    wanted = [fd for fd in range(nfds) if (sets[0] | sets[1] | sets[2]) >> fd & 1]
    for fd in wanted:
        t.fds.get(fd)  # EBADF, as Linux

    def scan() -> tuple[int, int, int] | None:
        r = w = 0
        for fd in wanted:
            ready = t.fds.get(fd).readiness()
            if sets[0] >> fd & 1 and ready & _IN_SET:
                r |= 1 << fd
            if sets[1] >> fd & 1 and ready & _OUT_SET:
                w |= 1 << fd
        return (r, w, 0) if r or w else None

    found = _block(t, wanted, scan, timeout_ns) or (0, 0, 0)
    for addr, bits in zip((rd, wr, ex), found):
        if addr:
            t.mm.copy_out(addr, bits.to_bytes(nbytes, "little"))
    return sum(bin(b).count("1") for b in found)


def sys_select(t: Task, nfds: int, rd: int, wr: int, ex: int, timeout: int) -> int:
    timeout_ns = None
    if timeout:
        sec, usec = struct.unpack("<qq", t.mm.copy_in(timeout, 16))
        if sec < 0 or not 0 <= usec < 1_000_000:
            raise SyscallError(errno.EINVAL)
        timeout_ns = sec * 1_000_000_000 + usec * 1000
    return _time_left_written(t, timeout, timeout_ns, timeval_bytes, lambda: _select(t, nfds, rd, wr, ex, timeout_ns))


def sys_pselect6(t: Task, nfds: int, rd: int, wr: int, ex: int, timeout: int, sigmask: int) -> int:
    mask_addr, size = struct.unpack("<QQ", t.mm.copy_in(sigmask, 16)) if sigmask else (0, 0)
    timeout_ns = _read_timespec_ns(t, timeout)
    return with_sigmask(t, mask_addr, size, lambda: _time_left_written(
        t, timeout, timeout_ns, timespec_bytes, lambda: _select(t, nfds, rd, wr, ex, timeout_ns)))


ENTRIES = entries(
    supported("poll", sys_poll, args=(Struct("pollfd"), Int, Int)),
    supported("ppoll", sys_ppoll, args=(Struct("pollfd"), Int, Struct("timespec"), Struct("sigset"), Size)),
    supported("select", sys_select, args=(Int, Ptr, Ptr, Ptr, Struct("timeval"))),
    supported("pselect6", sys_pselect6, args=(Int, Ptr, Ptr, Ptr, Struct("timespec"), Ptr)),
)
