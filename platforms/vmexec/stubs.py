"""vmexec address spaces: a stub process each, one stub thread per Context
that runs in it.

A VmexecAddressSpace takes its stub process from the platform's reserve on
first use (a mapping, or a Context entering it): the Sentry creates address
spaces it never runs (an execve that fails, say), and those cost nothing.

A stub process (stub/stub-vmexec.c) is started by the platform's spawner
thread (PR_SET_PDEATHSIG follows the thread that forked, so it must be one
that lives as long as the platform) in a fresh pid namespace and the
sandbox's own user/net/mount/ipc namespaces (``platforms.stubns``: the
first stub makes them). It holds the MemoryFile as fd 3 and nothing else; its mailbox
memfd (command page, result page, thread slots) is mapped at
``VMEXEC_MBOX`` there and at ``self._mbox`` here. Its control thread runs
the Sentry's commands: ``mmap``/``munmap`` of MemoryFile ranges and
``clone`` of a new stub thread into a free slot. Each stub process starts
with one spare stub thread, so the first Context to run in it waits for
nothing. When its address space is released, the platform recycles it
(``recycle``) for another, or kills it.

Lock order: VmexecAddressSpace.lock > StubProcess.lock (commands, slots,
tids).
"""
from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
import time
from typing import Callable, Iterator

from stub._native import ffi, lib

from platforms.base import PROT_EXEC, PROT_READ, AddressSpace, PlatformError
from platforms.stubns import StubNamespaces

_NR_MMAP, _NR_MPROTECT, _NR_MUNMAP, _NR_CLONE = 9, 10, 11, 56
_MAP_SHARED, _MAP_FIXED = 0x01, 0x10
_SLOT = lib.VMEXEC_SLOT_SIZE


def _mmap_call(addr: int, offset: int, length: int, prot: int) -> tuple[int, ...]:
    """The stub's mmap of MemoryFile[offset:offset+length] at addr."""
    if prot & PROT_EXEC:
        prot |= PROT_READ
    return (_NR_MMAP, addr, length, prot, _MAP_SHARED | _MAP_FIXED, lib.VMEXEC_FD_MEMORY, offset)


def _fail(what: str, result: int) -> PlatformError:
    return PlatformError(f"vmexec stub: {what}: {os.strerror(-result) if result < 0 else result}")


class StubThread:
    """A stub thread: one slot of a StubProcess, bound to one Context.
    ``c`` is the native ``struct sentry_vmexec_thread``."""

    __slots__ = ("process", "slot", "c", "alive")

    def __init__(self, process: StubProcess, slot: int, c) -> None:
        self.process = process
        self.slot = slot
        self.c = c
        self.alive = True  # False once exited or its process was killed

    def fpstate(self, buf: bytearray, set_: bool) -> None:
        """Copy the XSAVE area of the thread's current frame out (or in)."""
        r = lib.sentry_vmexec_fpstate(self.c, ffi.from_buffer(buf), len(buf), int(set_))
        if r < 0:
            raise _fail("xsave area", r)


