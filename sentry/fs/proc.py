"""/proc, synthesized by the Sentry (never the host's).

In a nutshell: a ``SynthDir`` whose fixed entries are the system-wide files
(cpuinfo, meminfo, filesystems, mounts, sys/...) and whose dynamic entries
are the sandbox's PIDs (from ``kernel.tasks``) plus ``self`` and
``thread-self``. ``/proc/PID`` is built on lookup for a thread group held
by a weak reference, so an open directory never keeps a dead process
alive; its files read the group's task state when opened (a snapshot).
Magic links (fd/N, cwd, root) jump straight to the node they stand for.

System identity (hostname, release) must match what uname(2) returns:
tests/test_fs_proc.py checks ours against sentry.syscalls.system.
"""
from __future__ import annotations

import errno
import os
import stat as S
import time
import weakref
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.fs.node import Node, err
from sentry.fs.synth import PROC_SUPER_MAGIC, SynthDir, SynthFile, SynthFS, SynthLink
from sentry.kernel.cputime import CLK_TCK, group_times

if TYPE_CHECKING:
    from sentry.fs.vfs import VFS
    from sentry.kernel.task import Task, ThreadGroup

UTS_RELEASE = b"6.1.0-sentry"
UTS_VERSION = b"#1 SMP Sentry"
HOSTNAME = b"sentry"
PAGE = 4096
FILESYSTEMS = b"nodev\tproc\nnodev\ttmpfs\nnodev\toverlay\nnodev\tsysfs\nnodev\tdevtmpfs\nnodev\tpipefs\n"


def _host_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _meminfo(ctx) -> bytes:
    """The sandbox's memory, as gVisor reports it: the total is the
    --memory limit (or the host's memory, if smaller or unlimited), the
    used part is what the MemoryFile holds (tmpfs content aside)."""
    total = os.sysconf("SC_PHYS_PAGES") * 4
    free = os.sysconf("SC_AVPHYS_PAGES") * 4
    memory = getattr(getattr(ctx, "kernel", None), "memory", None)
    if memory is not None:
        if memory.limit is not None:
            total = min(total, memory.limit >> 10)
        free = max(0, min(free, total - (memory.resident(0, memory.capacity) >> 10)))
    rows = [("MemTotal", total), ("MemFree", free), ("MemAvailable", free), ("Buffers", 0),
            ("Cached", 0), ("SwapCached", 0), ("SwapTotal", 0), ("SwapFree", 0),
            ("Shmem", 0), ("CommitLimit", total), ("Committed_AS", 0)]
    return "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in rows).encode()


def _uptime(ctx) -> bytes:
    return _host_file("/proc/uptime")


def _stat(ctx) -> bytes:
    """/proc/stat: the CPUs the guest sees, idle since boot (the sandbox
    keeps no per-CPU accounting, and the host's own figures are not the
    guest's business)."""
    n = len(os.sched_getaffinity(0))
    idle = int(time.monotonic() * CLK_TCK)
    cpus = "".join(f"cpu{i} 0 0 0 {idle} 0 0 0 0 0 0\n" for i in range(n))
    btime = int(time.time() - time.monotonic())  # the clock the guest's CLOCK_MONOTONIC counts from
    return f"cpu  0 0 0 {idle * n} 0 0 0 0 0 0\n{cpus}btime {btime}\nprocesses 1\nprocs_running 1\n".encode()


def _memory_sizes(group: "ThreadGroup") -> tuple[int, int]:
    """(mapped bytes, resident bytes) of ``group``'s address space."""
    mm = _main_task(group).mm
    return (mm.usage(), mm.resident()) if mm is not None else (0, 0)


def statm_text(group: "ThreadGroup") -> bytes:
    """/proc/PID/statm: size and resident in pages (the rest: zero)."""
    size, rss = _memory_sizes(group)
    return f"{size // PAGE} {rss // PAGE} 0 0 0 0 0\n".encode()


