"""Config: what `sentry run` (or the Python API) asks of a sandbox."""
from __future__ import annotations

import os
from dataclasses import dataclass, field


def overlay_setting(value: str) -> str:
    """``value`` as Config.overlay: "memory", "none", or a directory made
    absolute (it need not exist yet). Raises ValueError otherwise."""
    if value in ("memory", "none"):
        return value
    if not value or (os.path.exists(value) and not os.path.isdir(value)):
        raise ValueError(f"overlay {value!r}: expected 'memory', 'none' or a directory")
    return os.path.abspath(value)


@dataclass
class Config:
    """What `sentry run` (or the Python API) asks for."""

    platform: str = "ptrace"
    rootfs: str = "/"
    overlay: str = "memory"  # "memory", "none", or an absolute host directory holding the upper layer
    cwd: str = "/"
    env: list[bytes] = field(default_factory=list)
    seed: int | None = None
    debug: bool = False
    strace: bool = False  # trace system calls (sentry.strace); the fields below say where
    strace_log: str | None = "-"  # text log: "-" stderr, a path, or None for none
    strace_json: str | None = None  # JSON lines (sentry/strace/schema.json), or None
    strace_log_size: int = 1024  # bytes of each buffer or string shown
    strace_syscalls: tuple[str, ...] | None = None  # trace only these (None: all)
    memory_limit: int | None = None  # bytes of guest memory and files in memory (sentry.mm.memfile.MemoryBudget):
    # past it, ENOMEM or ENOSPC (--memory)
    pids_limit: int | None = None  # live tasks + unreaped zombies (--pids): past it, clone is EAGAIN
    nofile_limit: int = 4096  # RLIMIT_NOFILE hard ceiling: no guest can raise it (--nofile)
    cpus: int | None = None  # host CPUs the Sentry and its stubs may use (--cpus)
    seccomp: bool = False  # the Sentry under its own seccomp allowlist (sentry.seccomp_self); CLI: on
    network: str = "none"  # "none": a loopback inside the sandbox only; "host": host sockets (sentry.net.hostinet)
    volumes: list[tuple[str, str, bool]] = field(default_factory=list)  # (host, guest, read_only): passed through
    timeout: float | None = None  # seconds; then the sandbox ends with status 124
    stats: bool = False  # print totals (calls, faults, signals, time split) at the end (sentry.stats)
