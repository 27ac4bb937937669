"""epoll, eventfd, timerfd and signalfd system calls (files in
sentry/fs/{epoll,eventfd,timerfd,signalfd}.py).

epoll_wait waits in the kernel's trio loop for the epoll file's
subscribers to be told of a change, then rescans. A signal that ends the
wait ends the call with EINTR, as Linux's ep_poll: with or without a
handler (after a stop and continue too), never restarted. A signal a
signalfd in the interest list waits for is blocked: it wakes the wait
through the signalfd's readiness, not as a signal.
epoll_pwait and epoll_pwait2 wait under a temporary signal mask as ppoll
does (sentry.syscalls.poll.with_sigmask).
"""
from __future__ import annotations

import errno
import struct

from sentry.errors import SyscallError
from sentry.fs.epoll import EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EpollFile
from sentry.fs.eventfd import EFD_SEMAPHORE, EventFD
from sentry.fs.file import O_CLOEXEC, O_NONBLOCK
from sentry.fs.signalfd import SignalFD
from sentry.fs.timerfd import CLOCKS, TimerFD
from sentry.kernel.task import Task
from sentry.kernel.wait import WaitQueue, wait_until
from sentry.syscalls.poll import with_sigmask
from sentry.syscalls.spec import FD, Enum, Flags, Hex, Int, OutStruct, Ptr, Size, Struct, UInt, entries, s32, supported

_EVENT = struct.Struct("<IQ")  # struct epoll_event is packed on x86-64
_ITIMERSPEC = struct.Struct("<qqqq")  # it_interval, it_value
MAX_EVENTS = (1 << 31) // _EVENT.size
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
NSEC = 1_000_000_000

CTL_OPS = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}
FD_FLAGS = {0o2000000: "CLOEXEC", 0o4000: "NONBLOCK", 1: "EFD_SEMAPHORE"}
CLOCK_NAMES = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 7: "CLOCK_BOOTTIME", 8: "CLOCK_REALTIME_ALARM",
               9: "CLOCK_BOOTTIME_ALARM"}


def _check_flags(flags: int, allowed: int) -> int:
    flags = s32(flags)
    if flags & ~allowed:
        raise SyscallError(errno.EINVAL)
    return flags


# --- epoll -------------------------------------------------------------------------
def _epoll(t: Task, epfd: int) -> EpollFile:
    f = t.fds.get(s32(epfd))
    if not isinstance(f, EpollFile):
        raise SyscallError(errno.EINVAL)
    return f


def sys_epoll_create1(t: Task, flags: int) -> int:
    flags = _check_flags(flags, O_CLOEXEC)
    return t.fds.install(EpollFile(0), bool(flags & O_CLOEXEC))


def sys_epoll_create(t: Task, size: int) -> int:
    if s32(size) <= 0:
        raise SyscallError(errno.EINVAL)
    return sys_epoll_create1(t, 0)


def sys_epoll_ctl(t: Task, epfd: int, op: int, fd: int, event: int) -> int:
    ep = _epoll(t, epfd)
    fd, op = s32(fd), s32(op)
    target = t.fds.get(fd)
    events = data = 0
    if op in (EPOLL_CTL_ADD, EPOLL_CTL_MOD):
        events, data = _EVENT.unpack(t.mm.copy_in(event, _EVENT.size))
    elif op != EPOLL_CTL_DEL:
        raise SyscallError(errno.EINVAL)
    ep.ctl(op, fd, target, events, data)
    return 0


def _epoll_wait(t: Task, epfd: int, events: int, maxevents: int, timeout_ns: int | None) -> int:
    maxevents = s32(maxevents)
    if not 0 < maxevents <= MAX_EVENTS:
        raise SyscallError(errno.EINVAL)
    ep = _epoll(t, epfd)
    found = ep.collect(maxevents)
    if not found and timeout_ns != 0:
        q = WaitQueue()
        ep.subscribe(q.notify)

        def ready() -> bool:
            found[:] = ep.collect(maxevents)
            return bool(found)

        try:
            wait_until(t, [q], ready, timeout_ns)
        except SyscallError as e:
            raise SyscallError(errno.EINTR) from e
        finally:
            ep.unsubscribe(q.notify)
    if found:
        t.mm.copy_out(events, b"".join(_EVENT.pack(ev, data) for ev, data in found))
    return len(found)


def _ms(timeout: int) -> int | None:
    ms = s32(timeout)
    return None if ms < 0 else ms * 1_000_000


def sys_epoll_wait(t: Task, epfd: int, events: int, maxevents: int, timeout: int) -> int:
    return _epoll_wait(t, epfd, events, maxevents, _ms(timeout))


def sys_epoll_pwait(t: Task, epfd: int, events: int, maxevents: int, timeout: int, mask: int, size: int) -> int:
    return with_sigmask(t, mask, size, lambda: _epoll_wait(t, epfd, events, maxevents, _ms(timeout)))


