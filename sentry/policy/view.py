"""What a policy hook sees: read-only views of a system call, a file open
and a process event.

In a nutshell: a view wraps the task without handing it out. Everything
costly is computed on first use and remembered: ``args_text`` (the strace
decoder's text for each argument), ``paths`` (each path argument resolved
inside the sandbox: relative to its dirfd or the cwd, through symlinks
and mounts, the last component followed as the call itself follows it).
Guest memory can be read (``read_memory``, ``read_string``), never
written: a hook that wants the guest to see other bytes returns
``Return(value, writes=...)``.

Resolution never raises: a path whose directory cannot be walked is
shown normalized by text (``..`` removed), and a string the guest's
memory does not hold is None.
"""
from __future__ import annotations

import os
import posixpath
import stat as S
from typing import TYPE_CHECKING

from sentry.errors import SyscallError
from sentry.fs.file import O_ACCMODE, O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY, O_TRUNC
from sentry.fs.vfs import MAXSYMLINKS, path_of
from sentry.syscalls.spec import Syscall, s32, s64

if TYPE_CHECKING:
    from sentry.kernel.task import Task, ThreadGroup

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_SYMLINK_FOLLOW = 0x400
PATH_LIMIT = 4096

# Calls whose path arguments name the link itself, never its target.
_NOFOLLOW = frozenset({
    "lstat", "lchown", "readlink", "readlinkat", "unlink", "unlinkat", "rmdir", "rename", "renameat",
    "renameat2", "symlink", "symlinkat", "link", "mkdir", "mkdirat", "mknod", "mknodat", "lgetxattr",
    "llistxattr", "lsetxattr", "lremovexattr"})
# Calls whose first path argument is data (a symlink's target), not a path to resolve.
_TARGET_IS_DATA = frozenset({"symlink", "symlinkat"})
# Index of the AT_* flags argument of calls that take AT_SYMLINK_NOFOLLOW.
_AT_FLAGS = {"newfstatat": 3, "statx": 2, "faccessat2": 3, "fchownat": 4, "utimensat": 3}
# Index of the open flags argument.
_OPEN_FLAGS = {"open": 1, "openat": 2}


_PATH_ARGS: dict[int, tuple[tuple[int, int | None], ...]] = {}  # by number (entries are unhashable)
_PLANS: dict[int, object] = {}


def path_args(entry: Syscall) -> tuple[tuple[int, int | None], ...]:
    """(path index, dirfd index or None) for each path argument of ``entry``."""
    got = _PATH_ARGS.get(entry.number)
    if got is None:
        got = _PATH_ARGS[entry.number] = _path_args(entry)
    return got


def _path_args(entry: Syscall) -> tuple[tuple[int, int | None], ...]:
    out = []
    kinds = [a.kind for a in entry.args]
    for i, kind in enumerate(kinds):
        if kind != "path":
            continue
        if entry.name in _TARGET_IS_DATA and not out and i == 0:
            continue
        out.append((i, i - 1 if i > 0 and kinds[i - 1] == "fd" else None))
    if entry.name == "symlinkat":  # (target, newdirfd, linkpath): the path is args[2]
        out = [(2, 1)]
    return tuple(out)


def _follows(entry: Syscall, args: tuple[int, ...], which: int) -> bool:
    """Whether the call follows a symlink in the last component of its
    ``which``-th path argument."""
    name = entry.name
    if name == "linkat":
        return which == 0 and bool(args[4] & AT_SYMLINK_FOLLOW)
    if name in _NOFOLLOW:
        return False
    if name in _OPEN_FLAGS:
        flags = args[_OPEN_FLAGS[name]]
        return not (flags & O_NOFOLLOW or flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL)
    i = _AT_FLAGS.get(name)
    return not (i is not None and args[i] & AT_SYMLINK_NOFOLLOW)


