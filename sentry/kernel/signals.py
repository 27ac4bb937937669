"""Signals: sending, choosing a thread, default actions, and handler frames
laid out as Linux lays them (rt_sigframe: return address, ucontext with
sigcontext and mask, siginfo, then the XSAVE area), and rt_sigreturn.

Sending marks the signal pending on a task or its thread group and wakes a
task that can take it: its blocking wait is cancelled (sentry.kernel.wait)
and its guest code is interrupted (Context.interrupt). The task itself
delivers at its next return to the run loop (``deliver``), which also
settles an interrupted call as Linux does: ERESTARTSYS restarts under
SA_RESTART, ERESTARTNOHAND only without a handler, ERESTART_RESTARTBLOCK
resumes through restart_syscall (``Task.restart_block``); else EINTR.

Lock order: Kernel.lock is held while pending bits change.
"""
from __future__ import annotations

import errno
import signal as S
import struct
from typing import TYPE_CHECKING

from sentry.errors import GuestExit, SyscallError
from sentry.kernel.task import SIGRTMIN, SigAction, Task, ThreadGroup, dequeue_signal, killed_status
from sentry.kernel.wait import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTSYS, interrupt_wait, wait_until

if TYPE_CHECKING:
    from sentry.kernel.kernel import Kernel

SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO, SA_RESTORER = 1, 2, 4, 0x04000000
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, 0x80000000
SS_ONSTACK, SS_DISABLE = 1, 2
SI_USER, SI_KERNEL, SI_TIMER, SI_TKILL = 0, 0x80, -2, -6
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6
UNBLOCKABLE = (1 << (S.SIGKILL - 1)) | (1 << (S.SIGSTOP - 1))
DEFAULT_IGNORE = frozenset({S.SIGCHLD, S.SIGURG, S.SIGWINCH, S.SIGCONT})
STOP_SIGNALS = frozenset({S.SIGSTOP, S.SIGTSTP, S.SIGTTIN, S.SIGTTOU})
STOP_MASK = sum(1 << (s - 1) for s in STOP_SIGNALS)
RLIMIT_SIGPENDING = 11
FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2 = 0x46505853, 0x46505845
UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 1, 2, 4
# sigcontext: the order Linux saves the registers in (arch/x86/include/uapi/asm/sigcontext.h)
SIGCONTEXT_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
                   "rdx", "rax", "rcx", "rsp", "rip", "eflags")
_SIGCONTEXT = struct.Struct("<18QHHHHQQQQQ8Q")  # regs, cs gs fs ss, err trapno oldmask cr2 fpstate, reserved
_UCONTEXT_HEAD = struct.Struct("<QQQiiQ")  # uc_flags, uc_link, ss_sp, ss_flags, pad, ss_size
UCONTEXT_SIZE = _UCONTEXT_HEAD.size + _SIGCONTEXT.size + 8  # + uc_sigmask
SIGINFO_SIZE = 128
FRAME_SIZE = 8 + UCONTEXT_SIZE + SIGINFO_SIZE
REDZONE = 128
FIX_EFLAGS = 0x50DD5  # AC OF DF TF SF ZF AF PF CF RF: what sigreturn may restore


def bit(signo: int) -> int:
    return 1 << (signo - 1)


def siginfo(signo: int, code: int, *, pid: int = 0, uid: int = 0, status: int = 0, addr: int = 0,
            errno_: int = 0) -> bytes:
    """A siginfo_t (128 bytes). kill-style fields (pid, uid) or fault-style
    (addr) or SIGCHLD-style (pid, uid, status) after the common header."""
    head = struct.pack("<iii4x", signo, errno_, code)
    if addr:
        body = struct.pack("<Q", addr)
    elif signo == S.SIGCHLD:
        body = struct.pack("<iIi4xqq", pid, uid, status, 0, 0)
    else:
        body = struct.pack("<iI", pid, uid)
    return (head + body).ljust(SIGINFO_SIZE, b"\0")


def is_ignored(group: ThreadGroup, signo: int) -> bool:
    action = group.sigactions[signo]
    return action.handler == 1 or (action.handler == 0 and signo in DEFAULT_IGNORE)


