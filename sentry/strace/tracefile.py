"""Reading traces back, for ``sentry trace``: ours and strace(1)'s.

In a nutshell: ``load(path)`` sniffs the format and returns ``Record``s,
one per system call (entry and exit merged) or process event, in file
order:

- ``json``: our ``--strace-json`` lines (schema.json);
- ``runsc``: our ``--strace`` text log, which is also gVisor's
  ``runsc --strace`` format (``[pid:tid] comm E|X|P ...``), alone or in
  runsc's whole debug log (``runsc --debug --strace``: its *.boot.txt,
  where the first of them may come hundreds of lines in);
- ``strace``: strace(1) text, as written by ``strace -f -o FILE``, with or
  without ``-t``/``-tt``/``-ttt`` timestamps and ``-T`` durations, with
  ``<unfinished ...>``/``resumed>`` pairs merged.

A line that fits none of them is skipped and counted in
``Trace.skipped``; a file that yields no record at all is a
``TraceFormatError`` (one line for the user).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from sentry.strace.names import ERRNO_NUMBERS, SIGNAL_NUMBERS, errno_name

_MAX_ERRNO = 4095


class TraceFormatError(Exception):
    """The file is not a trace we can read."""


@dataclass
class Record:
    """One system call or process event of a trace.

    ``kind``: "syscall" or an event type (exec, exit, signal, clone);
    ``name``: the system call's name, or the event type; ``result``: what
    the caller got (-errno on failure), None if it never returned;
    ``detail``: for events, e.g. {"status": 0} or {"signal": "SIGSEGV"}."""

    kind: str
    pid: int
    tid: int
    name: str
    args: str = ""
    result: int | None = None
    errno: str | None = None
    duration_ns: int | None = None
    comm: str = ""
    detail: dict[str, object] = field(default_factory=dict)

    def show(self) -> str:
        """The record on one line, strace-style."""
        if self.kind != "syscall":
            return f"{self.kind}({', '.join(f'{k}={v}' for k, v in self.detail.items())})"
        if self.result is None:
            res = "?"
        elif self.errno is not None:
            res = f"-1 {self.errno}"
        else:
            res = str(self.result)
        return f"{self.name}({self.args}) = {res}"


@dataclass
class Trace:
    path: str
    format: str
    records: list[Record]
    skipped: int = 0


def load(path: str) -> Trace:
    """Read a trace file. Raises OSError, TraceFormatError."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        fmt, reader = "json", _read_json
    elif any(_RUNSC_LINE.match(line) for line in lines):
        fmt, reader = "runsc", _read_runsc
    else:
        fmt, reader = "strace", _read_strace
    records, skipped = reader(lines)
    if not records:
        raise TraceFormatError(f"{path}: no system calls found (not a JSON, runsc or strace trace)")
    return Trace(path, fmt, records, skipped)


# ------------------------------------------------------------ json

def _read_json(lines: list[str]) -> tuple[list[Record], int]:
    out: list[Record] = []
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            kind = obj["type"]
            if kind == "syscall":
                out.append(Record("syscall", obj["pid"], obj["tid"], obj["name"], ", ".join(obj["args"]),
                                  obj["result"], obj["errno"], obj["duration_ns"], obj["comm"]))
            else:
                out.append(Record(kind, obj["pid"], obj["tid"], kind, comm=obj["comm"], detail=dict(obj["detail"])))
        except (ValueError, KeyError, TypeError):
            skipped += 1
    return out, skipped


# ------------------------------------------------------------ runsc text

_RUNSC = re.compile(r"\[\s*(\d+):\s*(\d+)\] (.*?) ([EXP]) (\w+)\((.*)$")
# What tells a runsc-format trace: a line that is one from its start, after
# the glog header (ours ``I1206 03:38:42.226844  ``, runsc's with its pid and
# source ``I1206 03:38:42.226844   11954 strace.go:561] ``). Anchored, so an
# strace(1) trace of a program printing such lines is never taken for one.
_RUNSC_LINE = re.compile(r"(?:[IWEFD]\d{4} [\d:.]+ +(?:\d+ [\w.-]+:\d+\] )?)?\[\s*\d+:\s*\d+\] .*? [EXP] \w+\(")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|µs|us|ns|h|m|s)")
_GO_UNITS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "µs": 1e3, "us": 1e3, "ns": 1.0}