def _main_task(group: "ThreadGroup") -> "Task":
    if not group.tasks:
        raise err(errno.ENOENT)
    return group.tasks[0]


def _prot(v) -> str:
    return ("r" if v.prot & 1 else "-") + ("w" if v.prot & 2 else "-") + ("x" if v.prot & 4 else "-") + \
        ("s" if v.shared else "p")


def maps_text(task: "Task") -> bytes:
    lines = []
    for v in (task.mm.vmas() if task.mm is not None else ()):
        head = f"{v.start:08x}-{v.end:08x} {_prot(v)} {v.file_offset:08x} 00:00 0"
        lines.append(f"{head:<73}{v.name}".rstrip() + "\n" if v.name else head + "\n")
    return "".join(lines).encode()


def _mm_range(task: "Task", which: str) -> bytes:
    """The guest's argv (which="arg") or environment ("env") block."""
    mm = task.mm
    if mm is None:
        return b""
    start, end = getattr(mm, which + "_start"), getattr(mm, which + "_end")
    if end <= start:
        return b""
    try:
        return mm.copy_in(start, min(end - start, 1 << 20))
    except SyscallError:
        return b""


def status_text(group: "ThreadGroup") -> bytes:
    t = _main_task(group)
    c = group.creds
    ppid = group.parent.pid if group.parent is not None else 0
    umask = t.fs.umask if t.fs is not None else 0o022
    size, rss = (f"{b >> 10} kB" for b in _memory_sizes(group))
    ids = lambda a, b, s: f"{a}\t{b}\t{s}\t{b}"  # noqa: E731  real, effective, saved, fs
    rows = [("Name", t.comm.decode(errors="replace")), ("Umask", f"{umask:04o}"),
            ("State", "R (running)"), ("Tgid", group.pid), ("Ngid", 0), ("Pid", group.pid),
            ("PPid", ppid), ("TracerPid", 0), ("Uid", ids(c.uid, c.euid, c.suid)),
            ("Gid", ids(c.gid, c.egid, c.sgid)), ("FDSize", 64),
            ("Groups", " ".join(map(str, c.groups))), ("VmPeak", size), ("VmSize", size),
            ("VmRSS", rss), ("Threads", len(group.tasks)), ("SigQ", "0/0"),
            ("SigPnd", f"{0:016x}"), ("ShdPnd", f"{0:016x}"), ("SigBlk", f"{t.signal_mask:016x}"),
            ("SigIgn", f"{0:016x}"), ("SigCgt", f"{0:016x}"), ("CapInh", f"{0:016x}"),
            ("CapPrm", f"{0:016x}"), ("CapEff", f"{0:016x}"), ("CapBnd", f"{0:016x}"),
            ("CapAmb", f"{0:016x}"), ("NoNewPrivs", 0), ("Seccomp", 0),
            ("Cpus_allowed", "1"), ("Cpus_allowed_list", "0")]
    return "".join(f"{k}:\t{v}\n" for k, v in rows).encode()


