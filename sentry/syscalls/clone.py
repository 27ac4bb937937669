"""Process creation and reaping: clone, clone3, fork, vfork, wait4, waitid,
and the pidfds that stand for processes (CLONE_PIDFD, pidfd_open,
pidfd_send_signal, waitid(P_PIDFD); the file is sentry/fs/pidfd.py).

A new task gets its own OS thread (Kernel.spawn). Its address space is the
parent's (CLONE_VM) or a copy-on-write fork of it, activated from the
child's own thread, as the platforms require.
"""
from __future__ import annotations

import errno
import signal as S
import struct
import time

from platforms.base import PlatformError
from sentry.errors import SyscallError
from sentry.fs.file import O_NONBLOCK
from sentry.fs.pidfd import PidFD
from sentry.kernel import signals as sig
from sentry.kernel.cputime import fold_reaped_child, group_times
from sentry.kernel.task import Task, ThreadGroup
from sentry.kernel.wait import wait_until
from sentry.syscalls import sched
from sentry.syscalls.spec import FD, Flags, Hex, Int, Ptr, Signal, Size, Struct, entries, partial, s32, supported

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_UNTRACED, CLONE_CHILD_SETTID, CLONE_NEWCGROUP = 0x800000, 0x1000000, 0x2000000
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_IO = (
    0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x80000000)
CLONE_NAMES = {v: k for k, v in dict(
    CLONE_VM=CLONE_VM, CLONE_FS=CLONE_FS, CLONE_FILES=CLONE_FILES, CLONE_SIGHAND=CLONE_SIGHAND,
    CLONE_PIDFD=CLONE_PIDFD, CLONE_PTRACE=CLONE_PTRACE, CLONE_VFORK=CLONE_VFORK, CLONE_PARENT=CLONE_PARENT,
    CLONE_THREAD=CLONE_THREAD, CLONE_NEWNS=CLONE_NEWNS, CLONE_SYSVSEM=CLONE_SYSVSEM, CLONE_SETTLS=CLONE_SETTLS,
    CLONE_PARENT_SETTID=CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID=CLONE_CHILD_CLEARTID,
    CLONE_DETACHED=CLONE_DETACHED, CLONE_UNTRACED=CLONE_UNTRACED, CLONE_CHILD_SETTID=CLONE_CHILD_SETTID).items()}
_NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
WNOHANG, WUNTRACED, WCONTINUED, WEXITED, WNOWAIT = 1, 2, 8, 4, 0x01000000
__WNOTHREAD, __WALL, __WCLONE = 0x20000000, 0x40000000, 0x80000000
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3


