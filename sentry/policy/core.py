"""Policy: the registry of hooks, the decisions hooks return, composition,
and loading a policy module from a file.

In a nutshell: hooks are kept per system-call number (before / after the
handler), per process event kind, and for file opens; ``table(base)``
hands the run loop a dispatch list with the hooked entries wrapped
(``sentry.policy.dispatch``), built once per set of hooks. Registering
a hook after a sandbox started with the policy affects only sandboxes
started later.
"""
from __future__ import annotations

import importlib.util
import os
import signal as S
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Union

from abi.sysnr import NAMES, NUMBERS

if TYPE_CHECKING:
    from sentry.policy.view import Call, FileOpen, ProcessEvent
    from sentry.syscalls.spec import Syscall


@dataclass(frozen=True)
class Deny:
    """Fail the call with ``errno`` (the guest sees -1/errno); for an exec
    event, execve fails with it."""

    errno: int


@dataclass(frozen=True)
class Kill:
    """Kill the calling process with ``signal`` (as if it had received an
    uncatchable one): the call never returns to it."""

    signal: int = S.SIGKILL


@dataclass(frozen=True)
class Return:
    """Make the call return ``value`` (a negative value is -errno) without
    running the handler (before hooks) or instead of what it returned
    (after hooks). ``writes``: (guest address, bytes) copied into the
    guest's memory first (a bad address makes the call fail with EFAULT)."""

    value: int
    writes: tuple[tuple[int, bytes], ...] = ()


Decision = Union[Deny, Kill, Return, None]
ALLOW: Decision = None  # what a hook returns to let the call through (same as returning nothing)
CallHook = Callable[["Call"], Decision]
OpenHook = Callable[["FileOpen"], Decision]
EventHook = Callable[["ProcessEvent"], Decision]
EVENT_KINDS = ("exec", "clone", "exit")


class PolicyError(Exception):
    """A policy cannot be built or loaded (bad system call name, a policy
    file that fails), or a hook raised: the message is one line."""


def _numbers(calls: Iterable[str | int]) -> list[int]:
    out = []
    for c in calls:
        if isinstance(c, str):
            if c not in NUMBERS:
                raise PolicyError(f"unknown system call {c!r}")
            out.append(NUMBERS[c])
        elif isinstance(c, int) and not isinstance(c, bool) and c in NAMES:
            out.append(c)
        else:
            raise PolicyError(f"not a system call name or number: {c!r}")
    return out


