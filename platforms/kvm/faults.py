"""x86 exception vector -> the signal Linux would send (arch/x86/kernel/traps.c).

Only the slow path (a guest fault) comes here; system calls never do.
"""
from __future__ import annotations

import signal
import struct

from platforms.base import PROT_EXEC, PROT_READ, PROT_WRITE, SignalInfo

SI_KERNEL = 0x80
FPE_INTDIV, FPE_FLTDIV, FPE_FLTOVF, FPE_FLTUND, FPE_FLTRES, FPE_FLTINV = 1, 3, 4, 5, 6, 7
ILL_ILLOPN = 2
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRALN = 1
TRAP_TRACE = 2

_PF_PRESENT, _PF_WRITE, _PF_FETCH = 0x1, 0x2, 0x10
# vector: (signal, si_code, si_addr is the faulting RIP)
_SIMPLE = {
    0: (signal.SIGFPE, FPE_INTDIV, True),
    1: (signal.SIGTRAP, TRAP_TRACE, True),
    3: (signal.SIGTRAP, SI_KERNEL, False),
    4: (signal.SIGSEGV, SI_KERNEL, False),
    5: (signal.SIGSEGV, SI_KERNEL, False),
    6: (signal.SIGILL, ILL_ILLOPN, True),
    10: (signal.SIGSEGV, SI_KERNEL, False),
    11: (signal.SIGBUS, SI_KERNEL, False),
    12: (signal.SIGBUS, SI_KERNEL, False),
    13: (signal.SIGSEGV, SI_KERNEL, False),
    17: (signal.SIGBUS, BUS_ADRALN, True),
}
_FP_VECTORS = (16, 19)  # #MF (x87), #XM (SIMD): si_code from the FPU state


def fp_code(vector: int, xsave: bytes) -> int:
    """si_code of an x87 (#MF) or SIMD (#XM) exception, as Linux computes it."""
    fcw, fsw = struct.unpack_from("<HH", xsave, 0)
    (mxcsr,) = struct.unpack_from("<I", xsave, 24)
    err = fsw & ~fcw & 0x3F if vector == 16 else mxcsr & ~(mxcsr >> 7) & 0x3F
    for bits, code in ((0x01, FPE_FLTINV), (0x04, FPE_FLTDIV), (0x08, FPE_FLTOVF), (0x12, FPE_FLTUND),
                       (0x20, FPE_FLTRES)):
        if err & bits:
            return code
    return 0


def signal_for(vector: int, error_code: int, cr2: int, rip: int, xsave: bytes | None) -> SignalInfo | None:
    """The SignalInfo for a ring-3 exception, or None if the vector can
    never come from ring 3 (a platform bug). ``xsave`` is needed (and only
    read) for vectors 16 and 19."""
    if vector == 14:
        access = PROT_WRITE if error_code & _PF_WRITE else PROT_EXEC if error_code & _PF_FETCH else PROT_READ
        code = SEGV_ACCERR if error_code & _PF_PRESENT else SEGV_MAPERR
        return SignalInfo(signo=signal.SIGSEGV, code=code, addr=cr2, access=access, trapno=14)
    if vector in _FP_VECTORS:
        return SignalInfo(signo=signal.SIGFPE, code=fp_code(vector, xsave or b"\0" * 32), addr=rip, trapno=vector)
    if vector in _SIMPLE:
        signo, code, at_rip = _SIMPLE[vector]
        return SignalInfo(signo=signo, code=code, addr=rip if at_rip else 0, trapno=vector)
    return None


def needs_fpstate(vector: int) -> bool:
    return vector in _FP_VECTORS
