"""The run directory shared by the admin process and the workers: metric files and drain state."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DrainState", "RunDirectory", "Sample"]

_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


@dataclass(frozen=True, slots=True)
class DrainState:
    """Backends drained by hand, as ``(upstream, backend)`` pairs; ``version`` grows per change."""

    version: int = 0
    drained: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Sample:
    """One aggregated metric sample: name (with suffix), labels, value."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0


class RunDirectory:
    """``metrics/`` (prometheus-client multiprocess files) and ``drain.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metrics = path / "metrics"
        self.drain_file = path / "drain.json"

    @classmethod
    def create(cls) -> RunDirectory:
        """A fresh directory under the system's temp dir (one per server run)."""
        run = cls(Path(tempfile.mkdtemp(prefix="quicproxy-run-")))
        run.metrics.mkdir()
        return run

    def remove(self) -> None:
        """Delete the directory and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)

    def read_drains(self) -> DrainState:
        """The drain state (empty while none was written, or when the file is unreadable)."""
        try:
            data: Any = json.loads(self.drain_file.read_text())
            pairs = frozenset((str(u), str(b)) for u, b in data["drained"])
            return DrainState(int(data["version"]), pairs)
        except (OSError, ValueError, KeyError, TypeError):
            return DrainState()

    def write_drains(self, state: DrainState) -> None:
        """Replace the drain state atomically (readers see the old file or the new one)."""
        text = json.dumps({"version": state.version, "drained": sorted(state.drained)})
        temporary = self.path / f".drain.{os.getpid()}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.drain_file)

    def forget_dead_workers(self) -> None:
        """``mark_process_dead`` for every process whose live-gauge files remain but which is
        gone (a worker that crashed, or was replaced), so live gauges count only live ones."""
        from prometheus_client import multiprocess

        for name in glob.glob(str(self.metrics / "gauge_live*_*.db")):
            match = _LIVE_FILE.search(name)
            if match is None:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or _alive(pid):
                continue
            multiprocess.mark_process_dead(pid, str(self.metrics))  # type: ignore[no-untyped-call]

    def registry(self) -> Any:
        """A registry that reads every worker's files at collection time (dead ones pruned)."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.forget_dead_workers()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self.metrics))  # type: ignore[no-untyped-call]
        return registry

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of all workers and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry()), CONTENT_TYPE_LATEST

    def samples(self) -> list[Sample]:
        """Every aggregated sample (for the status page and the drain acknowledgement)."""
        found: list[Sample] = []
        for family in self.registry().collect():
            for sample in family.samples:
                found.append(Sample(sample.name, dict(sample.labels), float(sample.value)))
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
