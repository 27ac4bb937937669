"""Where tasks wait: the kernel's trio loop.

In a nutshell: task threads never block on their own. A handler that must
wait (a pipe read, futex, wait4, a sleep) calls ``wait_until(task,
queues, ready, timeout)``: the task thread hops into the kernel's trio loop
(one thread, started on first use, so a program that never blocks never
imports trio), which parks it on trio Events registered with each
``WaitQueue``, under a cancel scope. Whoever changes a condition calls
``queue.notify()``; a signal aimed at the task cancels the scope
(``interrupt``), and the wait ends with ERESTARTSYS for the run loop to
turn into EINTR or a restart (SA_RESTART).

Why this is race-free without a lock: a waiter registers its Event *then*
checks ``ready()`` (in the trio thread); a notifier changes the condition
*then* looks for registered Events. Under the GIL one of the two always
sees the other.

Cost: a hop costs ~80-120 µs here, so ``notify`` only queues a wake-up
when a waiter is registered, a waiter first looks again for SPIN_NS
(yielding the GIL) before parking, and nothing on the system-call fast
path touches trio.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable

from sentry.errors import SyscallError

if TYPE_CHECKING:
    from sentry.kernel.task import Task

ERESTARTSYS = 512  # Linux's internal errno: restart if SA_RESTART, else EINTR
SHORT_SLEEP_NS = 1_000_000
SPIN_NS = 200_000  # how long a waiter looks again before parking in trio
ERESTARTNOHAND = 514  # restart only if no handler runs, else EINTR (sleeps, pause)
ERESTART_RESTARTBLOCK = 516  # as ERESTARTNOHAND, but resumed by restart_syscall: task.restart_block


class _Loop:
    """The trio loop thread, started on first use."""

    def __init__(self) -> None:
        self._token = None
        self._nursery = None
        self._lock = threading.Lock()

    def token(self):
        if self._token is None:
            with self._lock:
                if self._token is None:
                    self._start()
        return self._token

    def _start(self) -> None:
        import trio

        ready = threading.Event()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                ready.set()
                await trio.sleep_forever()

        threading.Thread(target=trio.run, args=(main,), name="sentry-trio", daemon=True).start()
        ready.wait()

    def run(self, afn, *args):
        import trio

        return trio.from_thread.run(afn, *args, trio_token=self.token())

    def run_sync(self, fn, *args):
        import trio

        return trio.from_thread.run_sync(fn, *args, trio_token=self.token())

    def start_soon(self, afn, *args) -> None:
        """Run ``afn(*args)`` as a background trio task (timers)."""
        self.token()
        self.run_sync(self._nursery.start_soon, afn, *args)

    def in_loop(self) -> bool:
        return threading.current_thread().name == "sentry-trio"


LOOP = _Loop()


class WaitQueue:
    """Tasks waiting for some condition to change."""

    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: set = set()  # trio Events; touched only in the trio thread

    def notify(self) -> None:
        """Wake every waiter (each rechecks its condition). Cheap when none,
        and it never waits for the trio thread: the wake-up is queued."""
        if self._events:
            if LOOP.in_loop():
                self._wake()
            else:
                LOOP.token().run_sync_soon(self._wake)

    def _wake(self) -> None:
        for ev in list(self._events):
            ev.set()


def wait_until(task: "Task", queues: Iterable[WaitQueue], ready: Callable[[], bool],
               timeout_ns: int | None = None, interruptible: bool = True) -> bool:
    """Block ``task`` until ``ready()`` is true (True) or the timeout passes
    (False). Raises SyscallError(ERESTARTSYS) if a signal interrupts it.
    ``ready`` runs in the trio thread: it must only look, never block."""
    if ready():
        return True
    if timeout_ns is not None and timeout_ns <= 0:
        return False
    if interruptible and task.signal_pending():
        raise SyscallError(ERESTARTSYS)
    if timeout_ns is None or timeout_ns > SPIN_NS:
        # Most waits end within a peer's system call or two: look again for a
        # moment, yielding the GIL, before paying two hops through trio.
        deadline = time.monotonic_ns() + SPIN_NS
        while time.monotonic_ns() < deadline:
            time.sleep(0)
            if ready():
                return True
            if interruptible and task.signal_pending():
                raise SyscallError(ERESTARTSYS)
        if timeout_ns is not None:
            timeout_ns -= SPIN_NS
    parked = time.perf_counter_ns()
    task.parked = "S" if interruptible else "D"  # what /proc/PID/stat shows (sentry.fs.proc)
    try:
        return LOOP.run(_wait, task, list(queues), ready, timeout_ns, interruptible)
    finally:
        task.parked = ""
        task.sys_ns -= time.perf_counter_ns() - parked  # not running (sentry.kernel.cputime)


async def _wait(task: "Task", queues: list[WaitQueue], ready, timeout_ns, interruptible) -> bool:
    import trio

    with trio.CancelScope() as scope:
        if interruptible:
            task.wait_scope = scope
            if task.signal_pending():
                scope.cancel()
        try:
            with trio.move_on_after(timeout_ns / 1e9 if timeout_ns is not None else float("inf")):
                while True:
                    ev = trio.Event()
                    for q in queues:
                        q._events.add(ev)
                    try:
                        if ready():
                            return True
                        await ev.wait()
                    finally:
                        for q in queues:
                            q._events.discard(ev)
            return ready()
        finally:
            task.wait_scope = None
    raise SyscallError(ERESTARTSYS)  # the scope was cancelled: a signal


def cancel_scope(scope) -> None:
    """Cancel a trio cancel scope of the loop (None: nothing), from any
    thread."""
    if scope is not None:
        if LOOP.in_loop():
            scope.cancel()
        else:
            LOOP.run_sync(scope.cancel)


def interrupt_wait(task: "Task") -> None:
    """Cancel ``task``'s wait, if it is in one (callable from any thread)."""
    cancel_scope(task.wait_scope)


def sleep(task: "Task", ns: int) -> None:
    """Sleep ``ns`` nanoseconds; ERESTARTNOHAND if a signal comes first.
    Sleeps shorter than the hop into the trio loop happen on the task's own
    thread (a signal then waits for the end of that sleep)."""
    if ns <= SHORT_SLEEP_NS:
        parked = time.perf_counter_ns()
        task.parked = "S"
        time.sleep(max(ns, 0) / 1e9)
        task.parked = ""
        task.sys_ns -= time.perf_counter_ns() - parked
        return
    try:
        wait_until(task, (), lambda: False, ns)
    except SyscallError as e:
        raise SyscallError(ERESTARTNOHAND) from e
