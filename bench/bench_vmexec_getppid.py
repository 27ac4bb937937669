"""vmexec speed, all in one run (this machine is shared and noisy: compare
within a run, quote medians):

1. getppid round trip through ``Context.switch`` in a Python loop (the
   platform alone), unpinned (both sides spin: a CPU is free) and pinned to
   CPU 0 (futex only), against the C floors of the same wake-up styles
   (``bench_systrap spin -1 -1`` and ``bench_systrap futex 0 0``, built from
   ../shared/floors into a temp dir);
2. the same loop as a guest program under ``sentry run`` on vmexec and
   ptrace, and under ``runsc --platform=ptrace do``;
3. start-up wall time of busybox and python3 workloads on vmexec and ptrace;
4. what an idle sandbox burns: a guest ``sleep``, the CPU time of the
   Sentry and its stubs over 2 s once it started, as a share of one core.

    python3 bench/bench_vmexec_getppid.py [--quick] [--floors DIR]
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GETPPID_LOOP = bytes.fromhex("b86e000000 0f05 ebf7")  # 1: mov $110,%eax; syscall; jmp 1b
WORKLOADS = {
    "busybox true": ["/bin/busybox", "true"],
    "busybox sh pipeline": ["/bin/busybox", "sh", "-c", "busybox ls / | busybox wc -l; busybox echo $(busybox pwd)"],
    "python3 -c pass": ["/usr/bin/python3.11", "-c", "pass"],
    "python3 import json,hashlib": ["/usr/bin/python3.11", "-c", "import json, hashlib"],
}


def platform_loop(n: int, runs: int, cpu: int | None) -> float:
    """Median ns per getppid round trip, Context.switch in a Python loop, in
    a child process (so pinning stays there)."""
    code = f"""
import os, sys, time, statistics
sys.path.insert(0, {str(ROOT)!r})
if {cpu!r} is not None:
    os.sched_setaffinity(0, {{{cpu!r}}})
from sentry.mm.memfile import MemoryFile
from platforms.vmexec import VmexecPlatform
mem = MemoryFile(capacity=1 << 24)
p = VmexecPlatform(mem)
space = p.new_address_space()
off = mem.allocate(0x2000)
mem.write(off, {GETPPID_LOOP!r})
space.map_file(0x400000, off, 0x2000, 7)
ctx, st = p.new_context(), p.new_arch_state()
st.regs.rip, st.regs.rsp = 0x400000, 0x402000
switch, regs, v = ctx.switch, st.regs, []
for r in range({runs} + 1):
    t0 = time.perf_counter_ns()
    for _ in range({n}):
        switch(space, st)
        regs.rax = 1
    v.append((time.perf_counter_ns() - t0) / {n})
print(statistics.median(v[1:]))
p.close()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    return float(out.stdout)


def build_floors(src: pathlib.Path) -> pathlib.Path | None:
    out = pathlib.Path(tempfile.mkdtemp(prefix="sentry-floors-"))
    for f in src.glob("*"):
        if f.suffix in (".c", ".h") or f.name == "Makefile":
            shutil.copy(f, out)
    r = subprocess.run(["make", "-s", "-C", str(out), "bench_systrap"], capture_output=True)
    return out if r.returncode == 0 else None


def floor(floors: pathlib.Path, *args: str) -> float | None:
    out = subprocess.run([str(floors / "bench_systrap"), *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "ITERS": "50000"}).stdout
    for line in out.splitlines():
        if "median" in line:
            return float(line.split("median")[1].split()[0])
    return None


def guest_loop(prefix: list[str], prog: str, n: int, runs: int) -> float | None:
    out = subprocess.run([*prefix, prog, str(n), str(runs)], capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL).stdout
    for line in out.splitlines():
        if line.startswith("ns_per_call"):
            return float(line.split()[1])
    return None


