"""Scheduling system calls: policies and real-time priorities (sched_*),
nice values (getpriority, setpriority).

In a nutshell: as in gVisor, the Sentry never changes how the host
schedules anything. What the guest sets is recorded per task (Linux keeps
policy, priority and nice per thread) in a ``SchedState`` and reported back
exactly, with Linux's checks: SCHED_OTHER, SCHED_BATCH and SCHED_IDLE take
priority 0 only, SCHED_FIFO and SCHED_RR 1..99; nice values are clamped to
-20..19 and the raw getpriority returns 20 - nice (glibc undoes it). A
clone inherits its creator's state (``inherit``), SCHED_RESET_ON_FORK
resetting real-time policies and negative nice values as Linux does. The
guest's root may do anything; other users are held to Linux's rules
(their own tasks only, no lower nice or real-time policy beyond
RLIMIT_NICE and RLIMIT_RTPRIO, both 0 unless set). SCHED_DEADLINE is never
admitted (EBUSY, as when Linux's admission control refuses it).

The state lives on the Task as ``task.sched``, made on first use
(``state``); /proc/PID/stat reads ``task.sched.nice``.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from sentry.errors import SyscallError
from sentry.kernel.task import Task
from sentry.syscalls.spec import Enum, Hex, Int, OutStruct, Ptr, Size, Struct, entries, partial, s32, supported
from sentry.syscalls.time import timespec_bytes

SCHED_NORMAL, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_RESET_ON_FORK = 0x4000_0000
SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_RECLAIM, SCHED_FLAG_DL_OVERRUN = 0x01, 0x02, 0x04
SCHED_FLAG_KEEP_POLICY, SCHED_FLAG_KEEP_PARAMS = 0x08, 0x10
SCHED_FLAG_UTIL_CLAMP_MIN, SCHED_FLAG_UTIL_CLAMP_MAX = 0x20, 0x40
SCHED_FLAG_UTIL_CLAMP = SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX
SCHED_FLAG_ALL = 0x7F
SCHED_ATTR_SIZE_VER0, SCHED_ATTR_SIZE_VER1 = 48, 56
SCHED_CAPACITY_SCALE = 1024  # uclamp's range
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2
MIN_NICE, MAX_NICE = -20, 19
MAX_RT_PRIO = 100
RR_TIMESLICE_NS = 100_000_000  # Linux's default sched_rr_timeslice_ms
RLIMIT_NICE, RLIMIT_RTPRIO = 13, 14
PAGE_SIZE = 4096

_RT = (SCHED_FIFO, SCHED_RR)
_FAIR = (SCHED_NORMAL, SCHED_BATCH, SCHED_IDLE)
_VALID = (*_FAIR, *_RT, SCHED_DEADLINE)
# struct sched_attr (VER1): size, policy, flags, nice, priority, runtime,
# deadline, period, util_min, util_max.
_ATTR = struct.Struct("<IIQiIQQQII")
POLICY_NAMES = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE",
                6: "SCHED_DEADLINE"}
WHICH_NAMES = {0: "PRIO_PROCESS", 1: "PRIO_PGRP", 2: "PRIO_USER"}


@dataclass
class SchedState:
    """One task's scheduling attributes. Guarded by Kernel.lock when
    changed; read without it."""

    policy: int = SCHED_NORMAL
    priority: int = 0  # sched_priority: 1..99 under SCHED_FIFO/RR, else 0
    nice: int = 0  # -20..19
    reset_on_fork: bool = False
    util_min: int = 0
    util_max: int = SCHED_CAPACITY_SCALE


def state(t: Task) -> SchedState:
    """``t``'s SchedState, made on first use."""
    if t.sched is None:
        t.sched = SchedState()
    return t.sched


def inherit(parent: Task, child: Task) -> None:
    """clone: ``child`` starts with ``parent``'s attributes (Linux's
    sched_fork), reset if the parent asked for SCHED_RESET_ON_FORK."""
    s = parent.sched
    if s is None:
        return
    c = SchedState(s.policy, s.priority, s.nice, False, s.util_min, s.util_max)
    if s.reset_on_fork:
        if c.policy in _RT:
            c.policy, c.priority, c.nice = SCHED_NORMAL, 0, 0
        elif c.nice < 0:
            c.nice = 0
    child.sched = c


