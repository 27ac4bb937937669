"""Shared fixtures: one test body for every platform.

``platform`` yields each registered platform's name, skipping one only
when its ``available()`` says why. ``sentry`` runs the real CLI in a
subprocess. ``cprog`` compiles a C program from tests/progs at test time
(static, static-pie or dynamic) into a cache keyed by its source.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from platforms import base

PROGS = pathlib.Path(__file__).parent / "progs"
BUILD = pathlib.Path(__file__).parent / "_build"
LINK_MODES = {"static": ["-static"], "static-pie": ["-static-pie"], "dynamic": []}


def _platform_params():
    params = []
    for name in base.names():
        ok, why = base.lookup(name).available()
        params.append(pytest.param(name, marks=[] if ok else pytest.mark.skip(reason=f"{name}: {why}")))
    for name, why in base.load_errors().items():
        params.append(pytest.param(name, marks=pytest.mark.skip(reason=f"{name}: {why}")))
    return params


@pytest.fixture(params=_platform_params())
def platform(request) -> str:
    return request.param


class Sentry:
    """Runs `sentry run --platform P` on real programs."""

    def __init__(self, platform: str):
        self.platform = platform

    def run(self, *argv: str, options: tuple[str, ...] = (), input: bytes | None = None,
            timeout: float = 90, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "sentry", "run", "--platform", self.platform, *options, "--", *argv]
        try:
            return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                                  env=env if env is not None else _clean_env(), cwd=cwd)
        except subprocess.TimeoutExpired as e:  # a hang: what the Sentry said is the clue
            pytest.fail(f"timed out after {timeout} s: {cmd}\nstderr:\n{(e.stderr or b'').decode(errors='replace')}")

    def matches_native(self, prog: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        """Run ``prog args`` natively (it must succeed), then in the
        sandbox: the same output and exit status 0. Returns the sandbox run."""
        want = native(prog, *args)
        assert want.returncode == 0, want.stdout.decode() + want.stderr.decode()
        got = self.run(prog, *args, timeout=timeout)
        assert got.stdout.decode() == want.stdout.decode(), got.stderr.decode()[-2000:]
        assert got.returncode == 0, got.stderr.decode()[-2000:]
        return got


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.setdefault("LANG", "C.UTF-8")
    return env


def native(*argv: str, input: bytes | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """The same program run directly on the host, for comparison."""
    return subprocess.run(list(argv), input=input, capture_output=True, timeout=60, env=_clean_env(), cwd=cwd)


@pytest.fixture
def sentry(platform: str) -> Sentry:
    return Sentry(platform)


def compile_c(name: str, mode: str = "static", extra: tuple[str, ...] = ()) -> str:
    """Compile tests/progs/NAME.c (mode: static, static-pie, dynamic) and
    return the binary's path; cached by source hash."""
    src = PROGS / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes() + repr((mode, extra)).encode()).hexdigest()[:12]
    out = BUILD / f"{name}-{mode}-{digest}"
    if not out.exists():
        BUILD.mkdir(exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        subprocess.run(["gcc", "-O1", "-g0", "-o", str(tmp), str(src), *LINK_MODES[mode], *extra, "-lm", "-lpthread"],
                       check=True, capture_output=True)
        tmp.rename(out)
    return str(out)


@pytest.fixture(scope="session")
def cprog():
    return compile_c
