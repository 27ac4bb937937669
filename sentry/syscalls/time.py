"""Clocks, sleeps and interval timers. Wall clocks read the host's; the
CPU-time clocks read the guest's own times (``sentry.kernel.cputime``):
CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID and the per-pid clocks
of clock_getcpuclockid/pthread_getcpuclockid. Sleeps and timers live in
the kernel's trio loop, and signals interrupt sleeps; an interrupted
relative sleep writes the time it had left."""
from __future__ import annotations

import errno
import struct
import time as _time
from typing import Callable

from sentry.errors import SyscallError
from sentry.kernel.task import Task, ThreadGroup
from sentry.kernel.timers import CPU_TICK_NS, CpuTimer, group_cpu_ns, live_tasks, thread_cpu_ns
from sentry.kernel.wait import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTSYS, WaitQueue, sleep, wait_until
from sentry.syscalls.spec import Enum, Int, OutStruct, Ptr, Struct, entries, partial, s32, supported

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_NAMES = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID", 3: "CLOCK_THREAD_CPUTIME_ID",
               4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE", 6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME"}
# Negative clock ids name another task's CPU clock (Linux's MAKE_PROCESS_CPUCLOCK):
# ~pid << 3 | per-thread (4) | which (PROF 0: user+system, VIRT 1: user, SCHED 2: user+system).
CPUCLOCK_PROF, CPUCLOCK_VIRT, CPUCLOCK_SCHED, CPUCLOCK_PERTHREAD = 0, 1, 2, 4
_TIMESPEC = struct.Struct("<qq")
TIMER_ABSTIME = 1
NS = 1_000_000_000


class CpuClock:
    """A CPU-time clock: ``read()`` in ns, ``tasks()`` the live tasks it
    counts, ``thread``: a one-thread clock."""

    __slots__ = ("read", "tasks", "thread", "res")

    def __init__(self, read: Callable[[], int], tasks: Callable[[], list[Task]], thread: bool, res: int):
        self.read, self.tasks, self.thread, self.res = read, tasks, thread, res


def cpu_clock(t: Task, clock: int) -> CpuClock | None:
    """The CPU-time clock ``clock`` names for ``t`` (None for the other
    clocks); EINVAL for an unknown clock or a task it may not read (a
    thread of another process, a process by a non-leader's id)."""
    clock = s32(clock)
    if clock == CLOCK_PROCESS_CPUTIME_ID:
        pid, which, thread = 0, CPUCLOCK_SCHED, False
    elif clock == CLOCK_THREAD_CPUTIME_ID:
        pid, which, thread = 0, CPUCLOCK_SCHED, True
    elif clock < 0 and clock & 7 != 7:  # 7: a dynamic (fd) clock, which the sandbox has none of
        pid, which, thread = ~(clock >> 3), clock & 3, bool(clock & CPUCLOCK_PERTHREAD)
        if which > CPUCLOCK_SCHED:
            raise SyscallError(errno.EINVAL)
    elif clock in CLOCK_NAMES:
        return None
    else:
        raise SyscallError(errno.EINVAL)
    user_only = which == CPUCLOCK_VIRT
    res = 1 if which == CPUCLOCK_SCHED else CPU_TICK_NS
    if thread:
        task = t if pid == 0 else t.kernel.tasks.get(pid)
        if task is None or task.group is not t.group:
            raise SyscallError(errno.EINVAL)
        read = (lambda: task.user_ns) if user_only else (lambda: thread_cpu_ns(task))
        return CpuClock(_never_back(task, which, read), lambda: [] if task.exited else [task], True, res)
    if pid == 0 or pid == t.group.pid:
        group = t.group
    else:
        group = t.kernel.groups.get(pid)
        leader = t.kernel.tasks.get(pid)
        if group is None or group.zombie or (leader is not None and leader.group is not group):
            raise SyscallError(errno.EINVAL)
    return CpuClock(_never_back(group, which, lambda: group_cpu_ns(group, user_only)), live_tasks(group), False, res)


def _never_back(owner: "Task | ThreadGroup", which: int, read: Callable[[], int]) -> Callable[[], int]:
    """``read`` made monotonic: another thread's system time dips for a
    moment after a blocking wait (``sentry.kernel.wait`` subtracts the
    parked time before the run loop adds the whole call), so a reader keeps
    the highest value seen, per owner and kind."""
    def monotonic() -> int:
        seen = owner.cpu_clock_seen
        value = max(read(), seen[which])
        seen[which] = value
        return value

    return monotonic


def _clock(t: Task, clock: int) -> int:
    """The time on ``clock`` in ns (EINVAL for an unknown clock)."""
    cpu = cpu_clock(t, clock)
    if cpu is not None:
        return cpu.read()
    return _time.clock_gettime_ns(s32(clock))


def sys_clock_gettime(t: Task, clock: int, addr: int) -> int:
    ns = _clock(t, clock)
    t.mm.copy_out(addr, timespec_bytes(ns))
    return 0


def sys_clock_getres(t: Task, clock: int, addr: int) -> int:
    cpu = cpu_clock(t, clock)
    if addr:
        t.mm.copy_out(addr, _TIMESPEC.pack(0, cpu.res if cpu is not None else 1))
    return 0