def stat_text(group: "ThreadGroup") -> bytes:
    """/proc/PID/stat: the 52 fields ps and top read (fault counts zero)."""
    t = _main_task(group)
    ppid = group.parent.pid if group.parent is not None else 0
    mm = t.mm
    a = (mm.arg_start, mm.arg_end, mm.env_start, mm.env_end) if mm is not None else (0, 0, 0, 0)
    start_ticks = group.start_ns // (1_000_000_000 // CLK_TCK)  # since boot: start_ns is monotonic
    size, rss = _memory_sizes(group)
    fields = ([group.pid, f"({t.comm.decode(errors='replace')})", "R", ppid, group.pgid, group.sid,
               0, -1, 0x400000]  # tty_nr, tpgid, flags (PF_FORKNOEXEC)
              + [0] * 4  # minflt, cminflt, majflt, cmajflt
              + [*group_times(group).ticks(), *group.children_times.ticks()]  # utime stime cutime cstime
              + [20, 0, len(group.tasks), 0, start_ticks, size, rss // PAGE, (1 << 64) - 1]  # prio .. rsslim
              + [0] * 19  # code/stack addresses, signals, wchan, exit_signal, cpu, policy...
              + [0, 0, 0, *a, 0])  # data, brk, arg/env ranges, exit code
    return (" ".join(map(str, fields)) + "\n").encode()


class ProcFS(SynthFS):
    """/proc for one sandbox. ``vfs``: for the mount table and paths."""

    def __init__(self, vfs: "VFS"):
        super().__init__("proc", PROC_SUPER_MAGIC)
        self.vfs = vfs
        self._pid_dirs: dict[int, PidDir] = {}
        f = lambda gen, **kw: SynthFile(self, gen, **kw)  # noqa: E731
        d = lambda entries, **kw: SynthDir(self, entries, **kw)  # noqa: E731
        const = lambda data: f(lambda ctx: data)  # noqa: E731
        kernel = d({
            b"osrelease": const(UTS_RELEASE + b"\n"), b"ostype": const(b"Linux\n"),
            b"version": const(UTS_VERSION + b"\n"), b"hostname": const(HOSTNAME + b"\n"),
            b"domainname": const(b"(none)\n"), b"pid_max": const(b"4194304\n"),
            b"ngroups_max": const(b"65536\n"), b"cap_last_cap": const(b"40\n"),
            b"random": d({b"boot_id": const(b"00000000-0000-4000-8000-000000000000\n"),
                          b"uuid": f(lambda ctx: _uuid4())}),
        })
        vm = d({b"overcommit_memory": const(b"0\n"), b"max_map_count": const(b"65530\n"),
                b"mmap_min_addr": const(b"65536\n")})
        fsd = d({b"file-max": const(b"9223372036854775807\n"), b"nr_open": const(b"1048576\n"),
                 b"pipe-max-size": const(b"1048576\n")})
        self.root = SynthDir(self, {
            b"cpuinfo": f(lambda ctx: _host_file("/proc/cpuinfo")),
            b"meminfo": f(_meminfo),
            b"uptime": f(_uptime),
            b"loadavg": const(b"0.00 0.00 0.00 1/1 1\n"),
            b"version": const(b"Linux version " + UTS_RELEASE + b" " + UTS_VERSION + b"\n"),
            b"filesystems": const(FILESYSTEMS),
            b"cmdline": const(b"sentry\n"),
            b"stat": f(_stat),
            b"mounts": SynthLink(self, lambda ctx: b"self/mounts"),
            b"self": SynthLink(self, lambda ctx: str(_pid(ctx)).encode()),
            b"thread-self": SynthLink(self, lambda ctx: f"{_pid(ctx)}/task/{ctx.tid}".encode()),
            b"sys": d({b"kernel": kernel, b"vm": vm, b"fs": fsd}),
        }, dyn_lookup=self._lookup_pid, dyn_list=self._list_pids)

    # --- PIDs ---------------------------------------------------------------
    def _group(self, pid: int, ctx) -> "ThreadGroup | None":
        if ctx is None:
            return None
        if ctx.group.pid == pid:
            return ctx.group
        task = ctx.kernel.tasks.get(pid)
        if task is None or task.group.pid != pid or task.group.exit_status is not None:
            return None
        return task.group

    def _list_pids(self, ctx) -> list[bytes]:
        if ctx is None:
            return []
        pids = {tid for tid, t in list(ctx.kernel.tasks.items()) if t.group.pid == tid} | {ctx.group.pid}
        return [str(p).encode() for p in sorted(pids)]

    def _lookup_pid(self, name: bytes, ctx) -> Node | None:
        if not name.isdigit() or name.startswith(b"0"):
            return None
        group = self._group(int(name), ctx)
        if group is None:
            return None
        cached = self._pid_dirs.get(group.pid)
        if cached is not None and cached.group_ref() is group:
            return cached
        node = self._pid_dir(group)
        self._pid_dirs[group.pid] = node
        return node

    def _pid_dir(self, group: "ThreadGroup", with_tasks: bool = True) -> "PidDir":
        ref = weakref.ref(group)
        uid, gid = group.creds.uid, group.creds.gid

        def live() -> "ThreadGroup":
            g = ref()
            if g is None or g.exit_status is not None:
                raise err(errno.ESRCH)
            return g

        def task() -> "Task":
            return _main_task(live())

        f = lambda gen, mode=0o444: SynthFile(self, lambda ctx: gen(), mode=mode, uid=uid, gid=gid)  # noqa: E731

        def link(target, to=None):
            return SynthLink(self, lambda ctx: target(), (lambda ctx: to()) if to else None, uid=uid, gid=gid)

        def fd_lookup(name: bytes, ctx) -> Node | None:
            if not name.isdigit():
                return None
            try:
                file = task().fds.get(int(name))
            except SyscallError:
                return None
            return SynthLink(self, lambda c: fd_target(file), lambda c: file.node, uid=uid, gid=gid)

        def fd_list(ctx) -> list[bytes]:
            return [str(fd).encode() for fd in task().fds.fds()]

        fs_of = lambda: task().fs  # noqa: E731
        vfs = self.vfs
        pd = PidDir(self, ref, {
            b"exe": link(lambda: live().exe.encode()),
            b"cwd": link(lambda: fs_of().cwd_path().encode(), lambda: fs_of().cwd),
            b"root": link(lambda: b"/", lambda: fs_of().root),
            b"maps": f(lambda: maps_text(task())),
            b"cmdline": f(lambda: _mm_range(task(), "arg")),
            b"environ": f(lambda: _mm_range(task(), "env"), 0o400),
            b"status": f(lambda: status_text(live())),
            b"stat": f(lambda: stat_text(live())),
            b"statm": f(lambda: statm_text(live())),
            b"comm": f(lambda: task().comm + b"\n", 0o644),
            b"mounts": f(lambda: vfs.mounts_text()),
            b"mountinfo": f(lambda: vfs.mountinfo_text()),
            b"limits": f(lambda: b"Limit                     Soft Limit           Hard Limit           Units     \n"),
            b"oom_score_adj": f(lambda: b"0\n", 0o644),
            b"fd": SynthDir(self, {}, mode=0o500, dyn_lookup=fd_lookup, dyn_list=fd_list, uid=uid, gid=gid),
        }, uid=uid, gid=gid)
        if with_tasks:
            def tids(ctx) -> list[bytes]:
                return [str(t.tid).encode() for t in list(live().tasks)]

            pd.add(b"task", SynthDir(self, {}, dyn_lookup=lambda name, ctx: self._pid_dir(live(), False)
                                     if name in tids(ctx) else None, dyn_list=tids))
        return pd


class PidDir(SynthDir):
    """/proc/PID: ``group_ref`` is a weak reference to its thread group."""

    __slots__ = ("group_ref",)

    def __init__(self, fs: SynthFS, group_ref: "weakref.ref[ThreadGroup]", entries: dict[bytes, Node], **kw):
        super().__init__(fs, entries, **kw)
        self.group_ref = group_ref


def fd_target(file) -> bytes:
    """What readlink(/proc/PID/fd/N) shows for an open file: its path, with
    " (deleted)" once its last name is gone, as Linux shows it."""
    node = file.node
    if node is not None and node.kind == S.S_IFREG and node.stat().st_nlink == 0:
        return file.path.encode() + b" (deleted)"
    return file.path.encode()


def _pid(ctx) -> int:
    if ctx is None:
        raise err(errno.ENOENT)
    return ctx.group.pid


def _uuid4() -> bytes:
    import uuid

    return str(uuid.uuid4()).encode() + b"\n"
