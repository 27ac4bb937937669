"""The platform interface: the seam between the Sentry and the host mechanism
that runs guest code.

Modelled on gVisor's ``pkg/sentry/platform/platform.go``; the vocabulary is
the same so a reader can map one onto the other:

- ``Platform``: one per sandbox. Creates address spaces and contexts.
- ``AddressSpace``: a guest address space. Holds mappings of MemoryFile
  ranges, nothing else: the Sentry decides what is mapped where.
- ``Context``: a guest thread's execution vehicle. ``switch()`` runs guest
  code until it makes a system call, faults, receives a signal, or is
  interrupted, and hands the register state back.

Platforms never import ``sentry.*``: they see guest memory only through the
``MemoryFileLike`` protocol below, which ``sentry.mm.MemoryFile`` implements.

Threading: a Context is bound to the OS thread that first switches it
(ptrace demands it: only the attaching thread may operate on a tracee).
``Context.interrupt()`` is the only method that may be called from another
thread.
"""
from __future__ import annotations

import abc
import contextlib
import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol

PAGE_SIZE = 4096

# Protections, as in mmap(2). A platform maps exactly these; PROT_EXEC
# without PROT_READ is mapped readable (x86 cannot express it).
PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4


class MemoryFileLike(Protocol):
    """What a platform needs to know about the sandbox's MemoryFile.

    fd:        the memfd holding all guest memory. Platforms map ranges of it.
    base:      the Sentry's own address of its one mapping of the whole file
               (KVM registers it as guest-physical memory).
    capacity:  size of the file and of that mapping, in bytes.
    """

    fd: int
    base: int
    capacity: int


class EventKind(enum.IntEnum):
    """Why ``Context.switch`` returned."""

    SYSCALL = 0  # the guest executed `syscall`; regs.orig_rax is the number
    SIGNAL = 1  # a fault or a signal: see Context.signal_info
    INTERRUPT = 2  # Context.interrupt() was called; no guest state changed


@dataclass
class SignalInfo:
    """A synchronous fault or asynchronous signal that stopped the guest.

    signo/code as in siginfo_t; addr is si_addr for SIGSEGV/SIGBUS/SIGFPE/
    SIGILL/SIGTRAP (the faulting address), else 0. access is the fault's
    access type as a PROT_* mask (PROT_WRITE for a write fault) when the
    platform knows it, else 0; trapno is the x86 exception vector or -1.
    """

    signo: int = 0
    code: int = 0
    addr: int = 0
    access: int = 0
    trapno: int = -1


class PlatformError(Exception):
    """The platform itself failed (a stub died, KVM refused an ioctl).

    Never raised for anything the guest did: guest faults are Events."""


class AddressSpace(abc.ABC):
    @abc.abstractmethod
    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None:
        """Map MemoryFile[offset:offset+length] at guest addr, replacing any
        overlapping mapping, shared (writes go to the MemoryFile).

        Preconditions: addr, offset, length page-aligned; length > 0;
        addr+length within the guest range (``Platform.max_user_address``).
        Raises PlatformError only if the host refuses (a sentry bug or a dead
        stub)."""

    @abc.abstractmethod
    def unmap(self, addr: int, length: int) -> None:
        """Remove mappings in [addr, addr+length). Unmapped parts are fine.
        Preconditions: addr, length page-aligned."""

    @abc.abstractmethod
    def release(self) -> None:
        """Free host resources. The address space is unusable afterwards.
        Idempotent."""

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """A block of map_file/unmap calls that the platform may apply
        together, in order, by the time the block ends (vmexec: one stub
        round trip for all). Use it only where no memory the calls unmap is
        freed inside the block. Default: each call applies at once."""
        return contextlib.nullcontext()


class ArchState:
    """The register state of one guest thread, shared by all platforms.

    regs:    a ``struct user_regs_struct`` (cffi), including fs_base/gs_base;
             orig_rax holds the system call number after a SYSCALL event.
    fpstate: the XSAVE area (standard format, ``xsave_size`` bytes), valid
             only after ``Context.read_fpstate``; set ``fp_dirty`` after
             changing it so the next switch loads it into the CPU.
    """

    __slots__ = ("regs", "fpstate", "fp_dirty")

    def __init__(self, regs, fpstate: bytearray):
        self.regs = regs
        self.fpstate = fpstate
        self.fp_dirty = False


