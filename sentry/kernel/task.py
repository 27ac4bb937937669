"""Tasks (guest threads) and thread groups (guest processes).

A Task is driven by one OS thread for its whole life (see run.py): the
platform Context it switches is bound to that thread. Fields marked
"shared" are objects a clone may share between tasks (CLONE_VM, CLONE_FILES,
CLONE_FS, CLONE_SIGHAND); everything else is the task's own.
"""
from __future__ import annotations

import os
import resource
import signal as _signal
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from sentry.kernel.cputime import CpuTimes

if TYPE_CHECKING:
    from platforms.base import ArchState, Context
    from sentry.fs.fdtable import FDTable
    from sentry.fs.context import FSContext
    from sentry.kernel.kernel import Kernel
    from sentry.mm.mm import MemoryManager


_CORE_SIGNALS = frozenset({_signal.SIGQUIT, _signal.SIGILL, _signal.SIGTRAP, _signal.SIGABRT, _signal.SIGBUS,
                           _signal.SIGFPE, _signal.SIGSEGV, _signal.SIGSYS, _signal.SIGXCPU, _signal.SIGXFSZ})


RLIMIT_CORE = 4
RLIM_INFINITY = (1 << 64) - 1


def killed_status(signo: int, group: "ThreadGroup | None" = None) -> int:
    """wait(2) status of ``group`` killed by ``signo``: the core bit
    (WCOREDUMP) only for a signal whose default action dumps core and a
    process whose RLIMIT_CORE soft limit is not zero (Linux sets it when a
    core was written, and none is with a zero limit)."""
    core = signo in _CORE_SIGNALS and group is not None and group.rlimits.get(RLIMIT_CORE, (0, 0))[0] != 0
    return signo | (0x80 if core else 0)


def _host_rlimit(which: int) -> tuple[int, int]:
    """The Sentry's own limit (what the host gave the sandbox), as the
    guest sees it: RLIM_INFINITY is all ones."""
    soft, hard = resource.getrlimit(which)
    unlimited = resource.RLIM_INFINITY
    return (RLIM_INFINITY if soft == unlimited else soft, RLIM_INFINITY if hard == unlimited else hard)


@dataclass
class Credentials:
    uid: int = field(default_factory=os.getuid)
    euid: int = field(default_factory=os.geteuid)
    suid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    egid: int = field(default_factory=os.getegid)
    sgid: int = field(default_factory=os.getgid)
    groups: tuple[int, ...] = ()


@dataclass
class SigAction:
    handler: int = 0  # SIG_DFL = 0, SIG_IGN = 1, else a guest address
    flags: int = 0
    restorer: int = 0
    mask: int = 0


SIGRTMIN = 32  # the kernel's first real-time signal: 32..64 queue each instance, 1..31 coalesce
# Fault signals: dequeued before any other (Linux's SYNCHRONOUS_MASK in next_signal).
SYNCHRONOUS = sum(1 << (s - 1) for s in (_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGTRAP,
                                         _signal.SIGFPE, _signal.SIGSYS))


