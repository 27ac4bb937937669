"""Process system calls: identity, exit, exec, limits, arch_prctl, prctl,
scheduling basics and futex (single-threaded forms for now)."""
from __future__ import annotations

import errno
import os
import struct
import time

from sentry.config import Config
from sentry.errors import ExecError, GuestExit, SyscallError
from sentry.kernel import cputime
from sentry.kernel.task import Task
from sentry.syscalls.spec import (FD, Argv, Enum, Hex, Int, Path, Ptr, Size, Struct, entries, error, partial, s32,
                                  supported)

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 15, 16, 38, 39
PR_SET_VMA, PR_CAPBSET_READ = 0x53564D41, 23
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
RLIM_INFINITY = (1 << 64) - 1
RLIMIT_NAMES = {0: "RLIMIT_CPU", 1: "RLIMIT_FSIZE", 2: "RLIMIT_DATA", 3: "RLIMIT_STACK", 4: "RLIMIT_CORE",
                5: "RLIMIT_RSS", 6: "RLIMIT_NPROC", 7: "RLIMIT_NOFILE", 8: "RLIMIT_MEMLOCK", 9: "RLIMIT_AS",
                10: "RLIMIT_LOCKS", 11: "RLIMIT_SIGPENDING", 12: "RLIMIT_MSGQUEUE", 13: "RLIMIT_NICE",
                14: "RLIMIT_RTPRIO", 15: "RLIMIT_RTTIME"}
DEFAULT_RLIMITS = {3: (8 << 20, RLIM_INFINITY), 7: (1024, 4096), 4: (0, RLIM_INFINITY),
                   6: (63459, 63459), 8: (8 << 20, 8 << 20), 11: (63459, 63459), 12: (819200, 819200)}


def sys_getpid(t: Task) -> int:
    return t.group.pid


def sys_getppid(t: Task) -> int:
    parent = t.group.parent
    return parent.pid if parent is not None else 0


def sys_gettid(t: Task) -> int:
    return t.tid


def sys_getuid(t: Task) -> int:
    return t.creds.uid


def sys_geteuid(t: Task) -> int:
    return t.creds.euid


def sys_getgid(t: Task) -> int:
    return t.creds.gid


def sys_getegid(t: Task) -> int:
    return t.creds.egid


def _write_ids(t: Task, addrs: tuple[int, int, int], ids: tuple[int, int, int]) -> int:
    for addr, value in zip(addrs, ids):
        t.mm.write_u32(addr, value)
    return 0


def sys_getresuid(t: Task, ruid: int, euid: int, suid: int) -> int:
    c = t.creds
    return _write_ids(t, (ruid, euid, suid), (c.uid, c.euid, c.suid))


def sys_getresgid(t: Task, rgid: int, egid: int, sgid: int) -> int:
    c = t.creds
    return _write_ids(t, (rgid, egid, sgid), (c.gid, c.egid, c.sgid))


