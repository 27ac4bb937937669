"""CPU time of guest tasks: what getrusage, times, wait4 and /proc/PID/stat
report.

In a nutshell, as gVisor does it (``kernel/task_sched.go``): a task's time
is the wall time its thread spends in each state, not a host clock of the
stub, so it means the same on every platform.

- *user*: time inside ``Context.switch``: the guest running, plus the
  platform's trap into the Sentry and back (what a hardware kernel's entry
  and exit would cost the guest too).
- *system*: time on the task's thread outside ``switch`` — the Sentry
  handling the guest's calls and faults — less the time it is parked
  (``sentry.kernel.wait``: a blocked call is not running).

The run loop (``sentry.kernel.run``) adds to ``Task.user_ns`` and
``Task.sys_ns`` with two ``perf_counter_ns`` reads per switch (~0.1 µs);
``wait`` subtracts parked time from ``sys_ns``. A task's totals fold into
its thread group when the task exits (``fold_exited_task``) and a group's
totals, its own children's included, into its parent's children totals
when the parent reaps it (``fold_reaped_child``), as Linux's
``wait_task_zombie`` does; an auto-reaped child (SIGCHLD ignored) adds
nothing. Readers in other threads see ints the GIL keeps whole.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentry.kernel.task import Task, ThreadGroup

RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1
CLK_TCK = 100  # AT_CLKTCK and sysconf(_SC_CLK_TCK) in the sandbox
_NS_PER_TICK = 1_000_000_000 // CLK_TCK


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system time in nanoseconds; peak resident memory in bytes
    (sums add the times and keep the larger peak, as Linux's cmaxrss)."""

    user_ns: int = 0
    sys_ns: int = 0
    maxrss: int = 0

    def __add__(self, other: "CpuTimes") -> "CpuTimes":
        return CpuTimes(self.user_ns + other.user_ns, self.sys_ns + other.sys_ns,
                        max(self.maxrss, other.maxrss))

    def ticks(self) -> tuple[int, int]:
        """(user, system) in clock ticks, as times(2) and /proc count them."""
        return self.user_ns // _NS_PER_TICK, self.sys_ns // _NS_PER_TICK

    def rusage(self) -> bytes:
        """A ``struct rusage`` (144 bytes): the times and ru_maxrss in KiB; the
        counters the Sentry does not keep are zero."""
        return struct.pack("<4q14q", *_timeval(self.user_ns), *_timeval(self.sys_ns), self.maxrss >> 10,
                           *([0] * 13))


def _timeval(ns: int) -> tuple[int, int]:
    return ns // 1_000_000_000, ns % 1_000_000_000 // 1000


def task_times(task: "Task") -> CpuTimes:
    """``task``'s own times so far (RUSAGE_THREAD)."""
    return CpuTimes(task.user_ns, max(task.sys_ns, 0))


def group_times(group: "ThreadGroup") -> CpuTimes:
    """The process's times: its exited threads and its live ones
    (RUSAGE_SELF)."""
    total = group.exited_times
    for task in list(group.tasks):
        total += task_times(task)
    mm = group.tasks[0].mm if group.tasks else None
    return replace(total, maxrss=max(total.maxrss, mm.resident() if mm is not None else 0))


def fold_exited_task(task: "Task") -> None:
    """Add an exiting task's times to its group. Call before its address
    space is dropped (the group's last resident size is taken here)."""
    group = task.group
    mm = task.mm
    group.exited_times += replace(task_times(task), maxrss=mm.resident() if mm is not None else 0)


def fold_reaped_child(parent: "ThreadGroup", child: "ThreadGroup") -> None:
    """``parent`` reaped the zombie ``child``: its times, and those of the
    children it reaped, count as the parent's children's."""
    parent.children_times += child.exited_times + child.children_times