def send(kernel: "Kernel", group: ThreadGroup, signo: int, info: bytes, task: Task | None = None) -> bool:
    """Make ``signo`` pending for ``task`` (thread-directed) or ``group``,
    and wake a task that can take it. Ignored signals are dropped. False
    when a real-time signal could not be queued (RLIMIT_SIGPENDING, see
    ``_queue``): the sender's EAGAIN."""
    if signo == 0:
        return True
    with kernel.lock:
        if group.zombie or group.exit_status is not None:
            return True
        if signo == S.SIGCONT:
            group.discard(STOP_MASK)
            for t in group.tasks:
                t.discard(STOP_MASK)
            if group.stopped:
                _continue(kernel, group)
        elif signo in STOP_SIGNALS:
            group.discard(bit(S.SIGCONT))
            for t in group.tasks:
                t.discard(bit(S.SIGCONT))
        # As Linux's sig_ignored: a blocked signal is never ignored (a
        # signalfd or a later handler may take it).
        blocker = task if task is not None else (group.tasks[0] if group.tasks else None)
        blocked = blocker is not None and (blocker.signal_mask | blocker.real_blocked) & bit(signo)
        if is_ignored(group, signo) and signo != S.SIGKILL and not blocked:
            return True
        if not _queue(kernel, task if task is not None else group, group, signo, info):
            return False
        if task is not None:
            targets = [task]
        else:
            targets = [t for t in group.tasks if not t.signal_mask & bit(signo)] or group.tasks[:1]
            if signo == S.SIGKILL:
                targets = list(group.tasks)
        if signo == S.SIGKILL and group.stopped:
            group.resume.notify()  # a stopped process dies at once (_wait_while_stopped)
    for t in targets[:1] if signo != S.SIGKILL else targets:
        if t.signal_pending():  # as Linux: a signal it blocks never ends a wait or interrupts it
            wake(t)
    for listener in list(group.signal_listeners):
        listener()
    return True


def _queue(kernel: "Kernel", holder: Task | ThreadGroup, group: ThreadGroup, signo: int, info: bytes) -> bool:
    """Queue ``info`` on ``holder`` as Linux's __send_signal_locked: past
    the RLIMIT_SIGPENDING of the target's user (its siginfos queued in the
    whole sandbox), a real-time signal with any si_code but SI_USER is
    refused (False); any other becomes pending without its siginfo. A
    standard signal from kill() or the kernel (si_code >= 0) is never
    limited, nor is a POSIX timer's (SI_TIMER: Linux preallocates its
    siginfo). Caller holds Kernel.lock."""
    code = struct.unpack_from("<i", info, 8)[0]
    if signo != S.SIGKILL and code != SI_TIMER and (signo >= SIGRTMIN or code < 0) and not (
            signo < SIGRTMIN and holder.pending & bit(signo)):  # a standard one pending: coalesces anyway
        uid = group.creds.uid
        queued = sum(g.count_queued() + sum(t.count_queued() for t in g.tasks)
                     for g in kernel.groups.values() if g.creds.uid == uid and not g.zombie)
        if queued >= _sigpending_limit(group):
            if signo >= SIGRTMIN and code != SI_USER:
                return False
            info = None  # type: ignore[assignment]
    holder.enqueue(signo, info)
    return True


def _sigpending_limit(group: ThreadGroup) -> int:
    limit = group.rlimits.get(RLIMIT_SIGPENDING)
    if limit is None:
        from sentry.syscalls.process import DEFAULT_RLIMITS

        limit = DEFAULT_RLIMITS[RLIMIT_SIGPENDING]
    return limit[0]


def force(task: Task, signo: int, info: bytes) -> None:
    """Linux's force_sig: a synchronous signal (a fault, a bad sigreturn
    frame) for ``task`` that it cannot block or ignore: blocked or
    ignored, it is unblocked and its default action restored (which kills);
    a handler runs."""
    b = bit(signo)
    with task.kernel.lock:
        if task.signal_mask & b or task.group.sigactions[signo].handler == 1:
            task.group.sigactions[signo] = SigAction()
            task.signal_mask &= ~b
        task.discard(b)  # this fault's siginfo, not an earlier kill's
        task.enqueue(signo, info)


def _continue(kernel: "Kernel", group: ThreadGroup) -> None:
    """SIGCONT: resume a stopped process and tell its parent (WCONTINUED)."""
    group.stopped = False
    group.stop_report = None
    group.continued_report = True
    group.resume.notify()
    parent = group.parent
    if parent is not None:
        parent.child_events.notify()
        if not parent.sigactions[S.SIGCHLD].flags & SA_NOCLDSTOP:
            send(kernel, parent, S.SIGCHLD, siginfo(S.SIGCHLD, CLD_CONTINUED, pid=group.pid, status=S.SIGCONT))


