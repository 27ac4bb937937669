"""vmexec: guest code runs in stub threads under a seccomp filter that traps
every system call; ``process_vm_exec()`` hands each stop to the Sentry.

In a nutshell (gVisor's systrap, behind the contract of Andrei Vagin's
process_vm_exec RFC, which was never merged and never got a syscall number,
so nothing here probes for one):

1. Each AddressSpace gets a stub process (``stubs.StubProcess``,
   ``stub/stub-vmexec.c``) on first use: fresh namespaces,
   PR_SET_PDEATHSIG, the MemoryFile as its only fd, a control thread that
   maps MemoryFile ranges on command. One is kept ready in reserve. Each
   Context gets a stub thread per address space it runs in.
2. A guest system call hits SECCOMP_RET_TRAP (only the stub's own code may
   make calls, and only futex/rt_sigreturn/exit/sched_yield from a stub
   thread); faults
   raise their signal. The stub's handler leaves the kernel's signal frame
   (registers, XSAVE area, siginfo) in a slot the Sentry maps too, and waits.
3. ``Context.switch`` (C: ``sentry_vmexec_switch`` over
   ``sentry_process_vm_exec``) writes the registers into that frame, wakes
   the stub (which resumes the guest through rt_sigreturn) and waits for the
   next stop. Both sides spin while another CPU is free (a sandbox-wide count
   of spinners in a shared page), then sleep on a futex.
4. ``interrupt()`` sends the running stub thread SIGURG, which stops it the
   same way.

Lock order: VmexecAddressSpace.lock > VmexecPlatform._lock, and
VmexecAddressSpace.lock > StubProcess.lock (see stubs); Context methods other than
``interrupt`` run on the one Sentry thread that drives the Context.
"""
from __future__ import annotations

import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import stub
from stub._native import ffi, lib

from platforms.base import AddressSpace, Context, Platform, PlatformError, register
from platforms.vmexec.context import VmexecContext, process_vm_exec
from platforms.vmexec.stubs import StubProcess, VmexecAddressSpace

__all__ = ["VmexecPlatform", "process_vm_exec"]

# Bound of one spin wait, in `pause` iterations (about 40 ns each here).
SPIN_ITERS = 20000
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
        return True, "seccomp-trap stub threads, registers exchanged through shared memory"

    def __init__(self, memory):
        super().__init__(memory)
        self._stub_path = stub.binary("stub-vmexec")
        self._global_fd = os.memfd_create("sentry-vmexec-global", os.MFD_CLOEXEC)
        os.ftruncate(self._global_fd, 4096)
        self._global_map = mmap.mmap(self._global_fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._global = ffi.cast("struct vmexec_global *", ffi.from_buffer(self._global_map))
        self._global.ncpu = len(os.sched_getaffinity(0))
        self._global.spin_iters = SPIN_ITERS
        # Spawns stubs: PR_SET_PDEATHSIG fires when the forking *thread* ends,
        # so it must be one that lives as long as the platform. It keeps one
        # stub ready in reserve (fork and execve then wait for nothing).
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vmexec-spawner")
        self._lock = threading.Lock()
        self._stubs: list[StubProcess] = []  # guarded by _lock
        self._reserve: Future[StubProcess] | None = self._spawner.submit(self._spawn)  # guarded by _lock

    def _spawn(self) -> StubProcess:
        """Runs on the spawner thread."""
        return StubProcess(self._stub_path, self.memory.fd, self._global_fd, self._global)

    def new_address_space(self) -> AddressSpace:
        return VmexecAddressSpace(self._take_stub)

    def _take_stub(self) -> StubProcess:
        """The reserve stub (spawning the next one in the background)."""
        with self._lock:
            if self._reserve is None:
                raise PlatformError("vmexec: platform used after close")
            reserve, self._reserve = self._reserve, self._spawner.submit(self._spawn)
        proc = reserve.result()
        with self._lock:
            self._stubs = [s for s in self._stubs if not s.released]
            self._stubs.append(proc)
        return proc

    def new_context(self) -> Context:
        return VmexecContext()

    def close(self) -> None:
        with self._lock:
            reserve, self._reserve = self._reserve, None
            stubs, self._stubs = self._stubs, []
        if reserve is not None:
            try:
                stubs.append(reserve.result())
            except PlatformError:
                pass  # it never started; nothing to release
        for proc in stubs:
            proc.release()
        self._spawner.shutdown(wait=True)
        if self._global_fd >= 0:
            os.close(self._global_fd)
            self._global_fd = -1
