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
import struct
import time

from platforms.base import PROT_EXEC, PROT_READ, PROT_WRITE, EventKind
from sentry.errors import SyscallError
from sentry.kernel import signals
from sentry.kernel.task import Task
from sentry.mm.mm import Fault
from sentry.syscalls.table import dispatch_list

_MASK = (1 << 64) - 1
_BUS_ADRERR = 2  # si_code: a nonexistent physical address (a page past the end of a mapped file)
_BUS_ADRALN, _SEGV_MAPERR, _SEGV_ACCERR, _FPE_INTDIV, _FPE_INTOVF, _SI_KERNEL = 1, 1, 2, 1, 2, 0x80
# x86 exception vectors, and the page-fault error code's bits (arch/x86/include/asm/trap_pf.h)
_X86_DE, _X86_DB, _X86_BP, _X86_UD, _X86_SS, _X86_GP, _X86_PF, _X86_MF, _X86_AC, _X86_XM = (
    0, 1, 3, 6, 12, 13, 14, 16, 17, 19)
_PF_PROT, _PF_WRITE, _PF_USER, _PF_INSTR = 0x1, 0x2, 0x4, 0x10
_TASK_SIZE_MAX = (1 << 47) - 4096  # user accesses above it are reported as protection faults
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
    file, else the platform's. The signal frame's trapno, err and cr2 are
    Linux's (``task.trap_info``: ``_trapno``, ``_page_fault``)."""
    info = task.context.signal_info
    signo, code = info.signo, info.code
    fault = None
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
    trapno = info.trapno if info.trapno >= 0 else _trapno(task, info.signo, info.code)
    if trapno == _X86_PF:
        code = _page_fault(task, info.addr, info.access, code, fault is Fault.PAST_EOF)
    elif trapno >= 0:
        task.trap_info = (trapno, 0, task.trap_info[2])  # cr2 changes only with a page fault
    task.kernel.debug(f"task {task.tid}: signal {signo} (code {code}, addr {info.addr:#x}) "
                      f"at rip {task.arch.regs.rip:#x}")
    signals.force(task, signo, signals.siginfo(signo, code, addr=info.addr))


def _trapno(task: Task, signo: int, code: int) -> int:
    """The x86 exception behind a fault signal when the platform cannot
    tell (ptrace: only the siginfo): as Linux's traps.c sends them; -1 for
    a signal no exception raised."""
    if signo == S.SIGSEGV:
        return _X86_GP if code == _SI_KERNEL else _X86_PF
    if signo == S.SIGBUS:
        return _X86_AC if code == _BUS_ADRALN else _X86_SS if code == _SI_KERNEL else _X86_PF
    if signo == S.SIGILL:
        return _X86_UD
    if signo == S.SIGTRAP:
        return _X86_BP if code == _SI_KERNEL else _X86_DB
    if signo == S.SIGFPE:
        if code in (_FPE_INTDIV, _FPE_INTOVF):
            return _X86_DE
        task.context.read_fpstate(task.arch)  # an x87 exception pending (#MF), else SIMD (#XM)
        fcw, fsw = struct.unpack_from("<HH", task.arch.fpstate, 0)
        return _X86_MF if fsw & ~fcw & 0x3F else _X86_XM
    return -1


def _page_fault(task: Task, addr: int, access: int, code: int, past_eof: bool) -> int:
    """Record a page fault's trapno, #PF error code and cr2 in
    ``task.trap_info`` as Linux's set_signal_archinfo; returns the si_code.

    The access type is the platform's (vmexec and KVM know it from the
    error code) or, under ptrace (no access type), derived: an instruction
    fetch when the address is the instruction's; a write when the page's
    mapping allows some access but not writes (a read there would not fault);
    else a read (a write to an unmapped or PROT_NONE page reads as a read).
    The present bit is Linux's for a populated page: set for a protection
    fault on a mapping with some access, clear for no mapping, PROT_NONE or
    a page past the end of its file (a protection fault on a page Linux
    never populated would have it clear). SEGV_MAPERR/ACCERR follow the
    mapping, as Linux's bad_area / bad_area_access_error."""
    vma = task.mm.vma_at(addr)
    prot = vma.prot if vma is not None else 0
    if not access:
        rip = task.arch.regs.rip
        if addr == rip or (addr & 0xFFF == 0 and rip < addr < rip + 15):
            access = PROT_EXEC
        elif prot and not prot & PROT_WRITE and not past_eof:
            access = PROT_WRITE
        else:
            access = PROT_READ
    err = _PF_USER
    if access & PROT_WRITE:
        err |= _PF_WRITE
    elif access & PROT_EXEC:
        err |= _PF_INSTR
    if (prot and not past_eof) or addr >= _TASK_SIZE_MAX:
        err |= _PF_PROT
    task.trap_info = (_X86_PF, err, addr)
    if past_eof or code not in (_SEGV_MAPERR, _SEGV_ACCERR):
        return code
    return _SEGV_ACCERR if vma is not None else _SEGV_MAPERR