def resolve(task: "Task", path: bytes, dirfd: int | None = None, follow: bool = True) -> str:
    """``path`` as the sandbox sees it from ``task``: absolute, through
    symlinks in every directory (and in the last component if ``follow``).
    ``dirfd``: the directory a relative path starts from (None or
    AT_FDCWD: the cwd). Never raises (see the module doc)."""
    fs = task.fs
    vfs = fs.vfs
    start = None
    base = None
    if dirfd is not None and s32(dirfd) != AT_FDCWD and path[:1] != b"/":
        try:
            f = task.fds.get(s32(dirfd))
        except SyscallError:
            f = None
        start, base = (f.node, f.path) if f is not None else (None, None)
        if start is None:  # a bad fd or one without a directory: the call fails; show the text
            return _lexical(task, base, path)
    try:
        d, name, _ = vfs.resolve_parent(fs, start, path, task)
        for _ in range(MAXSYMLINKS + 1):
            if name in (b".", b".."):
                return path_of(vfs.lookup(fs, d, name, True, task), fs.root)
            if not follow:
                break
            try:
                node = vfs.child(d, name, task)
            except SyscallError:
                break
            if node.kind != S.S_IFLNK:
                break
            to = node.jump(task)
            if to is not None:  # a magic link (/proc/self/fd/N): its recorded path
                return path_of(to, fs.root) if to.kind == S.S_IFDIR else os.fsdecode(node.readlink(task))
            d, name, _ = vfs.resolve_parent(fs, d, node.readlink(task), task)
        parent = path_of(d, fs.root)
        return (parent if parent != "/" else "") + "/" + os.fsdecode(name)
    except SyscallError:
        return _lexical(task, base, path)


def _lexical(task: "Task", base: str | None, path: bytes) -> str:
    """``path`` made absolute and normalized as text (``..`` removed)."""
    if base is None or not base.startswith("/"):
        base = task.fs.cwd_path()
    out = posixpath.normpath(posixpath.join(base, os.fsdecode(path)))
    return "/" + out.lstrip("/")


class _TaskView:
    """The ids of the task a view is about, and read access to its memory."""

    __slots__ = ("_task",)

    def __init__(self, task: "Task"):
        self._task = task

    @property
    def pid(self) -> int:
        return self._task.group.pid

    @property
    def tid(self) -> int:
        return self._task.tid

    @property
    def ppid(self) -> int:
        parent = self._task.group.parent
        return parent.pid if parent is not None else 0

    @property
    def comm(self) -> str:
        return self._task.comm.decode("utf-8", "replace")

    @property
    def uid(self) -> int:
        return self._task.group.creds.euid

    @property
    def cwd(self) -> str:
        return self._task.fs.cwd_path()

    def read_memory(self, addr: int, length: int) -> bytes:
        """``length`` bytes of the guest's memory at ``addr``. Raises
        SyscallError(EFAULT) if it is not mapped."""
        return self._task.mm.copy_in(addr, length)

    def read_string(self, addr: int, limit: int = PATH_LIMIT) -> bytes:
        """The NUL-terminated string at ``addr``. Raises SyscallError
        (EFAULT, ENAMETOOLONG past ``limit``)."""
        return self._task.mm.read_cstring(addr, limit)

    def resolve(self, path: str | bytes, follow: bool = True) -> str:
        """``path`` resolved inside the sandbox from this task's cwd."""
        return resolve(self._task, os.fsencode(path), None, follow)


