"""ptrace: guest code runs in stub processes under PTRACE_SYSEMU.

In a nutshell: a stub (stub/stub-ptrace.c) is an empty address space in
the sandbox's own namespaces (platforms/stubns.py) with the MemoryFile as
its only fd, a seccomp allowlist, PR_SET_PDEATHSIG and PTRACE_O_EXITKILL. ``Context.switch`` loads the
registers, resumes the stub with PTRACE_SYSEMU and waits: a guest
``syscall`` stops *before* the host runs it, so the host never executes a
guest system call. The Sentry maps MemoryFile ranges into a stub by
running mmap through the stub's gadget (``syscall; int3``).

ptrace lets only the tracer thread drive a tracee, and each guest thread is
driven by its own OS thread. So an AddressSpace is *logical*: it records
its mappings, and each Context gets a stub process of its own per address
space, created by (and traced from) the Context's OS thread. All stubs of
one address space map the same MemoryFile ranges, so they share memory
exactly as threads do. A stub catches up with mapping changes made by
other threads before each switch (``_sync``); a removal (unmap, or a
protection reduction) also interrupts the other stubs so none keeps running
on a stale mapping.

FPU state stays in the stub between switches (the stub runs nothing else),
so it survives switches untouched; ``read_fpstate`` and ``fp_dirty`` move
it through PTRACE_GETREGSET/SETREGSET(NT_X86_XSTATE).

Lock order: PtraceAddressSpace.lock (leaf).
"""
from __future__ import annotations

import errno
import os
import threading

import stub
from stub._native import ffi, lib

from platforms.base import (PROT_EXEC, PROT_READ, AddressSpace, ArchState, Context, EventKind, Platform,
                            PlatformError, SignalInfo, register, stub_namespaces_missing)
from platforms.stubns import StubNamespaces

_NR_MMAP, _NR_MUNMAP = 9, 11
_MAP_SHARED, _MAP_FIXED = 0x01, 0x10
_EVENTS = (EventKind.SYSCALL, EventKind.SIGNAL, EventKind.INTERRUPT)


def _check(result: int, what: str) -> int:
    if result < 0:
        raise PlatformError(f"ptrace stub: {what}: {os.strerror(-result)}")
    return result


class _Stub:
    """One stub process, traced by the OS thread that spawned it."""

    def __init__(self, memfd: int, namespaces: StubNamespaces):
        pid, gadget = ffi.new("int *"), ffi.new("unsigned long *")
        shared = namespaces.for_spawn()
        _check(lib.sentry_ptrace_spawn(stub.binary("stub-ptrace").encode(), memfd, shared, pid, gadget), "spawn")
        if shared == ffi.NULL:
            namespaces.adopt(pid[0])
        self.pid: int = pid[0]
        self.gadget: int = gadget[0]
        self.tracer = threading.get_ident()
        self.applied = 0  # index into the address space's op log
        self.alive = True

    def call(self, nr: int, *args: int) -> int:
        assert threading.get_ident() == self.tracer, "ptrace stub driven off its tracer thread"
        return lib.sentry_ptrace_inject(self.pid, self.gadget, nr, *args, *(0,) * (6 - len(args)))

    def map(self, addr: int, offset: int, length: int, prot: int) -> None:
        if prot & PROT_EXEC:
            prot |= PROT_READ
        result = self.call(_NR_MMAP, addr, length, prot, _MAP_SHARED | _MAP_FIXED, lib.SENTRY_STUB_MEMFD, offset)
        if result != addr:
            _check(result if result < 0 else -errno.EFAULT, f"mmap {addr:#x}+{length:#x}")

    def unmap(self, addr: int, length: int) -> None:
        _check(self.call(_NR_MUNMAP, addr, length), f"munmap {addr:#x}+{length:#x}")

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            lib.sentry_ptrace_kill(self.pid)


