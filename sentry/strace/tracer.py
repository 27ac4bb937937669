"""The tracer the run loop calls around every system call, and its sinks.

In a nutshell: ``Tracer.enter(task, entry, args)`` runs before the
handler: it decodes the arguments with the entry's cached ``Plan``, writes
the ``E`` line, notes the time, and returns ``after(result)``, which the
run loop calls after the handler: it decodes what the call filled, writes
the ``X`` line and the JSON record. A filtered-out call returns None and
costs one set lookup. ``Tracer.event`` records process events (exec,
exit, signal...) that the kernel reports.

Lines go to a ``TextSink`` (gVisor's runsc log format) and/or a
``JsonSink`` (one object per line; schema in schema.json). Each write is
one whole line under ``Tracer.lock`` (tasks run on several OS threads).
On stderr each line is flushed at once, to interleave with the guest's
own output; files are buffered (a flush costs a write(2), ~1.7 µs a line
here) and flushed at process events and by ``close``, which ``make_tracer``
also registers to run at exit. A sink whose write or flush fails (EPIPE:
its reader is gone, as under ``| head``; EBADF; ENOSPC) is dropped: tracing
stops there, the guest goes on, and ``failures`` says what happened (``sentry
run`` reports it at the end). A trace can never end the guest.

Lock order: Tracer.lock is a leaf (nothing is taken while holding it;
guest memory is decoded before taking it).
"""
from __future__ import annotations

import atexit
import errno as _errno
import json
import threading
import time
from typing import IO, TYPE_CHECKING, Callable

from abi.sysnr import NAMES
from sentry.kernel.task import ThreadGroup
from sentry.strace import decode, names
from sentry.syscalls.spec import Hex, Status, Syscall

if TYPE_CHECKING:
    from sentry.kernel.task import Task

SCHEMA_VERSION = 1
# Calls that never return to the caller when they succeed: their JSON
# record is written on entry, with a null result.
NORETURN = frozenset({"exit", "exit_group"})
# The key an event's bare detail value is recorded under.
_EVENT_VALUE = {"exec": "path", "exit": "status", "signal": "signo", "clone": "tid"}


def wait_status_text(status: int) -> str:
    """``exited 1`` / ``killed by SIGSEGV (core dumped)`` for a wait(2) status."""
    if status & 0x7F == 0:
        return f"exited {(status >> 8) & 0xFF}"
    core = " (core dumped)" if status & 0x80 else ""
    return f"killed by {names.signal_name(status & 0x7F)}{core}"


# What the text log adds after an event's number: ``status=768 (exited 3)``,
# ``signo=17 (SIGCHLD)`` (JSON keeps the number alone).
_EXPLAIN: dict[tuple[str, str], Callable[[int], str]] = {("exit", "status"): wait_status_text,
                                                         ("signal", "signo"): names.signal_name}


def _detail_text(kind: str, detail: dict[str, object]) -> str:
    parts = []
    for key, value in detail.items():
        if isinstance(value, str):
            shown = decode.quote(value.encode("utf-8", "surrogateescape"))
        elif isinstance(value, (list, tuple)):
            shown = "[" + ", ".join(decode.quote(str(v).encode("utf-8", "surrogateescape")) for v in value) + "]"
        else:
            shown = str(value)
        explain = _EXPLAIN.get((kind, key))
        if explain is not None and isinstance(value, int):
            shown += f" ({explain(value)})"
        parts.append(f"{key}={shown}")
    return ", ".join(parts)


class TextSink:
    """gVisor's strace log lines: ``I1122 04:51:02.123456  [   1:   1] ls E openat(...)``."""

    def __init__(self, out: IO[str], flush_each: bool):
        self.out = out
        self.flush_each = flush_each
        self._second = -1
        self._prefix = ""

    def line(self, ts_ns: int, pid: int, tid: int, comm: str, body: str) -> None:
        sec, ns = divmod(ts_ns, 1_000_000_000)
        if sec != self._second:
            self._second, self._prefix = sec, time.strftime("I%m%d %H:%M:%S", time.localtime(sec))
        self.out.write(f"{self._prefix}.{ns // 1000:06d}  [{pid:4d}:{tid:4d}] {comm} {body}\n")
        if self.flush_each:
            self.out.flush()


class JsonSink:
    """One JSON object per line (schema.json)."""

    def __init__(self, out: IO[str], flush_each: bool):
        self.out = out
        self.flush_each = flush_each

    def record(self, obj: dict[str, object]) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        if self.flush_each:
            self.out.flush()


