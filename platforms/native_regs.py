"""Register state shared by all platforms, built on ``stub._native``."""
from __future__ import annotations

from stub._native import ffi, lib

from platforms.base import ArchState

XSAVE_SIZE: int = lib.sentry_xsave_size()
REG_NAMES: tuple[str, ...] = (
    "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs "
    "eflags rsp ss fs_base gs_base ds es fs gs"
).split()


def new_arch_state() -> ArchState:
    """Zeroed registers (user CS/SS selectors, IF set) and a power-on FPU."""
    regs = ffi.new("struct user_regs_struct *")
    regs.cs, regs.ss, regs.eflags = 0x33, 0x2B, 0x202
    fp = bytearray(XSAVE_SIZE)
    lib.sentry_fpstate_init(ffi.from_buffer(fp), XSAVE_SIZE)
    return ArchState(regs, fp)
