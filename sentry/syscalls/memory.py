"""Memory system calls: thin handlers over ``sentry.mm.MemoryManager``."""
from __future__ import annotations

import errno
import stat as S

from sentry.errors import SyscallError
from sentry.kernel.task import Task
from sentry.mm import mm as m
from sentry.syscalls.spec import Enum, Flags, Hex, Int, Size, entries, partial, s32, supported

PROT_NAMES = {1: "PROT_READ", 2: "PROT_WRITE", 4: "PROT_EXEC"}
MAP_NAMES = {0x01: "MAP_SHARED", 0x02: "MAP_PRIVATE", 0x10: "MAP_FIXED", 0x20: "MAP_ANONYMOUS",
             0x100: "MAP_GROWSDOWN", 0x800: "MAP_DENYWRITE", 0x1000: "MAP_EXECUTABLE", 0x2000: "MAP_LOCKED",
             0x4000: "MAP_NORESERVE", 0x8000: "MAP_POPULATE", 0x10000: "MAP_NONBLOCK", 0x20000: "MAP_STACK",
             0x40000: "MAP_HUGETLB", 0x100000: "MAP_FIXED_NOREPLACE"}
MREMAP_NAMES = {m.MREMAP_MAYMOVE: "MREMAP_MAYMOVE", m.MREMAP_FIXED: "MREMAP_FIXED", m.MREMAP_DONTUNMAP: "MREMAP_DONTUNMAP"}
MADV_NAMES = {0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
              8: "MADV_FREE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE"}
_MAP_TYPE = 0x0F
_KNOWN_MAP_FLAGS = sum(MAP_NAMES) | 0x80000  # + MAP_SYNC tolerated
MADV_DONTNEED, MADV_FREE = 4, 8
MAX_LFS_FILESIZE = (1 << 63) - 1  # the largest file offset (loff_t)


def sys_mmap(t: Task, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    mtype = flags & _MAP_TYPE
    if mtype not in (m.MAP_SHARED, m.MAP_PRIVATE, 0x03) or length == 0 or prot & ~m.PROT_ALL or offset & 0xFFF:
        raise SyscallError(errno.EINVAL)
    if flags & 0x40000:  # MAP_HUGETLB
        raise SyscallError(errno.EINVAL)
    if length > t.mm.max_address:
        raise SyscallError(errno.ENOMEM)
    file = None
    if not flags & m.MAP_ANONYMOUS:
        file = t.fds.get(s32(fd))
        if not file.mappable:
            raise SyscallError(errno.ENODEV)
        if not file.readable or (mtype == m.MAP_SHARED and prot & m.PROT_WRITE and not file.writable):
            raise SyscallError(errno.EACCES)
        if file.node is None or file.node.kind != S.S_IFREG:  # /dev/zero: memory of its own, no end of
            return t.mm.mmap(addr, length, prot, flags, None, 0, name=file.path)  # file (as Linux's shmem)
        # The offset arrives unsigned: a "negative" one is past 2^63. As
        # file_mmap_ok: the mapping's last byte must be a valid file offset.
        if offset > MAX_LFS_FILESIZE - m.page_up(length):
            raise SyscallError(errno.EOVERFLOW)
    else:
        offset = 0
    return t.mm.mmap(addr, length, prot, flags, file, offset)


def sys_munmap(t: Task, addr: int, length: int) -> int:
    t.mm.munmap(addr, length)
    return 0


def sys_mprotect(t: Task, addr: int, length: int, prot: int) -> int:
    prot &= ~0x0300_0000  # PROT_GROWSDOWN/UP: accepted, not needed (stacks are mapped whole)
    if length:
        t.mm.mprotect(addr, length, prot)
    elif addr & 0xFFF:
        raise SyscallError(errno.EINVAL)
    return 0


def sys_brk(t: Task, addr: int) -> int:
    return t.mm.set_brk(addr)


def sys_mremap(t: Task, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    return t.mm.mremap(old, old_len, new_len, flags, new_addr)


def sys_madvise(t: Task, addr: int, length: int, advice: int) -> int:
    if addr & 0xFFF:
        raise SyscallError(errno.EINVAL)
    if advice in (MADV_DONTNEED, MADV_FREE):
        t.mm.madvise_dontneed(addr, length)
    if not t.mm.mapped(addr, length):  # as Linux: the mapped parts advised, then ENOMEM
        raise SyscallError(errno.ENOMEM)
    return 0


MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4


def sys_msync(t: Task, addr: int, length: int, flags: int) -> int:
    if addr & 0xFFF or flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) or flags & MS_ASYNC and flags & MS_SYNC:
        raise SyscallError(errno.EINVAL)
    t.mm.msync(addr, length)
    return 0


def sys_mlock(t: Task, addr: int, length: int) -> int:
    return 0


ENTRIES = entries(
    supported("mmap", sys_mmap, args=(Hex, Size, Flags(PROT_NAMES), Flags(MAP_NAMES), Int, Hex)),
    supported("munmap", sys_munmap, args=(Hex, Size)),
    supported("mprotect", sys_mprotect, args=(Hex, Size, Flags(PROT_NAMES))),
    supported("brk", sys_brk, args=(Hex,)),
    partial("mremap", sys_mremap, args=(Hex, Size, Size, Flags(MREMAP_NAMES), Hex),
            note="old_size 0 (a second mapping of shared memory) is EINVAL"),
    partial("madvise", sys_madvise, args=(Hex, Size, Enum(MADV_NAMES)), note="DONTNEED/FREE drop pages; other advice is accepted and ignored"),
    partial("msync", sys_msync, args=(Hex, Size, Int), note="writes back shared file mappings to host files; read(2) and write(2) see mapped data at once (one page cache)"),
    partial("mlock", sys_mlock, args=(Hex, Size), note="accepted; nothing is locked"),
    partial("munlock", sys_mlock, args=(Hex, Size), note="accepted; nothing is locked"),
)
