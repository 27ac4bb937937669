"""Timers that fire signals: interval timers (alarm, setitimer), POSIX
timers (timer_create) and timerfd's clock, as trio tasks in the kernel's
loop.

In a nutshell:

- ``Timer`` counts wall time. Armed with (value, interval) in nanoseconds;
  re-arming or disarming cancels its trio task and starts a new one. Times
  are CLOCK_MONOTONIC based; a CLOCK_REALTIME or CLOCK_BOOTTIME deadline
  is converted once, when armed (the sandbox never steps its clocks). A
  periodic timer that falls behind (a short interval, a busy loop) fires
  once for all the expirations it missed and says how many (``counted``);
  it fires at most once per ``MIN_GAP_NS`` so a 1 ns interval cannot take
  the trio thread, as Linux re-arms such a timer only when its signal is
  delivered.
- ``CpuTimer`` counts a guest's CPU time (``sentry.kernel.cputime``):
  ITIMER_VIRTUAL (user time), ITIMER_PROF (user and system) and POSIX
  timers on CLOCK_PROCESS_CPUTIME_ID / CLOCK_THREAD_CPUTIME_ID. A task's
  times grow only when its thread comes back from ``Context.switch``, so
  while such a timer is armed a sampler task in the trio loop reads them
  every ``CPU_TICK_NS`` and interrupts (``Context.interrupt``) the running
  threads whose times did not move since the last tick, so a guest spinning
  in its own code reports its time too. Granularity: a CPU timer fires
  within about two ticks (8 ms) of CPU time after it is due, as Linux's
  tick-based CPU timers do within a jiffy or two; nothing samples while no
  CPU timer is armed.
- ``PosixTimer`` is timer_create's timer: a Timer or CpuTimer plus its
  signal, and the overrun count (timer_getoverrun, si_overrun): the
  expirations while its signal was still pending. A timer's signal is
  pending while the siginfo it queued (this exact ``bytes`` object) is
  among the target's pending siginfos; as on Linux (one sigqueue per
  timer) a timer has at most one instance queued, so each further
  expiration only adds to that siginfo's si_overrun. As on Linux (6.13
  and later) re-arming, disarming or deleting a timer drops its pending
  signal. POSIX timers are deleted at execve (``exec_timers``); interval
  timers survive it.

Lock order: Kernel.lock (held while a POSIX timer looks at its pending
signal).
"""
from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Callable

from sentry.kernel import signals as sig
from sentry.kernel.cputime import task_times
from sentry.kernel.wait import LOOP, cancel_scope

if TYPE_CHECKING:
    from sentry.kernel.kernel import Kernel
    from sentry.kernel.task import Task, ThreadGroup

MIN_GAP_NS = 100_000  # a periodic timer fires at most this often (the missed expirations are counted)
CPU_TICK_NS = 4_000_000  # how often armed CPU-time timers sample the guest's times (Linux's HZ=250 jiffy)
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID = 0, 1, 4
SI_TIMER = -2
DELAYTIMER_MAX = 0x7FFF_FFFF
_SIGINFO_TIMER = struct.Struct("<iiiiiiQ")  # signo, errno, code, pad, si_tid, si_overrun, si_value


class Timer:
    """A wall-clock timer. ``fire()`` runs in the trio thread at each
    expiration; with ``counted``, ``fire(n)`` runs once for ``n`` >= 1
    expirations and a false result stops the timer (its owner is gone)."""

    def __init__(self, fire: Callable, counted: bool = False):
        self._fire = fire
        self._counted = counted
        self._scope = None
        self._deadline = 0  # monotonic ns of the next expiry, 0 = disarmed
        self.interval = 0

    def remaining(self) -> tuple[int, int]:
        """(ns until the next expiry or 0 if disarmed, interval ns)."""
        if not self._deadline:
            return 0, self.interval
        return max(1, self._deadline - time.monotonic_ns()), self.interval

    def arm(self, value_ns: int, interval_ns: int) -> tuple[int, int]:
        """Arm (value 0 disarms); returns the previous ``remaining()``."""
        old = self.remaining()
        self.cancel()
        self.interval = interval_ns
        if value_ns:
            LOOP.token()  # the first timer starts the loop (it may take a while): count from after that
            self._deadline = time.monotonic_ns() + value_ns
            LOOP.start_soon(self._run, self._deadline)
        return old

    def cancel(self) -> None:
        self._deadline = 0
        scope, self._scope = self._scope, None
        cancel_scope(scope)

    async def _run(self, deadline: int) -> None:
        import trio

        with trio.CancelScope() as scope:
            if self._deadline != deadline:
                return
            self._scope = scope
            wake = deadline
            while True:
                await trio.sleep(max(0, wake - time.monotonic_ns()) / 1e9)
                if not self._counted:
                    self._fire()
                    if not self.interval:
                        self._deadline = 0
                        return
                    deadline += self.interval
                    self._deadline = wake = deadline
                    continue
                now = time.monotonic_ns()
                n = 1
                if self.interval:
                    n += max(0, now - deadline) // self.interval
                    deadline += n * self.interval
                    self._deadline = deadline
                else:
                    self._deadline = 0
                if not self._fire(n) or not self.interval:
                    self._deadline = 0
                    return
                wake = max(deadline, now + MIN_GAP_NS)


