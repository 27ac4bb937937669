"""Kernel: what one sandbox shares — the MemoryFile, page cache, VFS,
platform, and the PID table — and the life of tasks and processes.

In a nutshell: every task runs on its own OS thread (``spawn``), from the
first switch to its exit. A process (ThreadGroup) exits when its last task
does: it becomes a zombie, its children go to init (PID 1), its parent
gets SIGCHLD and a wake-up on ``child_events``. When init exits the
sandbox ends: every other task is killed, every stub reaped (``close``).

Lock order: Kernel.lock > MemoryManager.lock > COW_LOCK > MemoryFile._lock.
"""
from __future__ import annotations

import errno
import os
import random
import signal as S
import stat
import struct
import sys
import threading
import time

from platforms.base import Platform, PlatformError
from sentry.config import Config
from sentry.errors import ExecError, GuestExit, SyscallError
from sentry.fs.context import FSContext
from sentry.fs.fdtable import FDTable
from sentry.fs.stdio import Terminals
from sentry.fs.vfs import VFS
from sentry.kernel import signals
from sentry.kernel.cputime import fold_exited_task
from sentry.kernel.task import Task, ThreadGroup, killed_status
from sentry.mm.memfile import MemoryFile
from sentry.mm.mm import MemoryManager
from sentry.mm.pagecache import PageCache
from sentry.stats import Stats


