"""/proc, /dev, pipes and the fd table, from Python.

A real ``Task`` and ``ThreadGroup`` stand in a kernel reduced to what
/proc reads (``tasks`` and ``vfs``); the memory manager is a small object
holding a bytes image, since /proc only copies argv/env out of it.
"""
from __future__ import annotations

import errno
import os
import types

import pytest

from sentry.errors import SyscallError
from sentry.fs.context import FSContext
from sentry.fs.fdtable import FDTable
from sentry.fs.file import O_CLOEXEC, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, POLLHUP, POLLIN, POLLOUT
from sentry.fs.pipe import PIPE_BUF, new_pipe
from sentry.fs.vfs import VFS
from sentry.kernel.cputime import CpuTimes
from sentry.kernel.task import Task, ThreadGroup


class FakeMM:
    """Guest memory: ``image`` mapped at ``base``; argv then env."""

    def __init__(self, argv: bytes, env: bytes, base: int = 0x1000):
        self.image = argv + env
        self.arg_start, self.arg_end = base, base + len(argv)
        self.env_start, self.env_end = self.arg_end, self.arg_end + len(env)
        self.base = base

    def copy_in(self, addr: int, length: int) -> bytes:
        off = addr - self.base
        if off < 0 or off + length > len(self.image):
            raise SyscallError(errno.EFAULT)
        return self.image[off:off + length]

    def usage(self) -> int:
        return sum(v.end - v.start for v in self.vmas())

    def resident(self) -> int:
        return 0x3000

    def vmas(self):
        return [types.SimpleNamespace(start=0x400000, end=0x401000, prot=5, shared=False, file_offset=0,
                                      name="/bin/prog"),
                types.SimpleNamespace(start=0x7FF0000, end=0x8000000, prot=3, shared=False, file_offset=0,
                                      name="[stack]")]


@pytest.fixture
def vfs():
    return VFS("/", "memory")


@pytest.fixture
def task(vfs):
    kernel = types.SimpleNamespace(tasks={}, vfs=vfs)
    group = ThreadGroup(7, None, "/usr/bin/python3.11")
    t = Task(kernel, 7, group, FakeMM(b"prog\0arg\0", b"A=1\0"), FDTable.stdio(),
             FSContext.initial(vfs, "/usr"), None, None)
    t.comm = b"prog"
    group.tasks.append(t)
    kernel.tasks[7] = t
    return t


def read(vfs, t, path: bytes) -> bytes:
    f = vfs.open(t.fs, None, path, O_RDONLY, 0, t)
    try:
        return f.read(1 << 20)
    finally:
        f.decref()


