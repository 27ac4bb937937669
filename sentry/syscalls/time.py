"""Clocks, sleeps and interval timers. Clocks read the host's; sleeps and
timers live in the kernel's trio loop, and signals interrupt sleeps."""
from __future__ import annotations

import errno
import struct
import time as _time

from sentry.errors import SyscallError
from sentry.kernel.task import Task
from sentry.kernel.wait import sleep
from sentry.syscalls.spec import Enum, Int, OutStruct, Ptr, Struct, entries, partial, s32, supported

CLOCK_NAMES = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 2: "CLOCK_PROCESS_CPUTIME_ID", 3: "CLOCK_THREAD_CPUTIME_ID",
               4: "CLOCK_MONOTONIC_RAW", 5: "CLOCK_REALTIME_COARSE", 6: "CLOCK_MONOTONIC_COARSE", 7: "CLOCK_BOOTTIME"}
_TIMESPEC = struct.Struct("<qq")
TIMER_ABSTIME = 1


def _clock(clock: int) -> int:
    clock = s32(clock)
    if clock not in CLOCK_NAMES:
        raise SyscallError(errno.EINVAL)
    # The CPU-time clocks read the Sentry's own: it stands in for the guest.
    return _time.clock_gettime_ns(clock)


def sys_clock_gettime(t: Task, clock: int, addr: int) -> int:
    ns = _clock(clock)
    t.mm.copy_out(addr, _TIMESPEC.pack(ns // 1_000_000_000, ns % 1_000_000_000))
    return 0


def sys_clock_getres(t: Task, clock: int, addr: int) -> int:
    _clock(clock)
    if addr:
        t.mm.copy_out(addr, _TIMESPEC.pack(0, 1))
    return 0


def sys_gettimeofday(t: Task, tv: int, tz: int) -> int:
    ns = _time.time_ns()
    if tv:
        t.mm.copy_out(tv, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000 // 1000))
    if tz:
        t.mm.copy_out(tz, bytes(8))
    return 0


def sys_time(t: Task, addr: int) -> int:
    now = _time.time_ns() // 1_000_000_000
    if addr:
        t.mm.write_u64(addr, now)
    return now


def read_timespec_ns(t: Task, addr: int) -> int:
    """A guest struct timespec in nanoseconds; EINVAL if malformed."""
    sec, nsec = _TIMESPEC.unpack(t.mm.copy_in(addr, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise SyscallError(errno.EINVAL)
    return sec * 1_000_000_000 + nsec


def sys_nanosleep(t: Task, req: int, rem: int) -> int:
    sleep(t, read_timespec_ns(t, req))
    return 0


def sys_clock_nanosleep(t: Task, clock: int, flags: int, req: int, rem: int) -> int:
    ns = read_timespec_ns(t, req)
    if flags & TIMER_ABSTIME:
        ns -= _clock(clock)
    else:
        _clock(clock)
    sleep(t, ns)
    return 0


ENTRIES = entries(
    supported("clock_gettime", sys_clock_gettime, args=(Enum(CLOCK_NAMES), OutStruct("timespec"))),
    supported("clock_getres", sys_clock_getres, args=(Enum(CLOCK_NAMES), OutStruct("timespec"))),
    supported("gettimeofday", sys_gettimeofday, args=(OutStruct("timeval"), Ptr)),
    supported("time", sys_time, args=(Ptr,)),
    partial("nanosleep", sys_nanosleep, args=(Struct("timespec"), Ptr), note="the remaining time is not written"),
    partial("clock_nanosleep", sys_clock_nanosleep, args=(Enum(CLOCK_NAMES), Int, Struct("timespec"), Ptr),
            note="the remaining time is not written"),
)
