"""getppid round trip through KvmContext.switch against the C floor of the
same entry path, in one run (this host is shared and noisy: compare medians
taken together).

    python3 bench/bench_kvm_getppid.py [--iters N] [--runs R] [--floors DIR]

The guest is `1: mov $110, %eax; syscall; jmp 1b` in ring 3; the Python loop
is what the Sentry's run loop does at minimum: switch, set rax, switch. The
floor is `kvm_explore pfsys` (kvm_pvm: LSTAR sentinel #PF) built from
../shared/floors into a temp dir; on VMX/SVM hosts it is `bench_kvm
r3-sys-lstar-out`. Both pinned to CPU 0. Goal: ratio <= 1.3.

It also times a fixed piece of Python work (a dispatch-sized dict loop)
warm and right after each KVM_RUN: under kvm_pvm the VM world switch leaves
the host CPU cold (measured ~3x slower), which is what the Sentry's
syscall dispatch pays on top of this loop.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platforms import base  # noqa: E402
from platforms.base import PROT_EXEC, PROT_READ, EventKind  # noqa: E402
from sentry.mm.memfile import MemoryFile  # noqa: E402

GUEST = bytes.fromhex("b86e000000" "0f05" "ebf7")  # 1: mov $110,%eax; syscall; jmp 1b
CODE = 0x400000


def _work() -> int:
    d = {}
    for i in range(20):
        d[i] = str(i) + "x"
    return len(d)


def python_ns(iters: int, runs: int, after_exit: list[float] | None = None) -> list[float]:
    memory = MemoryFile()
    platform = base.lookup("kvm")(memory)
    try:
        aspace, ctx = platform.new_address_space(), platform.new_context()
        off = memory.allocate(4096)
        memory.write(off, GUEST)
        aspace.map_file(CODE, off, 4096, PROT_READ | PROT_EXEC)
        state = platform.new_arch_state()
        state.regs.rip = CODE
        regs, ppid, switch, syscall = state.regs, os.getppid(), ctx.switch, EventKind.SYSCALL
        results = []
        for run in range(runs + 1):
            t0 = time.perf_counter_ns()
            for _ in range(iters):
                if switch(aspace, state) != syscall or regs.orig_rax != 110:
                    raise SystemExit(f"unexpected event at {regs.rip:#x}")
                regs.rax = ppid
            if run:  # the first run warms up
                results.append((time.perf_counter_ns() - t0) / iters)
        if after_exit is not None:
            after_exit.append(_cold_work_ns(iters, switch, aspace, state))
        return results
    finally:
        platform.close()
        memory.close()


def _cold_work_ns(iters: int, switch, aspace, state) -> float:
    spent = 0
    for _ in range(iters):
        switch(aspace, state)
        t0 = time.perf_counter_ns()
        _work()
        spent += time.perf_counter_ns() - t0
    return spent / iters


def _warm_work_ns(iters: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(iters):
        _work()
    return (time.perf_counter_ns() - t0) / iters


def build_floor(src: pathlib.Path) -> pathlib.Path:
    out = pathlib.Path(tempfile.mkdtemp(prefix="sentry-floors-"))
    for f in src.iterdir():
        if f.suffix in (".c", ".h") or f.name == "Makefile":
            shutil.copy(f, out)
    subprocess.run(["make", "-s", "-C", str(out), "kvm_explore", "bench_kvm"], check=True, capture_output=True)
    return out


def floor_ns(floors: pathlib.Path, iters: int) -> float:
    if os.path.isdir("/sys/module/kvm_pvm"):
        cmd = [str(floors / "kvm_explore"), "pfsys", str(iters)]
    else:
        cmd = [str(floors / "bench_kvm"), "r3-sys-lstar-out"]
    out = subprocess.run(["taskset", "-c", "0", *cmd], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "ITERS": str(iters), "RUNS": "1"}).stdout
    m = re.search(r"([\d.]+) ns per round trip", out) or re.search(r"median\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot parse the floor's output:\n{out}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--floors", default=str(ROOT.parent / "shared" / "floors"))
    args = ap.parse_args()
    ok, why = base.lookup("kvm").available()
    if not ok:
        raise SystemExit(f"kvm unavailable: {why}")
    print(f"host: {why}")
    floors = build_floor(pathlib.Path(args.floors))
    os.sched_setaffinity(0, {0})
    floor, ours, cold, warm = [], [], [], []
    for _ in range(args.runs):  # interleaved, so both see the same noise
        floor.append(floor_ns(floors, args.iters))
        ours.extend(python_ns(args.iters, 1, cold))
        warm.append(_warm_work_ns(args.iters))
    f, p = statistics.median(floor), statistics.median(ours)
    print(f"C floor   median {f:9.0f} ns   (runs {', '.join(f'{x:.0f}' for x in floor)})")
    print(f"kvm       median {p:9.0f} ns   (runs {', '.join(f'{x:.0f}' for x in ours)})")
    print(f"ratio     {p / f:.2f}  (goal <= 1.3)")
    print(f"the same Python work: warm {statistics.median(warm) / 1000:.1f} us, "
          f"right after a KVM_RUN {statistics.median(cold) / 1000:.1f} us")
    shutil.rmtree(floors, ignore_errors=True)


if __name__ == "__main__":
    main()
