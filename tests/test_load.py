"""Load, on every platform: 64 processes x 4 threads doing pipes, futexes
and file I/O in one sandbox finish with the right results
(progs/load_workers.c checks them); 20 sandboxes started at once all
finish; after each, no stub process remains."""
from __future__ import annotations

import subprocess
import sys

from conftest import _clean_env
from test_escape import leaked_stubs
from test_processes import _stubs


def test_64_processes_of_4_threads(sentry, cprog):
    before = _stubs()
    got = sentry.run(cprog("load_workers"), "64", "200", options=("--timeout", "240"), timeout=300)
    assert got.stdout == b"processes 64 ok 64\n", got.stderr[-2000:]
    assert got.returncode == 0
    assert not leaked_stubs(before)


def test_20_sandboxes_in_parallel(sentry, cprog):
    before = _stubs()
    prog = cprog("load_workers")
    procs = [subprocess.Popen([sys.executable, "-m", "sentry", "run", "--platform", sentry.platform, "--timeout", "240",
                               "--", prog, "2", str(50 + i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=_clean_env())
             for i in range(20)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    for (out, err), code in results:
        assert (code, out) == (0, b"processes 2 ok 2\n"), err[-2000:]
    assert not leaked_stubs(before)
