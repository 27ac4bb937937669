"""alarm, setitimer/getitimer (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF),
timer_create/settime/gettime/getoverrun/delete: timers that send signals
(sentry.kernel.timers). ITIMER_VIRTUAL and ITIMER_PROF, and POSIX timers on
CPU-time clocks, count the guest's CPU time, sampled every 4 ms."""
from __future__ import annotations

import errno
import signal as S
import struct
import time

from sentry.errors import SyscallError
from sentry.kernel import signals as sig
from sentry.kernel.task import Task
from sentry.kernel.timers import (CPU_TICK_NS, SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD_ID, CpuTimer, PosixTimer, Timer,
                                  group_cpu_ns, live_tasks, new_timer_id, posix_timers)
from sentry.syscalls.spec import Enum, Int, Ptr, Struct, entries, partial, s32, supported
from sentry.syscalls.time import cpu_clock

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
ITIMER_NAMES = {0: "ITIMER_REAL", 1: "ITIMER_VIRTUAL", 2: "ITIMER_PROF"}
_ITIMER_SIGNALS = {ITIMER_REAL: S.SIGALRM, ITIMER_VIRTUAL: S.SIGVTALRM, ITIMER_PROF: S.SIGPROF}
_ITIMER_ATTRS = {ITIMER_REAL: "itimer_real", ITIMER_VIRTUAL: "itimer_virtual", ITIMER_PROF: "itimer_prof"}
# The wall clocks a POSIX timer may count (CPU clocks aside): their host clocks, for TIMER_ABSTIME.
_TIMER_CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC, 7: time.CLOCK_BOOTTIME}
TIMER_ABSTIME = 1
_ITIMERVAL = struct.Struct("<qqqq")  # interval (sec, usec), value (sec, usec)
_ITIMERSPEC = struct.Struct("<qqqq")  # interval (sec, nsec), value (sec, nsec)
NS = 1_000_000_000


def _itimer(t: Task, which: int) -> Timer | CpuTimer:
    """The process's interval timer ``which`` (made on first use; kept
    across execve, not inherited by fork: it lives on the ThreadGroup)."""
    which = s32(which)
    if which not in _ITIMER_ATTRS:
        raise SyscallError(errno.EINVAL)
    group, kernel = t.group, t.kernel
    timer = getattr(group, _ITIMER_ATTRS[which], None)
    if timer is None:
        signo = _ITIMER_SIGNALS[which]

        def fire(n: int) -> bool:
            if group.zombie or group.exit_status is not None:
                return False
            sig.send(kernel, group, signo, sig.siginfo(signo, sig.SI_KERNEL))
            return True

        if which == ITIMER_REAL:
            timer = Timer(fire, counted=True)
        else:
            user_only = which == ITIMER_VIRTUAL
            timer = CpuTimer(lambda: group_cpu_ns(group, user_only), live_tasks(group), fire)
        setattr(group, _ITIMER_ATTRS[which], timer)
    return timer


def sys_alarm(t: Task, seconds: int) -> int:
    old, _ = _itimer(t, ITIMER_REAL).arm((seconds & 0xFFFF_FFFF) * NS, 0)
    sec, usec = _timeval(old)
    return sec + 1 if (old and not sec) or usec >= 500_000 else sec  # as Linux's alarm_setitimer rounds


def _timeval(ns: int) -> tuple[int, int]:
    return ns // NS, ns % NS // 1000


def sys_setitimer(t: Task, which: int, new: int, old: int) -> int:
    timer = _itimer(t, which)
    isec, iusec, vsec, vusec = _ITIMERVAL.unpack(t.mm.copy_in(new, 32)) if new else (0, 0, 0, 0)
    if min(isec, iusec, vsec, vusec) < 0 or iusec >= 1_000_000 or vusec >= 1_000_000:
        raise SyscallError(errno.EINVAL)
    value = vsec * NS + vusec * 1000
    if value and isinstance(timer, CpuTimer):
        value += CPU_TICK_NS  # as Linux's set_cpu_itimer adds a tick (TICK_NSEC) to the value
    prev_value, prev_interval = timer.arm(value, isec * NS + iusec * 1000)
    if old:
        t.mm.copy_out(old, _ITIMERVAL.pack(*_timeval(prev_interval), *_timeval(prev_value)))
    return 0


