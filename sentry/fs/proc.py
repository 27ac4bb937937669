"""/proc, synthesized by the Sentry (never the host's).

In a nutshell: a ``SynthDir`` whose fixed entries are the system-wide files
(cpuinfo, meminfo, filesystems, mounts, sys/...) and whose dynamic entries
are the sandbox's PIDs (from ``kernel.groups``) plus ``self`` and
``thread-self``. ``/proc/PID`` is built on lookup for a thread group held
by a weak reference, so an open directory never keeps a dead process
alive; its files read the group's task state when opened (a snapshot).
A zombie (exited, not yet reaped) keeps its directory, as on Linux: its
stat and status say Z, its memory files are empty. ``/proc/PID/task/TID``
shows one thread: its own state, times and comm.
Magic links (fd/N, cwd, root) jump straight to the node they stand for.

States (``task_state``), as Linux's ``fs/proc/array.c`` prints them: R
while the task runs guest code or is in the Sentry, S while it is parked in
an interruptible wait (``Task.parked``, set by ``sentry.kernel.wait``), D
in an uninterruptible one (a vfork parent), T while its process is stopped
(job control), Z once it is a zombie.

Time is the sandbox's: /proc/uptime counts from the kernel's start
(``Kernel.boot_ns``), process start times in /proc/PID/stat count from
there too, and /proc/stat's btime is the wall time of that start, so ps's
start times and top's "up" agree. /proc/stat's cpu lines are the
sandbox's own CPU time (``sentry.kernel.cputime``, every thread group's),
split evenly over the CPUs; idle is the rest of uptime. /proc/loadavg's
averages are exponential averages of the runnable count (R and D tasks),
updated when read (Linux samples every 5 s).

System identity (hostname, release) must match what uname(2) returns:
tests/test_fs_proc.py checks ours against sentry.syscalls.system.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import stat as S
import threading
import time
import weakref
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.fs.node import Node, err
from sentry.fs.synth import PROC_SUPER_MAGIC, SynthDir, SynthFile, SynthFS, SynthLink
from sentry.kernel.cputime import CLK_TCK, CpuTimes, group_times, task_times

if TYPE_CHECKING:
    from sentry.fs.vfs import VFS
    from sentry.kernel.task import Task, ThreadGroup

UTS_RELEASE = b"6.1.0-sentry"
UTS_VERSION = b"#1 SMP Sentry"
HOSTNAME = b"sentry"
PAGE = 4096
FILESYSTEMS = b"nodev\tproc\nnodev\ttmpfs\nnodev\toverlay\nnodev\tsysfs\nnodev\tdevtmpfs\nnodev\tpipefs\n"
NS_PER_TICK = 1_000_000_000 // CLK_TCK
STATE_NAMES = {"R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)", "T": "T (stopped)",
               "Z": "Z (zombie)"}
LOAD_PERIODS = (60.0, 300.0, 900.0)  # seconds: the 1, 5 and 15 minute averages


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


def task_state(task: "Task") -> str:
    """The state letter /proc shows for ``task`` (see the module doc)."""
    group = task.group
    if task.exited or group.zombie:
        return "Z"
    if group.stopped:
        return "T"
    return task.parked or "R"


def _leader(group: "ThreadGroup") -> "Task | None":
    """The task /proc/PID shows (the first of the group), None for a zombie."""
    try:
        return group.tasks[0]
    except IndexError:
        return None


def _comm(group: "ThreadGroup", task: "Task | None") -> bytes:
    """The task's comm; a zombie's is its program's name, as exec set it."""
    return task.comm if task is not None else group.exe.rsplit("/", 1)[-1].encode()[:15]


def _kernel_groups(kernel) -> list["ThreadGroup"]:
    """Every thread group not yet reaped: live, exiting and zombie."""
    groups = getattr(kernel, "groups", None)
    if groups is not None:
        return list(groups.values())
    seen: dict[int, "ThreadGroup"] = {}
    for t in list(kernel.tasks.values()):
        seen.setdefault(id(t.group), t.group)
    return list(seen.values())


def _kernel_lock(kernel):
    lock = getattr(kernel, "lock", None)
    return lock if lock is not None else contextlib.nullcontext()


def _task_counts(kernel) -> tuple[int, int, int]:
    """(R tasks, D tasks, all tasks) of the sandbox."""
    running = blocked = total = 0
    for t in list(kernel.tasks.values()):
        if t.exited:
            continue
        total += 1
        state = task_state(t)
        running += state == "R"
        blocked += state == "D"
    return running, blocked, total


def _last_pid(kernel) -> int:
    """The last PID handed out (PIDs are never reused in a sandbox)."""
    return getattr(kernel, "_next_pid", 2) - 1


