"""Signal system calls over sentry.kernel.signals: dispositions, masks,
sending (kill/tkill/tgkill/rt_sigqueueinfo), waiting (rt_sigsuspend,
pause, rt_sigtimedwait), rt_sigreturn, sigaltstack."""
from __future__ import annotations

import errno
import signal as _signal
import struct

from sentry.errors import SyscallError
from sentry.kernel import signals as sig
from sentry.kernel.task import SigAction, Task, ThreadGroup, dequeue_signal
from sentry.kernel.wait import ERESTARTNOHAND, wait_until
from sentry.syscalls.time import read_timespec_ns
from sentry.syscalls.spec import Enum, Int, Ptr, Signal, Size, Struct, entries, partial, s32, supported

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
_SIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask


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
        new.mask &= ~sig.UNBLOCKABLE
        t.group.sigactions[signo] = new
        if sig.is_ignored(t.group, signo):  # setting SIG_IGN discards what is pending
            with t.kernel.lock:
                for holder in [t.group, *t.group.tasks]:
                    holder.discard(sig.bit(signo))
    return 0


def _change_mask(t: Task, how: int, mask: int) -> None:
    old = t.signal_mask
    if how == SIG_BLOCK:
        new = old | mask
    elif how == SIG_UNBLOCK:
        new = old & ~mask
    elif how == SIG_SETMASK:
        new = mask
    else:
        raise SyscallError(errno.EINVAL)
    t.signal_mask = new & ~sig.UNBLOCKABLE