def sys_getitimer(t: Task, which: int, addr: int) -> int:
    value, interval = _itimer(t, which).remaining()
    t.mm.copy_out(addr, _ITIMERVAL.pack(*_timeval(interval), *_timeval(value)))
    return 0


def sys_timer_create(t: Task, clock: int, sevp: int, timerid_addr: int) -> int:
    cpu = cpu_clock(t, clock)  # EINVAL for an unknown clock
    if cpu is None and s32(clock) not in _TIMER_CLOCKS:
        raise SyscallError(errno.EINVAL)
    group, kernel = t.group, t.kernel
    timers = posix_timers(group)
    timer_id = new_timer_id(group)
    value, signo, notify, tid = timer_id, S.SIGALRM, SIGEV_SIGNAL, 0  # no sevp: sival_int is the id
    if sevp:
        value, signo, notify, tid = struct.unpack("<Qiii", t.mm.copy_in(sevp, 20))
    if notify not in (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID) or not 1 <= signo <= 64 and notify != SIGEV_NONE:
        raise SyscallError(errno.EINVAL)
    target = kernel.tasks.get(tid) if notify == SIGEV_THREAD_ID else None
    if notify == SIGEV_THREAD_ID and (target is None or target.group is not group):
        raise SyscallError(errno.EINVAL)
    if cpu is not None:
        timer = PosixTimer(kernel, group, timer_id, cpu.read, signo, notify, value, target, cpu.tasks)
    else:
        host_clock = _TIMER_CLOCKS[s32(clock)]
        timer = PosixTimer(kernel, group, timer_id, lambda: time.clock_gettime_ns(host_clock), signo, notify,
                           value, target)
    t.mm.write_u32(timerid_addr, timer_id)
    timers[timer_id] = timer
    return 0


def _timer(t: Task, timer_id: int) -> PosixTimer:
    timer = posix_timers(t.group).get(s32(timer_id))
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
        value = max(1, value - timer.now())  # on the timer's own clock; a time already past fires at once
    prev = timer.arm(value, isec * NS + insec)
    if old:
        t.mm.copy_out(old, _spec(prev))
    return 0


def sys_timer_gettime(t: Task, timer_id: int, addr: int) -> int:
    t.mm.copy_out(addr, _spec(_timer(t, timer_id).timer.remaining()))
    return 0


def sys_timer_getoverrun(t: Task, timer_id: int) -> int:
    return _timer(t, timer_id).overrun()


def sys_timer_delete(t: Task, timer_id: int) -> int:
    timer = _timer(t, timer_id)
    del posix_timers(t.group)[timer.id]
    timer.delete()
    return 0


ENTRIES = entries(
    supported("alarm", sys_alarm, args=(Int,)),
    supported("setitimer", sys_setitimer, args=(Enum(ITIMER_NAMES), Struct("itimerval"), Ptr)),
    supported("getitimer", sys_getitimer, args=(Enum(ITIMER_NAMES), Ptr)),
    partial("timer_create", sys_timer_create, args=(Int, Ptr, Ptr), note="SIGEV_SIGNAL, SIGEV_THREAD_ID, SIGEV_NONE"),
    supported("timer_settime", sys_timer_settime, args=(Int, Int, Struct("itimerspec"), Ptr)),
    supported("timer_gettime", sys_timer_gettime, args=(Int, Ptr)),
    supported("timer_getoverrun", sys_timer_getoverrun, args=(Int,)),
    supported("timer_delete", sys_timer_delete, args=(Int,)),
)