def _stop(task: Task, signo: int) -> None:
    """A stop signal's default action: the whole process stops until
    SIGCONT (or SIGKILL); the parent learns of it (WUNTRACED, SIGCHLD)."""
    kernel, group = task.kernel, task.group
    with kernel.lock:
        if not group.stopped:
            group.stopped = True
            group.stop_report = signo
            group.continued_report = False
            others = [t for t in group.tasks if t is not task]
            parent = group.parent
        else:
            others, parent = [], None
    for t in others:
        wake(t)
    if parent is not None:
        parent.child_events.notify()
        if not parent.sigactions[S.SIGCHLD].flags & SA_NOCLDSTOP:
            send(kernel, parent, S.SIGCHLD, siginfo(S.SIGCHLD, CLD_STOPPED, pid=group.pid, status=signo))


def _sigkill_pending(task: Task) -> bool:
    return bool((task.pending | task.group.pending) & bit(S.SIGKILL))


def _wait_while_stopped(task: Task) -> None:
    group = task.group
    wait_until(task, (group.resume,), lambda: not group.stopped or _sigkill_pending(task)
               or group.exit_status is not None, interruptible=False)


def wake(task: Task) -> None:
    """Get ``task`` back to its run loop soon: cancel its wait, interrupt
    its guest code."""
    interrupt_wait(task)
    task.context.interrupt()


def _dequeue(task: Task) -> tuple[int, bytes] | None:
    """The next deliverable signal, removed from pending: SIGKILL first,
    then as Linux's dequeue_signal (the thread's own before its process's,
    fault signals first, the lowest number, the oldest instance)."""
    group = task.group
    with task.kernel.lock:
        if _sigkill_pending(task):
            signo, info = S.SIGKILL, (task if task.pending & bit(S.SIGKILL) else group).take(S.SIGKILL)
        else:
            got = dequeue_signal(task, ~task.signal_mask)
            if got is None:
                return None
            signo, info = got
    return signo, info or siginfo(signo, SI_KERNEL)


def deliver(task: Task, syscall_result: int | None) -> None:
    """Deliver pending signals at a return to the guest. ``syscall_result``
    is the interrupted call's result (when one just ran), so ERESTARTSYS
    becomes a restart or EINTR as Linux decides. Raises GuestExit when a
    signal's default action ends the process."""
    regs = task.arch.regs
    restart = syscall_result in (-ERESTARTSYS, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK)
    while True:
        if task.group.exit_status is not None:
            raise GuestExit(task.group.exit_status)
        if task.group.execing not in (None, task):  # another thread execs (Kernel._de_thread): end silently
            raise GuestExit(0)
        if task.group.stopped and not _sigkill_pending(task):
            _wait_while_stopped(task)
            continue
        item = _dequeue(task)  # SIGKILL first: it ends a stopped process too
        if item is None:
            break
        signo, info = item
        action = task.group.sigactions[signo]
        if action.handler == 1:
            continue
        if action.handler == 0:
            if signo in DEFAULT_IGNORE:
                continue
            _traced(task, signo)
            if signo in STOP_SIGNALS:
                _stop(task, signo)
                continue
            task.kernel.exit_group(task.group, killed_status(signo, task.group))
            raise GuestExit(task.group.exit_status)  # type: ignore[arg-type]
        if restart:
            if action.flags & SA_RESTART and syscall_result == -ERESTARTSYS:
                _restart(regs, False)
            else:
                regs.rax = (-errno.EINTR) & 0xFFFF_FFFF_FFFF_FFFF
            restart = False
        _traced(task, signo)
        _setup_frame(task, signo, info, action)
        # As Linux's exit_to_user_mode loop: every signal still deliverable
        # (under the handler's mask) gets its frame now, on top of this one,
        # so its handler runs first.
    if restart:
        _restart(regs, syscall_result == -ERESTART_RESTARTBLOCK)
    if task.saved_mask is not None:
        task.signal_mask, task.saved_mask = task.saved_mask, None


def _traced(task: Task, signo: int) -> None:
    """The trace's signal event: ``signo`` is delivered to ``task``'s
    handler, or stops or kills its process (the default action)."""
    tracer = task.kernel.tracer
    if tracer is not None:
        tracer.event(task, "signal", signo)