class Context(abc.ABC):
    signal_info: SignalInfo

    @abc.abstractmethod
    def switch(self, address_space: AddressSpace, state: ArchState) -> EventKind:
        """Run the guest thread described by ``state`` in ``address_space``
        until it makes a system call, faults, gets a signal or is interrupted.

        On return ``state.regs`` holds the guest's registers: after SYSCALL,
        rip points after the `syscall` instruction and orig_rax is the
        number (the Sentry writes rax and switches again to return). After
        SIGNAL, ``self.signal_info`` says what happened and rip is the
        faulting instruction. FPU state stays with the platform unless the
        Sentry reads it (``read_fpstate``) or marks it dirty.
        Raises PlatformError if the host mechanism failed."""

    def prepare(self, address_space: AddressSpace) -> None:
        """Make, on the calling OS thread (the one that will switch), what
        running in ``address_space`` needs from the host (a stub thread), so
        that a new guest thread can be refused (clone's EAGAIN) before it
        exists rather than die at its first switch. Raises PlatformError if
        the host refuses. Default: nothing to make."""

    @abc.abstractmethod
    def read_fpstate(self, state: ArchState) -> None:
        """Fill ``state.fpstate`` with the guest's current XSAVE area."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Make a running or future ``switch`` return INTERRUPT soon.
        Callable from any thread."""

    @abc.abstractmethod
    def release(self) -> None:
        """Free host resources. Idempotent."""


class Platform(abc.ABC):
    name: ClassVar[str]
    # The Sentry may read/write guest memory through the platform itself
    # (never needed: all guest memory lives in the MemoryFile).
    supports_address_space_io: ClassVar[bool] = False
    # map_file granularity the platform prefers (bigger = fewer host calls).
    map_unit: ClassVar[int] = PAGE_SIZE
    # Lowest and highest+1 guest addresses the platform can map.
    min_user_address: ClassVar[int] = 0x10000
    max_user_address: ClassVar[int] = 0x7F00_0000_0000

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, description) if this host can run the platform, else
        (False, why not). Cheap; never raises."""

    def __init__(self, memory: MemoryFileLike):
        self.memory = memory

    @abc.abstractmethod
    def new_address_space(self) -> AddressSpace:
        """A new, empty guest address space."""

    @abc.abstractmethod
    def new_context(self) -> Context:
        """A new execution context, not yet bound to an OS thread."""

    def new_arch_state(self) -> ArchState:
        """A zeroed register state with an XSAVE area of the host's size,
        holding the x86 power-on FPU defaults (FCW 0x37f, MXCSR 0x1f80)."""
        from platforms import native_regs

        return native_regs.new_arch_state()

    def close(self) -> None:
        """Release everything the platform holds (stubs, VMs). Idempotent."""


STUB_NAMESPACES = ("user", "pid", "net", "mnt", "ipc")


def stub_namespaces_missing() -> str | None:
    """Why stubs cannot be confined in fresh namespaces of each kind in
    STUB_NAMESPACES here (a kind's /proc/sys/user/max_*_namespaces is 0),
    or None. Cheap (a few small reads): ``available()`` runs on every start.
    A runtime that forbids unshare by other means (a container's seccomp
    profile) shows up when the first stub is spawned instead."""
    for kind in STUB_NAMESPACES:
        try:
            with open(f"/proc/sys/user/max_{kind}_namespaces") as f:
                if int(f.read()) == 0:
                    return f"{kind} namespaces are disabled (/proc/sys/user/max_{kind}_namespaces = 0)"
        except (OSError, ValueError):
            continue  # a kernel without the knob: the spawn will tell
    return None


_REGISTRY: dict[str, type[Platform]] = {}


def register(cls: type[Platform]) -> type[Platform]:
    _REGISTRY[cls.name] = cls
    return cls


def lookup(name: str) -> type[Platform]:
    """The platform class called ``name``; KeyError if there is none.
    Imports only that backend (start-up time matters)."""
    if name not in _REGISTRY and name in _BACKENDS:
        _load(name)
    return _REGISTRY[name]


def names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


_LOAD_ERRORS: dict[str, str] = {}
_BACKENDS = ("ptrace", "vmexec", "kvm")


def _load_all() -> None:
    for name in _BACKENDS:
        if name not in _REGISTRY and name not in _LOAD_ERRORS:
            _load(name)


def _load(name: str) -> None:
    import importlib

    try:
        importlib.import_module(f"platforms.{name}")
    except ImportError as e:
        _LOAD_ERRORS[name] = f"cannot be loaded: {e}"


def load_errors() -> dict[str, str]:
    """Backends that failed to import, with why (shown by `sentry platforms`)."""
    _load_all()
    return {k: v for k, v in _LOAD_ERRORS.items() if k not in _REGISTRY}
