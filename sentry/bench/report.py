"""Presenting a `sentry bench` results document (``suite.run``): a text
table, the JSON document itself, and an SVG bar chart written by hand
(bars of the ratio to native on a log scale, one group per benchmark)."""
from __future__ import annotations

import json
import math
from typing import Any, TextIO
from xml.sax.saxutils import escape

COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ns" and value >= 100_000:
        return f"{value / 1000:,.0f} us"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"


def _x(ratio: float | None) -> str:
    return f"({ratio:.1f}x)" if ratio is not None else ""


def text(doc: dict[str, Any], out: TextIO) -> None:
    """The table: medians per target, with the ratio to native; then the
    getppid round trip against the C floors and runsc; then the notes."""
    names = [t["name"] for t in doc["targets"] if t["available"]]
    title = {"native": "native", "runsc": "runsc ptrace"}
    s = doc["settings"]
    print(f"sentry bench{' --quick' if doc['quick'] else ''}: medians (micro: {s['micro_runs']} runs in the guest, "
          f"CPU 0; workloads: {s['workload_reps']} runs, wall time); (Nx) = ratio to native", file=out)
    width = 20
    print(f"{'':34}" + "".join(f"{title.get(n, 'sentry ' + n):>{width}}" for n in names), file=out)
    for b in doc["benchmarks"]:
        cells = []
        for n in names:
            v = b["median"].get(n)
            cell = _fmt(v, b["unit"]) + ("" if n == "native" else " " + _x(b["ratio_to_native"].get(n)))
            cells.append(f"{cell.strip():>{width}}")
        print(f"{b['title']:34}" + "".join(cells), file=out)
    ours = [n for n in names if n not in ("native", "runsc")]
    if "runsc" in names and ours:
        print("\nratio to runsc ptrace (below 1: faster than gVisor)", file=out)
        print(f"{'':34}" + "".join(f"{'sentry ' + n:>{width}}" for n in ours), file=out)
        for b in doc["benchmarks"]:
            cells = [b["ratio_to_runsc"].get(n) for n in ours]
            print(f"{b['title']:34}" + "".join(f"{'-' if r is None else f'{r:.2f}x':>{width}}" for r in cells),
                  file=out)
    if doc["floors"]:
        print(f"\ngetppid round trip vs the C floor of each mechanism and vs runsc "
              f"(median of {doc['floors'][0]['rounds']} interleaved rounds)", file=out)
        for f in doc["floors"]:
            ours = _fmt(f["sentry_ns"], "ns")
            floor = _fmt(f["floor_ns"], "ns")
            line = (f"  {'sentry ' + f['label']:24} {ours:>10}   floor {f['floor']} {'CPU 0' if f['pinned_cpu0'] else 'unpinned'}"
                    f" {floor}")
            if f["ratio_to_floor"] is not None:
                line += f" -> {f['ratio_to_floor']:.2f}x floor"
            if f["ratio_to_runsc"] is not None:
                line += f", {f['ratio_to_runsc']:.2f}x runsc"
            print(line, file=out)
    for note in doc["notes"]:
        print(f"note: {note}", file=out)


def dump_json(doc: dict[str, Any], out: TextIO) -> None:
    json.dump(doc, out, indent=1, allow_nan=False)
    out.write("\n")


def svg(doc: dict[str, Any]) -> str:
    """A grouped horizontal bar chart of each target's ratio to native
    (log scale), labelled with the median; missing figures are left out."""
    names = [t["name"] for t in doc["targets"] if t["available"] and t["name"] != "native"]
    colour = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(names)}
    ratios = [r for b in doc["benchmarks"] for r in b["ratio_to_native"].values() if r]
    top = max([10.0, *ratios])
    decades = max(1, math.ceil(math.log10(top)))
    left, bar_w, bar_h, gap = 250, 520, 14, 12
    group_h = bar_h * max(1, len(names)) + gap
    height = 70 + group_h * len(doc["benchmarks"]) + 30
    width = left + bar_w + 170

    def x_of(ratio: float) -> float:
        return left + bar_w * max(0.0, math.log10(max(ratio, 1.0))) / decades

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             '<text x="10" y="18" font-size="14" font-weight="bold">sentry bench: slowdown vs native '
             '(log scale; label = median)</text>']
    for i, n in enumerate(names):
        parts.append(f'<rect x="{10 + i * 130}" y="30" width="12" height="12" fill="{colour[n]}"/>'
                     f'<text x="{26 + i * 130}" y="40">{escape(n if n == "runsc" else "sentry " + n)}</text>')
    y0 = 60
    for d in range(decades + 1):
        x = left + bar_w * d / decades
        parts.append(f'<line x1="{x:.1f}" y1="{y0 - 4}" x2="{x:.1f}" y2="{height - 25}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{10 ** d:g}x</text>')
    for g, b in enumerate(doc["benchmarks"]):
        gy = y0 + g * group_h
        native = _fmt(b["median"].get("native"), b["unit"])
        parts.append(f'<text x="{left - 8}" y="{gy + group_h / 2 - 2:.1f}" text-anchor="end">{escape(b["title"])}</text>'
                     f'<text x="{left - 8}" y="{gy + group_h / 2 + 11:.1f}" text-anchor="end" fill="#666">'
                     f'native {escape(native)}</text>')
        for i, n in enumerate(names):
            ratio = b["ratio_to_native"].get(n)
            y = gy + i * bar_h
            if ratio is None:
                continue
            x = x_of(ratio)
            label = f"{_fmt(b['median'].get(n), b['unit'])} ({ratio:.1f}x)"
            parts.append(f'<rect x="{left}" y="{y}" width="{x - left:.1f}" height="{bar_h - 2}" fill="{colour[n]}"/>'
                         f'<text x="{x + 4:.1f}" y="{y + bar_h - 4}">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