def _memory_sizes(group: "ThreadGroup") -> tuple[int, int]:
    """(mapped bytes, resident bytes) of ``group``'s address space."""
    task = _leader(group)
    mm = task.mm if task is not None else None
    return (mm.usage(), mm.resident()) if mm is not None else (0, 0)


def statm_text(group: "ThreadGroup") -> bytes:
    """/proc/PID/statm: size and resident in pages (the rest: zero)."""
    size, rss = _memory_sizes(group)
    return f"{size // PAGE} {rss // PAGE} 0 0 0 0 0\n".encode()


def _main_task(group: "ThreadGroup") -> "Task":
    task = _leader(group)
    if task is None:
        raise err(errno.ENOENT)
    return task


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


def status_text(group: "ThreadGroup", thread: "Task | None" = None) -> bytes:
    """/proc/PID/status, or with ``thread`` /proc/PID/task/TID/status."""
    t = thread if thread is not None else _leader(group)
    c = group.creds
    ppid = group.parent.pid if group.parent is not None else 0
    umask = t.fs.umask if t is not None and t.fs is not None else 0o022
    size, rss = (f"{b >> 10} kB" for b in _memory_sizes(group))
    state = task_state(t) if t is not None else "Z"
    pid = thread.tid if thread is not None else group.pid
    mask = t.signal_mask if t is not None else 0
    ids = lambda a, b, s: f"{a}\t{b}\t{s}\t{b}"  # noqa: E731  real, effective, saved, fs
    rows = [("Name", _comm(group, t).decode(errors="replace")), ("Umask", f"{umask:04o}"),
            ("State", STATE_NAMES[state]), ("Tgid", group.pid), ("Ngid", 0), ("Pid", pid),
            ("PPid", ppid), ("TracerPid", 0), ("Uid", ids(c.uid, c.euid, c.suid)),
            ("Gid", ids(c.gid, c.egid, c.sgid)), ("FDSize", 64),
            ("Groups", " ".join(map(str, c.groups)))]
    if state != "Z":  # a zombie has no memory
        rows += [("VmPeak", size), ("VmSize", size), ("VmRSS", rss)]
    rows += [("Threads", len(group.tasks) or 1), ("SigQ", "0/0"),
             ("SigPnd", f"{0:016x}"), ("ShdPnd", f"{0:016x}"), ("SigBlk", f"{mask:016x}"),
             ("SigIgn", f"{0:016x}"), ("SigCgt", f"{0:016x}"), ("CapInh", f"{0:016x}"),
             ("CapPrm", f"{0:016x}"), ("CapEff", f"{0:016x}"), ("CapBnd", f"{0:016x}"),
             ("CapAmb", f"{0:016x}"), ("NoNewPrivs", 0), ("Seccomp", 0),
             ("Cpus_allowed", "1"), ("Cpus_allowed_list", "0")]
    return "".join(f"{k}:\t{v}\n" for k, v in rows).encode()