class Kernel:
    def __init__(self, config: Config, platform_cls: type[Platform]):
        self.config = config
        self.memory = MemoryFile(limit=config.memory_limit)
        self.cache = PageCache(self.memory)
        self.platform = platform_cls(self.memory)
        self.vfs = VFS(rootfs=config.rootfs, overlay=config.overlay)
        for host, guest, read_only in config.volumes:
            self.vfs.mount_volume(host, guest, read_only)
        self.vfs.mount_tmp()
        self.rng = random.Random(config.seed)
        self.lock = threading.RLock()
        self._next_pid = 1
        self.tasks: dict[int, Task] = {}  # guarded by lock
        self.threads_running = 0  # task threads not yet finished, teardown included; guarded by lock
        self.groups: dict[int, ThreadGroup] = {}  # live and zombie; guarded by lock
        self.init: ThreadGroup | None = None
        self.reported_enosys: set[int] = set()
        self.tracer = None  # sentry.strace hook, or None
        self.policy = None  # sentry.policy.Policy with hooks, or None
        self.stats = Stats(config.platform) if config.stats else None  # sentry run --stats
        self.done = threading.Event()  # set when init has exited
        self.init_status: int | None = None
        self.crash: BaseException | None = None
        self.terminals = Terminals()  # the host terminals' termios, restored by close()
        self.boot_ns = time.monotonic_ns()
        if config.cpus is not None:  # threads and stubs started from now on inherit it
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:config.cpus])

    # ------------------------------------------------------------ helpers
    def allocate_pid(self) -> int:
        with self.lock:
            pid = self._next_pid
            self._next_pid += 1
            return pid

    def new_mm(self) -> MemoryManager:
        p = self.platform
        return MemoryManager(self.memory, p.new_address_space(), self.cache, p.min_user_address, p.max_user_address)

    def debug(self, message: str) -> None:
        if self.config.debug:
            print(f"sentry: {message}", file=sys.stderr, flush=True)

    def group(self, pid: int) -> ThreadGroup | None:
        with self.lock:
            g = self.groups.get(pid)
            return g if g is not None and not g.zombie else None

    # --------------------------------------------------------------- exec
    def exec_into(self, task: Task, path: bytes, argv: list[bytes], envp: list[bytes]) -> None:
        """Replace ``task``'s program (execve), from the task's own thread.
        Raises ExecError; on error the old image is untouched. Raises
        GuestExit when the process is exiting or another of its threads
        is exec'ing (this thread is then one that ends)."""
        from loader.exec import load

        mm = self.new_mm()
        try:
            image = load(mm, lambda p: self.vfs.open_exec(task.fs, p), path, argv, envp, self.rng, task.creds)
            if self.policy is not None:  # exec hooks may refuse the program (ExecError)
                from sentry.policy.dispatch import exec_event

                exec_event(self.policy, task, image.exe_path, argv)
        except BaseException:
            mm.release()
            raise
        try:
            self._de_thread(task)
        except GuestExit:
            mm.release()
            raise
        self._mm_release(task)  # the old image's robust futexes and clear_child_tid, as Linux's exec_mm_release
        task.robust_list, task.clear_child_tid = (0, 0), 0
        old, task.mm = task.mm, mm
        if old is not None:
            self._drop_mm(old, task)
        task.group.exe = image.exe_path
        task.group.execed = True
        task.comm = image.exe_path.rsplit("/", 1)[-1].encode()[:15]
        state = self.platform.new_arch_state()
        state.regs.rip = image.entry
        state.regs.rsp = image.stack_pointer
        task.arch = state
        task.fds.close_on_exec()
        for sig, action in enumerate(task.group.sigactions):
            if action.handler > 1:  # handlers are reset; SIG_IGN stays
                task.group.sigactions[sig] = signals.SigAction()
        task.sigaltstack = (0, signals.SS_DISABLE, 0)
        from sentry.kernel.timers import exec_timers

        exec_timers(task.group)  # POSIX timers are deleted, their pending signals too; itimers go on
        self._release_vfork(task)
        if self.tracer is not None:
            self.tracer.event(task, "exec", image.exe_path)

    def _de_thread(self, task: Task) -> None:
        """Linux's de_thread: every other thread of ``task``'s process ends
        silently (no exit status, no SIGCHLD: ``signals.deliver`` sees
        ``group.execing``), then ``task`` takes over the leader's pid, so
        the process keeps its pid. Raises GuestExit if the process is
        exiting, or if another thread's exec got there first (this task is
        then being ended by it)."""
        group = task.group
        others: list[Task] = []
        with self.lock:
            if group.exit_status is None and group.execing is None:
                group.execing = task
                others = [t for t in group.tasks if t is not task]
                for t in others:
                    t.pending |= signals.bit(S.SIGKILL)  # gets it back to deliver, out of any wait
        if group.execing is not task:
            raise GuestExit(group.exit_status or 0)
        try:
            for t in others:
                signals.wake(t)
            for t in others:  # gone from the table: _task_exited has finished with it
                while self.tasks.get(t.tid) is t:
                    time.sleep(0.001)
            with self.lock:
                if group.exit_status is not None:  # an exit_group won the race: no exec
                    raise GuestExit(group.exit_status)
                if task.tid != group.pid:
                    self.tasks.pop(task.tid, None)
                    task.tid = group.pid
                    self.tasks[task.tid] = task
        finally:
            group.execing = None

    def _mm_release(self, task: Task) -> None:
        """``task`` leaves its memory (exit, exec): its robust futexes are
        released and its clear_child_tid cleared and woken, as Linux's
        mm_release."""
        if task.robust_list[0] and task.mm is not None:
            _release_robust_futexes(task)
        if task.clear_child_tid and task.mm is not None:
            try:
                task.mm.write_u32(task.clear_child_tid, 0)
                from sentry.syscalls.futex import wake_address

                wake_address(task, task.clear_child_tid, 1)
            except Exception:
                pass  # the guest unmapped it: nothing to clear

    def _drop_mm(self, mm: MemoryManager, leaving: Task) -> None:
        with self.lock:
            shared = any(t.mm is mm for t in self.tasks.values() if t is not leaving and not t.exited)
        if not shared:
            mm.release()

    def _release_vfork(self, task: Task) -> None:
        if task.vfork_parent is not None:
            parent, task.vfork_parent = task.vfork_parent, None
            task.vfork_done = True
            task.group.child_events.notify()
            parent.group.child_events.notify()

    # -------------------------------------------------------------- start
    def start(self, argv: list[bytes], envp: list[bytes], stdio: tuple[int, int, int] = (0, 1, 2)) -> None:
        """Start PID 1 running argv; returns once it has exec'd (or raises
        ExecError: the program could not start). ``stdio``: the host fds
        (borrowed, kept open by the caller) behind the guest's 0, 1, 2."""
        pid = self.allocate_pid()
        group = ThreadGroup(pid, None, "")
        group.start_ns = time.monotonic_ns()
        fs = FSContext.initial(self.vfs, self.config.cwd)
        self.terminals.add_stdio(stdio)
        fds = FDTable.stdio(stdio)
        fds.limit = min(fds.limit, self.config.nofile_limit)  # RLIMIT_NOFILE's soft limit
        task = Task(self, pid, group, None, fds, fs, None, self.platform.new_context())  # type: ignore[arg-type]
        group.tasks.append(task)
        with self.lock:
            self.tasks[pid] = task
            self.groups[pid] = group
            self.init = group
        started: dict[str, object] = {}
        ready = threading.Event()

        def setup() -> None:
            try:
                self.exec_into(task, self.find_program(fs, argv[0], envp), argv, envp)
            except ExecError as e:
                started["error"] = e
                raise GuestExit(127 << 8)
            finally:
                ready.set()

        self.spawn(task, setup)
        ready.wait()
        if "error" in started:
            self.done.wait()
            raise started["error"]  # type: ignore[misc]
        if self.config.seccomp:  # from here on the Sentry makes only the host calls it needs
            from sentry import seccomp_self

            seccomp_self.install()

    def find_program(self, fs: FSContext, name: bytes, envp: list[bytes]) -> bytes:
        """execvp's search, inside the sandbox: a ``name`` without '/' is
        the first executable regular file of that name in the guest's PATH
        (its environment's, else /usr/local/bin:/usr/bin:/bin); any other
        name is returned as it is (exec reports it). Raises ExecError
        (ENOENT) when no such file is found, as execvp: a name without '/'
        never runs from the current directory unless PATH says so."""
        if b"/" in name or not name:
            return name
        path = next((e[5:] for e in envp if e.startswith(b"PATH=")), b"/usr/local/bin:/usr/bin:/bin")
        for d in path.split(b":"):
            candidate = (d.rstrip(b"/") or b".") + b"/" + name if d else name
            try:
                st = self.vfs.lookup(fs, None, candidate).stat()
            except SyscallError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return candidate
        raise ExecError(errno.ENOENT, f"{name.decode(errors='replace')}: No such file or directory")

    def spawn(self, task: Task, setup=None, startup: "Startup | None" = None) -> threading.Thread:
        """Run ``task`` on a new OS thread; ``setup`` runs first, there
        (``startup``: see ``prepare``)."""
        with self.lock:
            self.threads_running += 1
        thread = threading.Thread(target=self._task_main, args=(task, setup, startup), name=f"task-{task.tid}",
                                  daemon=True)
        thread.start()
        return thread

    def prepare(self, task: Task, setup=None) -> "Startup":
        """The first half of a clone's ``spawn``: ``task``'s new OS thread
        runs ``setup`` (its new address space, if any) and makes its
        platform resources (``Context.prepare``), then waits for the
        returned Startup's ``commit`` (run the task) or ``abort`` (release
        them and end, as if it never was). Returns once they are made or
        refused (``Startup.error``: the clone fails with EAGAIN)."""
        startup = Startup()
        startup.thread = self.spawn(task, setup, startup)
        startup.prepared.wait()
        return startup

    def _prepared(self, task: Task, setup, startup: "Startup") -> bool:
        """A cloned task's thread: make what it runs on, tell the parent,
        wait for its decision. True to run the task."""
        try:
            if setup is not None:
                setup()
            task.context.prepare(task.mm.space)
        except BaseException as e:  # PlatformError: the host refuses; anything else: a Sentry bug
            startup.error = e
        startup.prepared.set()
        startup.decided.wait()
        if startup.go:
            return True
        try:
            task.context.release()
        except Exception:
            pass  # a stub that died already
        return False

    def _task_main(self, task: Task, setup, startup: "Startup | None" = None) -> None:
        from sentry.kernel.run import run_task

        if startup is not None:
            if not self._prepared(task, setup, startup):
                with self.lock:
                    self.threads_running -= 1
                return
            setup = None
        status = 0
        try:
            if setup is not None:
                setup()
            status = run_task(task)
        except GuestExit as e:
            status = e.status
        except PlatformError as e:
            # The guest's own stub died or misbehaved (a guest can kill or
            # scribble on its stub): that process dies, the sandbox goes on.
            if task.group is self.init:  # the sandbox ends: say why, --debug or not
                print(f"sentry: {self.platform.name}: {e}", file=sys.stderr, flush=True)
            else:
                self.debug(f"task {task.tid}: platform failure, killing its process: {e}")
            status = killed_status(S.SIGKILL)
            self.exit_group(task.group, status)
        except BaseException as e:  # a Sentry bug: end the sandbox, report it
            self.crashed(e)
            status = killed_status(S.SIGKILL)
        finally:
            try:
                self._task_exited(task, status)
            except BaseException as e:  # a Sentry bug in the teardown: report it, never hang
                self.crashed(e)
                if task.group is self.init:  # nobody else would end the sandbox
                    self.init_status = self.init_status or killed_status(S.SIGKILL)
                    self._end_sandbox()
            finally:
                with self.lock:
                    self.threads_running -= 1

    def crashed(self, e: BaseException) -> None:
        """A Sentry bug (or a raising policy hook) hit ``e``: keep the first
        such error as ``crash`` (the run reports it: PolicyError, or exit
        code 125) and kill init, which ends the sandbox."""
        self.crash = self.crash or e
        if self.init is not None:
            self.exit_group(self.init, killed_status(S.SIGKILL))

    # --------------------------------------------------------------- exit
    def exit_group(self, group: ThreadGroup, status: int) -> None:
        """Begin the exit of every task of ``group`` with wait status
        ``status`` (the first exit wins)."""
        with self.lock:
            if group.exit_status is None:
                group.exit_status = status
            tasks = list(group.tasks)
        for t in tasks:
            signals.wake(t)

    def _task_exited(self, task: Task, status: int) -> None:
        """The task's thread is ending. Tear down what it alone held."""
        self._mm_release(task)
        try:
            task.context.release()
        except Exception:
            pass  # the stub is already gone
        group = task.group
        with self.lock:
            task.exited = True
            fold_exited_task(task)
            group.tasks.remove(task)
            last = not group.tasks
            if last and group.exit_status is None:
                group.exit_status = status
        if task.mm is not None:
            self._drop_mm(task.mm, task)
        with self.lock:  # only now: close() waits for this table to empty
            self.tasks.pop(task.tid, None)
        self._release_vfork(task)
        if not last:
            return
        with self.lock:
            fds_shared = any(t.fds is task.fds for t in self.tasks.values())
        if not fds_shared:
            task.fds.close_all()
        self._become_zombie(group)

    def _become_zombie(self, group: ThreadGroup) -> None:
        with self.lock:
            group.zombie = True
            init = self.init
            orphans = list(group.children)
            # Orphans go to the nearest live ancestor that is a subreaper
            # (prctl(PR_SET_CHILD_SUBREAPER) sets ``child_subreaper``), else
            # init; the reaper is woken, since a zombie orphan is now its to wait for.
            reaper = group.parent
            while reaper is not None and not (reaper.child_subreaper
                                              and reaper.exit_status is None):
                reaper = reaper.parent
            reaper = reaper or init
            for child in group.children:
                child.parent = reaper if reaper is not group else None
                if reaper is not None and reaper is not group:
                    reaper.children.append(child)
            group.children = []
            if orphans and reaper is not None and reaper is not group:
                reaper.child_events.notify()
            parent = group.parent
            autoreap = parent is not None and (
                parent.sigactions[S.SIGCHLD].handler == 1
                or parent.sigactions[S.SIGCHLD].flags & signals.SA_NOCLDWAIT)
            if parent is None or autoreap:
                self.groups.pop(group.pid, None)
                if parent is not None:
                    parent.children.remove(group)
        for child in orphans:  # prctl(PR_SET_PDEATHSIG)
            for t in list(child.tasks):
                if t.pdeathsig:
                    signals.send(self, child, t.pdeathsig, signals.siginfo(t.pdeathsig, signals.SI_USER), task=t)
        self._report_exit(group)
        if group is self.init:
            self.init_status = group.exit_status
            self._end_sandbox()
            return
        if parent is not None:
            status = group.exit_status or 0
            code = signals.CLD_EXITED if not status & 0x7F else (
                signals.CLD_DUMPED if status & 0x80 else signals.CLD_KILLED)
            info = signals.siginfo(S.SIGCHLD, code, pid=group.pid, uid=group.creds.uid,
                                   status=(status >> 8) & 0xFF if code == signals.CLD_EXITED else status & 0x7F)
            if 0 < group.exit_signal <= 64:  # clone's exit signal may be any byte: no signal then, as Linux
                signals.send(self, parent, group.exit_signal, info)
            parent.child_events.notify()

    def _report_exit(self, group: ThreadGroup) -> None:
        """Tell the tracer and the policy's exit hooks that ``group`` ended.
        Never raises: what either raises is a crash (``crashed``), so the
        sandbox still ends and the parent still learns of the exit."""
        if self.tracer is not None:
            try:
                self.tracer.event(group, "exit", group.exit_status)
            except BaseException as e:
                self.crashed(e)
        if self.policy is not None:
            from sentry.policy.dispatch import exit_event

            try:
                exit_event(self.policy, group, group.exit_status)
            except BaseException as e:
                self.crashed(e)

    def end(self) -> None:
        """End the sandbox now (--timeout): every process is killed."""
        if self.init is not None:
            self.exit_group(self.init, killed_status(S.SIGKILL))
        self._end_sandbox()

    def _end_sandbox(self) -> None:
        with self.lock:
            groups = [g for g in self.groups.values() if not g.zombie]
        for g in groups:
            self.exit_group(g, killed_status(S.SIGKILL))
        self.done.set()

    def close(self) -> None:
        """After the sandbox ended: wait briefly for task threads, then
        release every stub and the MemoryFile."""
        self.terminals.restore()  # first: the user's terminal never stays raw
        deadline = time.monotonic() + 5
        while self.threads_running and time.monotonic() < deadline:  # their teardown still uses the MemoryFile
            time.sleep(0.005)
        m = self.memory
        self.debug(f"memory peak {m.peak / 2**20:.1f} MiB, {m.allocated / 2**20:.1f} MiB at exit; "
                   f"page cache {self.cache.hits} hits, {self.cache.misses} misses")
        if self.tracer is not None:
            self.tracer.close()
        self.platform.close()
        self.memory.close()
        self.vfs.close()
        if self.stats is not None:  # after the stubs are reaped: their CPU time counts
            self.stats.report(sys.stderr)


FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x8000_0000, 0x4000_0000, 0x3FFF_FFFF
ROBUST_LIST_LIMIT = 2048


def _release_robust_futexes(task: Task) -> None:
    """Mark the robust mutexes a dying thread holds FUTEX_OWNER_DIED and
    wake a waiter of each, walking its robust list as Linux does."""
    from sentry.syscalls.futex import wake_address

    mm = task.mm
    try:
        head = task.robust_list[0]
        entry, offset, pending = struct.unpack("<QqQ", mm.copy_in(head, 24))
        entries = [pending] if pending else []
        while entry != head and entry and len(entries) < ROBUST_LIST_LIMIT:
            entries.append(entry)
            entry = mm.read_u64(entry)
        for e in entries:
            addr = (e + offset) & 0xFFFF_FFFF_FFFF_FFFF
            word = mm.read_u32(addr)
            if word & FUTEX_TID_MASK == task.tid:
                mm.write_u32(addr, (word & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
                if word & FUTEX_WAITERS:
                    wake_address(task, addr, 1)
    except SyscallError:
        pass  # a corrupt list ends the walk, as on Linux


def exec_error_status(e: ExecError) -> int:
    """Shell-style exit status for a program that could not start."""
    return 127 if e.errno == errno.ENOENT else 126  # as bash and env: ENOTDIR is 126


class Startup:
    """A cloned task's start in two steps (``Kernel.prepare``): its thread
    has made its platform resources (or ``error`` says why not) and waits
    for the parent to ``commit`` or ``abort``."""

    def __init__(self) -> None:
        self.prepared = threading.Event()
        self.decided = threading.Event()
        self.error: BaseException | None = None
        self.go = False
        self.thread: threading.Thread | None = None

    def commit(self) -> None:
        """Run the task (its thread goes on to the guest)."""
        self.go = True
        self.decided.set()

    def abort(self) -> None:
        """The clone failed: the thread releases what it made and ends;
        returns once it has."""
        self.decided.set()
        if self.thread is not None:
            self.thread.join()

