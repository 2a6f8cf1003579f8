"""Sample the running proxy with py-spy while h3 load runs, and name its hottest functions."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .scenarios import Settings, Target, progress

__all__ = ["available", "profile_h3", "record_during", "top_functions"]

RATE = 200  # samples per second


def available() -> bool:
    return shutil.which("py-spy") is not None


def record_during(pid: int, output: Path, action: Callable[[], Any], bound: float) -> str:
    """Run ``action()`` while ``py-spy record`` samples ``pid`` into ``output`` (collapsed
    stacks, one line per stack); returns py-spy's complaint, or "" when the file was written."""
    args = ["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(bound)))]
    args += ["--rate", str(RATE), "--format", "raw", "--function", "--nonblocking"]
    args += ["-o", str(output)]
    spy = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        action()
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            _out, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _out, err = spy.communicate(timeout=5)
    return "" if output.exists() else (err.strip()[-500:] or "py-spy wrote nothing")


def top_functions(folded: Path, limit: int = 15) -> list[dict[str, Any]]:
    """Per function: percent of samples in it (self) and under it (total), from collapsed
    stacks ("frame;frame;... count"). py-spy leaves idle samples out by default."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        count = int(count_text)
        busy += count
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    return [
        {"function": f, "self_pct": 100 * n / busy, "total_pct": 100 * under[f] / busy}
        for f, n in own.most_common(limit)
    ]


def profile_h3(h3: Target, settings: Settings, directory: Path, stamp: str) -> dict[str, Any]:
    """Profile the proxy during an h3 small-response load and during the h3 large download."""
    directory.mkdir(exist_ok=True)
    duration = min(max(settings.duration, 5.0), 15.0)
    cases: dict[str, Callable[[], Any]] = {
        "small": lambda: h3.load(settings, duration=duration, requests=settings.max_requests),
        "download": lambda: h3.download(settings.large_size, settings.download_timeout),
    }
    results: dict[str, Any] = {}
    for name, action in cases.items():
        folded = directory / f"{stamp}-h3-{name}.folded"
        complaint = record_during(h3.proxy.pid, folded, action, settings.download_timeout)
        if complaint:
            progress(f"  profile h3 {name}: py-spy failed: {complaint}")
            results[name] = {"failure": complaint}
        else:
            results[name] = {"folded": str(folded), "top": top_functions(folded)}
    return results


def print_profile(results: dict[str, Any]) -> None:
    """The top functions of each profiled case, on stdout."""
    for name, result in results.items():
        if "top" not in result:
            continue
        print(f"\nproxy under h3 {name}, py-spy top functions by own time ({result['folded']}):")
        for row in result["top"]:
            print(
                f"  {row['self_pct']:5.1f}% self {row['total_pct']:5.1f}% total  {row['function']}"
            )
