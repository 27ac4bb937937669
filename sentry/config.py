"""Config: what `sentry run` (or the Python API) asks of a sandbox."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Config:
    """What `sentry run` (or the Python API) asks for."""

    platform: str = "ptrace"
    rootfs: str = "/"
    overlay: str = "memory"
    cwd: str = "/"
    env: list[bytes] = field(default_factory=list)
    seed: int | None = None
    debug: bool = False
    strace: bool = False
    memory_limit: int | None = None