NR_RESTART_SYSCALL = 219


def _restart(regs, resume: bool) -> None:
    """Re-execute the interrupted system call: back over `syscall`; with
    ``resume``, as restart_syscall (which runs the task's restart_block)."""
    regs.rax = NR_RESTART_SYSCALL if resume else regs.orig_rax
    regs.rip -= 2


def _setup_frame(task: Task, signo: int, info: bytes, action: SigAction) -> None:
    regs = task.arch.regs
    mm = task.mm
    if not task.arch.fp_dirty:  # else the Sentry's copy (a sigreturn's) is the newest
        task.context.read_fpstate(task.arch)
    fp = bytearray(task.arch.fpstate)
    xfeatures, _ = _host_fp(task)
    xsave_size = len(fp)
    struct.pack_into("<IIQI", fp, 464, FP_XSTATE_MAGIC1, xsave_size + 4, xfeatures, xsave_size)
    fp += struct.pack("<I", FP_XSTATE_MAGIC2)

    sp = regs.rsp
    ss_sp, ss_flags, ss_size = task.sigaltstack
    on_altstack = ss_size and ss_sp <= sp < ss_sp + ss_size
    if action.flags & SA_ONSTACK and not ss_flags & SS_DISABLE and not on_altstack:
        sp = ss_sp + ss_size
    else:
        sp -= REDZONE
    fp_addr = (sp - len(fp)) & ~63
    frame = ((fp_addr - FRAME_SIZE) & ~15) - 8
    uc_addr = frame + 8
    info_addr = uc_addr + UCONTEXT_SIZE
    mask = task.saved_mask if task.saved_mask is not None else task.signal_mask
    task.saved_mask = None
    trapno, err, cr2 = task.trap_info
    sigcontext = _SIGCONTEXT.pack(*(getattr(regs, r) for r in SIGCONTEXT_REGS), regs.cs, 0, 0, regs.ss,
                                  err, trapno, mask, cr2, fp_addr, *([0] * 8))
    alt_flags = (SS_ONSTACK if on_altstack else 0) | (ss_flags & SS_DISABLE)
    ucontext = _UCONTEXT_HEAD.pack(UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0, ss_sp,
                                   alt_flags, 0, ss_size) + sigcontext + struct.pack("<Q", mask)
    restorer = action.restorer if action.flags & SA_RESTORER else 0
    try:
        mm.copy_out(fp_addr, bytes(fp))
        mm.copy_out(frame, struct.pack("<Q", restorer) + ucontext + info)
    except SyscallError:
        # No room for the frame: Linux forces SIGSEGV with the default action.
        task.kernel.exit_group(task.group, killed_status(S.SIGSEGV, task.group))
        raise GuestExit(task.group.exit_status)  # type: ignore[arg-type]
    new_mask = task.signal_mask | action.mask  # the mask in force (sigsuspend's, ppoll's), as signal_setup_done
    if not action.flags & SA_NODEFER:
        new_mask |= bit(signo)
    task.signal_mask = new_mask & ~UNBLOCKABLE
    if action.flags & SA_RESETHAND:
        task.group.sigactions[signo] = SigAction()
    regs.rsp = frame
    regs.rip = action.handler
    regs.rdi = signo
    regs.rsi = info_addr
    regs.rdx = uc_addr
    regs.rax = 0
    regs.eflags &= ~(0x400 | 0x100)  # DF, TF


