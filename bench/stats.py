"""Result records and the percentile arithmetic shared by every load tool."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Download", "Load", "percentile"]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])


@dataclass(frozen=True, slots=True)
class Load:
    """A small-response load run: counts, duration and latency percentiles (milliseconds)."""

    succeeded: int
    failed: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @classmethod
    def from_latencies(
        cls, latencies_ms: list[float], failed: int, elapsed_s: float, tool: str
    ) -> Load:
        """Summarize per-request latencies of the successful requests."""
        latencies_ms.sort()
        p50, p99 = percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99)
        return cls(len(latencies_ms), failed, elapsed_s, p50, p99, tool)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps}


@dataclass(frozen=True, slots=True)
class Download:
    """One large download: bytes received (checked against the expected size) and wall time."""

    received: int
    expected: int
    elapsed_s: float
    tool: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.received == self.expected

    @property
    def mb_per_s(self) -> float:
        return self.received / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "mb_per_s": self.mb_per_s}