def sys_gettimeofday(t: Task, tv: int, tz: int) -> int:
    ns = _time.time_ns()
    if tv:
        t.mm.copy_out(tv, timeval_bytes(ns))
    if tz:
        t.mm.copy_out(tz, bytes(8))
    return 0


def sys_time(t: Task, addr: int) -> int:
    now = _time.time_ns() // NS
    if addr:
        t.mm.write_u64(addr, now)
    return now


def timespec_bytes(ns: int) -> bytes:
    """A struct timespec of ``ns`` >= 0 nanoseconds."""
    return _TIMESPEC.pack(ns // NS, ns % NS)


def timeval_bytes(ns: int) -> bytes:
    """A struct timeval of ``ns`` >= 0 nanoseconds (microseconds cut)."""
    return _TIMESPEC.pack(ns // NS, ns % NS // 1000)


def read_timespec_ns(t: Task, addr: int) -> int:
    """A guest struct timespec in nanoseconds; EINVAL if malformed."""
    sec, nsec = _TIMESPEC.unpack(t.mm.copy_in(addr, 16))
    if sec < 0 or not 0 <= nsec < NS:
        raise SyscallError(errno.EINVAL)
    return sec * NS + nsec


def _sleep(t: Task, ns: int, rem: int) -> int:
    """Sleep ``ns``; if a signal interrupts, write the time left to ``rem``
    (when non-NULL) and raise ERESTART_RESTARTBLOCK, as Linux's relative
    nanosleep does: EINTR after a handler, else restart_syscall sleeps
    until the first deadline (a stop and continue does not start it over)."""
    return _sleep_until(t, _time.monotonic_ns() + ns, rem)


def _sleep_until(t: Task, deadline: int, rem: int) -> int:
    try:
        sleep(t, deadline - _time.monotonic_ns())
    except SyscallError:
        if rem:
            left = max(0, deadline - _time.monotonic_ns())
            t.mm.copy_out(rem, timespec_bytes(left))
        t.restart_block = lambda: _sleep_until(t, deadline, rem)
        raise SyscallError(ERESTART_RESTARTBLOCK) from None
    return 0


def sys_nanosleep(t: Task, req: int, rem: int) -> int:
    return _sleep(t, read_timespec_ns(t, req), rem)


def sys_clock_nanosleep(t: Task, clock: int, flags: int, req: int, rem: int) -> int:
    ns = read_timespec_ns(t, req)
    cpu = cpu_clock(t, clock)
    if cpu is not None:
        return _cpu_sleep(t, cpu, ns, bool(flags & TIMER_ABSTIME), rem)
    if flags & TIMER_ABSTIME:  # restarted as it is: never writes rem
        try:
            return _sleep(t, ns - _clock(t, clock), 0)
        except SyscallError as e:
            raise SyscallError(ERESTARTNOHAND) from e
    return _sleep(t, ns, rem)


def _cpu_sleep(t: Task, cpu: CpuClock, ns: int, absolute: bool, rem: int) -> int:
    """Sleep until a CPU clock reads ``ns`` (absolute) or has advanced by
    ``ns``: other threads' time moves it. Linux refuses a thread's own
    clock (it could never advance) and, as it does, any thread clock."""
    if cpu.thread:
        raise SyscallError(errno.EINVAL)
    return _cpu_sleep_until(t, cpu, ns if absolute else cpu.read() + ns, None if absolute else rem)


def _cpu_sleep_until(t: Task, cpu: CpuClock, target: int, rem: int | None) -> int:
    """``rem`` None: an absolute sleep (restarted as it is); else a relative
    one, which writes the time left to ``rem`` (if non-NULL) when a signal
    interrupts it and resumes through restart_syscall until ``target``."""
    if cpu.read() >= target:
        return 0
    done = WaitQueue()
    fired: list[int] = []

    def fire(n: int) -> bool:
        fired.append(n)
        done.notify()
        return True

    timer = CpuTimer(cpu.read, cpu.tasks, fire)
    timer.arm(max(1, target - cpu.read()), 0)
    try:
        wait_until(t, (done,), lambda: bool(fired))
    except SyscallError as e:
        if e.errno not in (ERESTARTSYS, ERESTARTNOHAND):
            raise
        if rem is None:  # as a sleep: restarted only if no handler runs
            raise SyscallError(ERESTARTNOHAND) from e
        if rem:
            left = max(0, target - cpu.read())
            t.mm.copy_out(rem, timespec_bytes(left))
        t.restart_block = lambda: _cpu_sleep_until(t, cpu, target, rem)
        raise SyscallError(ERESTART_RESTARTBLOCK) from e
    finally:
        timer.cancel()
    return 0


ENTRIES = entries(
    supported("clock_gettime", sys_clock_gettime, args=(Enum(CLOCK_NAMES), OutStruct("timespec"))),
    supported("clock_getres", sys_clock_getres, args=(Enum(CLOCK_NAMES), OutStruct("timespec"))),
    supported("gettimeofday", sys_gettimeofday, args=(OutStruct("timeval"), Ptr)),
    supported("time", sys_time, args=(Ptr,)),
    supported("nanosleep", sys_nanosleep, args=(Struct("timespec"), Ptr)),
    partial("clock_nanosleep", sys_clock_nanosleep, args=(Enum(CLOCK_NAMES), Int, Struct("timespec"), Ptr),
            note="CPU clocks are sampled every 4 ms"),
)