class StubProcess:
    def __init__(self, stub_path: str, memfd: int, global_fd: int, global_page, namespaces: StubNamespaces):
        """Start a stub process in ``namespaces``. Precondition: called on
        the platform's spawner thread (the stub dies with the thread that
        forked it)."""
        try:  # the host may be out of fds or memory (EMFILE, ENFILE, ENOMEM): the platform's failure
            fd = os.memfd_create("sentry-vmexec-mbox", os.MFD_CLOEXEC)
        except OSError as e:
            raise PlatformError(f"vmexec stub: mailbox: {e.strerror}") from None
        try:
            os.ftruncate(fd, lib.VMEXEC_MBOX_SIZE)
            self._mbox = mmap.mmap(fd, lib.VMEXEC_MBOX_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._mbox_ptr = ffi.from_buffer("uint8_t[]", self._mbox)
            pid, pidfd = ffi.new("int *"), ffi.new("int *")
            shared = namespaces.for_spawn()
            r = lib.sentry_vmexec_spawn(stub_path.encode(), memfd, fd, global_fd, shared, pid, pidfd)
        except OSError as e:
            raise PlatformError(f"vmexec stub: mailbox: {e.strerror}") from None
        finally:
            os.close(fd)
        if r < 0:
            self._unmap_mbox()
            raise _fail("spawn", r)
        self.pid: int = pid[0]
        self.pidfd: int = pidfd[0]
        if shared == ffi.NULL:
            namespaces.adopt(self.pid)
        self._global = global_page
        self._cmd = ffi.cast("struct vmexec_cmd *", self._mbox_ptr)
        self._res = ffi.cast("struct vmexec_result *", self._mbox_ptr + 4096)
        calls = ffi.cast("struct vmexec_call *", self._mbox_ptr + lib.VMEXEC_BATCH_OFF)
        self._calls = [calls[i] for i in range(lib.VMEXEC_BATCH_MAX)]
        self._ret = ffi.new("long *")
        self.lock = threading.Lock()
        # Guarded by lock.
        self._free_slots = list(range(lib.VMEXEC_MAX_THREADS - 1, -1, -1))
        self._threads: dict[int, StubThread] = {}
        self._tids = {self.pid}  # host tids of the stub's live threads
        self._gone: set[int] = set()  # tids of threads told to exit
        self._cpus: set[int] | None = None  # as last set by confine_cpus
        self.released = False
        # Wait until the control thread serves commands (confined by then):
        # an empty mprotect of its own code is a no-op that must succeed.
        self._spare: StubThread | None = None
        try:
            with self.lock:
                r = self._command(_NR_MPROTECT, lib.VMEXEC_TEXT, 0, PROT_READ | PROT_EXEC)
                if r != 0:
                    raise _fail("start-up", r)
                self._spare = self._clone_thread()
        except PlatformError:
            self.release()
            raise

    # ---- control channel --------------------------------------------------

    def _command(self, nr: int, *args: int) -> int:
        """Run system call nr in the control thread. Caller holds lock."""
        if self.released:
            raise PlatformError("vmexec: address space used after release")
        r = lib.sentry_vmexec_command(self._cmd, self._res, self.pidfd, nr, *args, *(0,) * (6 - len(args)), self._ret)
        if r < 0:
            raise _fail(f"stub {self.pid} died", r)
        return self._ret[0]

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None:
        with self.lock:
            r = self._command(*_mmap_call(addr, offset, length, prot))
        if r != addr:
            raise _fail(f"mmap {addr:#x}+{length:#x}", r if r < 0 else -errno.EFAULT)

    def unmap(self, addr: int, length: int) -> None:
        with self.lock:
            r = self._command(_NR_MUNMAP, addr, length)
        if r < 0:
            raise _fail(f"munmap {addr:#x}+{length:#x}", r)

    def run_calls(self, calls: list[tuple[int, ...]]) -> None:
        """Run mmap/munmap calls in order in the control thread, up to
        VMEXEC_BATCH_MAX per round trip (vmexec.h: a batch)."""
        with self.lock:
            for first in range(0, len(calls), lib.VMEXEC_BATCH_MAX):
                chunk = calls[first:first + lib.VMEXEC_BATCH_MAX]
                for slot, (nr, *args) in zip(self._calls, chunk):
                    slot.nr = nr
                    slot.args = args + [0] * (6 - len(args))
                r = self._command(lib.VMEXEC_NR_BATCH, len(chunk))
                if r != len(chunk):
                    raise _fail(f"a batch of {len(chunk)} mapping calls", r if r < 0 else -errno.EFAULT)

    # ---- threads ----------------------------------------------------------

    def new_thread(self) -> StubThread:
        """A stub thread of its own for a Context: it waits at its first
        event (an int3 in stub code) until the first switch overwrites it."""
        with self.lock:
            thread, self._spare = self._spare, None
            return thread or self._clone_thread()

    def _clone_thread(self) -> StubThread:
        """Clone a stub thread into a free slot. Caller holds lock."""
        if not self._free_slots:
            raise PlatformError(f"vmexec: more than {lib.VMEXEC_MAX_THREADS} threads in one address space")
        slot = self._free_slots.pop()
        c = ffi.new("struct sentry_vmexec_thread *")
        lib.sentry_vmexec_thread_init(c, self._mbox_ptr, slot, self._global, self.pid, self.pidfd)
        base = lib.VMEXEC_MBOX + lib.VMEXEC_SLOTS_OFF + slot * _SLOT
        self._cmd.ss_sp, self._cmd.ss_flags, self._cmd.ss_size = base + 4096, 0, _SLOT - 4096
        r = self._command(_NR_CLONE, lib.VMEXEC_CLONE_FLAGS, base + 4096, 0, base, 0)
        if r <= 0:
            self._free_slots.append(slot)
            raise _fail("clone", r)
        r = lib.sentry_vmexec_wait_event(c)
        if r < 0:
            raise _fail("new thread", r)
        c.tid = self._new_tid()
        thread = StubThread(self, slot, c)
        self._threads[slot] = thread
        return thread

    def _new_tid(self) -> int:
        """The host tid of the thread just cloned. Caller holds lock."""
        try:
            tids = {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
        except OSError as e:
            raise PlatformError(f"vmexec stub {self.pid}: {e}") from None
        self._gone &= tids  # exited threads linger in /proc for a moment
        new = tids - self._tids - self._gone
        if len(new) != 1:
            raise PlatformError(f"vmexec stub {self.pid}: cannot identify its new thread ({sorted(new)})")
        tid = new.pop()
        self._tids.add(tid)
        return tid

    def release_thread(self, thread: StubThread) -> None:
        """End a stopped stub thread and recycle its slot."""
        with self.lock:
            if not thread.alive or self.released:
                return
            thread.alive = False
            del self._threads[thread.slot]
            self._exit_thread(thread)

    def _exit_thread(self, thread: StubThread) -> bool:
        """Tell a stopped stub thread to exit and free its slot; False if it
        was not stopped (busy, or its slot was forged). Caller holds lock."""
        if lib.sentry_vmexec_exit_thread(thread.c) < 0:
            return False  # leave the slot allocated
        self._tids.discard(thread.c.tid)
        self._gone.add(thread.c.tid)
        self._mbox.madvise(mmap.MADV_REMOVE, lib.VMEXEC_SLOTS_OFF + thread.slot * _SLOT, _SLOT)
        self._free_slots.append(thread.slot)
        return True

    def confine_cpus(self, cpus: set[int]) -> None:
        """Run the stub's threads (and so those it clones) on ``cpus``: the
        Sentry may have narrowed its own CPUs after this stub was spawned."""
        with self.lock:
            if cpus == self._cpus:
                return
            self._cpus = cpus
            for tid in self._tids:
                try:
                    os.sched_setaffinity(tid, cpus)
                except OSError:
                    pass  # the thread is gone; the stub's death shows elsewhere

    def retire(self) -> None:
        """Its address space is gone: no Context may switch into its
        threads any more (recycle or release it next)."""
        with self.lock:
            for thread in self._threads.values():
                thread.alive = False

    def recycle(self, lo: int, hi: int) -> bool:
        """Make this stub as good as new for another address space: every
        stub thread exits (the spare too: guest code could have written to
        its slot), every mapping in [lo, hi) goes, a new spare is cloned.
        Sound because guest code runs only in stub threads, which only the
        control thread creates: once /proc shows the control thread alone,
        nothing the guest left can act. False if that cannot be established
        (a thread is busy or will not die): then release() it instead."""
        with self.lock:
            if self.released:
                return False
            threads, self._threads, self._spare = list(self._threads.values()), {}, None
            for thread in threads:
                thread.alive = False
            if not all([self._exit_thread(t) for t in threads]):
                return False
            for _ in range(200):
                try:
                    tids = {int(t) for t in os.listdir(f"/proc/{self.pid}/task")}
                except OSError:  # out of fds (EMFILE): release it instead
                    return False
                if tids == {self.pid}:
                    break
                time.sleep(0.0005)
            else:
                return False
            self._gone.clear()
            if self._command(_NR_MUNMAP, lo, hi - lo) != 0:
                return False
            self._spare = self._clone_thread()
            return True

    def release(self) -> None:
        with self.lock:
            if self.released:
                return
            self.released = True
            for thread in self._threads.values():
                thread.alive = False
            self._threads.clear()
            lib.sentry_vmexec_kill(self.pid, self.pidfd)
            # Give the memory back but keep the mapping: a switch racing with
            # this release reads zeros (VMEXEC_DEAD), never unmapped memory.
            # The mapping goes when the last StubThread referring to it does.
            self._mbox.madvise(mmap.MADV_REMOVE)

    def _unmap_mbox(self) -> None:
        ffi.release(self._mbox_ptr)
        self._mbox.close()


class VmexecAddressSpace(AddressSpace):
    """Mapping calls made before the stub is taken (nothing can run in the
    address space yet: a fresh exec or fork child) or inside ``batch`` are
    recorded and run in one batch: when the stub is taken, or the batch
    ends. All of them are ordered by ``lock``."""

    def __init__(self, take_stub: Callable[[], StubProcess], give_back: Callable[[StubProcess], None]):
        self._take_stub = take_stub
        self._give_back = give_back
        self.lock = threading.Lock()
        # Guarded by lock: the stub (set once), calls not yet run, open batches.
        self._stub: StubProcess | None = None
        self._pending: list[tuple[int, ...]] = []
        self._batches = 0
        self.released = False

    def stub(self) -> StubProcess:
        """The stub process, started (taken from the reserve) on first use,
        with every call recorded so far run in it."""
        s = self._stub
        if s is None:
            with self.lock:
                if self.released:
                    raise PlatformError("vmexec: address space used after release")
                if self._stub is None:
                    s = self._take_stub()
                    self._stub = s
                    pending, self._pending = self._pending, []
                    s.run_calls(pending)
                s = self._stub
        return s

    def _call(self, call: tuple[int, ...], run: Callable[[StubProcess], None]) -> None:
        with self.lock:
            if self.released:
                raise PlatformError("vmexec: address space used after release")
            if self._stub is None or self._batches:
                self._pending.append(call)
            else:
                run(self._stub)

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None:
        self._call(_mmap_call(addr, offset, length, prot), lambda s: s.map_file(addr, offset, length, prot))

    def unmap(self, addr: int, length: int) -> None:
        if self._stub is None and not self._pending:
            return  # nothing is mapped yet
        self._call((_NR_MUNMAP, addr, length), lambda s: s.unmap(addr, length))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        with self.lock:
            self._batches += 1
        try:
            yield
        finally:
            with self.lock:
                self._batches -= 1
                if not self._batches and self._stub is not None and self._pending:
                    pending, self._pending = self._pending, []
                    self._stub.run_calls(pending)

    @property
    def pid(self) -> int:
        return self.stub().pid

    def release(self) -> None:
        with self.lock:
            self.released = True
            s, self._stub = self._stub, None
        if s is not None:
            s.retire()
            self._give_back(s)