class CpuTimer:
    """A timer on a CPU-time clock: ``clock()`` gives the time counted (ns),
    ``tasks()`` the live tasks whose time it counts. ``fire(n)`` as a
    counted ``Timer``'s."""

    def __init__(self, clock: Callable[[], int], tasks: Callable[[], list["Task"]], fire: Callable[[int], bool]):
        self._clock = clock
        self._tasks = tasks
        self._fire = fire
        self._scope = None
        self._expires = 0  # clock() value of the next expiry, 0 = disarmed
        self._generation = 0
        self.interval = 0

    def remaining(self) -> tuple[int, int]:
        """(CPU ns until the next expiry or 0 if disarmed, interval ns)."""
        if not self._expires:
            return 0, self.interval
        return max(1, self._expires - self._clock()), self.interval

    def arm(self, value_ns: int, interval_ns: int) -> tuple[int, int]:
        """Arm (value 0 disarms); returns the previous ``remaining()``."""
        old = self.remaining()
        self.cancel()
        self.interval = interval_ns
        if value_ns:
            LOOP.token()
            self._expires = self._clock() + value_ns
            self._generation += 1
            LOOP.start_soon(self._run, self._generation)
        return old

    def cancel(self) -> None:
        self._expires = 0
        self._generation += 1
        scope, self._scope = self._scope, None
        cancel_scope(scope)

    async def _run(self, generation: int) -> None:
        import trio

        with trio.CancelScope() as scope:
            if self._generation != generation:
                return
            self._scope = scope
            seen: dict[int, int] = {}  # tid -> its times at the last tick
            while True:
                await trio.sleep(CPU_TICK_NS / 1e9)
                tasks = self._tasks()
                expires = self._expires
                if not expires or not tasks:  # disarmed, or nobody left whose time could move the clock
                    return
                now = self._clock()
                if now >= expires:
                    n = 1
                    if self.interval:
                        n += (now - expires) // self.interval
                        self._expires = expires + n * self.interval
                    else:
                        self._expires = 0
                    if not self._fire(n) or not self.interval:
                        self._expires = 0
                        return
                for t in tasks:
                    times = t.user_ns + t.sys_ns
                    if seen.get(t.tid) == times and not t.parked and not t.exited:
                        try:
                            t.context.interrupt()  # in guest code since the last tick: make it count
                        except Exception:  # noqa: BLE001 - exiting as we looked: its time is final
                            pass
                    seen[t.tid] = times


# ------------------------------------------------------------- CPU clocks

def group_cpu_ns(group: "ThreadGroup", user_only: bool = False) -> int:
    """The process's CPU time so far (its exited threads' and its live
    ones'), user time only or user and system; cheaper than
    ``cputime.group_times`` (no resident-size walk)."""
    done = group.exited_times
    total = done.user_ns if user_only else done.user_ns + done.sys_ns
    for t in list(group.tasks):
        times = task_times(t)
        total += times.user_ns if user_only else times.user_ns + times.sys_ns
    return total


def thread_cpu_ns(task: "Task") -> int:
    times = task_times(task)
    return times.user_ns + times.sys_ns


def live_tasks(group: "ThreadGroup") -> Callable[[], list["Task"]]:
    return lambda: list(group.tasks)


# ------------------------------------------------------------- POSIX timers