def do_clone(t: Task, flags: int, stack: int, parent_tid: int, child_tid: int, tls: int,
             exit_signal: int, pidfd_addr: int = 0) -> int:
    """``pidfd_addr``: where CLONE_PIDFD stores the new process's pidfd (an
    int); clone passes parent_tid, clone3 its own field."""
    kernel = t.kernel
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND or flags & CLONE_SIGHAND and not flags & CLONE_VM:
        raise SyscallError(errno.EINVAL)
    if flags & (CLONE_PIDFD | CLONE_PARENT) and flags & CLONE_THREAD:
        raise SyscallError(errno.EINVAL)
    if flags & CLONE_PIDFD and (flags & CLONE_DETACHED or flags & CLONE_PARENT_SETTID and pidfd_addr == parent_tid):
        raise SyscallError(errno.EINVAL)
    if flags & _NAMESPACES:
        raise SyscallError(errno.EPERM)
    if flags & CLONE_SETTLS and tls >= 0x8000_0000_0000:  # not a canonical user address
        raise SyscallError(errno.EPERM)
    if _over_pids(kernel):
        raise SyscallError(errno.EAGAIN)
    tid = kernel.allocate_pid()
    if flags & CLONE_THREAD:
        group = t.group
    else:
        parent = t.group.parent if flags & CLONE_PARENT and t.group.parent else t.group
        group = ThreadGroup(tid, parent, t.group.exe)
        group.exit_signal = exit_signal
        group.start_ns = time.monotonic_ns()
        if flags & CLONE_SIGHAND:
            group.sigactions = t.group.sigactions
        else:
            group.sigactions = [type(a)(a.handler, a.flags, a.restorer, a.mask) for a in t.group.sigactions]
    mm = t.mm if flags & CLONE_VM else t.mm.fork()
    fds = t.fds if flags & CLONE_FILES else t.fds.fork()
    fs = t.fs if flags & CLONE_FS else t.fs.fork()

    def undo(pidfd: int = -1) -> None:
        """The clone failed: drop what the child would have owned."""
        if pidfd >= 0:
            t.fds.close(pidfd)
        if mm is not t.mm:
            mm.release()
        if fds is not t.fds:
            fds.close_all()

    t.context.read_fpstate(t.arch)
    state = kernel.platform.new_arch_state()
    for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rcx", "rdx", "rsi",
                 "rdi", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"):
        setattr(state.regs, name, getattr(t.arch.regs, name))
    state.regs.rax = 0
    state.fpstate[:] = t.arch.fpstate
    state.fp_dirty = True
    if stack:
        state.regs.rsp = stack
    if flags & CLONE_SETTLS:
        state.regs.fs_base = tls
    try:
        context = kernel.platform.new_context()
    except PlatformError as e:  # no vCPU for it (KVM's limit): out of a resource, as Linux says
        kernel.debug(f"clone: {e}: EAGAIN")
        undo()
        raise SyscallError(errno.EAGAIN) from None
    child = Task(kernel, tid, group, mm, fds, fs, state, context)
    child.comm = t.comm
    sched.inherit(t, child)
    child.signal_mask = t.signal_mask
    if not flags & CLONE_THREAD:
        child.sigaltstack = t.sigaltstack
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    for wanted, memory, addr in ((CLONE_PARENT_SETTID, t.mm, parent_tid), (CLONE_CHILD_SETTID, mm, child_tid)):
        if flags & wanted:
            try:
                memory.write_u32(addr, tid)
            except SyscallError:
                pass  # as Linux's put_user there: a bad address is not the clone's failure
    refused, pidfd = _new_pidfd(t, group, pidfd_addr) if flags & CLONE_PIDFD else (0, -1)
    setup = None if flags & CLONE_VM else (lambda: mm.activate(kernel.platform.new_address_space()))
    startup = None if refused else kernel.prepare(child, setup)
    if startup is not None and startup.error is not None:
        kernel.debug(f"clone: {startup.error}: EAGAIN")  # no stub for it: the host is out of processes
        if not isinstance(startup.error, PlatformError):
            kernel.crashed(startup.error)
        refused = errno.EAGAIN
    with kernel.lock:
        dying = t.group.exit_status is not None or t.group.execing not in (None, t)  # exit, or another's exec
        refused = refused or (errno.EINTR if dying else errno.EAGAIN if _over_pids(kernel) else 0)
        if not refused:
            group.tasks.append(child)
            kernel.tasks[tid] = child
            if not flags & CLONE_THREAD:
                kernel.groups[tid] = group
                group.parent.children.append(group)  # type: ignore[union-attr]
    if refused:
        if startup is not None:
            startup.abort()  # its thread releases the context
        else:
            child.context.release()
        undo(pidfd)
        raise SyscallError(refused)
    if flags & CLONE_VFORK:
        child.vfork_parent = t
    if kernel.tracer is not None:
        kernel.tracer.event(t, "clone", tid)
    startup.commit()  # type: ignore[union-attr]
    if flags & CLONE_VFORK:
        wait_until(t, (group.child_events,), lambda: child.vfork_done, interruptible=False)
    return tid


def _new_pidfd(t: Task, group: ThreadGroup, addr: int) -> tuple[int, int]:
    """CLONE_PIDFD: a close-on-exec pidfd for ``group`` in the caller's
    table (a child with its own table never has it), its number stored at
    ``addr``. Returns (errno, fd): a failure is the clone's."""
    try:
        fd = t.fds.install(PidFD(t.kernel, group, 0), cloexec=True)
    except SyscallError as e:
        return e.errno, -1
    try:
        t.mm.write_u32(addr, fd)
    except SyscallError as e:
        return e.errno, fd
    return 0, fd


def _over_pids(kernel) -> bool:
    """True if --pids leaves no room for one more task. It counts as the
    pids cgroup does: live tasks and zombies not yet reaped."""
    limit = kernel.config.pids_limit
    if limit is None:
        return False
    with kernel.lock:
        return len(kernel.tasks) + sum(1 for g in kernel.groups.values() if g.zombie) >= limit


def sys_clone(t: Task, flags: int, stack: int, parent_tid: int, child_tid: int, tls: int) -> int:
    return do_clone(t, flags & ~0xFF, stack, parent_tid, child_tid, tls, flags & 0xFF, parent_tid)


def sys_fork(t: Task) -> int:
    return do_clone(t, 0, 0, 0, 0, 0, S.SIGCHLD)


def sys_vfork(t: Task) -> int:
    return do_clone(t, CLONE_VM | CLONE_VFORK, 0, 0, 0, 0, S.SIGCHLD)


_CLONE_ARGS = struct.Struct("<11Q")


