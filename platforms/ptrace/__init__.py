"""ptrace: guest code runs in stub processes under PTRACE_SYSEMU.

In a nutshell: each AddressSpace is a stub process (stub/stub-ptrace.c):
an empty address space, fresh namespaces, the MemoryFile as its only fd,
a seccomp allowlist, PR_SET_PDEATHSIG and PTRACE_O_EXITKILL. The Sentry
maps MemoryFile ranges into it by running mmap through the stub's gadget
(``syscall; int3``). ``Context.switch`` loads the registers, resumes the
stub with PTRACE_SYSEMU and waits: a guest ``syscall`` stops *before* the
host runs it, so the host never executes a guest system call.

Threads: ptrace lets only the tracer thread drive a tracee, so an
AddressSpace is bound to the OS thread that created it, and only Contexts
switched from that thread may use it (one guest thread per address space
for now; multi-threaded guests need a stub thread per task, issue 3).

FPU state stays in the stub thread between switches (the stub runs nothing
else), so it survives switches untouched; ``read_fpstate`` and
``fp_dirty`` move it through PTRACE_GETREGSET/SETREGSET(NT_X86_XSTATE).
"""
from __future__ import annotations

import errno
import os
import threading

import stub
from stub._native import ffi, lib

from platforms.base import (PROT_EXEC, PROT_READ, AddressSpace, ArchState, Context, EventKind, Platform,
                            PlatformError, SignalInfo, register)

_NR_MMAP, _NR_MUNMAP = 9, 11
_MAP_SHARED, _MAP_FIXED = 0x01, 0x10
_EVENTS = (EventKind.SYSCALL, EventKind.SIGNAL, EventKind.INTERRUPT)


def _check(result: int, what: str) -> int:
    if result < 0:
        raise PlatformError(f"ptrace stub: {what}: {os.strerror(-result)}")
    return result


class PtraceAddressSpace(AddressSpace):
    def __init__(self, memfd: int):
        pid, gadget = ffi.new("int *"), ffi.new("unsigned long *")
        _check(lib.sentry_ptrace_spawn(stub.binary("stub-ptrace").encode(), memfd, pid, gadget), "spawn")
        self.pid: int = pid[0]
        self.gadget: int = gadget[0]
        self.owner = threading.get_ident()
        self.released = False

    def _inject(self, nr: int, *args: int) -> int:
        assert threading.get_ident() == self.owner, "ptrace address space used off its tracer thread"
        return lib.sentry_ptrace_inject(self.pid, self.gadget, nr, *args, *(0,) * (6 - len(args)))

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None:
        if prot & PROT_EXEC:
            prot |= PROT_READ
        result = self._inject(_NR_MMAP, addr, length, prot, _MAP_SHARED | _MAP_FIXED, lib.SENTRY_STUB_MEMFD, offset)
        if result != addr:
            _check(result if result < 0 else -errno.EFAULT, f"mmap {addr:#x}+{length:#x}")

    def unmap(self, addr: int, length: int) -> None:
        _check(self._inject(_NR_MUNMAP, addr, length), f"munmap {addr:#x}+{length:#x}")

    def release(self) -> None:
        if not self.released:
            self.released = True
            lib.sentry_ptrace_kill(self.pid)


class PtraceContext(Context):
    def __init__(self) -> None:
        self.signal_info = SignalInfo()
        self._stop = ffi.new("struct sentry_stop *")
        self._pid = 0  # the stub currently (or last) run; for interrupt()

    def switch(self, address_space: AddressSpace, state: ArchState) -> EventKind:
        pid = address_space.pid  # type: ignore[attr-defined]
        self._pid = pid
        if state.fp_dirty:
            _check(lib.sentry_ptrace_xstate(pid, ffi.from_buffer(state.fpstate), len(state.fpstate), 1), "set xstate")
            state.fp_dirty = False
        kind = lib.sentry_ptrace_switch(pid, state.regs, self._stop)
        if kind < 0:
            raise PlatformError(f"ptrace stub {pid}: {os.strerror(-kind)}")
        if kind == 1:
            s = self._stop
            self.signal_info = SignalInfo(s.signo, s.code, s.addr, 0, s.trapno)
        return _EVENTS[kind]

    def read_fpstate(self, state: ArchState) -> None:
        _check(lib.sentry_ptrace_xstate(self._pid, ffi.from_buffer(state.fpstate), len(state.fpstate), 0), "get xstate")

    def interrupt(self) -> None:
        if self._pid:
            lib.sentry_ptrace_interrupt(self._pid)

    def release(self) -> None:
        self._pid = 0


@register
class PtracePlatform(Platform):
    name = "ptrace"
    map_unit = 1 << 20

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            stub.binary("stub-ptrace")
        except FileNotFoundError as e:
            return False, str(e)
        try:
            with open("/proc/sys/kernel/yama/ptrace_scope") as f:
                if f.read().strip() == "3":
                    return False, "ptrace is disabled (kernel.yama.ptrace_scope = 3)"
        except OSError:
            pass
        return True, "PTRACE_SYSEMU stub processes"

    def __init__(self, memory):
        super().__init__(memory)
        self._spaces: list[PtraceAddressSpace] = []

    def new_address_space(self) -> AddressSpace:
        space = PtraceAddressSpace(self.memory.fd)
        self._spaces.append(space)
        return space

    def new_context(self) -> Context:
        return PtraceContext()

    def close(self) -> None:
        for space in self._spaces:
            space.release()
        self._spaces.clear()