def sigreturn(task: Task) -> int:
    """rt_sigreturn: restore the mask, registers, FPU state and altstack
    from the frame at rsp (the handler's `ret` popped the return address),
    in Linux's order. Returns the restored rax (the run loop stores it
    back). A frame Linux refuses (unreadable, or an XSAVE area XRSTOR would
    fault on: ``_frame_fpstate``) forces SIGSEGV as Linux's badframe does:
    what was restored before stays, and the call returns 0."""
    regs = task.arch.regs
    task.restart_block = None  # a handler ran: nothing left to resume (Linux's do_no_restart_syscall)
    uc_addr = regs.rsp
    try:
        head = task.mm.copy_in(uc_addr, UCONTEXT_SIZE)
    except SyscallError:
        return _bad_frame(task)
    _flags, _link, ss_sp, ss_flags, _pad, ss_size = _UCONTEXT_HEAD.unpack_from(head)
    fields = _SIGCONTEXT.unpack_from(head, _UCONTEXT_HEAD.size)
    mask = struct.unpack_from("<Q", head, _UCONTEXT_HEAD.size + _SIGCONTEXT.size)[0]
    task.signal_mask = mask & ~UNBLOCKABLE
    old_flags = regs.eflags
    for name, value in zip(SIGCONTEXT_REGS, fields):
        setattr(regs, name, value)
    regs.eflags = (old_flags & ~FIX_EFLAGS) | (regs.eflags & FIX_EFLAGS)
    regs.orig_rax = 0xFFFF_FFFF_FFFF_FFFF
    fp_addr = fields[len(SIGCONTEXT_REGS) + 8]
    if fp_addr:
        fp = _frame_fpstate(task, fp_addr)
        if fp is None:
            return _bad_frame(task)
        task.arch.fpstate[:] = fp
        task.arch.fp_dirty = True
    if not ss_flags & SS_ONSTACK:
        task.sigaltstack = (ss_sp, ss_flags & SS_DISABLE, ss_size)
    return regs.rax


def _bad_frame(task: Task) -> int:
    """Linux's signal_fault: SIGSEGV (SI_KERNEL) forced on the caller."""
    force(task, S.SIGSEGV, siginfo(S.SIGSEGV, SI_KERNEL))
    return 0


def _frame_fpstate(task: Task, fp_addr: int) -> bytearray | None:
    """The XSAVE area to load from a sigreturn frame's fpstate at
    ``fp_addr``, as Linux's fpu__restore_sig reads it; None where XRSTOR
    would fault (a reserved MXCSR bit, a compacted or reserved header, a
    feature the CPU lacks) or the area is unreadable. With the software
    bytes' magic (FP_XSTATE_MAGIC1/2) the features they name are loaded
    from the area where its XSTATE_BV says so; without, only the legacy
    x87/SSE area (FXRSTOR), the rest in its initial state."""
    host_features, mxcsr_mask = _host_fp(task)
    size = len(task.arch.fpstate)
    try:
        legacy = task.mm.copy_in(fp_addr, 512)
        magic1, ext_size, features, xstate_size = struct.unpack_from("<IIQI", legacy, 464)
        data = b""
        if magic1 == FP_XSTATE_MAGIC1 and 576 <= xstate_size <= min(size, ext_size):
            data = task.mm.copy_in(fp_addr, xstate_size + 4)
    except SyscallError:
        return None
    if struct.unpack_from("<I", legacy, 24)[0] & ~mxcsr_mask:
        return None
    fp = bytearray(size)
    if data and struct.unpack_from("<I", data, xstate_size)[0] == FP_XSTATE_MAGIC2:
        fp[:xstate_size] = data[:xstate_size]
        xstate_bv = struct.unpack_from("<Q", fp, 512)[0]
        if xstate_bv & ~host_features or any(fp[520:536]):  # XCOMP_BV and the next 8 bytes must be 0
            return None
        fp[536:576] = bytes(40)
        struct.pack_into("<Q", fp, 512, xstate_bv & features)
    else:
        fp[:512] = legacy
        struct.pack_into("<Q", fp, 512, 3)  # x87 | SSE
    fp[464:512] = bytes(48)  # software bytes: the platform's business
    return fp


# The host's user XSAVE features (XCR0) and MXCSR_MASK: constants of the
# machine, learned from the first XSAVE area a platform reads (their
# software bytes: XCR0 first, as ptrace and KVM give them, or the signal
# frame's magic, xfeatures, as vmexec's stub gets them).
_HOST_FP: tuple[int, int] | None = None


def _host_fp(task: Task) -> tuple[int, int]:
    """(XCR0's user features, MXCSR_MASK) of the host."""
    global _HOST_FP
    if _HOST_FP is None:
        fp = task.arch.fpstate
        if not task.arch.fp_dirty:
            task.context.read_fpstate(task.arch)
        magic1, = struct.unpack_from("<I", fp, 464)
        features = struct.unpack_from("<Q", fp, 472 if magic1 == FP_XSTATE_MAGIC1 else 464)[0]
        mxcsr_mask = struct.unpack_from("<I", fp, 28)[0] or 0xFFBF
        if features & 3 != 3:  # no software bytes: what this area holds, and not remembered
            return 3 | struct.unpack_from("<Q", fp, 512)[0], mxcsr_mask
        _HOST_FP = (features, mxcsr_mask)
    return _HOST_FP