def sys_clone3(t: Task, args: int, size: int) -> int:
    if size < 64 or size > 4096:
        raise SyscallError(errno.EINVAL)
    raw = t.mm.copy_in(args, min(size, _CLONE_ARGS.size)).ljust(_CLONE_ARGS.size, b"\0")
    flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup = \
        _CLONE_ARGS.unpack(raw)
    if set_tid or set_tid_size or exit_signal > 64:
        raise SyscallError(errno.EINVAL if exit_signal > 64 else errno.ENOSYS)
    top = stack + stack_size if stack else 0
    return do_clone(t, flags, top, parent_tid, child_tid, tls, exit_signal, pidfd)


def _matches(t: Task, child: ThreadGroup, idtype: int, ident: int, options: int) -> bool:
    if idtype == P_PID and child.pid != ident:
        return False
    if idtype == P_PGID and child.pgid != ident:
        return False
    clone_child = child.exit_signal != S.SIGCHLD
    if options & __WALL:
        return True
    return clone_child == bool(options & __WCLONE)


def _event(child: ThreadGroup, options: int) -> int | None:
    """The wait status ``child`` has to report under ``options``, if any:
    an exit, a stop (WUNTRACED) or a continue (WCONTINUED)."""
    if child.zombie and options & WEXITED:
        return child.exit_status or 0
    if options & WUNTRACED and child.stop_report is not None:
        return (child.stop_report << 8) | 0x7F
    if options & WCONTINUED and child.continued_report:
        return 0xFFFF
    return None


def _wait(t: Task, idtype: int, ident: int, options: int) -> tuple[ThreadGroup, int] | None:
    """The child to report and its status; None with WNOHANG; ECHILD if
    none can ever come. A reported stop or continue is consumed unless
    WNOWAIT."""
    kernel = t.kernel
    found: list[tuple[ThreadGroup, int]] = []

    def ready() -> bool:
        with kernel.lock:
            candidates = [c for c in t.group.children if _matches(t, c, idtype, ident, options)]
            if not candidates:
                raise SyscallError(errno.ECHILD)
            for c in candidates:
                status = _event(c, options)
                if status is not None:
                    if not options & WNOWAIT and not c.zombie:
                        if status == 0xFFFF:
                            c.continued_report = False
                        else:
                            c.stop_report = None
                    found.append((c, status))
                    return True
        return False

    if options & WNOHANG:
        return found[0] if ready() else None
    wait_until(t, (t.group.child_events,), ready)
    return found[0]


def _reap(t: Task, child: ThreadGroup) -> None:
    with t.kernel.lock:
        if child in t.group.children:
            t.group.children.remove(child)
            fold_reaped_child(t.group, child)
        t.kernel.groups.pop(child.pid, None)


def _copy_out_rusage(t: Task, addr: int, child: ThreadGroup) -> None:
    """The rusage wait4 and waitid report: the child's times and those of
    the children it reaped."""
    t.mm.copy_out(addr, (group_times(child) + child.children_times).rusage())


def sys_wait4(t: Task, pid: int, status_addr: int, options: int, rusage: int) -> int:
    pid = s32(pid)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WALL | __WCLONE):
        raise SyscallError(errno.EINVAL)
    if pid == -1:
        idtype, ident = P_ALL, 0
    elif pid > 0:
        idtype, ident = P_PID, pid
    else:
        idtype, ident = P_PGID, (t.group.pgid if pid == 0 else -pid)
    got = _wait(t, idtype, ident, options | WEXITED)
    if got is None:
        return 0
    child, status = got
    if status_addr:
        t.mm.write_u32(status_addr, status)
    if rusage:
        _copy_out_rusage(t, rusage, child)
    if child.zombie:
        _reap(t, child)
    return child.pid