def hook_name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class Policy:
    """Hooks to run in a sandbox. Register with the decorators::

        policy = Policy()

        @policy.syscall("openat", "open")
        def no_secrets(call):
            if call.path == "/etc/shadow":
                return Deny(errno.EACCES)

    ``syscall()`` with no names hooks every call in the system-call table
    (calls the Sentry lacks reach only hooks registered by name or number).
    """

    def __init__(self, name: str = "policy"):
        self.name = name
        self.before: dict[int | None, list[CallHook]] = {}  # None: every call
        self.after_hooks: dict[int | None, list[CallHook]] = {}
        self.events: dict[str, list[EventHook]] = {k: [] for k in EVENT_KINDS}
        self.opens: list[OpenHook] = []
        self._lock = threading.Lock()
        self._version = 0
        self._built: tuple[int, int, list] | None = None  # (version, id(base), table)

    # ------------------------------------------------------------ registration
    def on_syscall(self, hook: CallHook, *calls: str | int, after: bool = False) -> CallHook:
        """Run ``hook(call)`` before (or ``after``) the handler of each of
        ``calls`` (names or numbers; none: every call). PolicyError on an
        unknown name."""
        keys: list[int | None] = list(_numbers(calls)) if calls else [None]
        where = self.after_hooks if after else self.before
        with self._lock:
            for k in keys:
                where.setdefault(k, []).append(hook)
            self._version += 1
        return hook

    def syscall(self, *calls: str | int) -> Callable[[CallHook], CallHook]:
        """Decorator form of ``on_syscall`` (before the handler)."""
        _numbers(calls)  # PolicyError now, at the decorator line
        return lambda hook: self.on_syscall(hook, *calls)

    def after(self, *calls: str | int) -> Callable[[CallHook], CallHook]:
        """Decorator: run the hook after the handler; ``call.result`` holds
        its result, and a ``Return`` replaces it."""
        _numbers(calls)
        return lambda hook: self.on_syscall(hook, *calls, after=True)

    def on_event(self, kind: str, hook: EventHook) -> EventHook:
        """Run ``hook(event)`` at each process event of ``kind`` (exec,
        clone, exit). Exec hooks run once the program is loaded, before it
        replaces the old one: ``Deny`` makes execve fail, ``Kill`` kills.
        Clone hooks run in the parent once the call returned (after a
        vfork: once the child has exec'd or exited; ``Kill`` kills the
        parent); exit hooks are told only (their decision is ignored)."""
        if kind not in EVENT_KINDS:
            raise PolicyError(f"unknown process event {kind!r} (have: {', '.join(EVENT_KINDS)})")
        with self._lock:
            self.events[kind].append(hook)
            self._version += 1
        return hook

    def event(self, kind: str) -> Callable[[EventHook], EventHook]:
        """Decorator form of ``on_event``."""
        if kind not in EVENT_KINDS:
            raise PolicyError(f"unknown process event {kind!r} (have: {', '.join(EVENT_KINDS)})")
        return lambda hook: self.on_event(kind, hook)

    def file_open(self, hook: OpenHook) -> OpenHook:
        """Decorator: run ``hook(open)`` before every open, openat and creat."""
        with self._lock:
            self.opens.append(hook)
            self._version += 1
        return hook

    def include(self, other: "Policy") -> "Policy":
        """Add ``other``'s hooks after this policy's own; returns self."""
        for key, hooks in other.before.items():
            for h in hooks:
                self.on_syscall(h, *([] if key is None else [key]))
        for key, hooks in other.after_hooks.items():
            for h in hooks:
                self.on_syscall(h, *([] if key is None else [key]), after=True)
        for kind, hooks in other.events.items():
            for h in hooks:
                self.on_event(kind, h)
        for h in other.opens:
            self.file_open(h)
        return self

    def __add__(self, other: "Policy") -> "Policy":
        return compose(self, other)

    # ------------------------------------------------------------ use
    @property
    def empty(self) -> bool:
        return not (self.before or self.after_hooks or self.opens or any(self.events.values()))

    def table(self, base: list["Syscall | None"]) -> list["Syscall | None"]:
        """The dispatch list to run with: ``base`` itself when no system
        call is hooked, else a copy whose hooked entries are wrapped."""
        with self._lock:
            built = self._built
            if built is not None and built[0] == self._version and built[1] == id(base):
                return built[2]
            version = self._version
        from sentry.policy.dispatch import wrap_table

        table = wrap_table(self, base)
        with self._lock:
            self._built = (version, id(base), table)
        return table


def compose(*policies: Policy) -> Policy:
    """A new policy holding the hooks of each of ``policies``, in order."""
    out = Policy(" + ".join(p.name for p in policies))
    for p in policies:
        out.include(p)
    return out


def load_policy_file(path: str) -> Policy:
    """Run the Python file ``path`` and return its module-level ``policy``
    (a Policy). PolicyError with a one-line reason if the file cannot be
    read or run, or defines no such policy."""
    if not os.path.isfile(path):
        raise PolicyError(f"{path}: no such file")
    name = "sentry_policy_" + os.path.basename(path).replace(".", "_").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PolicyError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise PolicyError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        raise PolicyError(f"{path}: {type(e).__name__}: {e}") from None
    policy = getattr(module, "policy", None)
    if not isinstance(policy, Policy):
        raise PolicyError(f"{path}: defines no `policy` (a sentry.policy.Policy)")
    return policy