def sys_epoll_pwait2(t: Task, epfd: int, events: int, maxevents: int, timeout: int, mask: int, size: int) -> int:
    timeout_ns = None
    if timeout:
        sec, nsec = struct.unpack("<qq", t.mm.copy_in(timeout, 16))
        if sec < 0 or not 0 <= nsec < NSEC:
            raise SyscallError(errno.EINVAL)
        timeout_ns = sec * NSEC + nsec
    return with_sigmask(t, mask, size, lambda: _epoll_wait(t, epfd, events, maxevents, timeout_ns))


# --- eventfd ---------------------------------------------------------------------
def sys_eventfd2(t: Task, initval: int, flags: int) -> int:
    flags = _check_flags(flags, O_CLOEXEC | O_NONBLOCK | EFD_SEMAPHORE)
    return t.fds.install(EventFD(initval & 0xFFFFFFFF, flags), bool(flags & O_CLOEXEC))


def sys_eventfd(t: Task, initval: int) -> int:
    return sys_eventfd2(t, initval, 0)


# --- timerfd ---------------------------------------------------------------------
def _timerfd(t: Task, fd: int) -> TimerFD:
    f = t.fds.get(s32(fd))
    if not isinstance(f, TimerFD):
        raise SyscallError(errno.EINVAL)
    return f


def sys_timerfd_create(t: Task, clock: int, flags: int) -> int:
    flags = _check_flags(flags, O_CLOEXEC | O_NONBLOCK)
    if s32(clock) not in CLOCKS:
        raise SyscallError(errno.EINVAL)
    return t.fds.install(TimerFD(s32(clock), flags), bool(flags & O_CLOEXEC))


def _put_itimerspec(t: Task, addr: int, value_ns: int, interval_ns: int) -> None:
    t.mm.copy_out(addr, _ITIMERSPEC.pack(interval_ns // NSEC, interval_ns % NSEC, value_ns // NSEC, value_ns % NSEC))


def sys_timerfd_settime(t: Task, fd: int, flags: int, new: int, old: int) -> int:
    tf = _timerfd(t, fd)
    flags = _check_flags(flags, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)
    isec, insec, vsec, vnsec = _ITIMERSPEC.unpack(t.mm.copy_in(new, _ITIMERSPEC.size))
    if min(isec, vsec) < 0 or not (0 <= insec < NSEC and 0 <= vnsec < NSEC):
        raise SyscallError(errno.EINVAL)
    before = tf.settime(vsec * NSEC + vnsec, isec * NSEC + insec, bool(flags & TFD_TIMER_ABSTIME))
    if old:
        _put_itimerspec(t, old, *before)
    return 0


def sys_timerfd_gettime(t: Task, fd: int, cur: int) -> int:
    _put_itimerspec(t, cur, *_timerfd(t, fd).gettime())
    return 0


# --- signalfd --------------------------------------------------------------------
def sys_signalfd4(t: Task, fd: int, mask: int, size: int, flags: int) -> int:
    flags = _check_flags(flags, O_CLOEXEC | O_NONBLOCK)
    if size != 8:
        raise SyscallError(errno.EINVAL)
    sigmask = t.mm.read_u64(mask)
    fd = s32(fd)
    if fd != -1:
        f = t.fds.get(fd)
        if not isinstance(f, SignalFD):
            raise SyscallError(errno.EINVAL)
        f.set_mask(sigmask)
        return fd
    return t.fds.install(SignalFD(t, sigmask, flags), bool(flags & O_CLOEXEC))


def sys_signalfd(t: Task, fd: int, mask: int, size: int) -> int:
    return sys_signalfd4(t, fd, mask, size, 0)


ENTRIES = entries(
    supported("epoll_create", sys_epoll_create, args=(Int,)),
    supported("epoll_create1", sys_epoll_create1, args=(Flags(FD_FLAGS),)),
    supported("epoll_ctl", sys_epoll_ctl, args=(FD, Enum(CTL_OPS), FD, Ptr)),
    supported("epoll_wait", sys_epoll_wait, args=(FD, Ptr, Int, Int)),
    supported("epoll_pwait", sys_epoll_pwait, args=(FD, Ptr, Int, Int, Struct("sigset"), Size)),
    supported("epoll_pwait2", sys_epoll_pwait2, args=(FD, Ptr, Int, Struct("timespec"), Struct("sigset"), Size)),
    supported("eventfd", sys_eventfd, args=(UInt,)),
    supported("eventfd2", sys_eventfd2, args=(UInt, Flags(FD_FLAGS))),
    supported("timerfd_create", sys_timerfd_create, args=(Enum(CLOCK_NAMES), Flags(FD_FLAGS))),
    supported("timerfd_settime", sys_timerfd_settime, args=(FD, Hex, Struct("itimerspec"), Ptr)),
    supported("timerfd_gettime", sys_timerfd_gettime, args=(FD, OutStruct("itimerspec"))),
    supported("signalfd", sys_signalfd, args=(FD, Struct("sigset"), Size)),
    supported("signalfd4", sys_signalfd4, args=(FD, Struct("sigset"), Size, Flags(FD_FLAGS))),
)
