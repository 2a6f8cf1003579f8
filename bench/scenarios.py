"""The measured scenarios: small-response load, one large download, the 1 GiB memory check."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import tools
from .procstat import ProcWatch, Usage
from .servers import Origin, Proxy
from .stats import Download, Load

__all__ = ["PROTOCOLS", "Settings", "Target", "big_download", "download", "small_load"]

PROTOCOLS = ("origin", "h1", "h2", "h3")
MIB = 1024 * 1024
GIB = 1024 * MIB
WARMUP_REQUESTS = 300
BIG_GROWTH_LIMIT_MIB = 64  # the 1 GiB check fails if the proxy's RSS grows more than this


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes, counts and durations of one harness run."""

    duration: float = 10.0
    rounds: int = 3
    connections: int = 10
    streams: int = 10
    max_requests: int = 1_000_000
    large_size: int = 256 * MIB
    big_size: int = GIB
    download_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class Target:
    """One row of the table: the origin directly, or the proxy over one protocol."""

    name: str
    origin: Origin
    proxy: Proxy

    @property
    def watched_pid(self) -> int:
        """Whose CPU and memory a scenario records: the proxy's, or nginx's for the ceiling."""
        return self.origin.process.pid if self.name == "origin" else self.proxy.pid

    def url(self, path: str) -> str:
        if self.name == "origin":
            return f"http://127.0.0.1:{self.origin.port}{path}"
        return f"https://127.0.0.1:{self.proxy.port}{path}"

    def load(self, settings: Settings, *, duration: float, requests: int) -> Load:
        """One small-response load run (``duration`` 0: exactly ``requests`` requests)."""
        path = self.origin.small_path
        if self.name == "h3":
            return tools.h3load(
                self.proxy.port,
                path,
                connections=settings.connections,
                streams=settings.streams,
                duration=duration,
                max_requests=requests,
            )
        return tools.h2load(
            self.url(path),
            h1=self.name in ("origin", "h1"),
            connections=settings.connections,
            streams=settings.streams,
            duration=duration,
            max_requests=requests,
        )

    def download(self, size: int, timeout: float) -> Download:
        """One response of ``size`` bytes, with the protocol's download client."""
        path = self.origin.path_for(size)
        if self.name != "h3":
            return tools.curl_download(
                self.url(path), size, http2=self.name == "h2", timeout=timeout
            )
        if tools.which("gtlsclient"):
            return tools.gtls_download("127.0.0.1", self.proxy.port, path, size, timeout=timeout)
        return tools.h3load_download(self.proxy.port, path, size, timeout=timeout)


def _watched(pid: int, action: Callable[[], Any]) -> tuple[Any, Usage]:
    with ProcWatch(pid) as watch:
        result = action()
    assert watch.usage is not None
    return result, watch.usage


def _usage_json(usage: Usage) -> dict[str, float]:
    return {
        "cpu_s": usage.cpu_s,
        "wall_s": usage.wall_s,
        "busy": usage.busy,
        "peak_rss_mib": usage.peak_rss_kib / 1024,
        "start_rss_mib": usage.start_rss_kib / 1024,
    }


def small_load(target: Target, settings: Settings) -> dict[str, Any]:
    """Warm up (unmeasured), then load small responses while watching the proxy (or origin)."""
    target.load(settings, duration=0, requests=WARMUP_REQUESTS)
    load, usage = _watched(
        target.watched_pid,
        lambda: target.load(settings, duration=settings.duration, requests=settings.max_requests),
    )
    per_10k = usage.cpu_s / load.succeeded * 10_000 if load.succeeded else 0.0
    return {**load.to_json(), **_usage_json(usage), "cpu_s_per_10k": per_10k}


def download(target: Target, size: int, timeout: float) -> dict[str, Any]:
    """One large download, watching the proxy's CPU and memory."""
    result, usage = _watched(target.watched_pid, lambda: target.download(size, timeout))
    per_gib = usage.cpu_s / (result.received / GIB) if result.received else 0.0
    return {**result.to_json(), **_usage_json(usage), "cpu_s_per_gib": per_gib}


def big_download(target: Target, settings: Settings) -> dict[str, Any]:
    """The bounded-memory check: ``big_size`` through the proxy; the RSS must stay flat."""
    result = download(target, settings.big_size, settings.download_timeout * 2)
    growth = result["peak_rss_mib"] - result["start_rss_mib"]
    result.update(
        protocol=target.name,
        rss_growth_mib=growth,
        growth_limit_mib=BIG_GROWTH_LIMIT_MIB,
        bounded=result["ok"] and growth < BIG_GROWTH_LIMIT_MIB,
    )
    return result


def progress(message: str) -> None:
    """One line of progress on stderr (stdout carries the table)."""
    print(message, file=sys.stderr, flush=True)
