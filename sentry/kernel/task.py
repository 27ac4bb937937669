"""Tasks (guest threads) and thread groups (guest processes).

A Task is driven by one OS thread for its whole life (see run.py): the
platform Context it switches is bound to that thread. Fields marked
"shared" are objects a clone may share between tasks (CLONE_VM, CLONE_FILES,
CLONE_FS, CLONE_SIGHAND); everything else is the task's own.
"""
from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentry.kernel.cputime import CpuTimes

if TYPE_CHECKING:
    from platforms.base import ArchState, Context
    from sentry.fs.fdtable import FDTable
    from sentry.fs.context import FSContext
    from sentry.kernel.kernel import Kernel
    from sentry.mm.mm import MemoryManager


_CORE_SIGNALS = frozenset({_signal.SIGQUIT, _signal.SIGILL, _signal.SIGTRAP, _signal.SIGABRT, _signal.SIGBUS,
                           _signal.SIGFPE, _signal.SIGSEGV, _signal.SIGSYS, _signal.SIGXCPU, _signal.SIGXFSZ})


def killed_status(signo: int) -> int:
    """wait(2) status of a process killed by ``signo`` (core bit for the
    signals whose default action dumps core)."""
    return signo | (0x80 if signo in _CORE_SIGNALS else 0)


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


class ThreadGroup:
    """A guest process: its pid (the leader's tid), its parent, signal
    dispositions, credentials and the path of the program it runs.

    Guarded by Kernel.lock: tasks, children, parent, exit_status, zombie,
    pending. Lifecycle: live → exiting (exit_status set, tasks being torn
    down) → zombie (no tasks left, waiting for its parent's wait4) → reaped.
    """

    def __init__(self, pid: int, parent: "ThreadGroup | None", exe: str):
        from sentry.kernel.wait import WaitQueue

        self.pid = pid
        self.parent = parent
        self.exe = exe  # path inside the sandbox, for /proc/self/exe
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
        self.siginfo: dict[int, bytes] = {}  # signo -> siginfo_t for pending signals
        self.child_events = WaitQueue()  # a child exited, stopped or continued (wait4 waits here)
        self.stopped = False  # job-control stop (SIGSTOP...) until SIGCONT
        self.stop_report: int | None = None  # the stop signal, until a WUNTRACED wait reports it
        self.continued_report = False  # until a WCONTINUED wait reports it
        self.resume = WaitQueue()  # stopped tasks wait here for SIGCONT
        self.signal_listeners: list = []  # called after a signal becomes pending (signalfd readiness)
        self.rlimits: dict[int, tuple[int, int]] = dict(parent.rlimits) if parent else {}
        self.start_ns = 0
        self.exited_times = CpuTimes()  # of its exited tasks (sentry.kernel.cputime)
        self.children_times = CpuTimes()  # of the children it reaped, and theirs


class Task:
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
        self.pending = 0  # thread-directed signals (bitmask, bit signo-1)
        self.siginfo: dict[int, bytes] = {}
        self.saved_mask: int | None = None  # restored after a sigsuspend-style handler run
        self.wait_scope = None  # the trio cancel scope of a blocking wait (sentry.kernel.wait)
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.sigaltstack = (0, 2, 0)  # ss_sp, ss_flags (SS_DISABLE), ss_size
        self.pdeathsig = 0  # prctl(PR_SET_PDEATHSIG): sent when the parent process exits
        self.vfork_parent: "Task | None" = None  # released at exec or exit
        self.vfork_done = False
        self.exited = False
        self.user_ns = 0  # in the guest, and in switch (sentry.kernel.cputime)
        self.sys_ns = 0  # in the Sentry, not parked
        self.parked = ""  # "S" (interruptible) or "D" while blocked in sentry.kernel.wait: /proc's state

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
