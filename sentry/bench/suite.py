"""Running the measurements of `sentry bench` into one results document.

In a nutshell: a *target* is a way to run a program — natively, under
``sentry run --platform P`` for every registered platform, and under
``runsc --platform=ptrace do`` when runsc is installed. Every benchmark
runs on every available target in the same run, so all ratios compare
figures taken under the same machine noise:

1. micro-benchmarks (``progs/micro.c``, timed inside the guest, median of
   RUNS runs), pinned to CPU 0 like the floors;
2. C floors (``/work/shared/floors``): each platform's getppid round trip
   against the C prototype of its interception mechanism, in the wake-up
   style the platform uses on one CPU (and vmexec's spin style unpinned),
   and against runsc: rounds of (floor, Sentry, runsc) interleaved;
3. workloads: wall time of whole commands (``true``, a busybox script,
   python3 start-up), median of REPS, the repetitions interleaved across
   targets.

``run(options)`` returns the document that ``report`` prints,
plots and dumps as JSON; a figure that could not be taken is None, with
a line in ``notes`` saying why.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import platform as host_platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from sentry.bench import FLOORS, build

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
CPU0 = {0}

# Micro-benchmarks: op name in micro.c -> (title, iterations quick, full).
MICRO = {
    "getppid": ("getppid round trip", 1000, 20000),
    "orc": ("open/read/close 256 B", 100, 2000),
    "forkexec": ("fork + exec + wait", 5, 50),
    "mmap": ("mmap/munmap 64 KiB", 100, 2000),
    "pipe": ("pipe ping-pong (2 processes)", 100, 1000),
    "thread": ("thread create + join", 20, 200),
    "bigread": ("256 MiB file, 1 MiB reads (per MiB)", 256, 1024),
}
BIGFILE_MIB = 256
BUSYBOX_SCRIPT = ("for i in 1 2 3 4 5; do busybox echo $i | busybox cat >/dev/null; done; "
                  "busybox ls / | busybox wc -l >/dev/null")


@dataclasses.dataclass
class Options:
    quick: bool = False
    platforms: tuple[str, ...] | None = None  # None: every registered platform
    floors: pathlib.Path = FLOORS
    runsc: bool = True

    @property
    def runs(self) -> int:  # runs inside micro, each of N operations
        return 3 if self.quick else 5

    @property
    def reps(self) -> int:  # repetitions of each workload command
        return 2 if self.quick else 5

    @property
    def floor_rounds(self) -> int:  # interleaved rounds of floor, Sentry and runsc getppid
        return 1 if self.quick else 3

    @property
    def timeout(self) -> float:
        return 90 if self.quick else 600


@dataclasses.dataclass
class Target:
    name: str  # "native", a platform name, or "runsc"
    kind: str  # "native", "sentry" or "runsc"
    prefix: list[str]  # argv before the program
    available: bool = True
    reason: str = ""


class Progress:
    """One status line on a terminal (rewritten in place), else a line per
    step; both on stderr."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        line = f"[{self.done:3}/{self.total}] {label}"
        if self.tty:
            print(f"\r\x1b[K{line[:100]}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled and self.tty:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def targets(options: Options, runsc_root: str) -> list[Target]:
    """Native, one per registered (or requested) platform, and runsc."""
    from platforms import base

    env_python = [sys.executable, "-m", "sentry", "run"]
    result = [Target("native", "native", [])]
    names = list(base.names()) if options.platforms is None else list(options.platforms)
    errors = base.load_errors()
    for name in names:
        if name in errors:
            result.append(Target(name, "sentry", [], False, errors[name]))
            continue
        try:
            ok, why = base.lookup(name).available()
        except KeyError:
            ok, why = False, "no such platform"
        result.append(Target(name, "sentry", [*env_python, "--platform", name, "--"], ok, "" if ok else why))
    if options.platforms is None:
        for name, why in errors.items():
            result.append(Target(name, "sentry", [], False, why))
    if options.runsc:
        runsc = shutil.which("runsc")
        result.append(Target("runsc", "runsc",
                             [runsc or "runsc", f"--root={runsc_root}", "--network=none", "--platform=ptrace", "do"],
                             runsc is not None, "" if runsc else "runsc is not installed"))
    return result


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("LANG", "C.UTF-8")
    return env


def _pin0() -> None:
    os.sched_setaffinity(0, CPU0)


def _execute(argv: list[str], timeout: float, pin: bool = False, env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess | None, str]:
    """Run argv; (result, "") or (None, why it failed)."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           env=env or _env(), preexec_fn=_pin0 if pin else None)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    except OSError as e:
        return None, str(e)
    if r.returncode:
        return None, f"exit status {r.returncode}: {build._first_line(r.stderr or r.stdout)}"
    return r, ""


def _workloads() -> dict[str, tuple[str, list[str] | None, str]]:
    """name -> (title, argv or None, why not)."""
    busybox = shutil.which("busybox")
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)
    return {
        "true": ("start-up: true", ["/bin/true"], ""),
        "busybox": ("busybox script (pipes, fork+exec)",
                    [busybox, "sh", "-c", BUSYBOX_SCRIPT] if busybox else None, "busybox is not installed"),
        "python3": ("python3 start-up (-c pass)", [python, "-c", "pass"] if python else None,
                    "no /usr/bin/python3"),
    }


def _floor_specs(options: Options, available: set[str]) -> list[tuple[str, str, list[str], dict[str, str], bool]]:
    """(row label, platform, floor argv, floor env, pinned) per floor row."""
    iters = "5000" if options.quick else "50000"
    env = {"ITERS": iters, "RUNS": str(options.runs)}
    rows = []
    if "ptrace" in available:
        rows.append(("ptrace", "ptrace", ["bench_ptrace", "0", "0"], env, True))
    if "vmexec" in available:
        rows.append(("vmexec", "vmexec", ["bench_systrap", "futex", "0", "0"], env, True))
        if not options.quick:
            rows.append(("vmexec unpinned", "vmexec", ["bench_systrap", "spin", "-1", "-1"], env, False))
    if "kvm" in available:
        if os.path.isdir("/sys/module/kvm_pvm"):
            rows.append(("kvm", "kvm", ["kvm_explore", "pfsys", "3000" if options.quick else "20000"], env, True))
        else:
            rows.append(("kvm", "kvm", ["bench_kvm", "r3-sys-lstar-out"], env, True))
    return rows


_FLOOR_FIGURE = (re.compile(r"median\s+([\d.]+)"), re.compile(r"([\d.]+) ns per round trip"))


def _floor_ns(out: str) -> float | None:
    for pattern in _FLOOR_FIGURE:
        m = pattern.search(out)
        if m:
            return float(m.group(1))
    return None


def _parse_micro(out: str) -> dict[str, float]:
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in MICRO:
            try:
                figures[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return figures


def _iterations(op: str, options: Options) -> int:
    return MICRO[op][1] if options.quick else MICRO[op][2]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _floors(options: Options, rows: list[tuple[str, str, list[str], dict[str, str], bool]],
            floors_dir: pathlib.Path | None, micro: str, live: list[Target], progress: Progress,
            notes: list[str]) -> list[dict[str, Any]]:
    """Each platform's getppid loop against its C floor and runsc, pinned as
    the floor is; rounds of (floor, Sentry, runsc) interleaved so each
    median is taken under the same noise."""
    by_name = {t.name: t for t in live}
    loop = [micro, str(options.runs), f"getppid:{_iterations('getppid', options)}"]
    taken: dict[str, dict[str, list[float]]] = {r[0]: {"floor": [], "sentry": [], "runsc": []} for r in rows}
    for _ in range(options.floor_rounds):
        for label, platform_name, argv, env, pinned in rows:
            assert floors_dir is not None
            progress.step(f"getppid: C floor {' '.join(argv)}")
            r, why = _execute([str(floors_dir / argv[0]), *argv[1:]], options.timeout, pin=pinned,
                              env={**os.environ, **env})
            figure = _floor_ns(r.stdout) if r else None
            if figure is None:
                notes.append(f"floor {' '.join(argv)} failed: {why or 'no figure in its output'}")
            runs = [("floor", figure)]
            for key, target in (("sentry", by_name[platform_name]), ("runsc", by_name.get("runsc"))):
                if target is None:
                    continue
                progress.step(f"getppid: {target.name}{'' if pinned else ' unpinned'}")
                r, why = _execute([*target.prefix, *loop], options.timeout, pin=pinned)
                if r is None:
                    notes.append(f"getppid on {target.name} failed: {why}")
                runs.append((key, _parse_micro(r.stdout).get("getppid") if r else None))
            for key, figure in runs:
                if figure is not None:
                    taken[label][key].append(figure)
    result = []
    for label, platform_name, argv, _, pinned in rows:
        med = {k: statistics.median(v) if v else None for k, v in taken[label].items()}
        result.append({"label": label, "platform": platform_name, "floor": " ".join(argv), "pinned_cpu0": pinned,
                       "rounds": options.floor_rounds, "floor_ns": med["floor"], "sentry_ns": med["sentry"],
                       "runsc_ns": med["runsc"], "ratio_to_floor": _ratio(med["sentry"], med["floor"]),
                       "ratio_to_runsc": _ratio(med["sentry"], med["runsc"])})
    return result


def run(options: Options, progress_enabled: bool = True) -> dict[str, Any]:
    """Take every figure; return the results document (see module doc)."""
    notes: list[str] = []
    scratch = tempfile.mkdtemp(prefix="sentry-bench-")  # runsc's state and bigread's file
    try:
        return _run(options, progress_enabled, notes, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _make_bigfile(directory: str) -> str:
    """A BIGFILE_MIB MiB file of incompressible bytes for ``bigread``."""
    path = os.path.join(directory, "bigread.dat")
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(BIGFILE_MIB):
            f.write(chunk)
    return path


def _compile_sentry() -> None:
    """Write the Sentry's bytecode caches, as a non-editable install does:
    with PYTHONDONTWRITEBYTECODE set (it is, on this machine) a source
    edited since the last compile is recompiled at every start-up, which
    adds tens of ms to each `sentry run` measured."""
    import compileall

    for package in ("abi", "sentry", "platforms", "loader", "stub"):
        compileall.compile_dir(str(ROOT / package), quiet=2)


def _run(options: Options, progress_enabled: bool, notes: list[str], scratch: str) -> dict[str, Any]:
    _compile_sentry()
    runsc_root = os.path.join(scratch, "runsc")
    os.mkdir(runsc_root)
    all_targets = targets(options, runsc_root)
    live = [t for t in all_targets if t.available]
    for t in all_targets:
        if not t.available:
            notes.append(f"{t.name}: unavailable: {t.reason}")
    micro, why = build.micro()
    if micro is None:
        notes.append(why)
    floors_dir, why = build.floors(options.floors)
    if floors_dir is None:
        notes.append(why)
    workloads = _workloads()
    for name, (_, argv, why) in workloads.items():
        if argv is None:
            notes.append(f"workload {name} skipped: {why}")
    workloads = {k: v for k, v in workloads.items() if v[1] is not None}
    floor_rows = _floor_specs(options, {t.name for t in live}) if floors_dir else []
    if micro is None:
        floor_rows = []
    has_runsc = any(t.name == "runsc" for t in live)
    total = (len(live) if micro else 0) + options.reps * len(workloads) * len(live) \
        + options.floor_rounds * len(floor_rows) * (3 if has_runsc else 2)
    progress = Progress(total, progress_enabled)
    figures: dict[str, dict[str, float | None]] = {}
    names = [t.name for t in live]

    if micro:
        ops = [f"{op}:{_iterations(op, options)}" for op in MICRO]
        for op in MICRO:
            figures[op] = {n: None for n in names}
        micro_env = {**_env(), "MICRO_BIGFILE": _make_bigfile(scratch)}
        for t in live:
            progress.step(f"micro-benchmarks on {t.name}")
            r, why = _execute([*t.prefix, micro, str(options.runs), *ops], options.timeout, pin=True, env=micro_env)
            got = _parse_micro(r.stdout) if r else {}
            if r is None:
                notes.append(f"micro-benchmarks on {t.name} failed: {why}")
            for op in MICRO:
                figures[op][t.name] = got.get(op)

    floors = _floors(options, floor_rows, floors_dir, micro, live, progress, notes) if micro else []

    walls: dict[str, dict[str, list[float]]] = {w: {n: [] for n in names} for w in workloads}
    for rep in range(options.reps):
        for w, (_, argv, _) in workloads.items():
            for t in live:
                progress.step(f"{w} on {t.name} ({rep + 1}/{options.reps})")
                t0 = time.perf_counter()
                r, why = _execute([*t.prefix, *argv], options.timeout)
                if r is None:
                    if rep == 0:
                        notes.append(f"{w} on {t.name} failed: {why}")
                    continue
                walls[w][t.name].append((time.perf_counter() - t0) * 1000)
    for w, per in walls.items():
        figures[w] = {n: statistics.median(v) if v else None for n, v in per.items()}

    benchmarks = []
    units = {**{op: "ns" for op in MICRO}, **{w: "ms" for w in workloads}}
    titles = {**{op: spec[0] for op, spec in MICRO.items()}, **{w: spec[0] for w, spec in workloads.items()}}
    for name, per in figures.items():
        native, runsc = per.get("native"), per.get("runsc")
        benchmarks.append({
            "name": name, "title": titles[name], "unit": units[name], "pinned_cpu0": name in MICRO,
            "median": per,
            "ratio_to_native": {n: _ratio(v, native) for n, v in per.items() if n != "native"},
            "ratio_to_runsc": {n: _ratio(v, runsc) for n, v in per.items() if n not in ("native", "runsc")},
        })

    progress.finish()
    return {
        "version": 1,
        "quick": options.quick,
        "host": {"kernel": host_platform.release(), "cpus": os.cpu_count(),
                 "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "settings": {"micro_runs": options.runs, "workload_reps": options.reps,
                     "micro_iterations": {op: _iterations(op, options) for op in MICRO}},
        "targets": [{"name": t.name, "kind": t.kind, "available": t.available, "reason": t.reason,
                     "command": t.prefix} for t in all_targets],
        "benchmarks": benchmarks,
        "floors": floors,
        "notes": notes,
    }
