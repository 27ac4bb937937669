"""vmexec Contexts and ``process_vm_exec()``.

A Context owns one stub thread per address space it has run in (created on
its first switch there), so it can move to a new address space after execve
and many Contexts can share one. The FPU state lives in the current stub
thread's signal frame; when a Context moves to another stub thread it takes
the state along from the old frame (if that address space was released
first, ``state.fpstate`` as last read or written is what it takes).
"""
from __future__ import annotations

import errno
import signal

from stub._native import ffi, lib

from platforms.base import AddressSpace, ArchState, Context, EventKind, SignalInfo
from platforms.vmexec.stubs import StubThread, VmexecAddressSpace, _fail

_EVENTS = (EventKind.SYSCALL, EventKind.SIGNAL, EventKind.INTERRUPT)
_switch = lib.sentry_vmexec_switch
_NULL = ffi.NULL


class VmexecContext(Context):
    def __init__(self) -> None:
        self.signal_info = SignalInfo()
        self._caller = ffi.new("struct sentry_vmexec_caller *")
        self._stop = ffi.new("struct sentry_vmexec_stop *")
        self._threads: dict[VmexecAddressSpace, StubThread] = {}
        self._space: VmexecAddressSpace | None = None
        self._current: StubThread | None = None

    def switch(self, address_space: AddressSpace, state: ArchState) -> EventKind:
        t = self._current
        if address_space is not self._space or not t.alive:  # type: ignore[union-attr]
            t = self._enter(address_space, state)  # type: ignore[arg-type]
        fp = _NULL
        if state.fp_dirty:
            fp = ffi.from_buffer(state.fpstate)
            state.fp_dirty = False
        kind = _switch(self._caller, t.c, state.regs, fp, self._stop)
        if kind == 1:
            s = self._stop
            self.signal_info = SignalInfo(s.signo, s.code, s.addr, s.access, s.trapno)
        elif kind == -errno.ESRCH:  # guest code ran stub code that ended its thread: it dies as if SIGKILLed
            t.alive = False
            self.signal_info = SignalInfo(signal.SIGKILL, 0, 0, 0, -1)
            return EventKind.SIGNAL
        elif kind < 0:
            raise _fail(f"switch into stub {t.process.pid}", kind)
        return _EVENTS[kind]

    def _enter(self, space: VmexecAddressSpace, state: ArchState | None) -> StubThread:
        """Make the stub thread for ``space`` current, creating it if need be,
        and carry the FPU state over to it (into ``state``, marked dirty)."""
        for old in [s for s, t in self._threads.items() if not t.alive]:
            del self._threads[old]
        thread = self._threads.get(space)
        if thread is None:
            thread = self._threads[space] = space.stub().new_thread()
        prev = self._current
        if state is not None and not state.fp_dirty:
            if prev is not None and prev.alive:
                prev.fpstate(state.fpstate, False)
            state.fp_dirty = True  # else state.fpstate is the newest copy
        self._space, self._current = space, thread
        return thread

    def prepare(self, address_space: AddressSpace) -> None:
        self._enter(address_space, None)  # type: ignore[arg-type]

    def read_fpstate(self, state: ArchState) -> None:
        t = self._current
        if t is not None and t.alive and not state.fp_dirty:
            t.fpstate(state.fpstate, False)

    def interrupt(self) -> None:
        lib.sentry_vmexec_interrupt(self._caller)

    def release(self) -> None:
        for thread in self._threads.values():
            thread.process.release_thread(thread)
        self._threads.clear()
        self._space = self._current = None


def process_vm_exec(context: VmexecContext, address_space: AddressSpace, ctx, flags: int, info) -> int:
    """Run guest code of ``address_space`` in ``context``'s stub thread there
    until it makes a system call or gets a signal: the user-space form of
    Andrei Vagin's process_vm_exec(pid, sigcontext, flags, siginfo) RFC.

    ctx:   ``struct vmexec_context *``: the kernel's 64-bit sigcontext (with
           ``fpstate`` the address of an XSAVE area) plus FS/GS base; in, the
           registers to run; out, the registers at the stop.
    flags: ``VMEXEC_FPSTATE_IN`` loads the XSAVE area first,
           ``VMEXEC_FPSTATE_OUT`` stores the guest's into it on return.
    info:  ``struct vmexec_siginfo *``, out: why it stopped; a system call
           is a synthetic SIGSYS (si_code SYS_SECCOMP, si_syscall = number).
    Returns 0, or -EINTR if ``context.interrupt()`` stopped it (info.signo
    is then 0 if the guest did not run), or another -errno if the stub
    failed (-ESRCH: it died)."""
    t = context._current
    if address_space is not context._space or t is None or not t.alive:
        t = context._enter(address_space, None)  # type: ignore[arg-type]
    return lib.sentry_process_vm_exec(context._caller, t.c, ctx, flags, info)
