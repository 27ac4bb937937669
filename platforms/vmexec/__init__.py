"""vmexec: guest code runs in stub threads under a seccomp filter that traps
every system call; ``process_vm_exec()`` hands each stop to the Sentry.

In a nutshell (gVisor's systrap, behind the contract of Andrei Vagin's
process_vm_exec RFC, which was never merged and never got a syscall number,
so nothing here probes for one):

1. Each AddressSpace gets a stub process (``stubs.StubProcess``,
   ``stub/stub-vmexec.c``) on first use: the sandbox's own namespaces
   (``platforms.stubns``), a fresh pid namespace,
   PR_SET_PDEATHSIG, the MemoryFile as its only fd, a control thread that
   maps MemoryFile ranges on command. Some are kept ready in reserve, and
   the stubs of released address spaces are recycled (every thread gone,
   every mapping gone) for the next. Each Context gets a stub thread per
   address space it runs in.
2. A guest system call hits SECCOMP_RET_TRAP (only the stub's own code may
   make calls, and from a stub thread only futex, rt_sigreturn, exit and
   sched_yield); a fault raises its signal. The stub's handler leaves the
   kernel's signal frame (registers, XSAVE area, siginfo) in a slot the
   Sentry maps too, and waits.
3. ``Context.switch`` (C: ``sentry_vmexec_switch`` over
   ``sentry_process_vm_exec``) writes the registers into that frame, wakes
   the stub (which resumes the guest through rt_sigreturn) and waits for the
   next stop. Both sides spin while another CPU is free (a sandbox-wide count
   of spinning pairs in a shared page) within an adaptive budget, yielding
   now and then, then sleep on a futex (stub/native/vmexec.h, vmexec_spin).
4. ``interrupt()`` sends the running stub thread SIGURG, which stops it the
   same way.

Lock order: VmexecAddressSpace.lock > VmexecPlatform._lock, and
VmexecAddressSpace.lock > StubProcess.lock (see stubs). Context methods
other than ``interrupt`` run on the one Sentry thread that drives the
Context; native operations on a stub thread claim it (``in_use``).
"""
from __future__ import annotations

import mmap
import os
import threading
from collections import deque

import stub
from stub._native import ffi

from platforms.base import AddressSpace, Context, Platform, PlatformError, register, stub_namespaces_missing
from platforms.stubns import StubNamespaces
from platforms.vmexec.context import VmexecContext, process_vm_exec
from platforms.vmexec.spawner import Job, Spawner
from platforms.vmexec.stubs import StubProcess, VmexecAddressSpace

__all__ = ["VmexecPlatform", "process_vm_exec"]

# Fresh stubs kept ready, and recycled ones kept for reuse (idle processes).
RESERVE, POOL_SIZE = 2, 4
_AT_HWCAP2, _HWCAP2_FSGSBASE = 26, 2


def _has_fsgsbase() -> bool:
    """The stub saves and restores FS/GS base with rdfsbase/wrfsbase."""
    try:
        with open("/proc/self/auxv", "rb") as f:
            words = memoryview(f.read()).cast("Q")
    except OSError:
        return False
    return any(words[i] == _AT_HWCAP2 and words[i + 1] & _HWCAP2_FSGSBASE for i in range(0, len(words) - 1, 2))


@register
class VmexecPlatform(Platform):
    name = "vmexec"
    map_unit = 1 << 20

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            stub.binary("stub-vmexec")
        except FileNotFoundError as e:
            return False, str(e)
        if not _has_fsgsbase():
            return False, "the CPU or kernel lacks user-space FSGSBASE (HWCAP2_FSGSBASE)"
        try:
            with open("/proc/sys/kernel/seccomp/actions_avail") as f:
                if "trap" not in f.read().split():
                    return False, "seccomp has no SECCOMP_RET_TRAP"
        except OSError:
            return False, "no seccomp filter support (/proc/sys/kernel/seccomp)"
        missing = stub_namespaces_missing()
        if missing is not None:
            return False, missing
        return True, "seccomp-trap stub threads, registers exchanged through shared memory"

    def __init__(self, memory):
        super().__init__(memory)
        self._stub_path = stub.binary("stub-vmexec")
        self._global_fd = os.memfd_create("sentry-vmexec-global", os.MFD_CLOEXEC)
        os.ftruncate(self._global_fd, 4096)
        self._global_map = mmap.mmap(self._global_fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._global = ffi.cast("struct vmexec_global *", ffi.from_buffer(self._global_map))
        self._global.ncpu = len(os.sched_getaffinity(0))
        # Spawns stubs (see spawner). It keeps stubs ready in reserve (one at
        # start-up, RESERVE once in use: fork and execve then wait for
        # nothing), and recycles those of released address spaces into a
        # small pool.
        self._spawner = Spawner()
        self._namespaces = StubNamespaces()  # used on the spawner thread only
        self._lock = threading.Lock()
        # Guarded by _lock: every stub we own (for close), the recycled ones
        # ready for reuse, the next fresh one; _reserve is None once closed.
        self._stubs: list[StubProcess] = []
        self._pool: list[StubProcess] = []
        self._reserve: deque[Job] | None = deque([self._spawner.submit(self._spawn)])

    def _spawn(self) -> StubProcess:
        """Runs on the spawner thread."""
        proc = StubProcess(self._stub_path, self.memory.fd, self._global_fd, self._global, self._namespaces)
        with self._lock:
            self._stubs = [s for s in self._stubs if not s.released]
            self._stubs.append(proc)
        return proc

    def new_address_space(self) -> AddressSpace:
        return VmexecAddressSpace(self._take_stub, self._give_back)

    def _take_stub(self) -> StubProcess:
        """A recycled stub, else the reserve (spawning the next one), on
        the CPUs the calling Sentry thread may use."""
        with self._lock:
            if self._reserve is None:
                raise PlatformError("vmexec: platform used after close")
            if self._pool:
                proc = self._pool.pop()
            else:
                reserve = self._reserve.popleft()
                while len(self._reserve) < RESERVE:  # one at start-up, RESERVE once in use
                    self._reserve.append(self._spawner.submit(self._spawn))
                proc = None
        proc = proc or reserve.result()
        cpus = os.sched_getaffinity(0)
        self._global.ncpu = len(cpus)
        proc.confine_cpus(cpus)
        return proc

    def _give_back(self, proc: StubProcess) -> None:
        """A released address space's stub: recycled in the background."""
        try:
            self._spawner.submit(self._recycle, proc)
        except PlatformError:  # closed
            proc.release()

    def _recycle(self, proc: StubProcess) -> None:
        try:
            ok = proc.recycle(self.min_user_address, self.max_user_address)
        except PlatformError:
            ok = False
        with self._lock:
            keep = ok and self._reserve is not None and len(self._pool) < POOL_SIZE
            if keep:
                self._pool.append(proc)
        if not keep:
            proc.release()

    def new_context(self) -> Context:
        return VmexecContext()

    def close(self) -> None:
        with self._lock:
            reserve, self._reserve = self._reserve or (), None
        for future in reserve:
            try:
                future.result()  # it is in _stubs now
            except PlatformError:
                pass  # it never started; nothing to release
        self._spawner.shutdown()  # pending recycles release theirs
        self._namespaces.close()
        with self._lock:
            stubs, self._stubs, self._pool = self._stubs, [], []
        for proc in stubs:
            proc.release()
        if self._global_fd >= 0:
            os.close(self._global_fd)
            self._global_fd = -1
