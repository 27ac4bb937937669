"""`sentry bench --quick`: the whole suite runs, every available platform
appears with a finite figure for every benchmark, the JSON, the table and
the SVG hold together. Structure only: never an assertion on speed."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from platforms import base
from sentry.bench import report, suite

MICRO = set(suite.MICRO)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str, str]:
    plot = tmp_path_factory.mktemp("bench") / "bench.svg"
    r = subprocess.run([sys.executable, "-m", "sentry", "bench", "--quick", "--json", "--plot", str(plot)],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), plot.read_text(), r.stderr


def _available() -> list[str]:
    return [n for n in base.names() if base.lookup(n).available()[0]]


def test_every_available_platform_has_every_figure(quick):
    doc, _, _ = quick
    names = {t["name"] for t in doc["targets"] if t["available"]}
    assert {"native", *_available()} <= names
    assert ("runsc" in names) == (shutil.which("runsc") is not None)
    bench_names = {b["name"] for b in doc["benchmarks"]}
    assert MICRO | {"true"} <= bench_names
    for b in doc["benchmarks"]:
        for n in names:
            v = b["median"][n]
            assert isinstance(v, float) and math.isfinite(v) and v > 0, (b["name"], n, v)
            if n != "native":
                assert b["ratio_to_native"][n] == pytest.approx(v / b["median"]["native"])
    assert not [note for note in doc["notes"] if "failed" in note], doc["notes"]


def test_unavailable_platforms_are_noted(quick):
    doc, _, _ = quick
    for t in doc["targets"]:
        assert t["available"] or any(note.startswith(f"{t['name']}: unavailable") for note in doc["notes"])


def test_floors_compare_each_platform(quick):
    doc, _, _ = quick
    if not suite.FLOORS.is_dir():
        assert any("floor" in note for note in doc["notes"])
        return
    rows = {f["platform"]: f for f in doc["floors"]}
    assert set(rows) == set(_available()) & {"ptrace", "vmexec", "kvm"}
    for f in rows.values():
        assert f["floor_ns"] > 0 and f["sentry_ns"] > 0
        assert f["ratio_to_floor"] == pytest.approx(f["sentry_ns"] / f["floor_ns"])


def test_plot_is_svg_with_a_bar_per_figure(quick):
    doc, plot, _ = quick
    root = ET.fromstring(plot)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    others = [t["name"] for t in doc["targets"] if t["available"] and t["name"] != "native"]
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.get("height") == "12" and e.get("x") == "250"]
    assert len(bars) == len(others) * len(doc["benchmarks"])
    texts = " ".join(e.text or "" for e in root.iter("{http://www.w3.org/2000/svg}text"))
    for b in doc["benchmarks"]:
        assert b["title"] in texts


def test_progress_and_table(quick):
    doc, _, stderr = quick
    assert "micro-benchmarks on native" in stderr
    import io

    out = io.StringIO()
    report.text(doc, out)
    table = out.getvalue()
    for n in _available():
        assert f"sentry {n}" in table
    for b in doc["benchmarks"]:
        assert b["title"] in table


def test_bad_arguments_are_one_line_errors(tmp_path):
    for args in (["--platforms", "nosuch"], ["--plot", str(tmp_path / "no" / "dir.svg")]):
        r = subprocess.run([sys.executable, "-m", "sentry", "bench", "--quick", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
