"""Where hooks meet the kernel: the wrapped dispatch table and the process
event calls.

In a nutshell: ``wrap_table(policy, base)`` copies the run loop's dispatch
list and replaces each hooked entry by one whose handler runs the before
hooks, then the real handler (unless a hook decided), then the after hooks.
File-open hooks ride on open/openat/creat, clone events on the after path
of clone/clone3/fork/vfork. Entries without hooks are the base's own
objects: their calls cost nothing more. The kernel calls ``exec_event``
and ``exit_event`` itself (``Kernel.exec_into``, ``Kernel._become_zombie``).

A decision is applied here: ``Deny`` → -errno, ``Kill`` → the process's
exit begins (the run loop ends the task on its way back to the guest),
``Return`` → writes, then the value.
"""
from __future__ import annotations

import dataclasses
import errno
import os
from typing import TYPE_CHECKING, Callable

from abi.sysnr import NAMES
from sentry.errors import ExecError, SyscallError
from sentry.kernel.task import killed_status
from sentry.policy.core import Deny, Kill, Policy, PolicyError, Return, hook_name
from sentry.policy.view import Call, FileOpen, ProcessEvent
from sentry.syscalls.spec import Hex, Status, Syscall

if TYPE_CHECKING:
    from sentry.kernel.task import Task, ThreadGroup

OPEN_CALLS = ("open", "openat", "creat")
CLONE_CALLS = ("clone", "clone3", "fork", "vfork")
CLONE_THREAD = 0x10000


def _consult(hooks, view, what: str):
    """The first decision of ``hooks`` on ``view`` (None if none decides)."""
    for hook in hooks:
        try:
            d = hook(view)
        except SyscallError:
            raise
        except Exception as e:
            raise PolicyError(f"policy hook {hook_name(hook)} on {what} raised {type(e).__name__}: {e}") from e
        if d is not None:
            if not isinstance(d, (Deny, Kill, Return)):
                raise PolicyError(f"policy hook {hook_name(hook)} on {what} returned {d!r} "
                                  "(expected None, Deny, Kill or Return)")
            return d
    return None


def _apply(task: "Task", d) -> int:
    """The call's result for decision ``d``."""
    if isinstance(d, Deny):
        return -d.errno
    if isinstance(d, Kill):
        task.kernel.exit_group(task.group, killed_status(d.signal))
        return -errno.EINTR  # never seen: the task exits before returning to the guest
    try:
        for addr, data in d.writes:
            task.mm.copy_out(addr, bytes(data))
    except SyscallError as e:
        return -e.errno
    return d.value


def _handler(entry: Syscall, before: list, after: list, opens: list, clone_events: list) -> Callable[..., int]:
    inner = entry.handler
    fixed = -entry.errno if inner is None else 0
    name = entry.name

    def hooked(task: "Task", *args: int) -> int:
        call = Call(task, entry, args)
        d = _consult(before, call, name) if before else None
        if d is None and opens:
            d = _consult(opens, FileOpen(call), name)
        if d is not None:
            return _apply(task, d)
        if inner is None:
            result = fixed
        else:
            try:
                result = inner(task, *args)
            except SyscallError as e:
                result = -e.errno
        if after:
            call.result = result
            d = _consult(after, call, name)
            if d is not None:
                result = _apply(task, d)
        if clone_events and result > 0:
            _clone_event(task, clone_events, call, result)
        return result

    return hooked


def _clone_event(task: "Task", hooks: list, call: Call, child: int) -> None:
    if call.name == "clone":
        thread = bool(call.args[0] & CLONE_THREAD)
    elif call.name == "clone3":
        try:
            thread = bool(task.mm.read_u64(call.args[0]) & CLONE_THREAD)
        except SyscallError:
            thread = False
    else:
        thread = False
    d = _consult(hooks, ProcessEvent(task, "clone", child=child, thread=thread), "clone")
    if isinstance(d, Kill):
        _apply(task, d)


def wrap_table(policy: Policy, base: list[Syscall | None]) -> list[Syscall | None]:
    """See the module doc. ``base`` is not changed."""
    numbers = {k for k in (*policy.before, *policy.after_hooks) if k is not None}
    every_before = policy.before.get(None, [])
    every_after = policy.after_hooks.get(None, [])
    from abi.sysnr import NUMBERS

    open_nrs = {NUMBERS[n] for n in OPEN_CALLS} if policy.opens else set()
    clone_nrs = {NUMBERS[n] for n in CLONE_CALLS} if policy.events["clone"] else set()
    if every_before or every_after:
        numbers |= {nr for nr, e in enumerate(base) if e is not None}
    numbers |= open_nrs | clone_nrs
    if not numbers:
        return base
    table = list(base)
    for nr in sorted(numbers):
        entry = base[nr] if nr < len(base) else None
        if entry is None:  # not in the table: ENOSYS, unless a hook decides
            entry = Syscall(nr, NAMES.get(nr, f"sys_{nr}"), None, (Hex,) * 6, Status.ERROR, "not in the table",
                            errno.ENOSYS, 6)
        before = policy.before.get(nr, []) + every_before
        after = policy.after_hooks.get(nr, []) + every_after
        handler = _handler(entry, before, after, policy.opens if nr in open_nrs else [],
                           policy.events["clone"] if nr in clone_nrs else [])
        while len(table) <= nr:
            table.append(None)
        table[nr] = dataclasses.replace(entry, handler=handler)
    return table


def exec_event(policy: Policy, task: "Task", path: str, argv: list[bytes]) -> None:
    """Before ``task`` switches to the loaded program ``path``: raises
    ExecError if a hook denies it (or kills the process)."""
    hooks = policy.events["exec"]
    if not hooks:
        return
    shown = tuple(os.fsdecode(a) for a in argv)
    try:
        d = _consult(hooks, ProcessEvent(task, "exec", path=path, argv=shown), "exec")
    except SyscallError as e:
        d = Deny(e.errno)
    if d is None:
        return
    if isinstance(d, Kill):
        _apply(task, d)
        err = errno.EINTR
    else:
        err = d.errno if isinstance(d, Deny) else errno.EACCES
    raise ExecError(err, f"{path}: exec denied by policy ({errno.errorcode.get(err, err)})")


def exit_event(policy: Policy, group: "ThreadGroup", status: int) -> None:
    """Tell the exit hooks that ``group`` ended with wait status ``status``."""
    hooks = policy.events["exit"]
    if hooks:
        _consult(hooks, ProcessEvent(None, "exit", group=group, status=status), "exit")
