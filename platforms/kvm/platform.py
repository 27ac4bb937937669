"""KvmPlatform, KvmAddressSpace, KvmContext: thin Python over stub/native/kvm.c.

The hot path (``KvmContext.switch``) is one C call with the GIL released:
it loads the registers, runs KVM_RUN and decodes the exit. Python only maps
a fault to a SignalInfo (faults.py) and raises PlatformError on host errors.

Ownership: the Platform owns the VM; AddressSpaces and Contexts hold C
handles into it and are invalidated (not freed twice) when it closes.
``Platform._life`` (an RLock) makes close() exclusive with every other
call into the VM except ``switch``: releasing an address space from a
thread that is still ending while another thread closes the platform is
then a no-op, never a use after free. No Context may be inside ``switch``
when the platform closes.
Page-table edits need a vCPU of the calling thread for the stores KVM must
see; each thread gets a private maintenance vCPU on first use, returned to
the VM's pool when the thread ends.
"""
from __future__ import annotations

import threading
import weakref

import stub
from stub._native import ffi, lib

from platforms.base import (PROT_NONE, AddressSpace, ArchState, Context, EventKind, MemoryFileLike, Platform,
                            PlatformError, SignalInfo, register)
from platforms.kvm import faults, host

_ERRLEN = 256
_EVENTS = {lib.SENTRY_KVM_SYSCALL: EventKind.SYSCALL, lib.SENTRY_KVM_INTERRUPT: EventKind.INTERRUPT}


def _errbuf():
    return ffi.new("char[]", _ERRLEN)


def _message(buf) -> str:
    return ffi.string(buf).decode(errors="replace")


class _MaintenanceVcpu:
    """A thread's private vCPU for page-table stores; pooled when the
    thread ends (threading.local drops it)."""

    def __init__(self, platform: KvmPlatform):
        err = _errbuf()
        self.handle = lib.sentry_kvm_vcpu_new(platform._vm, err, _ERRLEN)
        if self.handle == ffi.NULL:
            raise PlatformError(f"kvm: maintenance vCPU: {_message(err)}")
        self._platform = weakref.ref(platform)

    def __del__(self):
        platform = self._platform()
        if platform is not None:
            with platform._life:
                if platform._vm is not None:
                    lib.sentry_kvm_vcpu_free(platform._vm, self.handle)


class KvmAddressSpace(AddressSpace):
    def __init__(self, platform: KvmPlatform):
        self._platform = platform
        self._err = _errbuf()
        self._as = lib.sentry_kvm_as_new(platform._vm, self._err, _ERRLEN)
        if self._as == ffi.NULL:
            raise PlatformError(f"kvm: new address space: {_message(self._err)}")

    def _set(self, addr: int, offset: int, length: int, prot: int) -> None:
        platform = self._platform
        with platform._life:
            if self._as is None:
                raise PlatformError("kvm: address space used after release")
            maint = platform._maintenance()
            if lib.sentry_kvm_as_set(platform._vm, self._as, maint, addr, offset, length, prot, self._err, _ERRLEN):
                raise PlatformError(f"kvm: map {addr:#x}+{length:#x}: {_message(self._err)}")

    def map_file(self, addr: int, offset: int, length: int, prot: int) -> None:
        self._set(addr, offset, length, prot)

    def unmap(self, addr: int, length: int) -> None:
        self._set(addr, -1, length, PROT_NONE)

    def lookup(self, addr: int) -> int:
        """The page-table leaf entry mapping addr, 0 if none (for tests)."""
        with self._platform._life:
            if self._as is None:
                raise PlatformError("kvm: address space used after release")
            return lib.sentry_kvm_as_lookup(self._platform._vm, self._as, addr)

    def release(self) -> None:
        with self._platform._life:
            if self._as is not None:
                lib.sentry_kvm_as_free(self._platform._vm, self._as)
                self._forget()

    def _forget(self) -> None:
        self._as = None


