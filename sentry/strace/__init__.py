"""strace for the Sentry: every guest system call, decoded, as it happens.

In a nutshell: ``make_tracer(config)`` returns a ``Tracer``; the run loop
calls ``tracer.enter(task, entry, args)`` before each system call handler
and the callable it returns after (``sentry.kernel.run``). With
``--strace`` off there is no tracer and the run loop pays one ``is not
None`` test per call.
Arguments are decoded from the system-call table's ``Arg`` kinds
(``decode``), with per-call plans built once per system call number.
``Tracer.event(task, kind, detail)`` is the kernel's hook for process
events (exec, exit, signal, clone).

Modules: ``names`` (errno, signal, flag names), ``decode`` (arguments →
text), ``tracer`` (the Tracer and its sinks), ``tracefile`` (reading traces
back: ours and strace(1)'s, for ``sentry trace``).

Text output (``--strace``, to stderr or ``--strace-log FILE``) follows
gVisor's ``runsc --strace``: an entry and an exit line per call::

    I1122 04:51:02.123456  [   1:   1] ls E openat(AT_FDCWD /home, 0x7f3a0b1 "/usr/lib", 0x90800 (O_RDONLY|...), 0o0)
    I1122 04:51:02.123789  [   1:   1] ls X openat(AT_FDCWD /home, 0x7f3a0b1 "/usr/lib", ...) = 3 (0x3) (45.1µs)
    I1122 04:51:02.124000  [   1:   1] ls X openat(...) = -2 (0xfffffffffffffffe) errno=2 (ENOENT) (12µs)
    I1122 04:51:02.130000  [   1:   1] ls P exit(status=0 (exited 0))

(``[pid:tid] comm``, E entry / X exit / P process event; durations in Go's
notation; buffers and strings cut at ``--strace-log-size`` bytes.)

JSON output (``--strace-json FILE``): one object per line, schema version
``v`` = 1, described by the JSON Schema in ``schema.json`` beside this file
(stable: fields are only ever added, with a new ``v`` if a meaning changes).
A call's record is written when it completes, so records appear in
completion order (per thread that is entry order; sort by ``ts_ns`` for the
global entry order); a call that never returns (exit, exit_group) is
written on entry.
Every record has ``v``, ``type``, ``ts_ns`` (wall clock, ns since the
epoch, at entry), ``pid``, ``tid`` and ``comm``. Then by ``type``:

- ``"syscall"``: ``nr``, ``name``, ``args`` (decoded, as in the text log),
  ``raw_args`` (the registers as hex strings: exact for 64-bit values),
  ``result`` (what the guest got, -errno on failure; null if the call
  never returned, as a successful exit_group), ``errno`` (``"ENOENT"`` or
  null), ``duration_ns`` (handler time; null if it never returned).
- ``"exec"``, ``"exit"``, ``"signal"``, ``"clone"``: ``detail``, an object
  (exec: ``path``, ``argv``; exit: ``status``, a wait(2) status; signal:
  ``signo``...).
"""
from __future__ import annotations

import atexit
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentry.config import Config
    from sentry.strace.tracer import Tracer

__all__ = ["TraceError", "make_tracer", "parse_syscall_list"]  # the tracer module loads only when tracing

DEFAULT_LOG_SIZE = 1024


class TraceError(Exception):
    """A trace cannot be set up (bad system call name, unwritable file):
    the message is one line for the user."""


def parse_syscall_list(text: str) -> frozenset[str]:
    """``"openat,read"`` → the names; TraceError on an unknown name."""
    from abi.sysnr import NUMBERS

    wanted = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(n for n in wanted if n not in NUMBERS)
    if unknown:
        raise TraceError(f"--strace-syscalls: unknown system call {', '.join(unknown)}")
    if not wanted:
        raise TraceError("--strace-syscalls: empty list")
    return wanted


def make_tracer(config: "Config") -> "Tracer":
    """The tracer ``config`` asks for: text to ``config.strace_log`` ("-":
    stderr, if it is open; None: no text log), JSON to ``config.strace_json``
    (None: none).
    Raises TraceError if a file cannot be opened. Call ``close()`` when
    the sandbox ends (it also runs at exit)."""
    from abi.sysnr import NUMBERS
    from sentry.strace.tracer import JsonSink, TextSink, Tracer

    only = None
    if config.strace_syscalls is not None:
        only = frozenset(NUMBERS[n] for n in parse_syscall_list(",".join(config.strace_syscalls)))
    files = []
    try:
        text = None
        if config.strace_log == "-":  # no sys.stderr: Python started with fd 2 closed, nowhere to write
            text = TextSink(sys.stderr, flush_each=True) if sys.stderr is not None else None
        elif config.strace_log is not None:
            files.append(open(config.strace_log, "w", encoding="utf-8"))
            text = TextSink(files[-1], flush_each=False)
        jsonl = None
        if config.strace_json is not None:
            files.append(open(config.strace_json, "w", encoding="utf-8"))
            jsonl = JsonSink(files[-1], flush_each=False)
    except OSError as e:
        for f in files:
            f.close()
        raise TraceError(f"cannot write trace {e.filename}: {e.strerror}") from None
    tracer = Tracer(text, jsonl, config.strace_log_size, only)
    for f in files:
        tracer.own(f)
    atexit.register(tracer.close)  # the files are complete however the Sentry ends (but SIGKILL)
    return tracer
