"""Core benchmarks: the getppid round trip and `true` start-up, natively,
on every available platform, against the C floors and gVisor's runsc, all
in one run (this machine is shared and noisy: compare within a run, quote
medians).

    python3 bench/core.py [--quick] [--floors DIR]

The floors are built from ../shared/floors (or --floors) into a temp dir.
Everything pinned to CPU 0 where the floor is measured on one CPU.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import compile_c  # noqa: E402
from platforms import base  # noqa: E402

FLOOR_OF = {"ptrace": ("bench_ptrace", ["0", "0"]),
            "vmexec": ("bench_systrap", ["spin", "0", "1"]),
            "kvm": ("kvm_explore", ["pfsys", "20000"])}


def sh(cmd: list[str], timeout: float = 300) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout


def loop_ns(prefix: list[str], prog: str, n: int, runs: int) -> float | None:
    out = sh(["taskset", "-c", "0", *prefix, prog, str(n), str(runs)])
    for line in out.splitlines():
        if line.startswith("ns_per_call"):
            return float(line.split()[1])
    return None


def floor_ns(floors: pathlib.Path, platform: str) -> float | None:
    binary, args = FLOOR_OF[platform]
    if not (floors / binary).exists():
        return None
    out = sh([str(floors / binary), *args], timeout=600)
    for line in out.splitlines():
        if "median" in line:
            return float(line.split("median")[1].split()[0])
        if "ns per round trip" in line or "ns/op" in line:
            return float(line.split()[-2])
    return None


def wall_ms(cmd: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, timeout=120)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def build_floors(src: pathlib.Path) -> pathlib.Path:
    out = pathlib.Path(tempfile.mkdtemp(prefix="sentry-floors-"))
    for f in src.iterdir():
        if f.suffix in (".c", ".h") or f.name == "Makefile":
            shutil.copy(f, out)
    subprocess.run(["make", "-s", "-C", str(out), "bench_ptrace", "bench_systrap", "kvm_explore"],
                   capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--floors", default=str(ROOT.parent / "shared" / "floors"))
    args = ap.parse_args()
    n, runs, reps = (5000, 3, 3) if args.quick else (20000, 5, 7)
    prog = compile_c("getppid_loop", "static")
    floors = build_floors(pathlib.Path(args.floors))
    sentry = [sys.executable, "-m", "sentry", "run"]
    runsc_root = tempfile.mkdtemp(prefix="sentry-runsc-")
    runsc = ["runsc", f"--root={runsc_root}", "--network=none", "--platform=ptrace", "do"] if shutil.which("runsc") else None

    native = loop_ns([], prog, n * 10, runs)
    print(f"getppid round trip (ns, median of {runs} runs of {n}; CPU 0)")
    print(f"  {'native':28} {native:10.1f}")
    runsc_ns = loop_ns(runsc, prog, n, runs) if runsc else None
    if runsc_ns:
        print(f"  {'runsc --platform=ptrace':28} {runsc_ns:10.1f}   {runsc_ns / native:7.1f}x native")
    for name in base.names():
        ok, why = base.lookup(name).available()
        if not ok:
            print(f"  {name:28} unavailable: {why}")
            continue
        ns = loop_ns([*sentry, "--platform", name, "--"], prog, n, runs)
        floor = floor_ns(floors, name)
        line = f"  {'sentry ' + name:28} {ns:10.1f}   {ns / native:7.1f}x native"
        if floor:
            line += f"   {ns / floor:5.2f}x C floor ({FLOOR_OF[name][0]} {floor:.0f})"
        if runsc_ns:
            line += f"   {ns / runsc_ns:5.2f}x runsc"
        print(line)

    print(f"\n`true` start-up wall time (ms, median of {reps})")
    print(f"  {'native':28} {wall_ms(['/bin/true'], reps):10.1f}")
    if runsc:
        print(f"  {'runsc --platform=ptrace':28} {wall_ms([*runsc, '/bin/true'], reps):10.1f}")
    for name in base.names():
        if base.lookup(name).available()[0]:
            print(f"  {'sentry ' + name:28} {wall_ms([*sentry, '--platform', name, '--', '/bin/true'], reps):10.1f}")
    shutil.rmtree(floors, ignore_errors=True)
    shutil.rmtree(runsc_root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("LANG", "C.UTF-8")
    main()