class KvmContext(Context):
    def __init__(self, platform: KvmPlatform):
        self._platform = platform
        self.signal_info = SignalInfo()
        self._exit = ffi.new("struct sentry_kvm_exit *")
        err = _errbuf()
        self._vcpu = lib.sentry_kvm_vcpu_new(platform._vm, err, _ERRLEN)
        if self._vcpu == ffi.NULL:
            raise PlatformError(f"kvm: new vCPU: {_message(err)}")

    def switch(self, address_space: AddressSpace, state: ArchState) -> EventKind:
        vcpu, aspace = self._vcpu, address_space._as  # type: ignore[attr-defined]
        if vcpu is None or aspace is None:
            raise PlatformError("kvm: switch on a released context or address space")
        if state.fp_dirty:
            self._load_fpstate(state)
        rc = lib.sentry_kvm_switch(vcpu, aspace, state.regs, self._exit)
        event = _EVENTS.get(rc)
        if event is not None:
            return event
        if rc == lib.SENTRY_KVM_FAULT:
            return self._fault(state)
        raise PlatformError(f"kvm: {_message(self._exit.message)}")

    def _fault(self, state: ArchState) -> EventKind:
        ex = self._exit
        xsave = None
        if faults.needs_fpstate(ex.vector):
            self.read_fpstate(state)
            xsave = bytes(state.fpstate)
        info = faults.signal_for(ex.vector, ex.error_code, ex.cr2, state.regs.rip, xsave)
        if info is None:
            raise PlatformError(f"kvm: exception vector {ex.vector} from ring 3 at {state.regs.rip:#x}")
        self.signal_info = info
        return EventKind.SIGNAL

    def _load_fpstate(self, state: ArchState) -> None:
        rc = lib.sentry_kvm_set_xsave(self._vcpu, ffi.from_buffer(state.fpstate), len(state.fpstate))
        if rc:
            raise PlatformError(f"kvm: KVM_SET_XSAVE: error {-rc}")
        state.fp_dirty = False

    def read_fpstate(self, state: ArchState) -> None:
        if self._vcpu is None:
            raise PlatformError("kvm: read_fpstate on a released context")
        if state.fp_dirty:  # the Sentry's copy is newer than the vCPU's
            return
        rc = lib.sentry_kvm_get_xsave(self._vcpu, ffi.from_buffer(state.fpstate), len(state.fpstate))
        if rc:
            raise PlatformError(f"kvm: KVM_GET_XSAVE: error {-rc}")

    def interrupt(self) -> None:
        vcpu = self._vcpu
        if vcpu is not None:
            lib.sentry_kvm_interrupt(vcpu)

    def release(self) -> None:
        with self._platform._life:
            if self._vcpu is not None:
                lib.sentry_kvm_vcpu_free(self._platform._vm, self._vcpu)
                self._forget()

    def _forget(self) -> None:
        self._vcpu = None


@register
class KvmPlatform(Platform):
    name = "kvm"
    map_unit = 2 << 20  # 2 MiB pages where aligned

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return host.probe()

    def __init__(self, memory: MemoryFileLike):
        super().__init__(memory)
        self._life = threading.RLock()
        with open(stub.binary("ring0.bin"), "rb") as f:
            ring0 = f.read()
        err = _errbuf()
        self._vm = lib.sentry_kvm_vm_new(memory.base, memory.capacity, ring0, len(ring0), err, _ERRLEN)
        if self._vm == ffi.NULL:
            self._vm = None
            raise PlatformError(f"kvm: {_message(err)}")
        self._tls = threading.local()
        self._children: weakref.WeakSet = weakref.WeakSet()
        self.set_tlb_shootdown(not host.is_pvm())

    def set_tlb_shootdown(self, on: bool) -> None:
        """After an unmap/mprotect, make vCPUs running in that address space
        exit (they return INTERRUPT) so none keeps a stale TLB entry. Needed
        on VMX/SVM; under kvm_pvm KVM's shadow MMU flushes them itself."""
        with self._life:
            self._check_open()
            lib.sentry_kvm_vm_set_shootdown(self._vm, on)

    def _maintenance(self):
        maint = getattr(self._tls, "vcpu", None)
        if maint is None:
            maint = self._tls.vcpu = _MaintenanceVcpu(self)
        return maint.handle

    def new_address_space(self) -> KvmAddressSpace:
        with self._life:
            self._check_open()
            aspace = KvmAddressSpace(self)
            self._children.add(aspace)
            return aspace

    def new_context(self) -> KvmContext:
        with self._life:
            self._check_open()
            ctx = KvmContext(self)
            self._children.add(ctx)
            return ctx

    def counts(self) -> tuple[int, int]:
        """(live vCPUs incl. maintenance ones, live address spaces), for leak checks."""
        vcpus, spaces = ffi.new("int *"), ffi.new("int *")
        with self._life:
            self._check_open()
            lib.sentry_kvm_vm_counts(self._vm, vcpus, spaces)
        return vcpus[0], spaces[0]

    def shadow_zaps(self) -> int:
        """How often page-table pages were recycled (all shadow pages
        dropped) so far, for tests."""
        with self._life:
            self._check_open()
            return lib.sentry_kvm_vm_zaps(self._vm)

    def _check_open(self) -> None:
        if self._vm is None:
            raise PlatformError("kvm: platform is closed")

    def close(self) -> None:
        with self._life:
            if self._vm is None:
                return
            for child in list(self._children):
                child._forget()
            self._tls = threading.local()
            vm, self._vm = self._vm, None
            lib.sentry_kvm_vm_free(vm)
