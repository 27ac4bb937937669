"""System information calls: uname, sysinfo, getrandom."""
from __future__ import annotations

import errno
import os
import struct

from sentry.errors import SyscallError
from sentry.kernel.task import Task
from sentry.syscalls.spec import Flags, OutStruct, ReadBuf, Size, entries, supported

UTS_RELEASE = b"6.1.0-sentry"
UTS_VERSION = b"#1 SMP Sentry"
HOSTNAME = b"sentry"
GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


def sys_uname(t: Task, addr: int) -> int:
    fields = (b"Linux", HOSTNAME, UTS_RELEASE, UTS_VERSION, b"x86_64", b"(none)")
    t.mm.copy_out(addr, b"".join(f[:64].ljust(65, b"\0") for f in fields))
    return 0


def sys_getrandom(t: Task, buf: int, count: int, flags: int) -> int:
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise SyscallError(errno.EINVAL)
    count = min(count, 1 << 25)
    t.mm.copy_out(buf, os.urandom(count))
    return count


def sys_sysinfo(t: Task, addr: int) -> int:
    with open("/proc/uptime") as f:
        uptime = int(float(f.read().split()[0]))
    total = os.sysconf("SC_PHYS_PAGES") * 4096
    free = os.sysconf("SC_AVPHYS_PAGES") * 4096
    info = struct.pack("<q3Q6QH2xQQI", uptime, 0, 0, 0, total, free, 0, 0, 0, 0, 1, 0, 0, 1)
    t.mm.copy_out(addr, info.ljust(112, b"\0"))
    return 0


ENTRIES = entries(
    supported("uname", sys_uname, args=(OutStruct("utsname"),)),
    supported("getrandom", sys_getrandom, args=(ReadBuf, Size, Flags({1: "GRND_NONBLOCK", 2: "GRND_RANDOM", 4: "GRND_INSECURE"}))),
    supported("sysinfo", sys_sysinfo, args=(OutStruct("sysinfo"),)),
)