class PtraceAddressSpace(AddressSpace):
    """Mappings as a log of operations that every stub replays in order.
    ``_current`` is the net effect (start -> (end, offset, prot)), from
    which a new stub is built; the log is trimmed once all stubs are past."""

    def __init__(self, memfd: int, namespaces: StubNamespaces):
        self.memfd = memfd
        self.namespaces = namespaces
        self.lock = threading.Lock()
        self._log: list[tuple[int, int, int, int, int]] = []  # (addr, length, offset, prot, is_map)
        self._base = 0  # log index of _log[0]
        self.generation = 0  # == _base + len(_log): ops recorded so far
        self._current: dict[int, tuple[int, int, int]] = {}
        self._stubs: dict[int, _Stub] = {}  # tracer thread ident -> stub
        self.released = False

    def stub_for_current_thread(self) -> _Stub:
        """This OS thread's stub, created and brought up to date."""
        me = threading.get_ident()
        s = self._stubs.get(me)
        if s is None:
            s = _Stub(self.memfd, self.namespaces)
            with self.lock:
                current = sorted(self._current.items())
                s.applied = self.generation
                self._stubs[me] = s
            for addr, (end, offset, prot) in current:
                s.map(addr, offset, end - addr, prot)
        elif s.applied != self.generation:
            self._sync(s)
        return s

    def _sync(self, s: _Stub) -> None:
        with self.lock:
            ops = self._log[s.applied - self._base:]
            s.applied = self.generation
        for addr, length, offset, prot, is_map in ops:
            if is_map:
                s.map(addr, offset, length, prot)
            else:
                s.unmap(addr, length)
        self._trim()

    def _trim(self) -> None:
        with self.lock:
            low = min((s.applied for s in self._stubs.values()), default=self.generation)
            if low - self._base > 256:
                del self._log[:low - self._base]
                self._base = low

    def _record(self, addr: int, length: int, offset: int, prot: int, is_map: bool) -> None:
        end = addr + length
        with self.lock:
            self._log.append((addr, length, offset, prot, int(is_map)))
            self.generation += 1
            for start in [a for a, (e, _o, _p) in self._current.items() if a < end and e > addr]:
                e, o, p = self._current.pop(start)
                if start < addr:
                    self._current[start] = (addr, o, p)
                if e > end:
                    self._current[end] = (e, o + (end - start), p)
            if is_map:
                self._current[addr] = (end, offset, prot)
            others = [s for t, s in self._stubs.items() if t != threading.get_ident()]
        if not is_map or others:
            for s in others:
                lib.sentry_ptrace_interrupt(s.pid)  # run no further on a stale mapping
        mine = self._stubs.get(threading.get_ident())
        if mine is not None:
            self._sync(mine)

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None:
        self._record(addr, length, offset, prot, True)

    def unmap(self, addr: int, length: int) -> None:
        self._record(addr, length, 0, 0, False)

    def drop_thread(self) -> None:
        """The calling OS thread is done with this address space."""
        with self.lock:  # others iterate over _stubs (_trim, _record)
            s = self._stubs.pop(threading.get_ident(), None)
        if s is not None:
            s.kill()

    def release(self) -> None:
        if not self.released:
            self.released = True
            with self.lock:
                stubs = list(self._stubs.values())
                self._stubs.clear()
            for s in stubs:
                s.kill()


class PtraceContext(Context):
    def __init__(self) -> None:
        self.signal_info = SignalInfo()
        self._stop = ffi.new("struct sentry_stop *")
        self._pid = 0  # the stub currently (or last) run; for interrupt()
        self._interrupted = False
        self._space: PtraceAddressSpace | None = None  # the one last switched into
        self._stub: _Stub | None = None  # this thread's stub in _space
        self._spaces: set[PtraceAddressSpace] = set()  # address spaces this context ran in

    def _enter(self, space: PtraceAddressSpace) -> _Stub:
        """This thread's stub in ``space``, up to date with its mappings."""
        s = space.stub_for_current_thread()
        self._spaces.add(space)
        self._space, self._stub, self._pid = space, s, s.pid
        return s

    def switch(self, address_space: AddressSpace, state: ArchState) -> EventKind:
        s = self._stub
        if address_space is not self._space or s.applied != address_space.generation:  # type: ignore[union-attr]
            s = self._enter(address_space)  # type: ignore[arg-type]
        if self._interrupted:
            self._interrupted = False
            return EventKind.INTERRUPT
        pid = s.pid
        if state.fp_dirty:
            _check(lib.sentry_ptrace_xstate(pid, ffi.from_buffer(state.fpstate), len(state.fpstate), 1), "set xstate")
            state.fp_dirty = False
        kind = lib.sentry_ptrace_switch(pid, state.regs, self._stop)
        if kind == 0:
            return EventKind.SYSCALL
        if kind < 0:
            raise PlatformError(f"ptrace stub {pid}: {os.strerror(-kind)}")
        if kind == 1:
            st = self._stop
            self.signal_info = SignalInfo(st.signo, st.code, st.addr, 0, st.trapno)
        elif not self._interrupted:
            return self.switch(address_space, state)  # stopped only to catch up with the mappings
        else:
            self._interrupted = False
        return _EVENTS[kind]

    def prepare(self, address_space: AddressSpace) -> None:
        self._enter(address_space)  # type: ignore[arg-type]

    def read_fpstate(self, state: ArchState) -> None:
        _check(lib.sentry_ptrace_xstate(self._pid, ffi.from_buffer(state.fpstate), len(state.fpstate), 0), "get xstate")

    def interrupt(self) -> None:
        self._interrupted = True
        if self._pid:
            lib.sentry_ptrace_interrupt(self._pid)

    def release(self) -> None:
        """Drop this thread's stubs. Call from the context's own OS thread."""
        for space in self._spaces:
            space.drop_thread()
        self._spaces.clear()
        self._space = self._stub = None
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
        missing = stub_namespaces_missing()
        if missing is not None:
            return False, missing
        return True, "PTRACE_SYSEMU stub processes"

    def __init__(self, memory):
        super().__init__(memory)
        self._spaces: list[PtraceAddressSpace] = []
        self._namespaces = StubNamespaces()

    def new_address_space(self) -> AddressSpace:
        space = PtraceAddressSpace(self.memory.fd, self._namespaces)
        self._spaces.append(space)
        return space

    def new_context(self) -> Context:
        return PtraceContext()

    def close(self) -> None:
        for space in self._spaces:
            space.release()
        self._spaces.clear()
        self._namespaces.close()
