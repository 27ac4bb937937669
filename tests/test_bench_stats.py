"""`sentry run --stats`: exact call counts, faults and signals on every
platform, and a time split of finite, non-negative figures."""
from __future__ import annotations

import re


def _stats(stderr: bytes) -> dict[str, str]:
    text = stderr.decode()
    assert text.count("sentry stats:") == 1, text
    lines = text[text.index("sentry stats:"):].splitlines()
    return {"head": lines[0], **{line.split()[0]: line for line in lines[1:5]}}


def test_stats_counts_calls_exactly(sentry, cprog):
    # getppid_loop N RUNS: one call for the expected value, N/10 warm-up, N per run
    r = sentry.run(cprog("getppid_loop"), "1000", "2", options=("--stats",))
    assert r.returncode == 0, r.stderr
    s = _stats(r.stderr)
    assert f"platform {sentry.platform}, 1 tasks" in s["head"]
    assert re.search(r"\(getppid 2101\b", s["system"]), s["system"]
    assert re.search(r"faults\s+0$", s["faults"])
    times = dict(re.findall(r"(guest|switch|Sentry|waiting) (\S+)", s["time"]))
    assert set(times) == {"guest", "switch", "Sentry", "waiting"}
    assert all(0 <= float(v) < 1e6 for v in times.values()), times


def test_stats_counts_faults_and_signals(sentry, cprog):
    r = sentry.run(cprog("segv"), options=("--stats",))
    assert r.returncode == 139
    s = _stats(r.stderr)
    assert re.search(r"faults\s+1\s+\(SIGSEGV 1\)", s["faults"]), s["faults"]
    assert re.search(r"signals\s+1\s+\(SIGSEGV 1\)", s["signals"]), s["signals"]


def test_stats_counts_handled_signals_over_processes(sentry):
    script = "trap 'echo got' USR1; kill -USR1 $$; kill -USR1 $$; /bin/true"
    r = sentry.run("/bin/sh", "-c", script, options=("--stats",))
    assert r.returncode == 0 and r.stdout == b"got\ngot\n", r.stderr
    s = _stats(r.stderr)
    assert "2 tasks" in s["head"]
    assert re.search(r"SIGUSR1 2\b", s["signals"]), s["signals"]


def test_no_stats_without_the_flag(sentry):
    r = sentry.run("/bin/true")
    assert r.returncode == 0 and b"sentry stats" not in r.stderr
