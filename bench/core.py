"""The core benchmarks, now `sentry bench` (sentry/bench): kept as a thin
wrapper so `python3 bench/core.py [--quick] [--json] [--plot FILE.svg]`
still works from a checkout."""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from sentry.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
