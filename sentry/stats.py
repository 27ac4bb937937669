"""`sentry run --stats`: totals of one sandbox's run — system calls, faults,
signals — and where the time went: guest, platform switch, Sentry.

In a nutshell: when ``Config.stats`` is set, the run loop
(``sentry.kernel.run``) drives each task through a ``TimedContext`` that
wraps ``Context.switch`` and ``signals.deliver``; without it the loop is
unchanged. Each TimedContext belongs to one task thread and is written
by that thread only; ``Stats`` sums them when the sandbox has ended
(``Kernel.close``), so counting takes no lock.

The time split, summed over task threads:

- *in switch*: wall time inside ``Context.switch`` = guest + platform
  switch (measured exactly).
- *guest*: host CPU time charged to guest code: the user time of the stub
  processes (ptrace, vmexec; reaped by the time of the report), plus KVM
  guest time (``/proc/self/stat`` field 43). An estimate at clock-tick
  resolution; on vmexec it includes the stubs' spin-waits, so it is capped
  at *in switch*.
- *platform switch*: *in switch* minus *guest*.
- *Sentry*: CPU time of the task threads outside ``switch`` (handlers,
  signal delivery, memory management), minus the cost of reading that
  clock (calibrated once).
- *waiting*: wall time outside ``switch`` that was not Sentry CPU: guest
  calls blocked in the Sentry (sleeps, futexes, pipes, wait4).

Counting costs two thread-CPU-clock reads per switch (about 1 µs here);
the run without ``--stats`` pays nothing.
"""
from __future__ import annotations

import os
import resource
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from platforms.base import EventKind
from sentry.kernel import signals

if TYPE_CHECKING:
    from sentry.kernel.task import Task

_SYSCALL, _SIGNAL = EventKind.SYSCALL, EventKind.SIGNAL
_TICK = os.sysconf("SC_CLK_TCK")


class TimedContext:
    """Counts and times one task's switches. Used by its task thread only."""

    __slots__ = ("_switch", "_regs_of", "_task", "syscalls", "faults", "signals", "switches",
                 "in_switch_ns", "outside_ns", "sentry_cpu_ns", "_wall", "_cpu")

    def __init__(self, task: Task):
        self._switch = task.context.switch
        self._task = task
        self.syscalls: Counter[int] = Counter()
        self.faults: Counter[int] = Counter()  # by signal number
        self.signals: Counter[int] = Counter()  # delivered to the guest, by number
        self.switches = 0
        self.in_switch_ns = self.outside_ns = self.sentry_cpu_ns = 0
        self._wall = time.perf_counter_ns()
        self._cpu = time.thread_time_ns()

    def switch(self, space: Any, arch: Any) -> EventKind:
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        try:
            kind = self._switch(space, arch)
        finally:
            t1 = time.perf_counter_ns()
            self.sentry_cpu_ns += c0 - self._cpu
            self.outside_ns += t0 - self._wall
            self.in_switch_ns += t1 - t0
            self.switches += 1
            self._wall = t1
            self._cpu = time.thread_time_ns()
        if kind is _SYSCALL:
            self.syscalls[arch.regs.orig_rax] += 1
        elif kind is _SIGNAL:
            self.faults[self._task.context.signal_info.signo] += 1
        return kind

    def deliver(self, task: Task, syscall_result: int | None) -> None:
        """``signals.deliver``, counting the signals it takes off the queue
        (each one is delivered: to a handler, ignored, or fatal)."""
        before = task.pending | task.group.pending
        try:
            signals.deliver(task, syscall_result)
        finally:
            taken = before & ~(task.pending | task.group.pending)
            while taken:
                low = taken & -taken
                self.signals[low.bit_length()] += 1
                taken ^= low


