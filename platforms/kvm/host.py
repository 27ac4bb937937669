"""What KVM this host offers: the checks behind ``KvmPlatform.available``.

Probes /dev/kvm with plain ioctls (no VM is created) and names the kind of
host, which decides how a guest `syscall` reaches the ring0 stub.
"""
from __future__ import annotations

import fcntl
import os

import stub

_KVM_GET_API_VERSION = 0xAE00
_KVM_CHECK_EXTENSION = 0xAE03
_API_VERSION = 12
_KVM_SYNC_X86_REGS = 1
# (capability number, name) that the platform cannot do without.
_NEEDED = (
    (3, "KVM_CAP_USER_MEMORY"),
    (55, "KVM_CAP_XSAVE"),
    (56, "KVM_CAP_XCRS"),
    (136, "KVM_CAP_IMMEDIATE_EXIT"),
)
_KVM_CAP_SYNC_REGS = 74


def is_pvm() -> bool:
    """kvm_pvm: ring0 is emulated and a shadow MMU caches translations."""
    return os.path.isdir("/sys/module/kvm_pvm")


def host_kind() -> str:
    """Which KVM backend serves /dev/kvm, and how system calls enter."""
    if is_pvm():
        return "kvm_pvm (ring0 emulated): syscall = CPL3 jump to LSTAR, caught as #PF on the sentinel page"
    if os.path.isdir("/sys/module/kvm_intel"):
        return "VMX (kvm_intel): syscall -> LSTAR ring0 stub"
    if os.path.isdir("/sys/module/kvm_amd"):
        return "SVM (kvm_amd): syscall -> LSTAR ring0 stub"
    return "unknown KVM backend: syscall -> LSTAR ring0 stub"


def probe() -> tuple[bool, str]:
    """(True, host kind) if /dev/kvm has everything the platform needs,
    else (False, the first thing missing). Never raises."""
    try:
        stub.binary("ring0.bin")
    except FileNotFoundError as e:
        return False, str(e)
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
        if version != _API_VERSION:
            return False, f"KVM API version {version}, need {_API_VERSION}"
        for cap, name in _NEEDED:
            if fcntl.ioctl(fd, _KVM_CHECK_EXTENSION, cap) <= 0:
                return False, f"KVM lacks {name}"
        if not fcntl.ioctl(fd, _KVM_CHECK_EXTENSION, _KVM_CAP_SYNC_REGS) & _KVM_SYNC_X86_REGS:
            return False, "KVM lacks KVM_CAP_SYNC_REGS (general registers)"
    except OSError as e:
        return False, f"/dev/kvm ioctl: {e.strerror}"
    finally:
        os.close(fd)
    return True, host_kind()
