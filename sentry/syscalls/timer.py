"""alarm, setitimer/getitimer (ITIMER_REAL), timer_create/settime/gettime/
getoverrun/delete: timers that send signals (sentry.kernel.timers)."""
from __future__ import annotations

import errno
import signal as S
import struct

from sentry.errors import SyscallError
from sentry.kernel import signals as sig
from sentry.kernel.task import Task, ThreadGroup
from sentry.kernel.timers import Timer
from sentry.syscalls.spec import Enum, Int, Ptr, Struct, entries, partial, s32, supported

ITIMER_REAL = 0
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID = 0, 1, 4
SI_TIMER = -2
TIMER_ABSTIME = 1
_ITIMERVAL = struct.Struct("<qqqq")  # interval (sec, usec), value (sec, usec)
_ITIMERSPEC = struct.Struct("<qqqq")  # interval (sec, nsec), value (sec, nsec)
NS = 1_000_000_000


def _real_timer(t: Task) -> Timer:
    group = t.group
    timer = getattr(group, "itimer_real", None)
    if timer is None:
        kernel = t.kernel
        timer = group.itimer_real = Timer(  # type: ignore[attr-defined]
            lambda: sig.send(kernel, group, S.SIGALRM, sig.siginfo(S.SIGALRM, sig.SI_KERNEL)))
    return timer


def sys_alarm(t: Task, seconds: int) -> int:
    old, _ = _real_timer(t).arm((seconds & 0xFFFF_FFFF) * NS, 0)
    return (old + NS // 2) // NS if old else 0


def sys_setitimer(t: Task, which: int, new: int, old: int) -> int:
    if s32(which) != ITIMER_REAL:
        raise SyscallError(errno.EINVAL)
    isec, iusec, vsec, vusec = _ITIMERVAL.unpack(t.mm.copy_in(new, 32)) if new else (0, 0, 0, 0)
    if min(isec, iusec, vsec, vusec) < 0 or iusec >= 1_000_000 or vusec >= 1_000_000:
        raise SyscallError(errno.EINVAL)
    prev_value, prev_interval = _real_timer(t).arm(vsec * NS + vusec * 1000, isec * NS + iusec * 1000)
    if old:
        t.mm.copy_out(old, _ITIMERVAL.pack(prev_interval // NS, prev_interval % NS // 1000,
                                           prev_value // NS, prev_value % NS // 1000))
    return 0


def sys_getitimer(t: Task, which: int, addr: int) -> int:
    if s32(which) != ITIMER_REAL:
        raise SyscallError(errno.EINVAL)
    value, interval = _real_timer(t).remaining()
    t.mm.copy_out(addr, _ITIMERVAL.pack(interval // NS, interval % NS // 1000, value // NS, value % NS // 1000))
    return 0


def _timers(group: ThreadGroup) -> dict[int, Timer]:
    timers = getattr(group, "posix_timers", None)
    if timers is None:
        timers = group.posix_timers = {}  # type: ignore[attr-defined]
    return timers


def sys_timer_create(t: Task, clock: int, sevp: int, timerid_addr: int) -> int:
    if s32(clock) not in (0, 1, 7):
        raise SyscallError(errno.EINVAL)
    group, kernel = t.group, t.kernel
    timers = _timers(group)
    timer_id = max(timers, default=-1) + 1
    value, signo, notify, tid = 0, S.SIGALRM, SIGEV_SIGNAL, 0
    if sevp:
        value, signo, notify, tid = struct.unpack("<Qiii", t.mm.copy_in(sevp, 20))
    if notify not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID) or not 1 <= signo <= 64 and notify != SIGEV_NONE:
        raise SyscallError(errno.EINVAL)
    target = kernel.tasks.get(tid) if notify == SIGEV_THREAD_ID else None
    if notify == SIGEV_THREAD_ID and (target is None or target.group is not group):
        raise SyscallError(errno.EINVAL)

    def fire() -> None:
        if notify != SIGEV_NONE:
            info = struct.pack("<iiiiiiQ", signo, 0, SI_TIMER, 0, timer_id, 0, value).ljust(sig.SIGINFO_SIZE, b"\0")
            sig.send(kernel, group, signo, info, task=target)

    timers[timer_id] = Timer(fire)
    t.mm.write_u32(timerid_addr, timer_id)
    return 0


def _timer(t: Task, timer_id: int) -> Timer:
    timer = _timers(t.group).get(s32(timer_id))
    if timer is None:
        raise SyscallError(errno.EINVAL)
    return timer


def _spec(prev: tuple[int, int]) -> bytes:
    value, interval = prev
    return _ITIMERSPEC.pack(interval // NS, interval % NS, value // NS, value % NS)


def sys_timer_settime(t: Task, timer_id: int, flags: int, new: int, old: int) -> int:
    timer = _timer(t, timer_id)
    isec, insec, vsec, vnsec = _ITIMERSPEC.unpack(t.mm.copy_in(new, 32))
    if min(isec, insec, vsec, vnsec) < 0 or insec >= NS or vnsec >= NS:
        raise SyscallError(errno.EINVAL)
    value = vsec * NS + vnsec
    if flags & TIMER_ABSTIME and value:
        import time

        value = max(1, value - time.clock_gettime_ns(time.CLOCK_MONOTONIC))
    prev = timer.arm(value, isec * NS + insec)
    if old:
        t.mm.copy_out(old, _spec(prev))
    return 0


def sys_timer_gettime(t: Task, timer_id: int, addr: int) -> int:
    t.mm.copy_out(addr, _spec(_timer(t, timer_id).remaining()))
    return 0


def sys_timer_getoverrun(t: Task, timer_id: int) -> int:
    return _timer(t, timer_id).overrun


def sys_timer_delete(t: Task, timer_id: int) -> int:
    _timer(t, timer_id).cancel()
    del _timers(t.group)[s32(timer_id)]
    return 0


ENTRIES = entries(
    supported("alarm", sys_alarm, args=(Int,)),
    partial("setitimer", sys_setitimer, args=(Enum({0: "ITIMER_REAL", 1: "ITIMER_VIRTUAL", 2: "ITIMER_PROF"}),
                                               Struct("itimerval"), Ptr), note="ITIMER_REAL only"),
    partial("getitimer", sys_getitimer, args=(Int, Ptr), note="ITIMER_REAL only"),
    partial("timer_create", sys_timer_create, args=(Int, Ptr, Ptr), note="SIGEV_SIGNAL, SIGEV_THREAD_ID, SIGEV_NONE"),
    supported("timer_settime", sys_timer_settime, args=(Int, Int, Struct("itimerspec"), Ptr)),
    supported("timer_gettime", sys_timer_gettime, args=(Int, Ptr)),
    supported("timer_getoverrun", sys_timer_getoverrun, args=(Int,)),
    supported("timer_delete", sys_timer_delete, args=(Int,)),
)
