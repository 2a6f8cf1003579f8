"""Read a process's CPU time and memory from /proc (Linux), and watch its peak RSS."""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcWatch", "Usage", "cpu_seconds", "memory_kib", "reset_peak"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # skip "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5)


def memory_kib(pid: int, key: str = "VmHWM") -> int:
    """One ``Vm*`` line of /proc/PID/status (VmHWM = peak RSS, VmRSS = current), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5); False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Usage:
    """What one scenario cost the watched process."""

    cpu_s: float
    wall_s: float
    peak_rss_kib: int
    start_rss_kib: int

    @property
    def busy(self) -> float:
        """CPU seconds per wall second (1.0 = one core fully busy)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class ProcWatch:
    """Context manager: CPU seconds and peak RSS of ``pid`` between enter and exit.

    The peak is VmHWM after a reset, cross-checked by sampling VmRSS every ``interval`` seconds
    (the only source where ``clear_refs`` is not allowed)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.usage: Usage | None = None
        self._stop = threading.Event()
        self._sampled = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sampled = max(self._sampled, memory_kib(self.pid, "VmRSS"))
            except OSError:
                return

    def __enter__(self) -> ProcWatch:
        self._reset = reset_peak(self.pid)
        self._start_rss = memory_kib(self.pid, "VmRSS")
        self._sampled = self._start_rss
        self._cpu0 = cpu_seconds(self.pid)
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        cpu = cpu_seconds(self.pid) - self._cpu0
        self._stop.set()
        self._thread.join(2)
        peak = max(self._sampled, memory_kib(self.pid, "VmRSS"))
        if self._reset:
            peak = max(peak, memory_kib(self.pid, "VmHWM"))
        self.usage = Usage(cpu, wall, peak, self._start_rss)