def stat_text(group: "ThreadGroup", thread: "Task | None" = None, boot_ns: int = 0) -> bytes:
    """/proc/PID/stat (or with ``thread`` /proc/PID/task/TID/stat): the 52
    fields ps and top read (fault counts zero). ``boot_ns``: the monotonic
    time the sandbox started, which start times count from."""
    t = thread if thread is not None else _leader(group)
    ppid = group.parent.pid if group.parent is not None else 0
    mm = t.mm if t is not None else None
    a = (mm.arg_start, mm.arg_end, mm.env_start, mm.env_end) if mm is not None else (0, 0, 0, 0)
    start_ticks = max(0, group.start_ns - boot_ns) // NS_PER_TICK
    size, rss = _memory_sizes(group)
    state = task_state(t) if t is not None else "Z"
    times = task_times(thread) if thread is not None else group_times(group)
    children = group.children_times if thread is None else CpuTimes()
    exit_code = (group.exit_status or 0) if state == "Z" else 0  # as a wait status
    pid = thread.tid if thread is not None else group.pid
    comm = _comm(group, t).decode(errors="replace")
    fields = ([pid, f"({comm})", state, ppid, group.pgid, group.sid,
               0, -1, 0x400000]  # tty_nr, tpgid, flags (PF_FORKNOEXEC)
              + [0] * 4  # minflt, cminflt, majflt, cmajflt
              + [*times.ticks(), *children.ticks()]  # utime stime cutime cstime
              + [20 + (nice := (t.sched.nice if t is not None and t.sched is not None else 0)), nice,  # sentry.syscalls.sched
                 len(group.tasks) or 1, 0, start_ticks, size, rss // PAGE, (1 << 64) - 1]  # prio .. rsslim
              + [0] * 19  # code/stack addresses, signals, wchan, exit_signal, cpu, policy...
              + [0, 0, 0, *a, exit_code])  # data, brk, arg/env ranges, exit code
    return (" ".join(map(str, fields)) + "\n").encode()


class ProcFS(SynthFS):
    """/proc for one sandbox. ``vfs``: for the mount table and paths."""

    def __init__(self, vfs: "VFS"):
        super().__init__("proc", PROC_SUPER_MAGIC)
        self.vfs = vfs
        self._pid_dirs: dict[int, PidDir] = {}
        self.boot_ns = time.monotonic_ns()  # without a kernel (no reading task): when /proc was made
        self._lock = threading.Lock()
        # Guarded by _lock: the load averages, when they were last updated,
        # the largest CPU times read so far.
        self._load = [0.0, 0.0, 0.0]
        self._load_at: int | None = None
        self._cpu_seen = (0, 0)
        self._btimes: dict[int, int] = {}  # boot_ns -> btime
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
            b"uptime": f(self._uptime),
            b"loadavg": f(self._loadavg),
            b"version": const(b"Linux version " + UTS_RELEASE + b" " + UTS_VERSION + b"\n"),
            b"filesystems": const(FILESYSTEMS),
            b"cmdline": const(b"sentry\n"),
            b"stat": f(self._stat),
            b"mounts": SynthLink(self, lambda ctx: b"self/mounts"),
            b"self": SynthLink(self, lambda ctx: str(_pid(ctx)).encode()),
            b"thread-self": SynthLink(self, lambda ctx: f"{_pid(ctx)}/task/{ctx.tid}".encode()),
            b"sys": d({b"kernel": kernel, b"vm": vm, b"fs": fsd}),
        }, dyn_lookup=self._lookup_pid, dyn_list=self._list_pids)

    # --- system-wide files ----------------------------------------------------
    def _boot_ns(self, kernel) -> int:
        return getattr(kernel, "boot_ns", self.boot_ns)

    def _uptime_ns(self, ctx) -> int:
        return max(0, time.monotonic_ns() - self._boot_ns(getattr(ctx, "kernel", None)))

    def _cpu_ns(self, ctx) -> tuple[int, int]:
        """(user, system) nanoseconds of the whole sandbox: every thread
        group's, live threads, exited ones and reaped children included.
        Never less than a previous read said (an auto-reaped child's time
        is folded nowhere), so top's deltas stay positive."""
        kernel = getattr(ctx, "kernel", None)
        user = system = 0
        if kernel is not None:
            with _kernel_lock(kernel):  # a reap moves a child's times into its parent's
                for g in _kernel_groups(kernel):
                    total = g.exited_times + g.children_times
                    for t in list(g.tasks):
                        total += task_times(t)
                    user, system = user + total.user_ns, system + total.sys_ns
        with self._lock:
            user, system = max(user, self._cpu_seen[0]), max(system, self._cpu_seen[1])
            self._cpu_seen = (user, system)
        return user, system

    def _uptime(self, ctx) -> bytes:
        """/proc/uptime: seconds since the sandbox started, and the idle
        part of that summed over its CPUs (what its tasks did not use)."""
        up = self._uptime_ns(ctx)
        user, system = self._cpu_ns(ctx)
        idle = max(0, up * _ncpus() - user - system)
        return f"{up / 1e9:.2f} {idle / 1e9:.2f}\n".encode()

    def _btime(self, ctx) -> int:
        """The wall time (seconds) the sandbox started: fixed once read."""
        boot = self._boot_ns(getattr(ctx, "kernel", None))
        btime = self._btimes.get(boot)
        if btime is None:
            btime = self._btimes[boot] = int(time.time() - (time.monotonic_ns() - boot) / 1e9)
        return btime

    def _stat(self, ctx) -> bytes:
        """/proc/stat: the sandbox's CPU time in ticks, split evenly over
        the CPUs the guest sees; idle is the rest of its uptime."""
        n = _ncpus()
        up = self._uptime_ns(ctx) // NS_PER_TICK
        user, system = (v // NS_PER_TICK for v in self._cpu_ns(ctx))
        per = [(user // n + (user % n if i == 0 else 0), system // n + (system % n if i == 0 else 0))
               for i in range(n)]
        idle = [max(0, up - u - s) for u, s in per]
        kernel = getattr(ctx, "kernel", None)
        running, blocked, _ = _task_counts(kernel) if kernel is not None else (0, 0, 0)
        lines = [f"cpu  {user} 0 {system} {sum(idle)} 0 0 0 0 0 0\n"]
        lines += [f"cpu{i} {u} 0 {s} {idle[i]} 0 0 0 0 0 0\n" for i, (u, s) in enumerate(per)]
        lines.append(f"btime {self._btime(ctx)}\nprocesses {_last_pid(kernel) if kernel is not None else 0}\n"
                     f"procs_running {running}\nprocs_blocked {blocked}\n")
        return "".join(lines).encode()

    def _loadavg(self, ctx) -> bytes:
        """/proc/loadavg: the averages of the R and D tasks (updated now, as
        if the count had held since the last read), then R tasks/all
        tasks and the last PID handed out."""
        kernel = getattr(ctx, "kernel", None)
        running, blocked, total = _task_counts(kernel) if kernel is not None else (0, 0, 0)
        now = time.monotonic_ns()
        with self._lock:
            last = self._load_at if self._load_at is not None else self._boot_ns(kernel)
            dt = max(0, now - last) / 1e9
            self._load_at = now
            decay = [math.exp(-dt / p) for p in LOAD_PERIODS]
            self._load = [a * d + (running + blocked) * (1 - d) for a, d in zip(self._load, decay)]
            l1, l5, l15 = self._load
        pid = _last_pid(kernel) if kernel is not None else 0
        return f"{l1:.2f} {l5:.2f} {l15:.2f} {running}/{total} {pid}\n".encode()

    # --- PIDs ---------------------------------------------------------------
    def _group(self, pid: int, ctx) -> "ThreadGroup | None":
        """The thread group ``pid``: live, exiting or a zombie not yet reaped."""
        if ctx is None:
            return None
        if ctx.group.pid == pid:
            return ctx.group
        groups = getattr(ctx.kernel, "groups", None)
        if groups is not None:
            return groups.get(pid)
        task = ctx.kernel.tasks.get(pid)
        return task.group if task is not None and task.group.pid == pid else None

    def _list_pids(self, ctx) -> list[bytes]:
        if ctx is None:
            return []
        pids = {g.pid for g in _kernel_groups(ctx.kernel)} | {ctx.group.pid}
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
        node = self._pid_dir(group, ctx.kernel)
        self._pid_dirs[group.pid] = node
        return node

    def _pid_dir(self, group: "ThreadGroup", kernel, tid: int | None = None) -> "PidDir":
        """/proc/PID for ``group``, or with ``tid`` /proc/PID/task/TID."""
        ref = weakref.ref(group)
        uid, gid = group.creds.uid, group.creds.gid

        def live() -> "ThreadGroup":
            g = ref()
            if g is None or g.zombie and getattr(kernel, "groups", {}).get(g.pid) is not g:
                raise err(errno.ESRCH)  # reaped
            return g

        def thread() -> "Task | None":
            """The thread of a task/TID directory (ESRCH once it exited),
            None for /proc/PID."""
            if tid is None:
                return None
            for t in list(live().tasks):
                if t.tid == tid:
                    return t
            raise err(errno.ESRCH)

        def task() -> "Task":
            return thread() or _main_task(live())

        def shown() -> "Task | None":
            """The task whose comm this directory shows (None: a zombie)."""
            return thread() if tid is not None else _leader(live())

        def memory(gen) -> bytes:
            """``gen(task)``: empty for a zombie, as Linux shows it."""
            g = live()
            return gen(task()) if g.tasks else b""

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
        boot_ns = self._boot_ns(kernel)
        pd = PidDir(self, ref, {
            b"exe": link(lambda: live().exe.encode()),
            b"cwd": link(lambda: fs_of().cwd_path().encode(), lambda: fs_of().cwd),
            b"root": link(lambda: b"/", lambda: fs_of().root),
            b"maps": f(lambda: memory(maps_text)),
            b"cmdline": f(lambda: memory(lambda t: _mm_range(t, "arg"))),
            b"environ": f(lambda: memory(lambda t: _mm_range(t, "env")), 0o400),
            b"status": f(lambda: status_text(live(), thread())),
            b"stat": f(lambda: stat_text(live(), thread(), boot_ns)),
            b"statm": f(lambda: statm_text(live())),
            b"comm": f(lambda: _comm(live(), shown()) + b"\n", 0o644),
            b"mounts": f(lambda: vfs.mounts_text()),
            b"mountinfo": f(lambda: vfs.mountinfo_text()),
            b"limits": f(lambda: b"Limit                     Soft Limit           Hard Limit           Units     \n"),
            b"oom_score_adj": f(lambda: b"0\n", 0o644),
            b"fd": SynthDir(self, {}, mode=0o500, dyn_lookup=fd_lookup, dyn_list=fd_list, uid=uid, gid=gid),
        }, uid=uid, gid=gid)
        if tid is None:
            def tids(ctx) -> list[bytes]:
                return [str(t.tid).encode() for t in list(live().tasks)]

            def task_lookup(name: bytes, ctx) -> Node | None:
                return self._pid_dir(live(), kernel, int(name)) if name in tids(ctx) else None

            pd.add(b"task", SynthDir(self, {}, dyn_lookup=task_lookup, dyn_list=tids))
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


def _ncpus() -> int:
    return len(os.sched_getaffinity(0))


def _uuid4() -> bytes:
    import uuid

    return str(uuid.uuid4()).encode() + b"\n"