class SigPending:
    """Pending signals of a thread (thread-directed) or of a thread group
    (process-directed): Linux's struct sigpending.

    ``pending`` is the set (bit signo-1), the one test the run loop makes.
    ``siginfo`` holds the siginfo_t the next take of each pending signal
    returns, ``queued`` the later instances of a real-time signal, oldest
    first: a standard signal (1-31) coalesces (the first siginfo stays), a
    real-time one (32-64) queues every instance. A signal may be pending
    with no siginfo (the Sentry set its bit, e.g. SIGKILL; or
    RLIMIT_SIGPENDING was reached, as kill() may): the taker makes one up.

    Guarded by Kernel.lock. Change it through these methods; setting a bit
    of ``pending`` alone is fine (a signal without siginfo), and so is
    replacing the ``siginfo`` entry of a pending signal (a POSIX timer
    updating si_overrun: sentry.kernel.timers)."""

    pending: int
    siginfo: dict[int, bytes]
    queued: dict[int, deque[bytes]]

    def enqueue(self, signo: int, info: bytes | None) -> None:
        """Make ``signo`` pending with ``info`` (None: no siginfo). A
        standard signal already pending is left as it is."""
        bit = 1 << (signo - 1)
        if not self.pending & bit:  # stale entries of a bit cleared directly: dropped
            self.siginfo.pop(signo, None)
            self.queued.pop(signo, None)
        elif signo < SIGRTMIN:
            return
        self.pending |= bit
        if info is None:
            return
        if signo not in self.siginfo:
            self.siginfo[signo] = info
        else:
            self.queued.setdefault(signo, deque()).append(info)

    def take(self, signo: int) -> bytes | None:
        """Remove the oldest instance of pending ``signo``; its siginfo
        (None if it has none). The signal stays pending while real-time
        instances remain queued."""
        info = self.siginfo.pop(signo, None)
        later = self.queued.get(signo)
        if later:
            self.siginfo[signo] = later.popleft()
            if not later:
                del self.queued[signo]
        else:
            self.pending &= ~(1 << (signo - 1))
        return info

    def discard(self, mask: int) -> None:
        """Drop every pending signal in ``mask`` with all its instances."""
        self.pending &= ~mask
        for table in (self.siginfo, self.queued):
            for signo in [s for s in table if mask >> (s - 1) & 1]:
                del table[signo]

    def count_queued(self) -> int:
        """How many siginfos are queued (what RLIMIT_SIGPENDING counts)."""
        return len(self.siginfo) + sum(map(len, self.queued.values()))


def next_signal(ready: int) -> int:
    """The signal of the set ``ready`` (non-empty) to take first: the
    lowest, a fault signal before any other (Linux's next_signal)."""
    if ready & SYNCHRONOUS:
        ready &= SYNCHRONOUS
    return (ready & -ready).bit_length()


def dequeue_signal(task: "Task", mask: int) -> tuple[int, bytes | None] | None:
    """Take the next pending signal of ``task`` in ``mask``: its own
    (thread-directed) first, then its process's, as Linux's dequeue_signal.
    Returns (signo, siginfo or None) or None. Caller holds Kernel.lock."""
    for holder in (task, task.group):
        ready = holder.pending & mask
        if ready:
            signo = next_signal(ready)
            return signo, holder.take(signo)
    return None


class ThreadGroup(SigPending):
    """A guest process: its pid (the leader's tid), its parent, signal
    dispositions, credentials and the path of the program it runs.

    Guarded by Kernel.lock: tasks, children, parent, exit_status, zombie,
    pending, execing. Lifecycle: live → exiting (exit_status set, tasks being torn
    down) → zombie (no tasks left, waiting for its parent's wait4) → reaped.
    """

    def __init__(self, pid: int, parent: "ThreadGroup | None", exe: str):
        from sentry.kernel.wait import WaitQueue

        self.pid = pid
        self.parent = parent
        self.exe = exe  # path inside the sandbox, for /proc/self/exe
        self.execed = False  # it exec'd since its fork (Linux: no PF_FORKNOEXEC): setpgid on it is EACCES
        self.execing: Task | None = None  # the thread exec'ing: the others end silently (Kernel._de_thread)
        self.pgid = parent.pgid if parent else pid
        self.sid = parent.sid if parent else pid
        self.creds = Credentials() if parent is None else Credentials(**vars(parent.creds))
        self.sigactions: list[SigAction] = [SigAction() for _ in range(65)]  # shared by CLONE_SIGHAND
        self.tasks: list[Task] = []
        self.children: list[ThreadGroup] = []
        self.exit_status: int | None = None  # wait(2) status once exiting
        self.zombie = False
        self.exit_signal = 17  # SIGCHLD: sent to the parent at exit
        self.pending = 0  # process-directed signals (bitmask, bit signo-1)
        self.siginfo: dict[int, bytes] = {}  # of the pending signals (SigPending)
        self.queued: dict[int, deque[bytes]] = {}  # later real-time instances (SigPending)
        self.child_events = WaitQueue()  # a child exited, stopped or continued (wait4 waits here)
        self.stopped = False  # job-control stop (SIGSTOP...) until SIGCONT
        self.stop_report: int | None = None  # the stop signal, until a WUNTRACED wait reports it
        self.continued_report = False  # until a WCONTINUED wait reports it
        self.resume = WaitQueue()  # stopped tasks wait here for SIGCONT
        self.signal_listeners: list = []  # called after a signal becomes pending (signalfd readiness)
        # Set or inherited limits; the others are sentry.syscalls.process's defaults. RLIMIT_CORE
        # starts as the host's (commonly 0), as a program run natively would see it.
        self.rlimits: dict[int, tuple[int, int]] = (
            dict(parent.rlimits) if parent else {RLIMIT_CORE: _host_rlimit(resource.RLIMIT_CORE)})
        self.start_ns = 0
        self.exited_times = CpuTimes()  # of its exited tasks (sentry.kernel.cputime)
        self.children_times = CpuTimes()  # of the children it reaped, and theirs
        self.child_subreaper = False  # prctl(PR_SET_CHILD_SUBREAPER): orphans below it come here
        self.posix_timers: dict = {}  # timer_create's, by id (sentry.kernel.timers.PosixTimer)
        self.next_timer_id = 0  # the next id timer_create tries
        self.cpu_clock_seen = [0, 0, 0]  # highest CPU-clock readings given out (sentry.syscalls.time)