class Tracer:
    """The run loop calls ``enter`` around each system call, the kernel
    ``event`` at process events. ``only``: the system call numbers to
    trace (None: all). ``log_size``: bytes of each buffer or string shown."""

    def __init__(self, text: TextSink | None, jsonl: JsonSink | None, log_size: int = 1024,
                 only: frozenset[int] | None = None):
        self.text = text
        self.jsonl = jsonl
        self.log_size = log_size
        self.only = only
        self.lock = threading.Lock()
        self._plans: dict[int, decode.Plan] = {}
        self._unknown: dict[int, Syscall] = {}
        self._files: list[IO[str]] = []  # owned, closed by close()
        # Guarded by lock. "where: why" for each sink dropped after a failed write.
        self.failures: list[str] = []

    # ------------------------------------------------------------ calls
    def enter(self, task: "Task", entry: Syscall, args: tuple[int, ...]) -> Callable[[int], None] | None:
        """Before the handler of ``entry`` runs with raw ``args``: returns
        ``after(result)`` to call once it has (None: not traced)."""
        if self.only is not None and entry.number not in self.only:
            return None
        plan = self._plans.get(entry.number)
        if plan is None:
            plan = self._plans[entry.number] = decode.plan(entry, self.log_size)
        shown = [pre(task, args, i) for i, pre in enumerate(plan.pre)]
        ts = time.time_ns()
        pid, tid, comm = task.group.pid, task.tid, task.comm.decode("utf-8", "replace")
        name = entry.name
        if self.text is not None:
            self._line(ts, pid, tid, comm, f"E {name}({', '.join(shown)})")
        if self.jsonl is not None and name in NORETURN:
            self._record(ts, pid, tid, comm, entry, args, shown, None, None)
        start = time.perf_counter_ns()

        def after(result: int) -> None:
            elapsed = time.perf_counter_ns() - start
            failed = -4096 < result < 0
            if not failed:
                for i, post in plan.post:
                    shown[i] = post(task, args, i, result)
            if self.text is not None:
                out = list(shown)
                for i in plan.hide_on_exit:
                    out[i] = "..."
                line = f"X {name}({', '.join(out)}) = {decode.result_text(result, elapsed)}"
                self._line(time.time_ns(), pid, tid, task.comm.decode("utf-8", "replace"), line)
            if self.jsonl is not None:
                self._record(ts, pid, tid, comm, entry, args, shown, result, elapsed)

        return after

    def unknown(self, task: "Task", nr: int, args: tuple[int, ...]) -> Callable[[int], None] | None:
        """Trace a call the table lacks (shown as name(6 hex args))."""
        entry = self._unknown.get(nr)
        if entry is None:
            entry = self._unknown[nr] = Syscall(nr, NAMES.get(nr, f"sys_{nr}"), None, (Hex,) * 6, Status.ERROR,
                                                "not in the table", _errno.ENOSYS, 6)
        return self.enter(task, entry, args)

    def _record(self, ts: int, pid: int, tid: int, comm: str, entry: Syscall, args: tuple[int, ...],
                shown: list[str], result: int | None, elapsed: int | None) -> None:
        failed = result is not None and -4096 < result < 0
        obj = {"v": SCHEMA_VERSION, "type": "syscall", "ts_ns": ts, "pid": pid, "tid": tid, "comm": comm,
               "nr": entry.number, "name": entry.name, "args": shown, "raw_args": [f"{a:#x}" for a in args],
               "result": result, "errno": names.errno_name(-result) if failed else None, "duration_ns": elapsed}
        with self.lock:
            self._write_record(obj)

    def _line(self, ts: int, pid: int, tid: int, comm: str, body: str) -> None:
        with self.lock:
            self._write_line(ts, pid, tid, comm, body)

    def _write_line(self, ts: int, pid: int, tid: int, comm: str, body: str) -> None:
        """One text line, if there is (still) a text sink. Called with lock held."""
        text = self.text
        if text is not None:
            try:
                text.line(ts, pid, tid, comm, body)
            except OSError as e:
                self._drop(text.out, e)

    def _write_record(self, obj: dict[str, object]) -> None:
        """One JSON record, if there is (still) a JSON sink. Called with lock held."""
        jsonl = self.jsonl
        if jsonl is not None:
            try:
                jsonl.record(obj)
            except OSError as e:
                self._drop(jsonl.out, e)

    def _drop(self, out: IO[str], e: OSError) -> None:
        """Writing to ``out`` failed with ``e``: the sink writing there is
        dropped (an owned file is closed, the fd released even if its last
        flush fails) and the failure noted in ``failures``. Called with lock
        held; never raises."""
        if self.text is not None and self.text.out is out:
            self.text = None
        if self.jsonl is not None and self.jsonl.out is out:
            self.jsonl = None
        if out in self._files:
            self._files.remove(out)
            try:
                out.close()
            except OSError:
                pass  # the same failure again: the fd is closed all the same
        self.failures.append(f"{getattr(out, 'name', 'the trace')}: {e.strerror or e}")

    def _flush_files(self) -> None:
        """Flush the owned files (drop those that fail). Called with lock held."""
        for f in list(self._files):
            try:
                f.flush()
            except OSError as e:
                self._drop(f, e)

    # ------------------------------------------------------------ events
    def event(self, subject: "Task | ThreadGroup", kind: str, detail: object) -> None:
        """A process event of a task (or of a whole thread group, e.g. its
        exit). ``kind``: one of schema.json's event types (exec, exit,
        signal, clone). ``detail``: a JSON-able dict, or the kind's one
        natural value: exec the path (str), exit the wait(2) status (int),
        signal the signal number (int)."""
        ts = time.time_ns()
        if isinstance(subject, ThreadGroup):
            pid = tid = subject.pid
            comm = (subject.tasks[0].comm if subject.tasks else subject.exe.rsplit("/", 1)[-1].encode()[:15])
        else:
            pid, tid, comm = subject.group.pid, subject.tid, subject.comm
        if not isinstance(detail, dict):
            detail = {_EVENT_VALUE.get(kind, "value"): detail}
        name = comm.decode("utf-8", "replace")
        with self.lock:
            self._write_line(ts, pid, tid, name, f"P {kind}({_detail_text(kind, detail)})")
            self._write_record({"v": SCHEMA_VERSION, "type": kind, "ts_ns": ts, "pid": pid, "tid": tid,
                                "comm": name, "detail": detail})
            self._flush_files()

    # ------------------------------------------------------------ lifetime
    def own(self, f: IO[str]) -> None:
        """Close ``f`` with the tracer."""
        self._files.append(f)

    def close(self) -> None:
        """Flush and close the trace files; later calls trace nothing.
        Never raises: a file whose last flush fails is noted in ``failures``."""
        with self.lock:
            for f in list(self._files):
                try:
                    f.close()
                except OSError as e:  # its last flush failed
                    self._drop(f, e)
            self._files.clear()
            self.text = self.jsonl = None
        atexit.unregister(self.close)
