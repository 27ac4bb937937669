"""TABLE: the one system-call table (number → Syscall), merged from the
area modules' ENTRIES. Used for dispatch (``dispatch_list``), strace
and ``sentry syscalls``."""
from __future__ import annotations

import functools

from abi.sysnr import NAMES
from sentry.syscalls import (clone, events, files, futex, memory, net, poll, process, sched, signals, splice, system,
                             time, timer)
from sentry.syscalls.spec import Status, Syscall

TABLE: dict[int, Syscall] = {}
for _area in (memory, process, sched, clone, futex, signals, system, time, timer, files, splice, poll, net, events):
    for _nr, _entry in _area.ENTRIES.items():
        assert _nr not in TABLE, f"{_entry.name} is in two areas"
        TABLE[_nr] = _entry


@functools.cache
def dispatch_list() -> list[Syscall | None]:
    """TABLE as a list indexed by number (the dispatcher's fast lookup)."""
    out: list[Syscall | None] = [None] * (max(NAMES) + 1)
    for nr, entry in TABLE.items():
        out[nr] = entry
    return out


def listing() -> list[tuple[int, str, str, str]]:
    """(number, name, status, note) for every x86-64 system call."""
    rows = []
    for nr in sorted(NAMES):
        e = TABLE.get(nr)
        if e is None:
            rows.append((nr, NAMES[nr], "ENOSYS", ""))
        else:
            status = e.status.value if e.status is not Status.ERROR else f"error {_errname(e.errno)}"
            rows.append((nr, e.name, status, e.note))
    return rows


def _errname(err: int) -> str:
    import errno

    return errno.errorcode.get(err, str(err))