class Call(_TaskView):
    """One system call, as a hook sees it. ``args`` are the raw register
    values (unsigned 64-bit); ``result`` is None before the handler runs
    and what it returned (``-errno`` on failure) in ``after`` hooks."""

    __slots__ = ("entry", "args", "result", "_text", "_paths")

    def __init__(self, task: "Task", entry: Syscall, args: tuple[int, ...]):
        self._task = task  # (_TaskView.__init__ inlined: one view per hooked call)
        self.entry = entry
        self.args = args
        self.result: int | None = None
        self._text: list[str] | None = None
        self._paths: tuple[str | None, ...] | None = None

    @property
    def nr(self) -> int:
        return self.entry.number

    @property
    def name(self) -> str:
        return self.entry.name

    def arg(self, i: int, signed: bool = False) -> int:
        """Argument ``i`` (0-based), as a signed C long if ``signed``."""
        return s64(self.args[i]) if signed else self.args[i]

    @property
    def args_text(self) -> list[str]:
        """The arguments as ``sentry run --strace`` shows them on entry."""
        if self._text is None:
            plan = _plan(self.entry)
            self._text = [pre(self._task, self.args, i) for i, pre in enumerate(plan.pre)]
        return list(self._text)

    @property
    def paths(self) -> tuple[str | None, ...]:
        """Each path argument resolved inside the sandbox (None: unreadable)."""
        if self._paths is None:
            out = []
            for which, (i, dirfd) in enumerate(path_args(self.entry)):
                try:
                    raw = self._task.mm.read_cstring(self.args[i], PATH_LIMIT)
                except SyscallError:
                    out.append(None)
                    continue
                if not raw:
                    out.append(None)
                    continue
                fd = self.args[dirfd] if dirfd is not None else None
                out.append(resolve(self._task, raw, fd, _follows(self.entry, self.args, which)))
            self._paths = tuple(out)
        return self._paths

    @property
    def path(self) -> str | None:
        """The first path argument resolved inside the sandbox, or None."""
        p = self.paths
        return p[0] if p else None

    def __repr__(self) -> str:
        return f"<Call {self.name}({', '.join(self.args_text)}) pid={self.pid} tid={self.tid}>"


def _plan(entry: Syscall):
    """The strace decoding plan of ``entry`` (built once per number)."""
    plan = _PLANS.get(entry.number)
    if plan is None:
        from sentry.strace import decode

        plan = _PLANS[entry.number] = decode.plan(entry, 1024)
    return plan


class FileOpen(_TaskView):
    """An open(2)/openat(2)/creat(2): ``path`` resolved, ``flags`` (O_*),
    ``mode``; ``writing`` if it may change the file (write access,
    O_CREAT or O_TRUNC). ``call`` is the system call's view."""

    __slots__ = ("call", "flags", "mode")

    def __init__(self, call: Call):
        super().__init__(call._task)
        self.call = call
        name, args = call.name, call.args
        if name == "creat":
            self.flags, self.mode = 0o1101, args[1]  # O_WRONLY|O_CREAT|O_TRUNC
        else:
            i = _OPEN_FLAGS[name]
            self.flags, self.mode = args[i] & 0xFFFF_FFFF, args[i + 1]

    @property
    def path(self) -> str | None:
        return self.call.path

    @property
    def writing(self) -> bool:
        return self.flags & O_ACCMODE != O_RDONLY or bool(self.flags & (O_CREAT | O_TRUNC))

    def __repr__(self) -> str:
        return f"<FileOpen {self.path!r} flags={self.flags:#o} pid={self.pid}>"


class ProcessEvent(_TaskView):
    """A process event. ``kind``: "exec" (``path``: the program loaded,
    the interpreter for a #! script; ``argv``), "clone" (``child``: the new
    task's id; ``thread``: it shares the caller's process) or "exit"
    (``status``: the wait(2) status; ``pid``: the process that ended; an
    exit has no task left: its memory cannot be read)."""

    __slots__ = ("kind", "path", "argv", "child", "thread", "status", "_group")

    def __init__(self, task: "Task | None", kind: str, *, group: "ThreadGroup | None" = None,
                 path: str | None = None, argv: tuple[str, ...] = (), child: int | None = None,
                 thread: bool = False, status: int | None = None):
        super().__init__(task)  # type: ignore[arg-type]
        self.kind = kind
        self.path = path
        self.argv = argv
        self.child = child
        self.thread = thread
        self.status = status
        self._group = group

    @property
    def pid(self) -> int:
        return self._group.pid if self._group is not None else super().pid

    @property
    def tid(self) -> int:
        return self._group.pid if self._group is not None else super().tid

    @property
    def ppid(self) -> int:
        if self._group is None:
            return super().ppid
        return self._group.parent.pid if self._group.parent is not None else 0

    @property
    def comm(self) -> str:
        if self._group is None:
            return super().comm
        return self._group.exe.rsplit("/", 1)[-1][:15]

    def __repr__(self) -> str:
        detail = {"exec": f" {self.path!r}", "clone": f" child={self.child}",
                  "exit": f" status={self.status}"}.get(self.kind, "")
        return f"<ProcessEvent {self.kind}{detail} pid={self.pid}>"