# --- who --------------------------------------------------------------------------------
def _task(t: Task, tid: int) -> Task:
    """The live thread ``tid`` (0: the caller); ESRCH if none."""
    if tid == 0:
        return t
    with t.kernel.lock:
        target = t.kernel.tasks.get(tid)
    if target is None or target.exited:
        raise SyscallError(errno.ESRCH)
    return target


def _privileged(t: Task) -> bool:
    return t.creds.euid == 0  # the guest's root holds CAP_SYS_NICE


def _may_change(t: Task, target: Task) -> bool:
    """Linux's set_one_prio_perm / check_same_owner."""
    c, tc = t.creds, target.creds
    return _privileged(t) or c.euid in (tc.uid, tc.euid)


def _rlimit_soft(target: Task, resource: int) -> int:
    """RLIMIT_NICE and RLIMIT_RTPRIO are 0 unless the guest set them."""
    return target.group.rlimits.get(resource, (0, 0))[0]


def _may_lower_nice(t: Task, target: Task, nice: int) -> bool:
    """Linux's can_nice: 20 - nice within RLIMIT_NICE, or privileged."""
    return _privileged(t) or 20 - nice <= _rlimit_soft(target, RLIMIT_NICE)


# --- sched_* ----------------------------------------------------------------------------
def sys_sched_get_priority_max(t: Task, policy: int) -> int:
    policy = s32(policy)
    if policy not in _VALID:
        raise SyscallError(errno.EINVAL)
    return MAX_RT_PRIO - 1 if policy in _RT else 0


def sys_sched_get_priority_min(t: Task, policy: int) -> int:
    policy = s32(policy)
    if policy not in _VALID:
        raise SyscallError(errno.EINVAL)
    return 1 if policy in _RT else 0


def sys_sched_getscheduler(t: Task, pid: int) -> int:
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    s = state(_task(t, pid))
    return s.policy | (SCHED_RESET_ON_FORK if s.reset_on_fork else 0)


def sys_sched_getparam(t: Task, pid: int, param: int) -> int:
    pid = s32(pid)
    if not param or pid < 0:
        raise SyscallError(errno.EINVAL)
    s = state(_task(t, pid))
    t.mm.write_u32(param, s.priority if s.policy in _RT else 0)
    return 0


def _set(t: Task, target: Task, policy: int | None, priority: int, nice: int | None, flags: int,
         util: tuple[int, int] | None = None) -> int:
    """Linux's __sched_setscheduler: ``policy`` None keeps the current one
    (and its reset-on-fork flag); ``nice`` None keeps the nice value;
    SCHED_FLAG_KEEP_PARAMS changes only the flags and utilization clamps."""
    s = state(target)
    if policy is None:
        policy, reset = s.policy, s.reset_on_fork
    else:
        reset = bool(flags & SCHED_FLAG_RESET_ON_FORK)
        if policy not in _VALID:
            raise SyscallError(errno.EINVAL)
    if flags & ~SCHED_FLAG_ALL:
        raise SyscallError(errno.EINVAL)
    if not 0 <= priority < MAX_RT_PRIO or (policy in _RT) != (priority != 0):
        raise SyscallError(errno.EINVAL)
    if util is not None and not util[0] <= util[1] <= SCHED_CAPACITY_SCALE:
        raise SyscallError(errno.EINVAL)
    if not _may_change(t, target):
        raise SyscallError(errno.EPERM)
    if not _privileged(t):  # Linux's user_check_sched_setscheduler
        if nice is not None and policy in _FAIR and nice < s.nice and not _may_lower_nice(t, target, nice):
            raise SyscallError(errno.EPERM)
        if policy in _RT:
            ceiling = _rlimit_soft(target, RLIMIT_RTPRIO)
            if policy != s.policy and not ceiling or priority > s.priority and priority > ceiling:
                raise SyscallError(errno.EPERM)
        if s.policy == SCHED_IDLE and policy != SCHED_IDLE and 20 - s.nice > _rlimit_soft(target, RLIMIT_NICE):
            raise SyscallError(errno.EPERM)
        if s.reset_on_fork and not reset:
            raise SyscallError(errno.EPERM)
    if policy == SCHED_DEADLINE:
        raise SyscallError(errno.EBUSY)  # never admitted (the caller checked its parameters)
    with t.kernel.lock:
        s.reset_on_fork = reset
        if not flags & SCHED_FLAG_KEEP_PARAMS:  # (as Linux: the policy stays too)
            s.policy, s.priority = policy, priority
            if nice is not None and policy in _FAIR:
                s.nice = nice
        if util is not None:
            s.util_min, s.util_max = util
    return 0


