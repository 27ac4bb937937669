"""Building what `sentry bench` runs: the micro-benchmark program
(``progs/micro.c``) and the C floors (``/work/shared/floors``), compiled
once into a cache keyed by their sources (``$XDG_CACHE_HOME/sentry-bench``,
else ``~/.cache/sentry-bench``).

Both return None with a reason when they cannot build (no gcc, no floors
directory, a failed build); the bench then skips those figures with a note.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile

PROGS = pathlib.Path(__file__).parent / "progs"
FLOOR_BINARIES = ("bench_native", "bench_ptrace", "bench_systrap", "kvm_explore", "bench_kvm")


def _cache(key: bytes) -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(base) / "sentry-bench" / hashlib.sha256(key).hexdigest()[:16]


def micro() -> tuple[str | None, str]:
    """The static micro-benchmark binary: (path, "") or (None, why not)."""
    src = PROGS / "micro.c"
    out = _cache(src.read_bytes()) / "micro"
    if out.exists():
        return str(out), ""
    if shutil.which("gcc") is None:
        return None, "no gcc: micro-benchmarks skipped"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run(["gcc", "-O2", "-static", "-o", str(tmp), str(src), "-lpthread"],
                       capture_output=True, text=True)
    if r.returncode:
        return None, f"building micro.c failed: {_first_line(r.stderr)}"
    tmp.rename(out)
    return str(out), ""


def floors(src: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """The floors built from ``src`` (a copy of /work/shared/floors): (dir, "")
    or (None, why not). Binaries that fail to build are simply absent."""
    if not (src / "Makefile").exists():
        return None, f"no C floors at {src}: floor ratios skipped"
    files = sorted(f for f in src.iterdir() if f.suffix in (".c", ".h") or f.name == "Makefile")
    out = _cache(b"".join(f.name.encode() + f.read_bytes() for f in files))
    if (out / ".built").exists():
        return out, ""
    with tempfile.TemporaryDirectory(prefix="sentry-floors-") as tmp:
        for f in files:
            shutil.copy(f, tmp)
        for name in FLOOR_BINARIES:
            subprocess.run(["make", "-s", "-C", tmp, name], capture_output=True)
        out.mkdir(parents=True, exist_ok=True)
        for name in FLOOR_BINARIES:
            if os.path.exists(os.path.join(tmp, name)):
                shutil.copy(os.path.join(tmp, name), out / name)
    (out / ".built").touch()
    return out, ""


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no output)"])[0][:200]
