"""The command line: `sentry run`, `sentry platforms`, `sentry syscalls`,
`sentry trace` (sentry.tracecmd), `sentry bench` (sentry.bench).

A thin layer over ``sentry.sandbox``; every user error is one line on
stderr and a shell-style exit status (2 usage, 126 cannot execute, 127 not
found), never a traceback."""
from __future__ import annotations

import argparse
import os
import sys

from sentry import bench, tracecmd
from sentry.config import Config, overlay_setting


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"sentry: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sentry", description="Run untrusted Linux x86-64 programs in a Python application kernel.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a program in a new sandbox")
    run.add_argument("--platform", default=os.environ.get("SENTRY_PLATFORM", "ptrace"),
                     help="ptrace, vmexec or kvm (see `sentry platforms`)")
    run.add_argument("--rootfs", default="/", help="directory to use as / (read-only; default: the host /)")
    run.add_argument("--network", default="none", choices=["none", "host"],
                     help="none (default): a loopback inside the sandbox, nothing leaves; host: TCP and UDP "
                          "sockets are host sockets the Sentry works for the guest (docs/SECURITY.md)")
    run.add_argument("--volume", action="append", default=[], metavar="HOST:GUEST[:ro]",
                     help="show host directory HOST at GUEST: the guest's writes change HOST itself "
                          "(confined to it); with :ro they fail with EROFS")
    run.add_argument("--overlay", default="memory", metavar="memory|none|DIR",
                     help="the writable layer over the read-only rootfs: memory (default: changes vanish "
                          "at exit), none (read-only), or DIR: a host directory (made if missing) keeping "
                          "the changes across runs")
    run.add_argument("--cwd", default=None, help="working directory inside the sandbox")
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    run.add_argument("--clear-env", action="store_true", help="start from an empty environment")
    run.add_argument("--seed", type=int, default=None, help="seed for address randomization (reproducible runs)")
    run.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="end the sandbox after SECONDS (exit status 124)")
    run.add_argument("--memory", type=_size, default=None, metavar="BYTES",
                     help="memory limit (suffix K, M or G) of guest memory and files in memory (/tmp, /dev/shm, "
                          "the overlay) together; past it the guest gets ENOMEM or ENOSPC")
    run.add_argument("--pids", type=_positive, default=None, metavar="N",
                     help="at most N tasks (threads and unreaped processes); past it fork/clone fail with EAGAIN")
    run.add_argument("--nofile", type=_positive, default=4096, metavar="N",
                     help="hard limit of open files per process (RLIMIT_NOFILE; default 4096)")
    run.add_argument("--cpus", type=_positive, default=None, metavar="N",
                     help="run the sandbox on at most N host CPUs")
    run.add_argument("--seccomp", action=argparse.BooleanOptionalAction, default=True,
                     help="once started, the Sentry makes only the host calls of its allowlist (default: on; "
                          "docs/SECURITY.md)")
    run.add_argument("--debug", action="store_true", help="report unsupported calls and guest faults")
    run.add_argument("--policy", action="append", default=[], metavar="FILE.py",
                     help="load system-call policy hooks from FILE.py (its `policy`; repeat to compose)")
    run.add_argument("--stats", action="store_true",
                     help="at the end, print totals of system calls, faults and signals, and where the time went")
    run.add_argument("--strace", action="store_true", help="print every guest system call")
    run.add_argument("--strace-log", metavar="FILE", default=None, help="write the --strace log to FILE (default: stderr)")
    run.add_argument("--strace-json", metavar="FILE", default=None,
                     help="write one JSON object per system call and process event to FILE")
    run.add_argument("--strace-log-size", metavar="BYTES", type=int, default=1024,
                     help="bytes of each buffer or string shown (default 1024)")
    run.add_argument("--strace-syscalls", metavar="NAMES", default=None,
                     help="trace only these system calls (comma-separated)")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- PROG ARGS")
    sub.add_parser("platforms", help="list platforms and whether this host can run them")
    sub.add_parser("syscalls", help="list the system-call table with each call's status")
    tracecmd.add_parser(sub)
    bench.add_parser(sub)
    return p


