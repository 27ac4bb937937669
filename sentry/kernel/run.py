"""A task's life on its OS thread: switch → dispatch → handler → switch.

This is the fast path: no trio, no allocation beyond what the handler
needs, the table looked up by list index. ``SyscallError`` becomes
``-errno`` here and nowhere else; any other exception is a Sentry bug and
ends the sandbox with a report (never a made-up errno for the guest).
Signals are delivered here, at the return to the guest, only when one is
pending: the common path costs one attribute test. With ``--stats`` the
same loop runs over ``sentry.stats.TimedContext`` (counting wrappers of
``switch`` and ``deliver``). With policy hooks (``sentry.policy``) it runs
over a table whose hooked entries are wrapped; no hooks, the same table.
Two clock reads per switch give the task's user and system time
(``sentry.kernel.cputime``).
"""
from __future__ import annotations

import errno
import signal as S
import time

from platforms.base import EventKind
from sentry.errors import SyscallError
from sentry.kernel import signals
from sentry.kernel.task import Task
from sentry.mm.mm import Fault
from sentry.syscalls.table import dispatch_list

_MASK = (1 << 64) - 1
_BUS_ADRERR = 2  # si_code: a nonexistent physical address (a page past the end of a mapped file)
_SYSCALL, _SIGNAL = EventKind.SYSCALL, EventKind.SIGNAL


def _unknown(task: Task, nr: int) -> int:
    kernel = task.kernel
    if nr not in kernel.reported_enosys:
        kernel.reported_enosys.add(nr)
        from abi.sysnr import NAMES

        kernel.debug(f"unsupported system call {NAMES.get(nr, nr)} ({nr}): ENOSYS")
    return -errno.ENOSYS


def run_task(task: Task) -> int:
    """Run ``task`` until it exits; return its wait status (raises
    GuestExit for the same)."""
    policy = task.kernel.policy  # sentry.policy: hooked entries wrapped, the others untouched
    table = dispatch_list() if policy is None else policy.table(dispatch_list())
    tracer = task.kernel.tracer
    stats = task.kernel.stats
    context = task.context if stats is None else stats.context(task)
    deliver = signals.deliver if stats is None else context.deliver
    group = task.group
    clock = time.perf_counter_ns
    mark = clock()
    while True:
        start = clock()
        task.sys_ns += start - mark
        kind = context.switch(task.mm.space, task.arch)
        mark = clock()
        task.user_ns += mark - start
        result = None
        if kind is _SYSCALL:
            regs = task.arch.regs
            nr = regs.orig_rax
            entry = table[nr] if nr < len(table) else None
            if entry is None:
                after = tracer.unknown(task, nr, (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)) \
                    if tracer is not None else None
                result = _unknown(task, nr)
                if after is not None:
                    after(result)
            else:
                n = entry.nargs
                args = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)[:n] if n else ()
                after = tracer.enter(task, entry, args) if tracer is not None else None
                handler = entry.handler
                try:
                    result = handler(task, *args) if handler is not None else -entry.errno
                except SyscallError as e:
                    result = -e.errno
                if after is not None:
                    after(result)
            task.arch.regs.rax = result & _MASK
        elif kind is _SIGNAL:
            _fault(task)
        if task.pending or group.pending or group.exit_status is not None or group.stopped:
            deliver(task, result)


def _fault(task: Task) -> None:
    """A synchronous fault: a copy-on-write page the Sentry resolves, or a
    signal for the guest (forced: a blocked or ignored fault signal kills,
    as on Linux): SIGBUS for a page of a file mapping past the end of the
    file, else the platform's."""
    info = task.context.signal_info
    signo, code = info.signo, info.code
    if signo == S.SIGSEGV:
        try:
            fault = task.mm.handle_fault(info.addr, info.access)
        except SyscallError:  # ENOMEM: no page for the copy (--memory): killed, as by Linux's OOM killer
            task.kernel.debug(f"task {task.tid}: out of memory copying {info.addr:#x}: SIGKILL")
            task.pending |= signals.bit(S.SIGKILL)
            return
        if fault is Fault.RESOLVED:
            return
        if fault is Fault.PAST_EOF:
            signo, code = S.SIGBUS, _BUS_ADRERR
    if signo == S.SIGSTOP:
        return
    task.kernel.debug(f"task {task.tid}: signal {signo} (code {code}, addr {info.addr:#x}) "
                      f"at rip {task.arch.regs.rip:#x}")
    bit = signals.bit(signo)
    action = task.group.sigactions[signo]
    if task.signal_mask & bit or action.handler == 1:
        task.group.sigactions[signo] = signals.SigAction()
        task.signal_mask &= ~bit
    task.pending |= bit
    task.siginfo[signo] = signals.siginfo(signo, code, addr=info.addr)
