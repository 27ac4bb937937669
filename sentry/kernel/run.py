"""A task's life on its OS thread: switch → dispatch → handler → switch.

This is the fast path: no trio, no allocation beyond what the handler
needs, the table looked up by list index. ``SyscallError`` becomes
``-errno`` here and nowhere else; any other exception is a Sentry bug and
ends the sandbox with a report (never a made-up errno for the guest).
"""
from __future__ import annotations

import errno
from typing import Callable

from platforms.base import EventKind
from sentry.errors import GuestExit, SyscallError
from sentry.kernel.task import Task, killed_status
from sentry.syscalls.spec import Syscall
from sentry.syscalls.table import dispatch_list

_MASK = (1 << 64) - 1
# The tracer hook: called as tracer(task, entry, args) before and returns a
# callable(result) to call after each system call (sentry.strace).
Tracer = Callable[[Task, Syscall, tuple[int, ...]], Callable[[int], None]]


def _unknown(task: Task, nr: int) -> int:
    kernel = task.kernel
    if nr not in kernel.reported_enosys:
        kernel.reported_enosys.add(nr)
        from abi.sysnr import NAMES

        kernel.debug(f"unsupported system call {NAMES.get(nr, nr)} ({nr}): ENOSYS")
    return -errno.ENOSYS


def run_task(task: Task, tracer: Tracer | None = None) -> int:
    """Run ``task`` until its thread group exits; return the wait status."""
    table = dispatch_list()
    context = task.context
    try:
        while True:
            kind = context.switch(task.mm.space, task.arch)
            if kind is EventKind.SYSCALL:
                regs = task.arch.regs
                nr = regs.orig_rax
                entry = table[nr] if nr < len(table) else None
                if entry is None:
                    result = _unknown(task, nr)
                else:
                    n = entry.nargs
                    args = (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)[:n] if n else ()
                    after = tracer(task, entry, args) if tracer is not None else None
                    handler = entry.handler
                    try:
                        result = handler(task, *args) if handler is not None else -entry.errno
                    except SyscallError as e:
                        result = -e.errno
                    if after is not None:
                        after(result)
                task.arch.regs.rax = result & _MASK
            elif kind is EventKind.SIGNAL:
                deliver_fault(task)
    except GuestExit as e:
        return e.status


def deliver_fault(task: Task) -> None:
    """A synchronous signal from the guest's own execution. Handlers are
    not run yet (issue 3): the default action, termination, applies."""
    info = task.context.signal_info
    task.kernel.debug(f"task {task.tid}: signal {info.signo} (code {info.code}, addr {info.addr:#x}) "
                      f"at rip {task.arch.regs.rip:#x}")
    raise GuestExit(killed_status(info.signo))
