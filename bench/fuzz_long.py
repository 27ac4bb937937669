"""The long fuzzing run (tests/test_fuzz.py keeps a short one).

    python3 bench/fuzz_long.py [--platforms ptrace,vmexec,kvm] [--seeds 1-50]
                               [--calls 5000] [--trinity N] [--json]

For each platform and seed: tests/progs/fuzz_syscalls.c makes CALLS random
system calls in a small rootfs; then, with --trinity N > 0, Debian's
trinity makes N calls (as root, host / read-only under the overlay, aimed
at a directory of victim files); its calls are the ones its log says it
ran. A run is a crash if the Sentry exits 125 or prints a traceback, a
hang if --timeout ends it, a leak if a stub outlives it, a host change if
the rootfs (or trinity's victims) changed, "did not run" if trinity
reported no calls. Prints one line per run and the totals; exit status 1
if any run had a problem.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import compile_c  # noqa: E402
from test_escape import _tree_digest, leaked_stubs  # noqa: E402
from test_fuzz import fuzz_root  # noqa: E402
from test_processes import _stubs  # noqa: E402


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _sentry(platform: str, argv: list[str], options: list[str], timeout: float, cwd: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sentry", "run", "--platform", platform, "--pids", "64", "--memory", "1G",
           "--timeout", str(timeout), *options, "--", *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, capture_output=True, timeout=timeout + 60, cwd=cwd, env=env)


def _verdict(got: subprocess.CompletedProcess, before: set[int]) -> list[str]:
    problems = []
    if got.returncode == 125 or b"internal error" in got.stderr or b"Traceback" in got.stderr:
        problems.append("crash")
    if got.returncode == 124:
        problems.append("hang")
    if leaked_stubs(before):
        problems.append("leaked stub")
    return problems


def fuzz_once(platform: str, seed: int, calls: int, binary: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = fuzz_root(pathlib.Path(tmp), binary)
        tree, before = _tree_digest(root), _stubs()
        start = time.monotonic()
        got = _sentry(platform, ["/fuzz", str(seed), str(calls)], ["--rootfs", str(root)], 900, tmp)
        problems = _verdict(got, before)
        if _tree_digest(root) != tree:
            problems.append("host changed")
        m = re.search(rb"calls (\d+)", got.stdout)
        return {"tool": "fuzz_syscalls", "platform": platform, "seed": seed, "calls": int(m.group(1)) if m else 0,
                "status": got.returncode, "seconds": round(time.monotonic() - start, 1), "problems": problems,
                "stderr": got.stderr[-1500:].decode(errors="replace") if problems else ""}


def trinity_root(tmp: pathlib.Path) -> pathlib.Path:
    """Victim files for trinity (-V), as tests/test_fuzz.py's: the host /
    is its root (read-only, under the overlay), these must stay as they are."""
    victims = tmp / "victims"
    (victims / "sub").mkdir(parents=True)
    for i in range(8):
        (victims / f"file{i}").write_bytes(os.urandom(4096))
    (victims / "sub" / "link").symlink_to("../file0")
    return victims


def trinity_once(platform: str, seed: int, calls: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        victims = trinity_root(pathlib.Path(tmp))
        tree, before = _tree_digest(victims), _stubs()
        start = time.monotonic()
        got = _sentry(platform, [shutil.which("trinity") or "trinity", "--dangerous", "-N", str(calls), "-C", "2",
                                 "-s", str(seed), "-q", "-a", "64", "-l", "off", "--disable-fds=sockets",
                                 "-V", str(victims)], [], 900, tmp)
        problems = _verdict(got, before)
        if _tree_digest(victims) != tree:
            problems.append("host changed")
        ran = re.search(rb"Ran (\d+) syscalls", got.stdout)  # trinity's own count, from its log on stdout
        if ran is None:
            problems.append("did not run")
        return {"tool": "trinity", "platform": platform, "seed": seed,
                "calls": int(ran.group(1)) if ran else 0, "status": got.returncode,
                "seconds": round(time.monotonic() - start, 1), "problems": problems,
                "stderr": (got.stdout[-500:] + got.stderr[-1500:]).decode(errors="replace") if problems else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platforms", default="ptrace,vmexec,kvm")
    ap.add_argument("--seeds", default="1-20", help="a seed or a range LO-HI")
    ap.add_argument("--calls", type=int, default=5000, help="fuzz_syscalls calls per run")
    ap.add_argument("--trinity", type=int, default=2000, help="trinity calls per run (0: no trinity)")
    ap.add_argument("--json", action="store_true", help="one JSON object per run")
    args = ap.parse_args()
    binary = compile_c("fuzz_syscalls")
    runs = []
    for seed in _seeds(args.seeds):
        for platform in args.platforms.split(","):
            todo = [lambda: fuzz_once(platform, seed, args.calls, binary)]
            if args.trinity and shutil.which("trinity"):
                todo.append(lambda: trinity_once(platform, seed, args.trinity))
            for run in todo:
                r = run()
                runs.append(r)
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    print(f"{r['tool']:14} {r['platform']:7} seed {r['seed']:4} calls {r['calls']:7} "
                          f"status {r['status']:4} {r['seconds']:7.1f}s {' '.join(r['problems']) or 'ok'}", flush=True)
                    if r["problems"]:
                        print("   " + r["stderr"].strip().replace("\n", "\n   "), flush=True)
    bad = [r for r in runs if r["problems"]]
    total = sum(r["calls"] for r in runs)
    print(f"runs {len(runs)} calls {total} crashes {sum('crash' in r['problems'] for r in runs)} "
          f"hangs {sum('hang' in r['problems'] for r in runs)} leaks {sum('leaked stub' in r['problems'] for r in runs)} "
          f"host changes {sum('host changed' in r['problems'] for r in runs)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