class Task(SigPending):
    """One guest thread."""

    def __init__(self, kernel: "Kernel", tid: int, group: ThreadGroup, mm: "MemoryManager",
                 fds: "FDTable", fs: "FSContext", arch: "ArchState", context: "Context"):
        self.kernel = kernel
        self.tid = tid
        self.group = group
        self.mm = mm  # shared
        self.fds = fds  # shared
        self.fs = fs  # shared
        self.arch = arch
        self.context = context
        self.comm: bytes = b""  # at most 15 bytes, as in prctl(PR_SET_NAME)
        self.signal_mask = 0
        self.real_blocked = 0  # the mask rt_sigtimedwait lifted for its wait (Linux's real_blocked)
        self.pending = 0  # thread-directed signals (bitmask, bit signo-1)
        self.siginfo: dict[int, bytes] = {}  # of the pending signals (SigPending)
        self.queued: dict[int, deque[bytes]] = {}  # later real-time instances (SigPending)
        self.saved_mask: int | None = None  # restored after a sigsuspend-style handler run
        # what restart_syscall resumes (a relative sleep or poll with the time
        # it had left), set with ERESTART_RESTARTBLOCK; Linux's restart_block
        self.restart_block: Callable[[], int] | None = None
        self.wait_scope = None  # the trio cancel scope of a blocking wait (sentry.kernel.wait)
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.sigaltstack = (0, 2, 0)  # ss_sp, ss_flags (SS_DISABLE), ss_size
        self.pdeathsig = 0  # prctl(PR_SET_PDEATHSIG): sent when the parent process exits
        self.vfork_parent: "Task | None" = None  # released at exec or exit
        self.vfork_done = False
        self.exited = False
        self.sched = None  # sched_*/nice state (sentry.syscalls.sched.SchedState), made on first use
        self.cpu_clock_seen = [0, 0, 0]  # highest CPU-clock readings given out (sentry.syscalls.time)
        self.user_ns = 0  # in the guest, and in switch (sentry.kernel.cputime)
        self.sys_ns = 0  # in the Sentry, not parked
        self.parked = ""  # "S" (interruptible) or "D" while blocked in sentry.kernel.wait: /proc's state
        # The last fault signal's trapno, error code and cr2 (Linux's thread.trap_nr, error_code,
        # cr2): every signal frame's sigcontext shows them (sentry.kernel.run._fault).
        self.trap_info = (0, 0, 0)

    def signal_pending(self) -> bool:
        """A signal is deliverable now (or the process is exiting)."""
        group = self.group
        return bool((self.pending | group.pending) & ~self.signal_mask) or group.exit_status is not None

    @property
    def pid(self) -> int:
        return self.group.pid

    @property
    def creds(self) -> Credentials:
        return self.group.creds

    def __repr__(self) -> str:
        return f"<Task {self.group.pid}:{self.tid} {self.comm.decode(errors='replace')}>"
