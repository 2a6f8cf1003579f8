"""Drive the external load tools: h2load (h1, h2), curl (h1, h2 downloads), gtlsclient (h3)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .stats import Download, Load

__all__ = ["curl_download", "gtls_download", "h2load", "h3load", "h3load_download", "which"]

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s)")
_REQUESTS = re.compile(r"requests: (\d+) total, .*? (\d+) succeeded, (\d+) failed, (\d+) errored")
SLACK = 30.0  # seconds a tool may run beyond its nominal duration before it is killed


def which(name: str) -> str | None:
    """The tool's path, looking in sbin too (nginx lives there on Debian)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def _seconds(value: str, unit: str) -> float:
    return float(value) / 1000 if unit == "ms" else float(value)


def h2load(
    url: str, *, h1: bool, connections: int, streams: int, duration: float, max_requests: int
) -> Load:
    """h2load for ``duration`` seconds (h1: ``--h1``, one request at a time per connection),
    or until ``max_requests`` when ``duration`` is 0; latency from its per-request log."""
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = Path(tmp) / "requests.log"
        args = ["h2load", "-c", str(connections), "-m", str(1 if h1 else streams)]
        args += ["-D", f"{duration:g}"] if duration > 0 else ["-n", str(max_requests)]
        args += [*(["--h1"] if h1 else []), "--log-file", str(log), url]
        out = subprocess.run(
            args, capture_output=True, text=True, timeout=(duration or 60) + SLACK, check=False
        )
        finished, counts = _FINISHED.search(out.stdout), _REQUESTS.search(out.stdout)
        if not finished or not counts:
            raise RuntimeError(f"h2load output not understood:\n{out.stdout}\n{out.stderr}")
        latencies = []
        failed = 0
        for line in log.read_text().splitlines():
            _start, status, micros = line.split("\t")[:3]
            if status.startswith("2"):
                latencies.append(int(micros) / 1000)
            else:
                failed += 1
    failed = max(failed, int(counts.group(3)) + int(counts.group(4)))
    tool = "h2load --h1" if h1 else "h2load"
    return Load.from_latencies(latencies, failed, _seconds(*finished.groups()), tool)


def h3load(
    port: int, path: str, *, connections: int, streams: int, duration: float, max_requests: int
) -> Load:
    """bench/h3load.py (aioquic) in its own process, so it competes for CPU like h2load does."""
    args = [sys.executable, "-m", "bench.h3load", "--port", str(port), "--path", path]
    args += ["-c", str(connections), "-m", str(streams), "-n", str(max_requests)]
    args += ["--duration", f"{duration:g}", "--json"]
    out = subprocess.run(
        args, capture_output=True, text=True, timeout=(duration or 60) + SLACK, check=False
    )
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RuntimeError(f"h3load failed:\n{out.stdout}\n{out.stderr}") from None
    return Load(
        data["succeeded"],
        data["failed"],
        data["elapsed_s"],
        data["p50_ms"],
        data["p99_ms"],
        "bench.h3load",
    )


def curl_download(url: str, size: int, *, http2: bool, timeout: float) -> Download:
    """Debian's curl into /dev/null; its own byte count and transfer time."""
    version = "--http2" if http2 else "--http1.1"
    args = ["curl", "-sS", "-k", "--noproxy", "*", version, "--max-time", f"{timeout:g}"]
    args += ["-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10, check=False)
    tool = f"curl {version}"
    try:
        status, received, total = out.stdout.split()
    except ValueError:
        return Download(0, size, 0.0, tool, out.stderr.strip() or "no output")
    error = out.stderr.strip() if out.returncode else ""
    if status != "200":
        error = f"status {status}"
    return Download(int(received), size, float(total), tool, error)


def gtls_download(host: str, port: int, path: str, size: int, *, timeout: float) -> Download:
    """ngtcp2's gtlsclient saving into a temp dir; the file size is the truth (its exit status is
    not reliable). Wall time includes process start and the handshake (milliseconds)."""
    with tempfile.TemporaryDirectory(prefix="bench-gtls-") as tmp:
        args = ["gtlsclient", "-q", "--exit-on-all-streams-close", f"--download={tmp}"]
        args += [f"--timeout={max(5, int(timeout))}s", host, str(port)]
        args.append(f"https://{host}:{port}{path}")
        start = time.monotonic()
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
            error = out.stderr.strip()[-300:] if out.returncode else ""
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:g} s"
        elapsed = time.monotonic() - start
        files = list(Path(tmp).iterdir())
        received = files[0].stat().st_size if files else 0
    return Download(received, size, elapsed, "gtlsclient", error)


def h3load_download(port: int, path: str, size: int, *, timeout: float) -> Download:
    """The fallback when gtlsclient is missing: one request through bench/h3load.py."""
    args = [sys.executable, "-m", "bench.h3load", "--port", str(port), "--path", path]
    args += ["-c", "1", "-m", "1", "-n", "1", "--timeout", f"{timeout:g}", "--json"]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as exc:
        return Download(0, size, 0.0, "bench.h3load", f"failed: {exc!r}")
    received = int(data["body_bytes"])
    return Download(received, size, float(data["elapsed_s"]), "bench.h3load")