def test_proc_self(vfs, task):
    assert vfs.readlink(task.fs, None, b"/proc/self", task) == b"7"
    assert vfs.readlink(task.fs, None, b"/proc/self/exe", task) == b"/usr/bin/python3.11"
    assert vfs.readlink(task.fs, None, b"/proc/self/cwd", task) == b"/usr"
    assert vfs.lookup(task.fs, None, b"/proc/self/cwd/bin", True, task).kind == 0o040000
    assert read(vfs, task, b"/proc/self/cmdline") == b"prog\0arg\0"
    assert read(vfs, task, b"/proc/self/environ") == b"A=1\0"
    assert read(vfs, task, b"/proc/self/comm") == b"prog\n"
    assert b"Pid:\t7\n" in read(vfs, task, b"/proc/7/status")
    assert read(vfs, task, b"/proc/self/stat").startswith(b"7 (prog) R 0 ")
    size = 0x1000 + 0x10000  # the two VMAs
    assert read(vfs, task, b"/proc/self/statm") == b"%d 3 0 0 0 0 0\n" % (size // 4096)
    assert b"VmSize:\t%d kB\n" % (size // 1024) in read(vfs, task, b"/proc/7/status")
    assert b"VmRSS:\t12 kB\n" in read(vfs, task, b"/proc/7/status")
    assert read(vfs, task, b"/proc/self/stat").split()[22:24] == [b"%d" % size, b"3"]  # vsize, rss
    maps = read(vfs, task, b"/proc/self/maps").decode().splitlines()
    assert maps[0].startswith("00400000-00401000 r-xp 00000000 00:00 0") and maps[0].endswith(" /bin/prog")
    assert maps[1].endswith(" [stack]")
    assert b"/proc proc" in read(vfs, task, b"/proc/mounts")
    assert errno.ENOENT == _errno(vfs.lookup, task.fs, None, b"/proc/8", True, task)
    assert errno.ENOENT == _errno(vfs.lookup, task.fs, None, b"/proc/self", True, None)


def test_proc_fd_links(vfs, task):
    f = vfs.open(task.fs, None, b"/etc/hostname", O_RDONLY, 0, task)
    fd = task.fds.install(f)
    listed = {n for n, _, _ in vfs.lookup(task.fs, None, b"/proc/self/fd", True, task).readdir(task)}
    assert listed == {b"0", b"1", b"2", str(fd).encode()}
    assert vfs.lookup(task.fs, None, b"/proc/self/fd/0", True, task).stat().st_mode == os.fstat(0).st_mode
    assert vfs.readlink(task.fs, None, b"/proc/self/fd/%d" % fd, task) == b"/etc/hostname"
    # a magic link opens the file it stands for, even through /dev/fd
    assert read(vfs, task, b"/dev/fd/%d" % fd) == open("/etc/hostname", "rb").read()
    tmp = vfs.open(task.fs, None, b"/dev/shm/gone", O_RDWR | 0o100, 0o600, task)
    tfd = task.fds.install(tmp)
    vfs.unlink(task.fs, None, b"/dev/shm/gone", task)
    assert vfs.readlink(task.fs, None, b"/proc/self/fd/%d" % tfd, task) == b"/dev/shm/gone (deleted)"
    r, w = new_pipe()
    rfd, wfd = task.fds.install(r), task.fds.install(w)
    assert vfs.readlink(task.fs, None, b"/proc/self/fd/%d" % rfd, task).startswith(b"pipe:[")
    w2 = vfs.open(task.fs, None, b"/dev/fd/%d" % wfd, O_WRONLY, 0, task)  # bash's >(...)
    w2.write(b"via /dev/fd")
    assert r.read(100) == b"via /dev/fd"


def test_proc_system_files(vfs, task):
    from sentry.fs import proc
    from sentry.syscalls import system

    # tripwire: /proc and uname(2) tell the same story
    assert (proc.UTS_RELEASE, proc.UTS_VERSION, proc.HOSTNAME) == (system.UTS_RELEASE, system.UTS_VERSION,
                                                                    system.HOSTNAME)
    assert read(vfs, task, b"/proc/sys/kernel/osrelease") == system.UTS_RELEASE + b"\n"
    assert b"MemTotal:" in read(vfs, task, b"/proc/meminfo")
    assert b"processor" in read(vfs, task, b"/proc/cpuinfo")
    assert b"\tproc\n" in read(vfs, task, b"/proc/filesystems")
    assert read(vfs, task, b"/proc/sys/vm/overcommit_memory") == b"0\n"
    n = len(os.sched_getaffinity(0))
    assert read(vfs, task, b"/sys/devices/system/cpu/online") == (b"0-%d\n" % (n - 1) if n > 1 else b"0\n")
    assert read(vfs, task, b"/proc/stat").count(b"\ncpu") == n
    assert _errno(vfs.open, task.fs, None, b"/proc/cpuinfo", O_WRONLY, 0, task) == errno.EACCES
    assert _errno(vfs.mkdir, task.fs, None, b"/proc/x", 0o755, task) == errno.EACCES


def _kernel_of(task, clock_ns: int) -> None:
    """Give the fake kernel what the system-wide files read: the group
    table, the start time, the next PID."""
    task.kernel.groups = {task.group.pid: task.group}
    task.kernel.boot_ns = clock_ns
    task.kernel._next_pid = 12


def _spawn(task, tid: int, group: ThreadGroup | None = None) -> Task:
    """Another task of the fake kernel: a new process (``group``) or a thread."""
    group = group or task.group
    t = Task(task.kernel, tid, group, task.mm, task.fds, task.fs, None, None)
    t.comm = b"t%d" % tid
    group.tasks.append(t)
    task.kernel.tasks[tid] = t
    if group.pid == tid:
        task.kernel.groups[tid] = group
    return t


def test_proc_states(vfs, task):
    """R running, S parked in an interruptible wait, D in another, T stopped,
    Z a zombie (listed until reaped); task/TID shows each thread."""
    import time

    _kernel_of(task, time.monotonic_ns())
    state = lambda path: read(vfs, task, path).split()[2]  # noqa: E731
    sleeper = _spawn(task, 8, ThreadGroup(8, task.group, "/bin/sleep"))
    sleeper.parked = "S"
    assert state(b"/proc/8/stat") == b"S" and b"State:\tS (sleeping)\n" in read(vfs, task, b"/proc/8/status")
    sleeper.parked = "D"
    assert state(b"/proc/8/stat") == b"D"
    sleeper.parked = ""
    assert state(b"/proc/8/stat") == b"R"
    sleeper.group.stopped = True
    assert state(b"/proc/8/stat") == b"T" and b"State:\tT (stopped)\n" in read(vfs, task, b"/proc/8/status")
    # a thread: its own line in task/, its process's in /proc/PID
    thread = _spawn(task, 9)
    thread.parked = "S"
    assert state(b"/proc/7/task/9/stat") == b"S" and state(b"/proc/7/task/7/stat") == b"R"
    assert read(vfs, task, b"/proc/7/task/9/stat").startswith(b"9 (t9) S ")
    assert b"Pid:\t9\n" in read(vfs, task, b"/proc/7/task/9/status")
    assert state(b"/proc/7/stat") == b"R"
    # a zombie: Z, no memory, its program's name, its exit code
    zombie = _spawn(task, 10, ThreadGroup(10, task.group, "/usr/bin/true"))
    zombie.group.tasks.clear()
    del task.kernel.tasks[10]
    zombie.group.zombie, zombie.group.exit_status = True, 3 << 8
    assert read(vfs, task, b"/proc/10/stat").startswith(b"10 (true) Z 7 ")
    assert read(vfs, task, b"/proc/10/stat").split()[-1] == b"768"
    assert b"State:\tZ (zombie)\n" in read(vfs, task, b"/proc/10/status")
    assert read(vfs, task, b"/proc/10/cmdline") == b""
    listed = {n for n, _, _ in vfs.lookup(task.fs, None, b"/proc", True, task).readdir(task)}
    assert {b"7", b"8", b"10"} <= listed
    del task.kernel.groups[10]  # reaped
    assert _errno(vfs.lookup, task.fs, None, b"/proc/10", True, task) == errno.ENOENT


def test_proc_uptime_loadavg_and_stat_are_the_sandboxs(vfs, task):
    import time

    _kernel_of(task, time.monotonic_ns() - 3_000_000_000)  # started 3 s ago
    up, idle = map(float, read(vfs, task, b"/proc/uptime").split())
    assert 3.0 <= up < 4.0 and 0 <= idle <= up * len(os.sched_getaffinity(0))
    sleeper = _spawn(task, 8, ThreadGroup(8, task.group, "/bin/sleep"))
    sleeper.parked = "S"
    load = read(vfs, task, b"/proc/loadavg").split()
    assert load[3:] == [b"1/2", b"11"]  # this task runs, the sleeper does not; PIDs 1-11 handed out
    assert 0 < float(load[0]) <= 1 and float(load[0]) >= float(load[1]) >= float(load[2])
    task.user_ns, task.sys_ns = 2_000_000_000, 500_000_000  # 200 and 50 ticks
    task.group.children_times = CpuTimes(100_000_000, 0)  # a reaped child's 10
    stat = read(vfs, task, b"/proc/stat").decode().splitlines()
    cpu = stat[0].split()
    assert cpu[0] == "cpu" and (int(cpu[1]), int(cpu[3])) == (210, 50)
    rows = dict(line.split(" ", 1) for line in stat if not line.startswith("cpu"))
    assert abs(int(rows["btime"]) - (time.time() - up)) <= 2
    assert rows["processes"] == "11" and rows["procs_running"] == "1" and rows["procs_blocked"] == "0"
    task.group.children_times = CpuTimes()  # an auto-reaped child's time is lost: never less than before
    assert int(read(vfs, task, b"/proc/stat").split()[1]) == 210
    # start times count from the sandbox's start, in ticks
    task.group.start_ns = task.kernel.boot_ns + 1_500_000_000
    assert read(vfs, task, b"/proc/self/stat").split()[21] == b"150"


def test_dev(vfs, task):
    fs = task.fs
    null = vfs.open(fs, None, b"/dev/null", O_RDWR, 0, task)
    assert null.read(10) == b"" and null.write(b"gone") == 4
    assert vfs.open(fs, None, b"/dev/zero", O_RDONLY).read(5) == bytes(5)
    full = vfs.open(fs, None, b"/dev/full", O_WRONLY)
    assert _errno(full.write, b"x") == errno.ENOSPC
    assert len(vfs.open(fs, None, b"/dev/urandom", O_RDONLY).read(32)) == 32
    st = vfs.lookup(fs, None, b"/dev/null").stat()
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3) and st.st_mode & 0o170000 == 0o020000
    assert vfs.readlink(fs, None, b"/dev/stdout") == b"/proc/self/fd/1"
    # /dev is writable (tmpfs), the rest of the host's /dev is not there
    f = vfs.open(fs, None, b"/dev/shm/seg", O_RDWR | 0o100, 0o600)
    f.write(b"shm")
    assert _errno(vfs.lookup, fs, None, b"/dev/sda") == errno.ENOENT


def test_pipe_semantics():
    r, w = new_pipe(O_NONBLOCK)
    assert _errno(r.read, 10) == errno.EAGAIN
    assert w.readiness() & POLLOUT and not r.readiness() & POLLIN
    assert w.write(b"hello") == 5
    assert r.readiness() & POLLIN
    assert r.read(3) == b"hel" and r.read(10) == b"lo"
    # fill it: a write of at most PIPE_BUF is all or nothing
    total = 0
    while True:
        try:
            total += w.write(b"x" * 1000)
        except SyscallError as e:
            assert e.errno == errno.EAGAIN
            break
    assert total == 65000
    assert w.write(b"y" * (PIPE_BUF + 1)) == 536  # a large write takes what fits
    assert len(r.read(1 << 20)) == 65536
    w.decref()
    assert r.read(10) == b"" and r.readiness() & POLLHUP  # EOF
    r2, w2 = new_pipe()
    r2.decref()
    assert _errno(w2.write, b"x") == errno.EPIPE


def test_fdtable():
    t = FDTable(limit=8)
    r, w = new_pipe()
    assert t.install(r) == 0 and t.install(w, cloexec=True) == 1
    assert t.install(r.incref(), lowest=5) == 5
    assert t.get_cloexec(1) and not t.get_cloexec(0)
    child = t.fork()
    t.close(5)
    t.close(0)
    assert r.refs == 2  # the child still holds it (fds 0 and 5)
    assert _errno(t.get, 0) == errno.EBADF and child.get(0) is r
    child.close_on_exec()
    assert child.fds() == [0, 5]
    child.close_all()
    assert r.refs == 0
    for _ in range(7):
        t.install(w.incref())
    assert _errno(t.install, w.incref()) == errno.EMFILE
    assert _errno(t.close, 99) == errno.EBADF
    t.install_at(3, r.incref() if r.refs else new_pipe()[0], cloexec=True)
    assert t.get_cloexec(3)


def test_stdio_passthrough():
    t = FDTable.stdio()
    assert t.fds() == [0, 1, 2]
    assert t.get(1).writable and not t.get(0).writable
    st = t.get(1).stat()
    assert st.st_mode == os.fstat(1).st_mode  # the host's object, as the host has it
    t.close(1)  # never closes the Sentry's own stdout
    os.fstat(1)


def _errno(fn, *args) -> int:
    with pytest.raises(SyscallError) as e:
        fn(*args)
    return e.value.errno


def test_o_cloexec_value():
    assert O_CLOEXEC == os.O_CLOEXEC and O_NONBLOCK == os.O_NONBLOCK


def test_fifo_open_partners(vfs, task):
    fs = task.fs
    vfs.mknod(fs, None, b"/dev/shm/fifo", 0o010600, task)
    assert _errno(vfs.open, fs, None, b"/dev/shm/fifo", O_WRONLY | O_NONBLOCK) == errno.ENXIO  # no reader
    r = vfs.open(fs, None, b"/dev/shm/fifo", O_RDONLY)
    assert not r.peer_opened()  # a blocking open would wait
    w = vfs.open(fs, None, b"/dev/shm/fifo", O_WRONLY)
    assert w.peer_opened() and r.peer_opened()
    w.write(b"x")
    w.decref()
    r2 = vfs.open(fs, None, b"/dev/shm/fifo", O_RDONLY)
    assert not r2.peer_opened()
    w2 = vfs.open(fs, None, b"/dev/shm/fifo", O_WRONLY)
    w2.decref()  # opened and closed before the reader looked: still its partner
    assert r2.peer_opened()
    assert r.read(10) == b"x" and r.read(10) == b""
    rw = vfs.open(fs, None, b"/dev/shm/fifo", O_RDWR)
    assert rw.peer_opened() and rw.write(b"self") == 4 and rw.read(10) == b"self"


def test_host_fd_watcher_wakes_then_ends():
    import threading

    from sentry.fs.stdio import HostPassthrough

    r, w = os.pipe()
    try:
        f = HostPassthrough(None, "pipe:[host]", O_RDONLY, r, owned=False)
        assert _errno(f.read, 10) == errno.EAGAIN  # nothing yet: the syscall layer would wait
        woken = threading.Event()
        f.subscribe(woken.set)
        watcher = [th for th in threading.enumerate() if th.name == f"sentry-hostfd-{r}"]
        assert len(watcher) == 1
        os.write(w, b"data")
        assert woken.wait(30)
        watcher[0].join(30)
        assert not watcher[0].is_alive()  # nobody waits any more: no thread left
        assert f.readiness() & POLLIN and f.read(10) == b"data"
    finally:
        os.close(r)
        os.close(w)


def test_mount_table_has_tmpfs_at_dev_shm_and_tmp_only_when_safe(tmp_path):
    """/dev/shm is always a tmpfs; /tmp is one when the rootfs's /tmp is
    empty or absent and no volume is there (gVisor's rule), never hiding
    files the rootfs has."""
    def mounts(v: VFS) -> dict[str, str]:
        return {line.split()[1]: line.split()[2] for line in v.mounts_text().decode().splitlines()}

    empty = tmp_path / "empty"
    (empty / "tmp").mkdir(parents=True)
    full = tmp_path / "full"
    (full / "tmp").mkdir(parents=True)
    (full / "tmp" / "kept").write_text("x")
    absent = tmp_path / "absent"
    absent.mkdir()
    volume = tmp_path / "volume"
    volume.mkdir()
    for root, want_tmpfs in ((empty, True), (absent, True), (full, False)):
        v = VFS(str(root), "memory")
        assert v.mount_tmp() is want_tmpfs
        table = mounts(v)
        assert table["/dev/shm"] == "tmpfs" and table["/"] == "overlay"
        assert table.get("/tmp") == ("tmpfs" if want_tmpfs else None)
        fs = FSContext.initial(v, "/")
        names = [n for n, _, _ in v.lookup(fs, None, b"/tmp").readdir(None)]
        assert names == ([] if want_tmpfs else [b"kept"])
        v.close()
    v = VFS(str(empty), "memory")
    v.mount_volume(str(volume), "/tmp")
    assert v.mount_tmp() is False and mounts(v)["/tmp"] != "tmpfs"
    v.close()