def sys_getgroups(t: Task, size: int, addr: int) -> int:
    groups = t.creds.groups
    size = s32(size)
    if size < 0:
        raise SyscallError(errno.EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise SyscallError(errno.EINVAL)
    t.mm.copy_out(addr, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


def _set_id(t: Task, value: int, fields: tuple[str, ...]) -> int:
    value &= 0xFFFFFFFF  # a uid_t; (uid_t)-1 is no id (Linux: EINVAL)
    if value == 0xFFFFFFFF:
        raise SyscallError(errno.EINVAL)
    c = t.creds
    if c.euid != 0 and value not in (getattr(c, f) for f in fields):
        raise SyscallError(errno.EPERM)
    for f in fields:
        setattr(c, f, value)
    return 0


def sys_setuid(t: Task, uid: int) -> int:
    return _set_id(t, uid, ("uid", "euid", "suid"))


def sys_setgid(t: Task, gid: int) -> int:
    return _set_id(t, gid, ("gid", "egid", "sgid"))


def sys_getpgrp(t: Task) -> int:
    return t.group.pgid


def _group_of(t: Task, pid: int):
    """The process ``pid`` (0: the caller), a zombie too until reaped, as
    Linux; ``pid`` may be any of its threads' ids. ESRCH if none."""
    pid = s32(pid)
    if pid == 0:
        return t.group
    kernel = t.kernel
    with kernel.lock:
        task = kernel.tasks.get(pid) if pid > 0 else None
        group = kernel.groups.get(pid) or (task.group if task is not None else None)
    if group is None:
        raise SyscallError(errno.ESRCH)
    return group


def sys_getpgid(t: Task, pid: int) -> int:
    return _group_of(t, pid).pgid


def sys_getsid(t: Task, pid: int) -> int:
    return _group_of(t, pid).sid


def sys_setpgid(t: Task, pid: int, pgid: int) -> int:
    """Move the caller or one of its children (not after it exec'd: EACCES)
    into a process group of the caller's session. In Linux's order of
    checks; groups with only zombies left still count, as on Linux."""
    pgid = s32(pgid)
    if pgid < 0:
        raise SyscallError(errno.EINVAL)
    group = _group_of(t, pid)
    if s32(pid) not in (0, group.pid):  # a thread other than the leader
        raise SyscallError(errno.EINVAL)
    if group is not t.group:
        if group.parent is not t.group:
            raise SyscallError(errno.ESRCH)
        if group.sid != t.group.sid:
            raise SyscallError(errno.EPERM)
        if group.execed:
            raise SyscallError(errno.EACCES)
    if group.pid == group.sid:
        raise SyscallError(errno.EPERM)
    pgid = pgid or group.pid
    if pgid != group.pid:
        with t.kernel.lock:
            if not any(g.pgid == pgid and g.sid == group.sid for g in t.kernel.groups.values()):
                raise SyscallError(errno.EPERM)
    group.pgid = pgid
    return 0


def sys_setsid(t: Task) -> int:
    if t.group.pgid == t.group.pid:
        raise SyscallError(errno.EPERM)
    t.group.sid = t.group.pgid = t.group.pid
    return t.group.pid


def sys_exit(t: Task, code: int) -> int:
    """Ends the calling thread; the process ends with its last thread."""
    raise GuestExit((code & 0xFF) << 8)


def sys_exit_group(t: Task, code: int) -> int:
    t.kernel.exit_group(t.group, (code & 0xFF) << 8)
    raise GuestExit(t.group.exit_status)  # type: ignore[arg-type]


def _read_argv(t: Task, addr: int) -> list[bytes]:
    out: list[bytes] = []
    if addr == 0:
        return out
    while True:
        p = t.mm.read_u64(addr + 8 * len(out))
        if p == 0:
            return out
        if len(out) >= 0x7FFF_FFFF // 8:
            raise SyscallError(errno.E2BIG)
        out.append(t.mm.read_cstring(p, 32 * 4096))


def _exec(t: Task, filename: bytes, argv: int, envp: int) -> int:
    t.kernel.vfs.open_exec(t.fs, filename)  # ENOENT/EACCES before argv's EFAULT, as Linux
    args, env = _read_argv(t, argv), _read_argv(t, envp)
    try:
        t.kernel.exec_into(t, filename, args, env)
    except ExecError as e:
        raise SyscallError(e.errno) from None
    return 0


def sys_execve(t: Task, path: int, argv: int, envp: int) -> int:
    return _exec(t, t.mm.read_cstring(path), argv, envp)


AT_FDCWD, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW = -100, 0x1000, 0x100


def sys_execveat(t: Task, dirfd: int, path: int, argv: int, envp: int, flags: int) -> int:
    """execve relative to a directory fd, or of an open file (AT_EMPTY_PATH,
    fexecve): resolved through the sandbox path the fd was opened with."""
    if flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW):
        raise SyscallError(errno.EINVAL)
    name = t.mm.read_cstring(path)
    dirfd = s32(dirfd)
    if not name.startswith(b"/") and dirfd != AT_FDCWD:
        base = t.fds.get(dirfd).path.encode()
        if not name:
            if not flags & AT_EMPTY_PATH:
                raise SyscallError(errno.ENOENT)
            name = base
        else:
            name = base.rstrip(b"/") + b"/" + name
    return _exec(t, name, argv, envp)


def sys_arch_prctl(t: Task, code: int, addr: int) -> int:
    regs = t.arch.regs
    if code == ARCH_SET_FS or code == ARCH_SET_GS:
        if addr >= 0x8000_0000_0000:
            raise SyscallError(errno.EPERM)
        if code == ARCH_SET_FS:
            regs.fs_base = addr
        else:
            regs.gs_base = addr
        return 0
    if code == ARCH_GET_FS or code == ARCH_GET_GS:
        t.mm.write_u64(addr, regs.fs_base if code == ARCH_GET_FS else regs.gs_base)
        return 0
    if code == ARCH_GET_CPUID:
        return 1
    raise SyscallError(errno.EINVAL)


def sys_set_tid_address(t: Task, addr: int) -> int:
    t.clear_child_tid = addr
    return t.tid


def sys_set_robust_list(t: Task, head: int, length: int) -> int:
    if length != 24:
        raise SyscallError(errno.EINVAL)
    t.robust_list = (head, length)
    return 0


def sys_get_robust_list(t: Task, pid: int, head_ptr: int, len_ptr: int) -> int:
    t.mm.write_u64(head_ptr, t.robust_list[0])
    t.mm.write_u64(len_ptr, 24)
    return 0


RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_AS = 6, 7, 9


def sandbox_ceilings(config: Config) -> dict[int, int]:
    """Hard limits the sandbox itself enforces (--nofile, --pids, --memory):
    getrlimit reports them and no guest, root included, raises past them."""
    ceilings = {RLIMIT_NOFILE: config.nofile_limit}
    if config.pids_limit is not None:
        ceilings[RLIMIT_NPROC] = config.pids_limit
    if config.memory_limit is not None:
        ceilings[RLIMIT_AS] = config.memory_limit
    return ceilings


def _rlimit(t: Task, resource: int) -> tuple[int, int]:
    if not 0 <= resource < 16:
        raise SyscallError(errno.EINVAL)
    if resource in t.group.rlimits:
        return t.group.rlimits[resource]
    soft, hard = DEFAULT_RLIMITS.get(resource, (RLIM_INFINITY, RLIM_INFINITY))
    ceiling = sandbox_ceilings(t.kernel.config).get(resource, RLIM_INFINITY)
    return min(soft, ceiling), min(hard, ceiling)


def sys_prlimit64(t: Task, pid: int, resource: int, new: int, old: int) -> int:
    pid = s32(pid)
    if pid not in (0, t.group.pid):
        raise SyscallError(errno.ESRCH)
    current = _rlimit(t, resource)
    if new:
        soft, hard = struct.unpack("<QQ", t.mm.copy_in(new, 16))
        if soft > hard:
            raise SyscallError(errno.EINVAL)
        if hard > current[1] and t.creds.euid != 0:
            raise SyscallError(errno.EPERM)
        if hard > sandbox_ceilings(t.kernel.config).get(resource, RLIM_INFINITY):
            raise SyscallError(errno.EPERM)
    if old:
        t.mm.copy_out(old, struct.pack("<QQ", *current))
    if new:
        t.group.rlimits[resource] = (soft, hard)
        if resource == RLIMIT_NOFILE:
            t.fds.limit = soft
    return 0


def sys_getrlimit(t: Task, resource: int, addr: int) -> int:
    return sys_prlimit64(t, 0, resource, 0, addr)


def sys_setrlimit(t: Task, resource: int, addr: int) -> int:
    return sys_prlimit64(t, 0, resource, addr, 0)


def sys_prctl(t: Task, option: int, a2: int, a3: int, a4: int, a5: int) -> int:
    option = s32(option)
    if option == PR_SET_NAME:
        t.comm = t.mm.read_cstring(a2, 4096)[:15]
        return 0
    if option == PR_GET_NAME:
        t.mm.copy_out(a2, t.comm.ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= a2 <= 64:
            raise SyscallError(errno.EINVAL)
        t.pdeathsig = a2
        return 0
    if option in (PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_VMA):
        return 0
    if option == PR_GET_DUMPABLE:
        return 1
    if option == PR_GET_NO_NEW_PRIVS:
        return 0
    if option == PR_GET_PDEATHSIG:
        t.mm.write_u32(a2, t.pdeathsig)
        return 0
    if option == PR_SET_CHILD_SUBREAPER:  # orphans below come here (Kernel._become_zombie); fork keeps it off
        t.group.child_subreaper = bool(a2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.mm.write_u32(a2, int(t.group.child_subreaper))
        return 0
    if option == PR_CAPBSET_READ:
        return 1 if a2 < 41 else -errno.EINVAL
    raise SyscallError(errno.EINVAL)


def sys_sched_getaffinity(t: Task, pid: int, size: int, mask: int) -> int:
    cpus = os.sched_getaffinity(0)
    nbytes = max(8, (max(cpus) // 64 + 1) * 8)
    if size < nbytes or size & 7:
        raise SyscallError(errno.EINVAL)
    bits = sum(1 << c for c in cpus)
    t.mm.copy_out(mask, bits.to_bytes(nbytes, "little"))
    return nbytes


def sys_sched_setaffinity(t: Task, pid: int, size: int, mask: int) -> int:
    t.mm.copy_in(mask, min(size, 128))
    return 0


def sys_sched_yield(t: Task) -> int:
    os.sched_yield()
    return 0


def sys_getcpu(t: Task, cpu: int, node: int, cache: int) -> int:
    if cpu:
        t.mm.write_u32(cpu, 0)
    if node:
        t.mm.write_u32(node, 0)
    return 0


def sys_getrusage(t: Task, who: int, addr: int) -> int:
    who = s32(who)
    if who == cputime.RUSAGE_SELF:
        usage = cputime.group_times(t.group)
    elif who == cputime.RUSAGE_CHILDREN:
        usage = t.group.children_times
    elif who == cputime.RUSAGE_THREAD:
        usage = cputime.task_times(t)
    else:
        raise SyscallError(errno.EINVAL)
    t.mm.copy_out(addr, usage.rusage())
    return 0


def sys_times(t: Task, addr: int) -> int:
    if addr:
        own, children = cputime.group_times(t.group), t.group.children_times
        t.mm.copy_out(addr, struct.pack("<4q", *own.ticks(), *children.ticks()))
    return time.monotonic_ns() // (1_000_000_000 // cputime.CLK_TCK) & 0x7FFF_FFFF_FFFF_FFFF


ARCH_PRCTL_CODES = {0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS"}

ENTRIES = entries(
    supported("getpid", sys_getpid), supported("getppid", sys_getppid), supported("gettid", sys_gettid),
    supported("getuid", sys_getuid), supported("geteuid", sys_geteuid),
    supported("getgid", sys_getgid), supported("getegid", sys_getegid),
    supported("getresuid", sys_getresuid, args=(Ptr, Ptr, Ptr)),
    supported("getresgid", sys_getresgid, args=(Ptr, Ptr, Ptr)),
    supported("getgroups", sys_getgroups, args=(Int, Ptr)),
    partial("setuid", sys_setuid, args=(Int,), note="changes the sandbox's view only"),
    partial("setgid", sys_setgid, args=(Int,), note="changes the sandbox's view only"),
    supported("getpgrp", sys_getpgrp), supported("getpgid", sys_getpgid, args=(Int,)),
    supported("getsid", sys_getsid, args=(Int,)), supported("setpgid", sys_setpgid, args=(Int, Int)),
    supported("setsid", sys_setsid),
    supported("exit", sys_exit, args=(Int,)),
    supported("exit_group", sys_exit_group, args=(Int,)),
    supported("execve", sys_execve, args=(Path, Argv, Argv)),
    partial("execveat", sys_execveat, args=(FD, Path, Argv, Argv, Hex), note="resolved through the fd's path"),
    partial("arch_prctl", sys_arch_prctl, args=(Enum(ARCH_PRCTL_CODES), Hex), note="FS/GS base; CPUID faulting is refused"),
    supported("set_tid_address", sys_set_tid_address, args=(Ptr,)),
    supported("set_robust_list", sys_set_robust_list, args=(Ptr, Size)),
    supported("get_robust_list", sys_get_robust_list, args=(Int, Ptr, Ptr)),
    supported("prlimit64", sys_prlimit64, args=(Int, Enum(RLIMIT_NAMES), Struct("rlimit"), Ptr)),
    supported("getrlimit", sys_getrlimit, args=(Enum(RLIMIT_NAMES), Ptr)),
    supported("setrlimit", sys_setrlimit, args=(Enum(RLIMIT_NAMES), Struct("rlimit"))),
    partial("prctl", sys_prctl, args=(Int, Hex, Hex, Hex, Hex),
            note="names, pdeathsig, child subreaper; dumpable and no_new_privs accepted"),
    supported("sched_getaffinity", sys_sched_getaffinity, args=(Int, Size, Ptr)),
    partial("sched_setaffinity", sys_sched_setaffinity, args=(Int, Size, Ptr), note="accepted, not applied"),
    supported("sched_yield", sys_sched_yield), supported("getcpu", sys_getcpu, args=(Ptr, Ptr, Ptr)),
    supported("getrusage", sys_getrusage, args=(Int, Ptr)),
    supported("times", sys_times, args=(Ptr,)),
    error("rseq", errno.ENOSYS, note="glibc falls back without it", args=(Hex, Size, Int, Hex)),
    error("ptrace", errno.EPERM, note="no tracing inside the sandbox"),
)
