"""`sentry trace`: reading system-call traces after the fact.

- ``sentry trace summary FILE``: like ``strace -c``: calls, errors, total
  and mean time per system call, then per process, then which errors.
- ``sentry trace diff A B``: aligns two traces of the same program (two
  platforms, or the sandbox against ``strace -f -o FILE`` of the native
  run) and shows the first divergences with context.

Both read any format ``sentry.strace.tracefile`` knows (our JSON, our or
runsc's text log, strace(1) text).

How diff aligns: each trace is split per thread, threads numbered in order
of first appearance (ids differ between runs, so they are never compared);
each call becomes a token (name, result class), the class being ``ok``,
the errno name, or ``?`` for a call that never returned; exits and signals
are tokens too. Thread n of A is matched to thread n of B with difflib on
those tokens, so addresses, fds, pids, buffer contents and timings never
count as differences. A process's first exec (a record of ours, the
``execve`` line of strace's) is the token ``execve ok`` on both sides.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentry.strace.tracefile import Record, Trace


def add_parser(sub: argparse._SubParsersAction) -> None:
    trace = sub.add_parser("trace", help="summarize or compare system-call traces")
    tsub = trace.add_subparsers(dest="trace_command", required=True, parser_class=type(trace), metavar="summary|diff")
    summary = tsub.add_parser("summary", help="counts, errors and time per system call and per process (strace -c)")
    summary.add_argument("file", help="a trace: --strace-json, --strace-log, runsc --strace or strace -f -o output")
    diff = tsub.add_parser("diff", help="first divergences between two traces of the same program")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--context", type=int, default=3, metavar="N", help="calls of context around each divergence")
    diff.add_argument("--max", type=int, default=5, metavar="N", help="divergences shown (default 5)")
    diff.add_argument("--ignore", default="", metavar="NAMES", help="system calls to leave out (comma-separated)")
    diff.add_argument("--width", type=int, default=200, metavar="N", help="cut shown calls at N characters (0: never)")


def cmd_trace(args: argparse.Namespace) -> int:
    from sentry.strace.tracefile import TraceFormatError, load

    try:
        if args.trace_command == "summary":
            return summary(load(args.file), sys.stdout)
        ignore = frozenset(n.strip() for n in args.ignore.split(",") if n.strip())
        return diff(load(args.a), load(args.b), sys.stdout, args.context, args.max, ignore, args.width)
    except BrokenPipeError:
        raise
    except OSError as e:
        print(f"sentry: trace: {e.filename}: {e.strerror}", file=sys.stderr)
    except TraceFormatError as e:
        print(f"sentry: trace: {e}", file=sys.stderr)
    return 2


# ------------------------------------------------------------ summary

class _Tally:
    __slots__ = ("calls", "errors", "ns", "timed")

    def __init__(self) -> None:
        self.calls = self.errors = self.ns = self.timed = 0

    def add(self, rec: "Record") -> None:
        self.calls += 1
        self.errors += rec.errno is not None
        if rec.duration_ns is not None:
            self.ns += rec.duration_ns
            self.timed += 1

    def mean_us(self) -> str:
        return f"{self.ns / self.timed / 1000:.0f}" if self.timed else "-"


def summary(trace: "Trace", out) -> int:
    calls = [r for r in trace.records if r.kind == "syscall"]
    by_name: dict[str, _Tally] = defaultdict(_Tally)
    by_proc: dict[int, _Tally] = defaultdict(_Tally)
    comm: dict[int, str] = {}
    errors: dict[tuple[str, str], int] = defaultdict(int)
    total = _Tally()
    for r in calls:
        for t in (by_name[r.name], by_proc[r.pid], total):
            t.add(r)
        comm[r.pid] = r.comm  # the latest: after an exec
        if r.errno is not None:
            errors[(r.name, r.errno)] += 1
    timed = total.timed > 0
    w = out.write
    unit = "thread" if trace.format == "strace" else "process"  # strace -f shows thread ids only
    w(f"{trace.path}: {trace.format} trace, {len(calls)} system calls, {len(by_proc)} {unit}"
      f"{'' if len(by_proc) == 1 else 'es' if unit == 'process' else 's'}"
      f"{'' if timed else ' (no durations in this trace)'}\n\n")
    rule = "------ ----------- ----------- --------- --------- ----------------\n"
    w("% time     seconds  usecs/call     calls    errors syscall\n" + rule)
    for name, t in sorted(by_name.items(), key=lambda kv: (-kv[1].ns, -kv[1].calls, kv[0])):
        pct = 100 * t.ns / total.ns if total.ns else 0.0
        w(f"{pct:6.2f} {t.ns / 1e9:11.6f} {t.mean_us():>11} {t.calls:9d} {t.errors or '':>9} {name}\n")
    w(rule)
    w(f"{100.0 if total.ns else 0.0:6.2f} {total.ns / 1e9:11.6f} {total.mean_us():>11} {total.calls:9d} "
      f"{total.errors or '':>9} total\n\n")
    w(f"{'pid' if unit == 'process' else 'tid':>7} comm                calls    errors     seconds  usecs/call\n")
    for pid, t in sorted(by_proc.items()):
        w(f"{pid:7d} {comm.get(pid, '')[:16]:16} {t.calls:8d} {t.errors:9d} {t.ns / 1e9:11.6f} {t.mean_us():>11}\n")
    if errors:
        w("\nerrors:\n")
        for (name, err), n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])):
            w(f"{n:7d} {name} {err}\n")
    return 0


# ------------------------------------------------------------ diff

Token = tuple[str, str]


def _token(rec: "Record") -> Token:
    if rec.kind == "syscall":
        if rec.result is None:
            return (rec.name, "?")
        return (rec.name, rec.errno if rec.errno is not None else "ok")
    if rec.kind == "exit":
        from sentry.strace.tracer import wait_status_text

        status = rec.detail.get("status")
        return ("+++", wait_status_text(status) if isinstance(status, int) else "?")
    if rec.kind == "signal":
        from sentry.strace.names import signal_name

        signo = rec.detail.get("signo")
        return ("---", signal_name(signo) if isinstance(signo, int) else "?")
    return (rec.kind, "")


def threads(trace: "Trace", ignore: frozenset[str]) -> list[tuple[int, list["Record"]]]:
    """(tid, records) per thread in order of first appearance, with what
    the diff leaves out removed and first execs turned into execve calls."""
    from sentry.strace.tracefile import Record

    per: dict[int, list[Record]] = {}
    for r in trace.records:
        seq = per.setdefault(r.tid, [])
        if r.kind == "exec":
            if not seq:  # the process's first image: strace shows it as execve
                seq.append(Record("syscall", r.pid, r.tid, "execve", str(r.detail.get("path", "")), 0, comm=r.comm))
            continue
        if r.kind not in ("syscall", "exit", "signal") or r.name in ignore:
            continue
        seq.append(r)
    return [(tid, seq) for tid, seq in per.items() if seq]


def diff(a: "Trace", b: "Trace", out, context: int = 3, limit: int = 5,
         ignore: frozenset[str] = frozenset(), width: int = 200) -> int:
    """Print the first ``limit`` divergences, each record cut at ``width``
    characters; return 0 if the traces agree, 1 if they differ (as diff(1))."""
    ta, tb = threads(a, ignore), threads(b, ignore)
    w = out.write

    def show(mark: str, r: "Record") -> None:
        text = r.show()
        if width and len(text) > width:
            text = text[:width - 3] + "..."
        w(f"{mark} {text}\n")

    w(f"--- {a.path} ({a.format}, {sum(len(s) for _, s in ta)} records, {len(ta)} threads)\n")
    w(f"+++ {b.path} ({b.format}, {sum(len(s) for _, s in tb)} records, {len(tb)} threads)\n")
    shown = 0
    differ = len(ta) != len(tb)
    if differ:
        w(f"thread count differs: {len(ta)} vs {len(tb)}\n")
    for n, ((tida, ra), (tidb, rb)) in enumerate(zip(ta, tb), 1):
        matcher = difflib.SequenceMatcher(None, [_token(r) for r in ra], [_token(r) for r in rb], autojunk=False)
        hunks = [op for op in matcher.get_opcodes() if op[0] != "equal"]
        if not hunks:
            continue
        differ = True
        w(f"thread #{n} (tid {tida} vs {tidb}): {len(hunks)} divergence{'s' if len(hunks) > 1 else ''}, "
          f"{matcher.ratio():.1%} alike\n")
        for _tag, i1, i2, j1, j2 in hunks:
            if shown == limit:
                w("... (more divergences: --max to see them)\n")
                return 1
            shown += 1
            w(f"@@ {a.path}:{i1 + 1} {b.path}:{j1 + 1} @@\n")
            for r in ra[max(0, i1 - context):i1]:
                show(" ", r)
            for r in ra[i1:i2]:
                show("-", r)
            for r in rb[j1:j2]:
                show("+", r)
            for r in ra[i2:i2 + context]:
                show(" ", r)
    if not differ:
        w("no divergence\n")
    return 1 if differ else 0