def _setscheduler(t: Task, pid: int, policy: int | None, param: int) -> int:
    pid = s32(pid)
    if not param or pid < 0:
        raise SyscallError(errno.EINVAL)
    priority = t.mm.read_u32(param)  # an int read as Linux's unsigned sched_priority: < 0 is out of range
    target = _task(t, pid)
    flags = 0
    if policy is not None and policy & SCHED_RESET_ON_FORK:
        flags, policy = SCHED_FLAG_RESET_ON_FORK, policy & ~SCHED_RESET_ON_FORK
    if policy == SCHED_DEADLINE:  # its runtime, deadline and period are zero here: invalid
        raise SyscallError(errno.EINVAL)
    return _set(t, target, policy, priority, None, flags)


def sys_sched_setscheduler(t: Task, pid: int, policy: int, param: int) -> int:
    policy = s32(policy)
    if policy < 0:
        raise SyscallError(errno.EINVAL)
    return _setscheduler(t, pid, policy, param)


def sys_sched_setparam(t: Task, pid: int, param: int) -> int:
    return _setscheduler(t, pid, None, param)


def sys_sched_rr_get_interval(t: Task, pid: int, addr: int) -> int:
    """SCHED_RR's time slice (Linux's default, 100 ms); 0 for SCHED_FIFO
    and, as on an idle Linux run queue, for the fair policies."""
    pid = s32(pid)
    if pid < 0:
        raise SyscallError(errno.EINVAL)
    ns = RR_TIMESLICE_NS if state(_task(t, pid)).policy == SCHED_RR else 0
    t.mm.copy_out(addr, timespec_bytes(ns))
    return 0


def sys_sched_setattr(t: Task, pid: int, addr: int, flags: int) -> int:
    pid = s32(pid)
    if not addr or pid < 0 or flags:
        raise SyscallError(errno.EINVAL)
    size = t.mm.read_u32(addr)
    size = size or SCHED_ATTR_SIZE_VER0
    if not SCHED_ATTR_SIZE_VER0 <= size <= PAGE_SIZE:
        t.mm.write_u32(addr, _ATTR.size)
        raise SyscallError(errno.E2BIG)
    raw = t.mm.copy_in(addr, size)
    if any(raw[_ATTR.size:]):  # a newer struct whose extra fields are set
        t.mm.write_u32(addr, _ATTR.size)
        raise SyscallError(errno.E2BIG)
    (_size, policy, sflags, nice, priority, runtime, deadline, period, util_min,
     util_max) = _ATTR.unpack(raw[:_ATTR.size].ljust(_ATTR.size, b"\0"))
    if sflags & SCHED_FLAG_UTIL_CLAMP and size < SCHED_ATTR_SIZE_VER1:
        raise SyscallError(errno.EINVAL)
    nice = max(MIN_NICE, min(MAX_NICE, nice))
    if s32(policy) < 0:
        raise SyscallError(errno.EINVAL)
    target = _task(t, pid)
    s = state(target)
    new_policy: int | None = None if sflags & SCHED_FLAG_KEEP_POLICY else policy
    if sflags & SCHED_FLAG_KEEP_PARAMS:
        priority, nice = (s.priority, s.nice)
    if new_policy == SCHED_DEADLINE and (not deadline or runtime > deadline or period and deadline > period):
        raise SyscallError(errno.EINVAL)
    util = None
    if sflags & SCHED_FLAG_UTIL_CLAMP:
        util = (util_min if sflags & SCHED_FLAG_UTIL_CLAMP_MIN else s.util_min,
                util_max if sflags & SCHED_FLAG_UTIL_CLAMP_MAX else s.util_max)
    return _set(t, target, new_policy, priority, nice, sflags & ~SCHED_FLAG_UTIL_CLAMP, util)