def sys_rt_sigprocmask(t: Task, how: int, set_: int, oldset: int, sigsetsize: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    old = t.signal_mask
    if set_:
        _change_mask(t, how, t.mm.read_u64(set_))
    if oldset:
        t.mm.write_u64(oldset, old)
    return 0


def sys_rt_sigpending(t: Task, addr: int, sigsetsize: int) -> int:
    if sigsetsize > 8:
        raise SyscallError(errno.EINVAL)
    t.mm.write_u64(addr, (t.pending | t.group.pending) & t.signal_mask)
    return 0


def sys_sigaltstack(t: Task, ss: int, old: int) -> int:
    sp_now = t.arch.regs.rsp
    cur_sp, cur_flags, cur_size = t.sigaltstack
    on_stack = cur_size and cur_sp <= sp_now < cur_sp + cur_size
    if old:
        flags = sig.SS_ONSTACK if on_stack else cur_flags & sig.SS_DISABLE
        t.mm.copy_out(old, struct.pack("<QiiQ", cur_sp, flags, 0, cur_size))
    if ss:
        sp, flags, _pad, size = struct.unpack("<QiiQ", t.mm.copy_in(ss, 24))
        if on_stack:
            raise SyscallError(errno.EPERM)
        if flags & ~(sig.SS_DISABLE | (1 << 31)):
            raise SyscallError(errno.EINVAL)
        if flags & sig.SS_DISABLE:
            t.sigaltstack = (0, sig.SS_DISABLE, 0)
        elif size < 2048:
            raise SyscallError(errno.ENOMEM)
        else:
            t.sigaltstack = (sp, 0, size)
    return 0


def _targets(t: Task, pid: int) -> list[ThreadGroup]:
    """The processes kill(pid) names. Zombies count, as on Linux (the
    signal does nothing); a pid > 0 may be any thread's id."""
    kernel = t.kernel
    with kernel.lock:
        known = list(kernel.groups.values())  # live and zombie: not yet reaped
        if pid > 0:
            task = kernel.tasks.get(pid)
            group = kernel.groups.get(pid) or (task.group if task is not None else None)
            return [group] if group is not None else []
        if pid == 0:
            return [g for g in known if g.pgid == t.group.pgid]
        if pid == -1:
            return [g for g in known if g.pid != 1 and g is not t.group] or []
        return [g for g in known if g.pgid == -pid]


def sys_kill(t: Task, pid: int, signo: int) -> int:
    pid, signo = s32(pid), s32(signo)
    groups = _targets(t, pid)
    if not groups:
        raise SyscallError(errno.ESRCH)
    if not 0 <= signo <= 64:  # after the lookup, as Linux
        raise SyscallError(errno.EINVAL)
    info = sig.siginfo(signo, sig.SI_USER, pid=t.group.pid, uid=t.creds.uid)
    for g in groups:
        sig.send(t.kernel, g, signo, info)
    return 0


def _thread(t: Task, tgid: int, tid: int) -> Task:
    with t.kernel.lock:
        target = t.kernel.tasks.get(tid)
    if target is None or target.exited or (tgid > 0 and target.group.pid != tgid):
        raise SyscallError(errno.ESRCH)
    return target


def _send_thread(t: Task, target: Task, signo: int, info: bytes) -> int:
    if not 0 <= signo <= 64:
        raise SyscallError(errno.EINVAL)
    if not sig.send(t.kernel, target.group, signo, info, task=target):
        raise SyscallError(errno.EAGAIN)  # RLIMIT_SIGPENDING: a real-time signal not queued
    return 0


def sys_tgkill(t: Task, tgid: int, tid: int, signo: int) -> int:
    tgid, tid, signo = s32(tgid), s32(tid), s32(signo)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    info = sig.siginfo(signo, sig.SI_TKILL, pid=t.group.pid, uid=t.creds.uid)
    return _send_thread(t, _thread(t, tgid, tid), signo, info)


def sys_tkill(t: Task, tid: int, signo: int) -> int:
    tid, signo = s32(tid), s32(signo)
    if tid <= 0:
        raise SyscallError(errno.EINVAL)
    info = sig.siginfo(signo, sig.SI_TKILL, pid=t.group.pid, uid=t.creds.uid)
    return _send_thread(t, _thread(t, 0, tid), signo, info)


def sys_rt_sigqueueinfo(t: Task, tgid: int, signo: int, info_addr: int) -> int:
    signo = s32(signo)
    info = bytearray(t.mm.copy_in(info_addr, sig.SIGINFO_SIZE))
    struct.pack_into("<i", info, 0, signo)
    code = struct.unpack_from("<i", info, 8)[0]
    if (code >= 0 or code == sig.SI_TKILL) and s32(tgid) != t.tid:  # Linux: task_pid_vnr(current), the caller's tid
        raise SyscallError(errno.EPERM)  # no posing as kill() or the kernel to another process, as Linux
    groups = _targets(t, s32(tgid)) if s32(tgid) > 0 else []
    if not groups:
        raise SyscallError(errno.ESRCH)
    if not 0 <= signo <= 64:
        raise SyscallError(errno.EINVAL)
    if not sig.send(t.kernel, groups[0], signo, bytes(info)):
        raise SyscallError(errno.EAGAIN)  # RLIMIT_SIGPENDING: a real-time signal not queued
    return 0


def sys_rt_tgsigqueueinfo(t: Task, tgid: int, tid: int, signo: int, info_addr: int) -> int:
    """pthread_sigqueue: a siginfo of the caller's for one thread. As
    rt_sigqueueinfo, only the caller itself may get a kill()-style or
    kernel si_code (>= 0) or SI_TKILL."""
    tgid, tid, signo = s32(tgid), s32(tid), s32(signo)
    info = bytearray(t.mm.copy_in(info_addr, sig.SIGINFO_SIZE))
    struct.pack_into("<i", info, 0, signo)
    if tgid <= 0 or tid <= 0:
        raise SyscallError(errno.EINVAL)
    code = struct.unpack_from("<i", info, 8)[0]
    if (code >= 0 or code == sig.SI_TKILL) and tid != t.tid:
        raise SyscallError(errno.EPERM)
    return _send_thread(t, _thread(t, tgid, tid), signo, bytes(info))


def sys_rt_sigreturn(t: Task) -> int:
    return sig.sigreturn(t)


def sys_restart_syscall(t: Task) -> int:
    """Resume the call a signal without a handler interrupted (the run loop
    points the guest here for ERESTART_RESTARTBLOCK); EINTR if there is none."""
    resume, t.restart_block = t.restart_block, None
    if resume is None:
        raise SyscallError(errno.EINTR)
    return resume()


def sys_rt_sigsuspend(t: Task, mask_addr: int, sigsetsize: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    mask = t.mm.read_u64(mask_addr)
    t.saved_mask = t.signal_mask
    t.signal_mask = mask & ~sig.UNBLOCKABLE
    return _wait_for_signal(t)


def _wait_for_signal(t: Task) -> int:
    """Sleep until a signal comes; then EINTR once its handler has run
    (ERESTARTNOHAND: a signal with no handler resumes the sleep)."""
    try:
        wait_until(t, (), lambda: False)
    except SyscallError:
        pass
    raise SyscallError(ERESTARTNOHAND)


def sys_pause(t: Task) -> int:
    return _wait_for_signal(t)


def sys_rt_sigtimedwait(t: Task, set_addr: int, info_addr: int, timeout_addr: int, sigsetsize: int) -> int:
    if sigsetsize != 8:
        raise SyscallError(errno.EINVAL)
    wanted = t.mm.read_u64(set_addr) & ~sig.UNBLOCKABLE
    timeout_ns = read_timespec_ns(t, timeout_addr) if timeout_addr else None

    def take() -> tuple[int, bytes] | None:
        with t.kernel.lock:
            got = dequeue_signal(t, wanted)  # the thread's first, the lowest, the oldest instance
        if got is None:
            return None
        return got[0], got[1] or sig.siginfo(got[0], sig.SI_USER)

    got = take()
    if got is None:
        old_mask = t.signal_mask
        t.signal_mask &= ~wanted  # the wanted signals may wake us...
        t.real_blocked = old_mask  # ...and stay blocked for sig_ignored: a default-ignored one is kept
        try:
            wait_until(t, (), lambda: bool((t.pending | t.group.pending) & wanted), timeout_ns)
        except SyscallError:
            pass
        finally:
            t.signal_mask = old_mask
            t.real_blocked = 0
        got = take()
        if got is None:
            if (t.pending | t.group.pending) & ~t.signal_mask:
                raise SyscallError(errno.EINTR)
            raise SyscallError(errno.EAGAIN)
    signo, info = got
    if info_addr:
        t.mm.copy_out(info_addr, info)
    return signo


HOW_NAMES = {0: "SIG_BLOCK", 1: "SIG_UNBLOCK", 2: "SIG_SETMASK"}

ENTRIES = entries(
    supported("rt_sigaction", sys_rt_sigaction, args=(Signal, Struct("sigaction"), Ptr, Size)),
    supported("rt_sigprocmask", sys_rt_sigprocmask, args=(Enum(HOW_NAMES), Struct("sigset"), Ptr, Size)),
    supported("rt_sigpending", sys_rt_sigpending, args=(Ptr, Size)),
    supported("sigaltstack", sys_sigaltstack, args=(Struct("stack_t"), Ptr)),
    supported("kill", sys_kill, args=(Int, Signal)),
    supported("tgkill", sys_tgkill, args=(Int, Int, Signal)),
    supported("tkill", sys_tkill, args=(Int, Signal)),
    partial("rt_sigqueueinfo", sys_rt_sigqueueinfo, args=(Int, Signal, Ptr), note="to processes"),
    supported("rt_tgsigqueueinfo", sys_rt_tgsigqueueinfo, args=(Int, Int, Signal, Ptr)),
    supported("rt_sigreturn", sys_rt_sigreturn),
    supported("restart_syscall", sys_restart_syscall),
    supported("rt_sigsuspend", sys_rt_sigsuspend, args=(Struct("sigset"), Size)),
    supported("pause", sys_pause),
    supported("rt_sigtimedwait", sys_rt_sigtimedwait, args=(Struct("sigset"), Ptr, Struct("timespec"), Size)),
)