class Stats:
    """One sandbox's counters. ``context(task)`` is what the run loop uses; ``report`` is called once, after every stub is reaped."""

    def __init__(self, platform: str):
        self.platform = platform
        self._lock = threading.Lock()
        self._contexts: list[TimedContext] = []  # guarded by _lock
        self._start_wall = time.perf_counter_ns()
        self._start_children = _children_user_ns()
        self._start_guest = _kvm_guest_ns()
        self._clock_cost = _thread_clock_cost_ns()

    def context(self, task: Task) -> TimedContext:
        """A TimedContext for ``task``, to be switched by its thread only."""
        timed = TimedContext(task)
        with self._lock:
            self._contexts.append(timed)
        return timed

    def totals(self) -> dict[str, Any]:
        """Every figure, as one JSON-able dict (times in seconds)."""
        with self._lock:
            contexts = list(self._contexts)
        syscalls: Counter[int] = Counter()
        faults: Counter[int] = Counter()
        sigs: Counter[int] = Counter()
        for c in contexts:
            syscalls.update(c.syscalls)
            faults.update(c.faults)
            sigs.update(c.signals)
        switches = sum(c.switches for c in contexts)
        in_switch = sum(c.in_switch_ns for c in contexts)
        outside = sum(c.outside_ns for c in contexts)
        sentry = max(0, sum(c.sentry_cpu_ns for c in contexts) - 2 * switches * self._clock_cost)
        guest = (_children_user_ns() - self._start_children) + (_kvm_guest_ns() - self._start_guest)
        guest = min(max(guest, 0), in_switch)
        from abi.sysnr import NAMES

        return {
            "platform": self.platform,
            "tasks": len(contexts),
            "wall_s": (time.perf_counter_ns() - self._start_wall) / 1e9,
            "switches": switches,
            "syscalls": sum(syscalls.values()),
            "syscalls_by_name": {NAMES.get(nr, str(nr)): n for nr, n in syscalls.most_common()},
            "faults": sum(faults.values()),
            "faults_by_signal": {_signame(s): n for s, n in faults.most_common()},
            "signals": sum(sigs.values()),
            "signals_by_name": {_signame(s): n for s, n in sigs.most_common()},
            "time_s": {"guest": guest / 1e9, "platform_switch": (in_switch - guest) / 1e9,
                       "sentry": sentry / 1e9, "waiting": max(0, outside - sentry) / 1e9},
        }

    def report(self, out: TextIO) -> None:
        """Print the totals, a few lines, to ``out``."""
        t = self.totals()

        def top(counts: dict[str, int], n: int = 6) -> str:
            items = list(counts.items())
            text = ", ".join(f"{k} {v}" for k, v in items[:n])
            return f"  ({text}{', ...' if len(items) > n else ''})" if items else ""

        times = t["time_s"]
        print(f"sentry stats: platform {t['platform']}, {t['tasks']} tasks, {t['switches']} switches, "
              f"{t['wall_s']:.3f} s wall\n"
              f"  system calls {t['syscalls']:>9}{top(t['syscalls_by_name'])}\n"
              f"  faults       {t['faults']:>9}{top(t['faults_by_signal'])}\n"
              f"  signals      {t['signals']:>9}{top(t['signals_by_name'])}\n"
              f"  time (s)     guest {times['guest']:.3f}   platform switch {times['platform_switch']:.3f}   "
              f"Sentry {times['sentry']:.3f}   waiting {times['waiting']:.3f}",
              file=out, flush=True)


def _signame(signo: int) -> str:
    import signal

    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"SIG{signo}"


def _children_user_ns() -> int:
    """User CPU time of reaped child processes (the stubs), in ns."""
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime * 1e9)


def _kvm_guest_ns() -> int:
    """This process's guest time (KVM), in ns; 0 where not reported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[40]) * 1_000_000_000 // _TICK  # field 43 counted from 1, after "pid (comm)"
    except (OSError, IndexError, ValueError):
        return 0


def _thread_clock_cost_ns(n: int = 2000) -> int:
    """What one ``time.thread_time_ns()`` costs here, in thread CPU time."""
    read = time.thread_time_ns
    c0 = read()
    for _ in range(n):
        read()
    return (read() - c0) // (n + 1)
