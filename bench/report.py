"""Summarize the runs (medians across rounds), print the table and write the JSON record."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "ratios", "summarize", "table", "write_json"]

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = (  # title, row key, format
    ("protocol", "protocol", "{}"),
    ("req/s", "rps", "{:.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("MB/s", "mb_per_s", "{:.1f}"),
    ("proxy CPU s/10k req", "cpu_s_per_10k", "{:.2f}"),
    ("proxy peak RSS MiB", "peak_rss_mib", "{:.1f}"),
    ("proxy CPU s/GiB", "cpu_s_per_gib", "{:.2f}"),
    ("proxy busy", "busy", "{:.0%}"),
)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if key in run]
    return statistics.median(values) if values else None


def summarize(name: str, runs: list[dict[str, Any]], dl: dict[str, Any] | None) -> dict[str, Any]:
    """One table row: medians of the load rounds, the download's MB/s, the peak RSS over all."""
    peaks = [run["peak_rss_mib"] for run in runs] + ([dl["peak_rss_mib"]] if dl else [])
    row: dict[str, Any] = {
        "protocol": name,
        "rps": _median(runs, "rps"),
        "p50_ms": _median(runs, "p50_ms"),
        "p99_ms": _median(runs, "p99_ms"),
        "failed": sum(run["failed"] for run in runs),
        "mb_per_s": dl["mb_per_s"] if dl and dl["ok"] else None,
        "cpu_s_per_10k": _median(runs, "cpu_s_per_10k"),
        "peak_rss_mib": max(peaks) if peaks else None,
        "cpu_s_per_gib": dl["cpu_s_per_gib"] if dl and dl["ok"] else None,
        "busy": _median(runs, "busy"),
    }
    if name == "origin":  # the watched process was nginx, not the proxy: keep it out of the table
        row["origin_cpu_s_per_10k"] = row.pop("cpu_s_per_10k")
        row["origin_peak_rss_mib"] = row.pop("peak_rss_mib")
        row["origin_cpu_s_per_gib"] = row.pop("cpu_s_per_gib")
        row["origin_busy"] = row.pop("busy")
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table; "-" where a figure does not apply or was not measured."""
    cells = [[title for title, _, _ in COLUMNS]]
    for row in rows:
        values = [(row.get(key), fmt) for _, key, fmt in COLUMNS]
        cells.append(["-" if value is None else fmt.format(value) for value, fmt in values])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    text = [_line(cells_line, widths) for cells_line in cells]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


RATIOS = (  # title, row key: quicproxy's figure divided by the other proxy's
    ("CPU s/10k req", "cpu_s_per_10k"),
    ("CPU s/GiB", "cpu_s_per_gib"),
    ("MB/s", "mb_per_s"),
    ("req/s", "rps"),
    ("peak RSS", "peak_rss_mib"),
)


def ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str:
    """quicproxy / other, per protocol both ran (below 1.0: quicproxy spends or has less)."""
    by_name = {row["protocol"]: row for row in theirs}
    cells = [["protocol", *(title for title, _ in RATIOS)]]
    for row in ours:
        other = by_name.get(row["protocol"])
        if other is None:
            continue
        line = [row["protocol"]]
        for _, key in RATIOS:
            a, b = row.get(key), other.get(key)
            line.append(f"{a / b:.2f}x" if a is not None and b else "-")
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    text = [_line(line, widths) for line in cells]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


def _line(cells: list[str], widths: list[int]) -> str:
    """The first column left-aligned, the figures right-aligned."""
    pairs = zip(cells, widths, strict=True)
    return " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(pairs))


def write_json(record: dict[str, Any], started: float) -> Path:
    """bench/results/<UTC timestamp>.json (the directory is gitignored)."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path
