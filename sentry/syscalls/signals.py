"""Signal system calls. Dispositions and masks are kept exactly; delivery
of handled signals comes with issue 3, so a signal sent to the guest takes
its default action (or is ignored when SIG_IGN / default-ignore)."""
from __future__ import annotations

import errno
import signal as _signal
import struct

from sentry.errors import GuestExit, SyscallError
from sentry.kernel.task import SigAction, Task, killed_status
from sentry.syscalls.spec import Enum, Hex, Int, Ptr, Signal, Size, Struct, entries, partial, s32, supported

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_UNBLOCKABLE = (1 << (_signal.SIGKILL - 1)) | (1 << (_signal.SIGSTOP - 1))
_DEFAULT_IGNORE = frozenset({_signal.SIGCHLD, _signal.SIGURG, _signal.SIGWINCH, _signal.SIGCONT})
_SIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask
SS_DISABLE = 2


def sys_rt_sigaction(t: Task, signo: int, act: int, oldact: int, sigsetsize: int) -> int:
    signo = s32(signo)
    if sigsetsize != 8 or not 1 <= signo <= 64:
        raise SyscallError(errno.EINVAL)
    if act and signo in (_signal.SIGKILL, _signal.SIGSTOP):
        raise SyscallError(errno.EINVAL)
    new = SigAction(*_SIGACTION.unpack(t.mm.copy_in(act, _SIGACTION.size))) if act else None
    old = t.group.sigactions[signo]
    if oldact:
        t.mm.copy_out(oldact, _SIGACTION.pack(old.handler, old.flags, old.restorer, old.mask))
    if new is not None:
        new.mask &= ~_UNBLOCKABLE
        t.group.sigactions[signo] = new
    return 0


def sys_rt_sigprocmask(t: Task, how: int, set_: int, oldset: int, sigsetsize: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    old = t.signal_mask
    if set_:
        mask = t.mm.read_u64(set_)
        if how == SIG_BLOCK:
            new = old | mask
        elif how == SIG_UNBLOCK:
            new = old & ~mask
        elif how == SIG_SETMASK:
            new = mask
        else:
            raise SyscallError(errno.EINVAL)
        t.signal_mask = new & ~_UNBLOCKABLE
    if oldset:
        t.mm.write_u64(oldset, old)
    return 0


def sys_sigaltstack(t: Task, ss: int, old: int) -> int:
    if old:
        t.mm.copy_out(old, struct.pack("<QiiQ", t.sigaltstack[0], t.sigaltstack[1], 0, t.sigaltstack[2]))
    if ss:
        sp, flags, _pad, size = struct.unpack("<QiiQ", t.mm.copy_in(ss, 24))
        if flags & ~(SS_DISABLE | (1 << 31)):
            raise SyscallError(errno.EINVAL)
        if not flags & SS_DISABLE and size < 2048:
            raise SyscallError(errno.ENOMEM)
        t.sigaltstack = (sp, flags, size)
    return 0


def _send_to_self(t: Task, signo: int) -> int:
    if signo == 0:
        return 0
    if not 1 <= signo <= 64:
        raise SyscallError(errno.EINVAL)
    action = t.group.sigactions[signo]
    if action.handler == 1 or (action.handler == 0 and signo in _DEFAULT_IGNORE):
        return 0
    if action.handler == 0 or signo in (_signal.SIGKILL, _signal.SIGSTOP):
        raise GuestExit(killed_status(signo))
    t.kernel.debug(f"signal {signo} has a handler; delivery comes with issue 3, ignoring")
    return 0


def sys_kill(t: Task, pid: int, signo: int) -> int:
    pid = s32(pid)
    if pid not in (0, -1, t.group.pid, -t.group.pgid):
        raise SyscallError(errno.ESRCH)
    return _send_to_self(t, s32(signo))


def sys_tgkill(t: Task, tgid: int, tid: int, signo: int) -> int:
    if s32(tgid) != t.group.pid or s32(tid) != t.tid:
        raise SyscallError(errno.ESRCH)
    return _send_to_self(t, s32(signo))


def sys_tkill(t: Task, tid: int, signo: int) -> int:
    if s32(tid) != t.tid:
        raise SyscallError(errno.ESRCH)
    return _send_to_self(t, s32(signo))


HOW_NAMES = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}

ENTRIES = entries(
    supported("rt_sigaction", sys_rt_sigaction, args=(Signal, Struct("sigaction"), Ptr, Size)),
    supported("rt_sigprocmask", sys_rt_sigprocmask, args=(Enum(HOW_NAMES), Struct("sigset"), Ptr, Size)),
    supported("sigaltstack", sys_sigaltstack, args=(Struct("stack_t"), Ptr)),
    partial("kill", sys_kill, args=(Int, Signal), note="to the caller only; handlers run with issue 3"),
    partial("tgkill", sys_tgkill, args=(Int, Int, Signal), note="to the caller only; handlers run with issue 3"),
    partial("tkill", sys_tkill, args=(Int, Signal), note="to the caller only; handlers run with issue 3"),
)