def _size(text: str) -> int:
    """BYTES with an optional K, M or G suffix (powers of 1024)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    scale = units.get(text[-1:].lower(), 1)
    try:
        value = int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 512M") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def _seconds(text: str) -> float:
    """A finite, positive number of seconds that a wait can take (at most
    threading.TIMEOUT_MAX, some 292 years): inf, nan, 0 and -1 are refused."""
    import math
    import threading

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    if value > threading.TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {int(threading.TIMEOUT_MAX)} seconds")
    return value


def _size_text(n: int) -> str:
    """``n`` bytes as --memory would take it: 1M, 1536K, 100."""
    for suffix, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and not n % (1 << shift):
            return f"{n >> shift}{suffix}"
    return str(n)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from sentry.policy import PolicyError
    from sentry.sandbox import SandboxError, exit_code, host_environment, run_program
    from sentry.strace import TraceError

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("sentry: run: no program given (usage: sentry run [OPTIONS] -- PROG ARGS)", file=sys.stderr)
        return 2
    if not os.path.isdir(args.rootfs):
        print(f"sentry: run: --rootfs {args.rootfs}: not a directory", file=sys.stderr)
        return 2
    from loader.exec import STACK_SIZE

    if args.memory is not None and args.memory < STACK_SIZE:  # no program can start: its stack is mapped first
        print(f"sentry: run: {argv[0]}: program does not fit in --memory {_size_text(args.memory)} "
              f"(its stack alone takes {_size_text(STACK_SIZE)})", file=sys.stderr)
        return 126
    env = [] if args.clear_env else host_environment()
    for item in args.env:
        if "=" not in item:
            print(f"sentry: run: --env {item!r}: expected K=V", file=sys.stderr)
            return 2
        key = item.split("=", 1)[0].encode() + b"="
        env = [e for e in env if not e.startswith(key)] + [os.fsencode(item)]
    try:
        overlay = overlay_setting(args.overlay)
    except ValueError as e:
        print(f"sentry: run: --{e}", file=sys.stderr)
        return 2
    cwd = args.cwd or (os.getcwd() if args.rootfs == "/" else "/")
    volumes = []
    for spec in args.volume:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro") or not os.path.isdir(parts[0]) \
                or not parts[1].startswith("/"):
            print(f"sentry: run: --volume {spec!r}: expected HOST_DIR:/GUEST/PATH[:ro]", file=sys.stderr)
            return 2
        volumes.append((parts[0], parts[1], len(parts) == 3))
    try:
        policy = _policy(args.policy)
    except PolicyError as e:
        print(f"sentry: run: --policy {e}", file=sys.stderr)
        return 2
    try:
        config = Config(platform=args.platform, rootfs=args.rootfs, overlay=overlay, cwd=cwd,
                        seed=args.seed, debug=args.debug, timeout=args.timeout, stats=args.stats,
                        memory_limit=args.memory, pids_limit=args.pids, nofile_limit=args.nofile, cpus=args.cpus,
                        seccomp=args.seccomp, volumes=volumes, network=args.network,
                        **_strace_options(args))
        _tune_gc()
        _raise_nofile()
        status = run_program(config, [os.fsencode(a) for a in argv], env, policy)
    except PolicyError as e:  # a hook raised
        print(f"sentry: {e}", file=sys.stderr)
        return 125
    except SandboxError as e:
        print(f"sentry: {e}", file=sys.stderr)
        return e.exit_code
    except (TraceError, ValueError) as e:  # ValueError: a --volume or --overlay DIR the VFS refused
        print(f"sentry: run: {e}", file=sys.stderr)
        return 2
    return exit_code(status)


def _raise_nofile() -> None:
    """The Sentry's soft RLIMIT_NOFILE up to its hard limit, as runsc does:
    the host fds it holds for guests (capped well below it, see
    sentry.fs.overlay.HostFds) and those of its platforms (stubs, vCPUs)
    share one table. Best effort: the old limit stays if refused."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _tune_gc() -> None:
    """The `sentry run` process is the Sentry's alone: move everything
    imported so far out of the cyclic collector's sight and collect young
    objects less often (the syscall path allocates many short-lived
    objects, few cycles; measured here: 50 collections, ~8 ms of a 0.2 s
    busybox script, down to 3). The API leaves its caller's GC alone."""
    import gc

    gc.freeze()
    gc.set_threshold(10000, 50, 1000)


def _policy(files: list[str]):
    """The composed policy of the --policy files (None: none given).
    Raises PolicyError."""
    if not files:
        return None
    from sentry.policy import compose, load_policy_file

    return compose(*(load_policy_file(f) for f in files))


def _strace_options(args: argparse.Namespace) -> dict[str, object]:
    """Config fields for the --strace* flags; any of them turns tracing on."""
    traced = args.strace or any(v is not None for v in (args.strace_log, args.strace_json, args.strace_syscalls))
    if not traced:
        return {}
    from sentry.strace import parse_syscall_list

    text_log = args.strace_log or ("-" if args.strace or args.strace_json is None else None)
    names = tuple(sorted(parse_syscall_list(args.strace_syscalls))) if args.strace_syscalls is not None else None
    return {"strace": True, "strace_log": text_log, "strace_json": args.strace_json,
            "strace_log_size": max(0, args.strace_log_size), "strace_syscalls": names}


def cmd_platforms(args: argparse.Namespace) -> int:
    from platforms import base

    for name in base.names():
        ok, why = base.lookup(name).available()
        print(f"{name:8} {'available' if ok else 'unavailable':12} {why}")
    for name, why in base.load_errors().items():
        print(f"{name:8} {'unavailable':12} {why}")
    return 0


def cmd_syscalls(args: argparse.Namespace) -> int:
    from sentry.syscalls.table import listing

    rows = listing()
    counts: dict[str, int] = {}
    for nr, name, status, note in rows:
        key = status.split()[0]
        counts[key] = counts.get(key, 0) + 1
        print(f"{nr:4} {name:24} {status:16} {note}".rstrip())
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"run": cmd_run, "platforms": cmd_platforms, "syscalls": cmd_syscalls,
               "trace": tracecmd.cmd_trace, "bench": bench.cmd_bench}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