def wall_ms(cmd: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def idle_share(sentry: list[str], platform: str) -> float:
    """Share of one core that the Sentry and its stubs use while the guest
    sleeps (sampled from /proc over 2 s, after a second for start-up)."""
    proc = subprocess.Popen([*sentry, "--platform", platform, "--", "/bin/sleep", "4"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        pids = [proc.pid]
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{tid}/children") as f:
                pids += [int(c) for c in f.read().split()]
        before = sum(_ticks(p) for p in pids)
        time.sleep(2.0)
        used = (sum(_ticks(p) for p in pids) - before) / os.sysconf("SC_CLK_TCK")
    finally:
        proc.wait()
    return used / 2.0


def _ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--floors", default=str(ROOT.parent / "shared" / "floors"))
    args = ap.parse_args()
    n, runs, reps = (5000, 3, 3) if args.quick else (20000, 5, 7)
    with open("/proc/loadavg") as f:  # other work on this shared host skews everything below
        print(f"load average at start: {' '.join(f.read().split()[:3])}\n")

    print(f"1. getppid round trip, Context.switch in a Python loop (ns, median of {runs} runs of {n})")
    floors = build_floors(pathlib.Path(args.floors))
    for label, cpu, floor_args in (("unpinned (spin)", None, ("spin", "-1", "-1")),
                                   ("CPU 0 (futex)", 0, ("futex", "0", "0"))):
        ns = platform_loop(n, runs, cpu)
        c = floor(floors, *floor_args) if floors else None
        ratio = f"   {ns / c:5.2f}x C floor (bench_systrap {' '.join(floor_args)}: {c:.0f})" if c else ""
        print(f"   vmexec {label:22} {ns:9.0f}{ratio}")
    if floors:
        shutil.rmtree(floors, ignore_errors=True)

    from conftest import compile_c

    prog = compile_c("getppid_loop", "static")
    sentry = [sys.executable, "-m", "sentry", "run"]
    print(f"\n2. getppid loop as a guest program (ns per call, median of {runs} runs of {n})")
    results = {}
    runsc_root = tempfile.mkdtemp(prefix="sentry-runsc-")
    for pin, prefix in (("unpinned", []), ("CPU 0", ["taskset", "-c", "0"])):
        row = {"sentry vmexec": guest_loop([*prefix, *sentry, "--platform", "vmexec", "--"], prog, n, runs),
               "sentry ptrace": guest_loop([*prefix, *sentry, "--platform", "ptrace", "--"], prog, n, runs)}
        if shutil.which("runsc"):
            row["runsc ptrace"] = guest_loop(
                [*prefix, "runsc", f"--root={runsc_root}", "--network=none", "--platform=ptrace", "do"], prog, n, runs)
        results[pin] = row
        cells = "   ".join(f"{k} {v:8.0f}" if v else f"{k} failed" for k, v in row.items())
        vm, rs = row["sentry vmexec"], row.get("runsc ptrace")
        extra = f"   vmexec/runsc {vm / rs:4.2f}" if vm and rs else ""
        print(f"   {pin:9} {cells}{extra}")
    shutil.rmtree(runsc_root, ignore_errors=True)

    print(f"\n3. start-up wall time (ms, median of {reps}; includes the Sentry's own start)")
    for label, argv in WORKLOADS.items():
        if not os.path.exists(argv[0]):
            print(f"   {label:30} skipped: no {argv[0]}")
            continue
        ms = {pl: wall_ms([*sentry, "--platform", pl, "--", *argv], reps) for pl in ("vmexec", "ptrace")}
        print(f"   {label:30} vmexec {ms['vmexec']:7.0f}   ptrace {ms['ptrace']:7.0f}   "
              f"ratio {ms['vmexec'] / ms['ptrace']:4.2f}")

    print("\n4. idle: a guest `sleep 4`, Sentry + stubs CPU over 2 s after start-up")
    for pl in ("vmexec", "ptrace"):
        print(f"   {pl:8} {idle_share(sentry, pl) * 100:5.1f}% of a core")


if __name__ == "__main__":
    os.environ.setdefault("LANG", "C.UTF-8")
    main()