def sys_waitid(t: Task, idtype: int, ident: int, infop: int, options: int, rusage: int) -> int:
    if not options & (WEXITED | WUNTRACED | WCONTINUED):
        raise SyscallError(errno.EINVAL)
    if idtype not in (P_ALL, P_PID, P_PGID, P_PIDFD):
        raise SyscallError(errno.EINVAL)
    ident = s32(ident)
    nonblock = False
    if idtype == P_PIDFD:  # the pidfd's process; a non-blocking pidfd makes it WNOHANG (EAGAIN, not 0)
        f = pidfd_file(t, ident) if ident >= 0 else None
        if f is None:
            raise SyscallError(errno.EINVAL)
        idtype, ident = P_PID, f.group.pid
        nonblock = bool(f.flags & O_NONBLOCK) and not options & WNOHANG
        options |= WNOHANG if nonblock else 0
    got = _wait(t, idtype, ident, options)
    if infop:
        if got is None:
            t.mm.copy_out(infop, bytes(128))
        else:
            from sentry.kernel import signals as sig

            child, status = got
            if status == 0xFFFF:
                code, value = sig.CLD_CONTINUED, S.SIGCONT
            elif status & 0xFF == 0x7F:
                code, value = sig.CLD_STOPPED, status >> 8
            elif status & 0x7F:
                code, value = (sig.CLD_DUMPED if status & 0x80 else sig.CLD_KILLED), status & 0x7F
            else:
                code, value = sig.CLD_EXITED, (status >> 8) & 0xFF
            t.mm.copy_out(infop, sig.siginfo(S.SIGCHLD, code, pid=child.pid, uid=child.creds.uid, status=value))
    if rusage and got is not None:
        _copy_out_rusage(t, rusage, got[0])
    if got is not None and got[0].zombie and not options & WNOWAIT:
        _reap(t, got[0])
    if got is None and nonblock:
        raise SyscallError(errno.EAGAIN)
    return 0


# --- pidfds ----------------------------------------------------------------------------
PIDFD_NONBLOCK = O_NONBLOCK


def pidfd_file(t: Task, fd: int) -> PidFD:
    """The pidfd at ``fd``; EBADF if ``fd`` is not one."""
    f = t.fds.get(fd)
    if not isinstance(f, PidFD):
        raise SyscallError(errno.EBADF)
    return f


def sys_pidfd_open(t: Task, pid: int, flags: int) -> int:
    """A pidfd for process ``pid`` (live, or a zombie not yet reaped);
    ENOENT for a thread that leads no process, as Linux >= 6.9 (PIDFD_THREAD
    itself is refused, as before 6.9)."""
    pid = s32(pid)
    if flags & ~PIDFD_NONBLOCK or pid <= 0:
        raise SyscallError(errno.EINVAL)
    kernel = t.kernel
    with kernel.lock:
        group = kernel.groups.get(pid)
        thread = pid in kernel.tasks
    if group is None:
        raise SyscallError(errno.ENOENT if thread else errno.ESRCH)
    return t.fds.install(PidFD(kernel, group, flags), cloexec=True)


def sys_pidfd_send_signal(t: Task, fd: int, signo: int, info_addr: int, flags: int) -> int:
    """kill(2) through a pidfd. ``info``: the siginfo to send, which only
    the process itself may make look like the kernel's (si_code >= 0 or
    SI_TKILL: EPERM). A zombie takes the signal and drops it; once reaped,
    ESRCH."""
    signo = s32(signo)
    if flags:
        raise SyscallError(errno.EINVAL)
    f = pidfd_file(t, s32(fd))
    group = f.group
    if info_addr:
        info = t.mm.copy_in(info_addr, sig.SIGINFO_SIZE)
        si_signo, _errno, si_code = struct.unpack_from("<iii", info)
        if si_signo != signo:
            raise SyscallError(errno.EINVAL)
        if group is not t.group and (si_code >= 0 or si_code == sig.SI_TKILL):
            raise SyscallError(errno.EPERM)
    else:
        info = sig.siginfo(signo, sig.SI_USER, pid=t.group.pid, uid=t.creds.uid)
    if f.reaped():
        raise SyscallError(errno.ESRCH)
    if not 0 <= signo <= 64:
        raise SyscallError(errno.EINVAL)
    sig.send(t.kernel, group, signo, info)
    return 0


WAIT_NAMES = {1: "WNOHANG", 2: "WUNTRACED", 8: "WCONTINUED", 4: "WEXITED", 0x01000000: "WNOWAIT",
              0x40000000: "__WALL", 0x80000000: "__WCLONE"}

ENTRIES = entries(
    supported("clone", sys_clone, args=(Flags(CLONE_NAMES), Hex, Ptr, Ptr, Hex)),
    partial("clone3", sys_clone3, args=(Struct("clone_args"), Size), note="no set_tid"),
    supported("fork", sys_fork),
    supported("vfork", sys_vfork),
    supported("wait4", sys_wait4, args=(Int, Ptr, Flags(WAIT_NAMES), Ptr)),
    supported("waitid", sys_waitid, args=(Int, Int, Ptr, Flags(WAIT_NAMES), Ptr)),
    partial("pidfd_open", sys_pidfd_open, args=(Int, Flags({PIDFD_NONBLOCK: "PIDFD_NONBLOCK"})),
            note="no PIDFD_THREAD (Linux 6.9)"),
    partial("pidfd_send_signal", sys_pidfd_send_signal, args=(FD, Signal, Ptr, Hex),
            note="no PIDFD_SIGNAL_* flags (Linux 6.9)"),
)