def sys_sched_getattr(t: Task, pid: int, addr: int, size: int, flags: int) -> int:
    pid, size = s32(pid), size & 0xFFFF_FFFF
    if not addr or pid < 0 or not SCHED_ATTR_SIZE_VER0 <= size <= PAGE_SIZE or flags:
        raise SyscallError(errno.EINVAL)
    s = state(_task(t, pid))
    out = min(size, _ATTR.size)
    rt = s.policy in _RT
    t.mm.copy_out(addr, _ATTR.pack(out, s.policy, SCHED_FLAG_RESET_ON_FORK if s.reset_on_fork else 0,
                                   0 if rt else s.nice, s.priority if rt else 0, 0, 0, 0,
                                   s.util_min, s.util_max)[:out])
    return 0


# --- nice -------------------------------------------------------------------------------
def _prio_targets(t: Task, which: int, who: int) -> list[Task]:
    """The live threads ``which``/``who`` names (Linux iterates threads:
    nice is per thread). EINVAL for an unknown ``which``."""
    kernel = t.kernel
    if which == PRIO_PROCESS:
        if who == 0:
            return [t]
        with kernel.lock:
            target = kernel.tasks.get(who)
        return [target] if target is not None and not target.exited else []
    with kernel.lock:
        tasks = [x for x in kernel.tasks.values() if not x.exited]
    if which == PRIO_PGRP:
        pgid = who or t.group.pgid
        return [x for x in tasks if x.group.pgid == pgid]
    if which == PRIO_USER:
        uid = who or t.creds.uid
        return [x for x in tasks if x.creds.uid == uid]
    raise SyscallError(errno.EINVAL)


def sys_getpriority(t: Task, which: int, who: int) -> int:
    """The highest priority among the targets, as 20 - nice (1..40)."""
    which, who = s32(which), who & 0xFFFF_FFFF if s32(which) == PRIO_USER else s32(who)
    targets = _prio_targets(t, which, who)
    if not targets:
        raise SyscallError(errno.ESRCH)
    return max(20 - state(x).nice for x in targets)


def sys_setpriority(t: Task, which: int, who: int, nice: int) -> int:
    """Set the nice value of every target, clamped to -20..19. As Linux's
    set_one_prio, each target the caller may not change is an error (EPERM,
    or EACCES to lower its nice) that the call returns; the others change."""
    which, who = s32(which), who & 0xFFFF_FFFF if s32(which) == PRIO_USER else s32(who)
    nice = max(MIN_NICE, min(MAX_NICE, s32(nice)))
    result = errno.ESRCH
    for target in _prio_targets(t, which, who):
        s = state(target)
        if not _may_change(t, target):
            result = errno.EPERM
        elif nice < s.nice and not _may_lower_nice(t, target, nice):
            result = errno.EACCES
        else:
            if result == errno.ESRCH:
                result = 0
            with t.kernel.lock:
                s.nice = nice
    if result:
        raise SyscallError(result)
    return 0


ENTRIES = entries(
    supported("sched_get_priority_max", sys_sched_get_priority_max, args=(Enum(POLICY_NAMES),)),
    supported("sched_get_priority_min", sys_sched_get_priority_min, args=(Enum(POLICY_NAMES),)),
    partial("sched_setscheduler", sys_sched_setscheduler, args=(Int, Enum(POLICY_NAMES), Ptr),
            note="recorded and reported, host scheduling unchanged; SCHED_DEADLINE never admitted"),
    partial("sched_setparam", sys_sched_setparam, args=(Int, Ptr), note="recorded, host scheduling unchanged"),
    supported("sched_getscheduler", sys_sched_getscheduler, args=(Int,)),
    supported("sched_getparam", sys_sched_getparam, args=(Int, Ptr)),
    supported("sched_rr_get_interval", sys_sched_rr_get_interval, args=(Int, OutStruct("timespec"))),
    partial("sched_setattr", sys_sched_setattr, args=(Int, Struct("sched_attr"), Hex),
            note="recorded, host scheduling unchanged; SCHED_DEADLINE never admitted"),
    supported("sched_getattr", sys_sched_getattr, args=(Int, Ptr, Size, Hex)),
    supported("getpriority", sys_getpriority, args=(Enum(WHICH_NAMES), Int)),
    partial("setpriority", sys_setpriority, args=(Enum(WHICH_NAMES), Int, Int),
            note="nice values recorded and reported, host scheduling unchanged"),
)
