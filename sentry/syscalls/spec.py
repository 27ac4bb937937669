"""The declarative system-call table's vocabulary.

Each area module (``sentry.syscalls.memory``, ``.files``, ``.process``...)
ends with ``ENTRIES: dict[int, Syscall]``; ``sentry.syscalls.table`` merges
them into the one ``TABLE`` used for dispatch, strace and ``sentry
syscalls``. Build entries with ``supported``, ``partial`` and ``error``::

    ENTRIES = entries(
        supported("read", sys_read, args=(FD, ReadBuf, Size)),
        partial("madvise", sys_madvise, args=(Hex, Size, Int), note="DONTNEED only"),
        error("uselib", errno.ENOSYS, note="obsolete"),
    )

Handlers are ``def sys_x(t: Task, a0, a1, ...) -> int``: they take the
task and exactly as many raw register arguments (unsigned 64-bit ints) as
``args`` lists, return the result, or raise ``SyscallError(errno)``.

Argument kinds (``args``) name how strace shows each argument; a kind whose
``after`` is true is shown from the guest's memory after the call (a buffer
the call fills), sized by the result.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from abi.sysnr import NUMBERS


class Status(enum.Enum):
    SUPPORTED = "supported"
    PARTIAL = "partial"
    ERROR = "error"  # always fails with a fixed errno (ENOSYS, EPERM...)


@dataclass(frozen=True)
class Arg:
    """How to show one argument. ``kind`` is a name the strace layer knows
    (see sentry/strace.py); ``after``: shown after the call."""

    kind: str
    after: bool = False
    detail: object = None  # e.g. the flag table for kind "flags"

    def __call__(self, detail: object) -> "Arg":
        return Arg(self.kind, self.after, detail)


Int = Arg("int")
UInt = Arg("uint")
Hex = Arg("hex")
FD = Arg("fd")
Size = Arg("size")
Path = Arg("path")
Str = Arg("str")
WriteBuf = Arg("inbuf")  # guest -> sentry data, length in the next argument
ReadBuf = Arg("outbuf", after=True)  # sentry -> guest data, length = result
SendMsgHdr = Arg("inmsghdr")  # a struct msghdr the call sends from
RecvMsgHdr = Arg("outmsghdr", after=True)  # a struct msghdr the call fills: shown after it, sized by the result
Ptr = Arg("ptr")
Flags = Arg("flags")  # Flags(table): table maps bit -> name
Enum = Arg("enum")  # Enum(table): table maps value -> name
Struct = Arg("struct")  # Struct("stat"): decoded struct, read before the call
OutStruct = Arg("struct", after=True)  # a struct the call fills
Signal = Arg("signal")
Argv = Arg("argv")


@dataclass(frozen=True)
class Syscall:
    number: int
    name: str
    handler: Callable[..., int] | None
    args: tuple[Arg, ...]
    status: Status
    note: str = ""
    errno: int = 0  # for Status.ERROR
    nargs: int = 0


def supported(name: str, handler: Callable[..., int], args: tuple[Arg, ...] = (), note: str = "") -> Syscall:
    return Syscall(NUMBERS[name], name, handler, args, Status.SUPPORTED, note, 0, len(args))


def partial(name: str, handler: Callable[..., int], args: tuple[Arg, ...] = (), note: str = "") -> Syscall:
    assert note, f"partial entry {name} must say what is missing"
    return Syscall(NUMBERS[name], name, handler, args, Status.PARTIAL, note, 0, len(args))


def error(name: str, err: int, note: str = "", args: tuple[Arg, ...] = ()) -> Syscall:
    return Syscall(NUMBERS[name], name, None, args, Status.ERROR, note, err, len(args))


def entries(*items: Syscall) -> dict[int, Syscall]:
    out: dict[int, Syscall] = {}
    for s in items:
        assert s.number not in out, f"duplicate entry {s.name}"
        out[s.number] = s
    return out


def s32(value: int) -> int:
    """A raw register as a signed 32-bit C int (fds, flags, pids)."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def s64(value: int) -> int:
    """A raw register as a signed 64-bit C long (offsets, results)."""
    return value - (1 << 64) if value & (1 << 63) else value