def parse_go_duration(text: str) -> int | None:
    """ns in a Go duration (``45.1µs``, ``1m2.5s``); None if it is not one."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return round(sum(float(n) * _GO_UNITS[u] for n, u in parts))


# ``3 (0x3) (45.1µs)``; a failure: ours ``-2 (0x...fffe) errno=2 (ENOENT) (12µs)``,
# runsc's ``0 (0x0) errno=2 (no such file or directory) (12µs)``.
_RUNSC_RESULT = re.compile(r"^(-?\d+) \(0x[0-9a-f]+\)(?: errno=(\d+) \([^()]*\))? \(([^()]*)\)$")


def _read_runsc(lines: list[str]) -> tuple[list[Record], int]:
    out: list[Record] = []
    entered: dict[int, int] = {}  # tid -> index in out of its unfinished call
    skipped = 0
    for line in lines:
        m = _RUNSC.search(line)
        if m is None:
            skipped += bool(line.strip())
            continue
        pid, tid, comm, what, name, rest = int(m[1]), int(m[2]), m[3], m[4], m[5], m[6]
        if what == "P":
            detail: dict[str, object] = {}
            status = re.search(r"status=(\d+)", rest)
            if status:
                detail["status"] = int(status[1])
            signo = re.search(r"signo=(\d+)", rest)
            if signo:
                detail["signo"] = int(signo[1])
            out.append(Record(name, pid, tid, name, comm=comm, detail=detail))
        elif what == "E":
            entered[tid] = len(out)
            out.append(Record("syscall", pid, tid, name, rest[:-1] if rest.endswith(")") else rest, comm=comm))
        else:
            cut = rest.rfind(") = ")
            r = _RUNSC_RESULT.match(rest[cut + 4:]) if cut >= 0 else None
            if r is None:
                skipped += 1
                continue
            index = entered.pop(tid, None)
            rec = out[index] if index is not None and out[index].name == name else None
            if rec is None:
                rec = Record("syscall", pid, tid, name, comm=comm)
                out.append(rec)
            rec.args = rest[:cut]
            if r[2] is not None:
                rec.result, rec.errno = -int(r[2]), errno_name(int(r[2]))
            else:
                rec.result = int(r[1])
            rec.duration_ns = parse_go_duration(r[3])
    return out, skipped


# ------------------------------------------------------------ strace(1) text

_STRACE_PREFIX = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(.*)$")
_STRACE_TIME = re.compile(r"^(\d+:\d+:\d+(?:\.\d+)?|\d+\.\d+)\s+(.*)$")
_STRACE_CALL = re.compile(r"^(\w+)\((.*)$")
_STRACE_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>\s?(.*)$")
_STRACE_EXIT = re.compile(r"^\+\+\+ (?:exited with (\d+)|killed by (SIG\w+)( \(core dumped\))?) \+\+\+$")
_STRACE_SIGNAL = re.compile(r"^--- (SIG\w+) ")
_STRACE_RESULT = re.compile(r"^(\?|0x[0-9a-f]+|-?\d+)(?:<[^>]*>)?(?: (E[A-Z0-9_]+) \(.*?\))?.*?(?: <(\d+\.\d+)>)?$")
_UNFINISHED = " <unfinished ...>"


def _read_strace(lines: list[str]) -> tuple[list[Record], int]:
    out: list[Record] = []
    pending: dict[int, tuple[str, str]] = {}  # pid -> (name, args so far)
    skipped = 0
    for line in lines:
        pid = 0
        body = line.rstrip()
        m = _STRACE_PREFIX.match(body)
        if m:
            pid, body = int(m[1]), m[2]
        t = _STRACE_TIME.match(body)
        if t:
            body = t[2]
        if not body or body.startswith("strace: "):
            continue
        if body.endswith(_UNFINISHED):
            c = _STRACE_CALL.match(body[:-len(_UNFINISHED)])
            if c:
                pending[pid] = (c[1], c[2].rstrip(", "))
            else:
                skipped += 1
            continue
        e = _STRACE_EXIT.match(body)
        if e:
            status = int(e[1]) << 8 if e[1] is not None else SIGNAL_NUMBERS.get(e[2], 0) | (0x80 if e[3] else 0)
            out.append(Record("exit", pid, pid, "exit", detail={"status": status}))
            continue
        s = _STRACE_SIGNAL.match(body)
        if s:
            out.append(Record("signal", pid, pid, "signal", detail={"signo": SIGNAL_NUMBERS.get(s[1], 0)}))
            continue
        r = _STRACE_RESUMED.match(body)
        if r:
            name, before = pending.pop(pid, (r[1], ""))
            rest = r[2]
            joined = f"{before}, {rest}" if before and rest and not rest.startswith(")") else before + rest
            body = f"{name}({joined}"
        c = _STRACE_CALL.match(body)
        cut = body.rfind(" = ")
        if c is None or cut < 0:
            skipped += 1
            continue
        head, res = body[:cut].rstrip(), body[cut + 3:]
        name, args = c[1], head[len(c[1]) + 1:]
        if args.endswith(")"):
            args = args[:-1]
        rm = _STRACE_RESULT.match(res)
        if rm is None:
            skipped += 1
            continue
        result: int | None
        err = rm[2]
        if rm[1] == "?":
            result = None
        elif err is not None:
            result = -ERRNO_NUMBERS.get(err, _MAX_ERRNO)
        else:
            result = int(rm[1], 16 if rm[1].startswith("0x") else 10)
        dur = round(float(rm[3]) * 1e9) if rm[3] else None
        out.append(Record("syscall", pid, pid, name, args, result, err, dur))
    for pid, (name, args) in pending.items():  # never resumed (exit_group, killed)
        out.append(Record("syscall", pid, pid, name, args))
    return out, skipped
