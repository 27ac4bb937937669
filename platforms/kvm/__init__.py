"""kvm: guest ring 3 in a KVM virtual machine; the Sentry is its VMM.

In a nutshell: one VM per Platform (stub/native/kvm.c). Guest-physical
memory is the MemoryFile (GPA = file offset) plus a private region holding
the ring0 stub (stub/ring0.S), IDT, GDT, per-vCPU TSS and stacks, and every
page-table page. Each AddressSpace is a 4-level page table written by the
Sentry (NX, U/S, 2 MiB pages where aligned); each Context is a vCPU. The
ring0 stub turns every exception into an `out` to a port naming the vector;
the VMM reads the iret frame from the vCPU's ring0 stack and, to resume,
writes a new frame and points RIP at an `iretq`, so a round trip runs two
ring0 instructions. System calls: on VMX/SVM `syscall` enters the stub at
LSTAR in ring 0; under kvm_pvm (this host) it jumps to LSTAR at CPL 3, the
supervisor-only page faults, and #PF with RIP == LSTAR is a system call.

Page tables and kvm_pvm's shadow MMU: a present entry is only ever changed
by a store the guest's ring0 stub makes (KVM page-tracks it), run on a
maintenance vCPU owned by the calling thread; see stub/native/kvm.h.

Lock order: KvmPlatform._life (Python RLock: close() against everything
but switch) > the VM's page-table lock (C). A Context is driven by one OS
thread; ``interrupt`` (any thread) sets immediate_exit and signals that
thread (SIGRTMIN+6, SA_RESTART).

Host differences: only kvm_pvm is tested (this host). On VMX/SVM the same
stub and page tables work; there the guest TLB, not a shadow MMU, caches
translations, so a vCPU reloads CR3 before re-entering an address space
whose tables changed (R0_FLUSH_IRETQ), and vCPUs running in it during the
change are kicked out first (TLB shootdown; under kvm_pvm KVM's own remote
flush covers them, so it is off there).
The guest's CPUID is the host's (ring 3 runs natively under kvm_pvm), so
guests use AVX; its state lives in the vCPU and round-trips via XSAVE.
"""
from platforms.kvm.platform import KvmAddressSpace, KvmContext, KvmPlatform

__all__ = ["KvmAddressSpace", "KvmContext", "KvmPlatform"]