class PosixTimer:
    """One timer_create timer of ``group``: its clock's timer, the signal
    it sends (``notify`` SIGEV_SIGNAL, SIGEV_THREAD_ID to ``target`` or
    SIGEV_NONE) and its overrun counts."""

    def __init__(self, kernel: "Kernel", group: "ThreadGroup", timer_id: int, now: Callable[[], int], signo: int,
                 notify: int, value: int, target: "Task | None", cpu_tasks: Callable[[], list["Task"]] | None = None):
        """``now()``: the timer's clock in ns (for TIMER_ABSTIME); with
        ``cpu_tasks`` it is a CPU-time clock counting those tasks' time."""
        self.kernel = kernel
        self.group = group
        self.id = timer_id
        self.now = now
        self.signo = signo
        self.notify = notify
        self.value = value
        self.target = target
        self.timer: Timer | CpuTimer = (Timer(self._fire, counted=True) if cpu_tasks is None
                                        else CpuTimer(now, cpu_tasks, self._fire))
        self._info: bytes | None = None  # the siginfo last queued; guarded by Kernel.lock
        self._overrun = 0  # of that signal: expirations since it was queued
        self._last = 0  # of the signal delivered before it (timer_getoverrun while it is pending)

    def _holder(self):
        return self.target if self.target is not None else self.group

    def _locate(self):
        """Where this timer's last signal waits, if it is still queued:
        (table, key) with ``table[key]`` that very siginfo (the holder's
        ``siginfo`` dict, or the deque of real-time instances queued behind
        another one), else None. Kernel.lock held."""
        info = self._info
        if info is None:
            return None
        holder = self._holder()
        if holder.siginfo.get(self.signo) is info:
            return holder.siginfo, self.signo
        later = getattr(holder, "queued", {}).get(self.signo)
        for i, queued in enumerate(later or ()):
            if queued is info:
                return later, i
        return None

    def _pending(self) -> bool:
        """Whether this timer's last signal is still queued. Kernel.lock held."""
        return self._locate() is not None

    def _pack(self, overrun: int) -> bytes:
        return _SIGINFO_TIMER.pack(self.signo, 0, SI_TIMER, 0, self.id, min(overrun, DELAYTIMER_MAX),
                                   self.value).ljust(sig.SIGINFO_SIZE, b"\0")

    def _fire(self, n: int) -> bool:
        group, kernel = self.group, self.kernel
        if group.zombie or group.exit_status is not None:
            return False
        if self.notify == SIGEV_NONE:
            return True
        with kernel.lock:
            where = self._locate()
            if where is not None:  # one instance at most per timer: count the expirations in it
                table, key = where
                self._overrun += n
                self._info = table[key] = self._pack(self._overrun)
                return True
            if self._info is not None:
                self._last = self._overrun  # that signal was delivered with this count
            self._overrun = n - 1
            self._info = info = self._pack(self._overrun)
        sig.send(kernel, group, self.signo, info, task=self.target)
        return True

    def overrun(self) -> int:
        """timer_getoverrun: the overrun count of the last signal delivered."""
        with self.kernel.lock:
            count = self._last if self._pending() else self._overrun if self._info is not None else 0
        return min(count, DELAYTIMER_MAX)

    def _drop_pending(self) -> None:
        """Forget this timer's queued signal, if it is still pending."""
        with self.kernel.lock:
            where = self._locate()
            if where is not None:
                table, key = where
                holder = self._holder()
                if table is not holder.siginfo:  # behind another instance of the signal
                    del table[key]
                    if not table:
                        del holder.queued[self.signo]
                elif hasattr(holder, "take"):  # the next instance queued, if any, moves up
                    holder.take(self.signo)
                else:
                    del table[key]
                    holder.pending &= ~sig.bit(self.signo)
            self._info = None
            self._overrun = self._last = 0

    def arm(self, value_ns: int, interval_ns: int) -> tuple[int, int]:
        """timer_settime: returns the previous (remaining, interval)."""
        prev = self.timer.remaining()
        self.timer.cancel()  # first: no expiration may queue a signal after the drop
        self._drop_pending()
        self.timer.arm(value_ns, interval_ns)
        return prev

    def delete(self) -> None:
        self.timer.cancel()
        self._drop_pending()


def posix_timers(group: "ThreadGroup") -> dict[int, PosixTimer]:
    """``group``'s POSIX timers by id."""
    return group.posix_timers


def new_timer_id(group: "ThreadGroup") -> int:
    """The next free timer id: as Linux, ids count up from 0 per process
    (not reused at once after timer_delete; kept across execve), wrapping
    at INT_MAX."""
    timers = posix_timers(group)
    next_id = group.next_timer_id
    while next_id in timers:
        next_id = (next_id + 1) & 0x7FFF_FFFF
    group.next_timer_id = (next_id + 1) & 0x7FFF_FFFF
    return next_id


def exec_timers(group: "ThreadGroup") -> None:
    """execve: the process's POSIX timers are deleted (their pending signals
    with them); alarm and setitimer's timers go on in the new program."""
    timers = group.posix_timers
    if timers:
        for timer in list(timers.values()):
            timer.delete()
        timers.clear()
