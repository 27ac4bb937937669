"""`sentry bench`: the standard benchmarks, natively, on every available
platform and under gVisor's runsc, in one run.

    sentry bench [--platforms all|P,Q] [--quick] [--json] [--plot FILE.svg] [--floors DIR]

In a nutshell: ``suite`` builds the micro-benchmark program
(``progs/micro.c``: getppid, open/read/close, fork+exec, mmap/munmap, pipe
ping-pong, thread create/join) and the C floors, runs each benchmark on
each target (native, ``sentry run --platform P``, ``runsc
--platform=ptrace do``) and returns one document of medians and ratios;
``report`` prints it as a table or JSON and draws the SVG. This machine is
shared and noisy: only ratios within one run mean anything, and none of
these figures is ever a pass/fail criterion (tests check structure only).
``--quick`` takes fewer, shorter runs (well under a minute).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

__all__ = ["FLOORS", "add_parser", "cmd_bench"]

# The C floors' sources (DEVELOPERS.md's ../shared/floors, beside the checkout).
FLOORS = pathlib.Path(__file__).resolve().parent.parent.parent.parent / "shared" / "floors"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark every platform against native and runsc")
    p.add_argument("--platforms", default="all", metavar="all|P,Q",
                   help="platforms to measure (default: all registered)")
    p.add_argument("--quick", action="store_true", help="fewer, shorter runs (well under a minute)")
    p.add_argument("--json", action="store_true", help="print one JSON document with every figure instead of the table")
    p.add_argument("--plot", metavar="FILE.svg", default=None, help="also draw the ratios to native as an SVG chart")
    p.add_argument("--floors", metavar="DIR", default=str(FLOORS),
                   help=f"sources of the C floors (default {FLOORS}; skipped with a note when absent)")


def cmd_bench(args: argparse.Namespace) -> int:
    from platforms import base
    from sentry.bench import report, suite

    platforms = None
    if args.platforms != "all":
        platforms = tuple(p for p in args.platforms.split(",") if p)
        known = set(base.names()) | set(base.load_errors())
        unknown = [p for p in platforms if p not in known]
        if unknown or not platforms:
            print(f"sentry: bench: unknown platform {','.join(unknown) or repr(args.platforms)} "
                  f"(have: {', '.join(sorted(known))})", file=sys.stderr)
            return 2
    if args.plot is not None and not pathlib.Path(args.plot).resolve().parent.is_dir():
        print(f"sentry: bench: --plot {args.plot}: no such directory", file=sys.stderr)
        return 2
    options = suite.Options(quick=args.quick, platforms=platforms, floors=pathlib.Path(args.floors))
    doc = suite.run(options)
    if args.json:
        report.dump_json(doc, sys.stdout)
    else:
        report.text(doc, sys.stdout)
    if args.plot is not None:
        try:
            pathlib.Path(args.plot).write_text(report.svg(doc))
        except OSError as e:
            print(f"sentry: bench: --plot {args.plot}: {e.strerror}", file=sys.stderr)
            return 1
    return 0
