"""Circuit breaking: beyond max_requests a burst gets fast 503s, not a queue that grows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import ThreadedOrigin, run_proxy, write_config

H2LOAD = shutil.which("h2load")


@pytest.mark.skipif(H2LOAD is None, reason="h2load is not installed")
def test_burst_beyond_limits_gets_fast_503_and_memory_stays_bounded(tmp_path: Path) -> None:
    with ThreadedOrigin() as origin:
        config = write_config(
            tmp_path / "p.toml",
            origin.port,
            cert_dir=tmp_path / "certs",
        )
        text = config.read_text().replace(
            "read_timeout = 5", "read_timeout = 5\nmax_requests = 5\nmax_connections = 5"
        )
        config.write_text(text)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            rss_before = proxy.rss_kib()
            log_file = tmp_path / "h2load.log"
            result = subprocess.run(
                [
                    str(H2LOAD),
                    "-n", "400", "-c", "4", "-m", "100",
                    "--log-file", str(log_file),
                    f"https://127.0.0.1:{proxy.port}/delay/1",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )  # fmt: skip
            assert "400 done" in result.stdout, result.stdout
            rows = [line.split("\t") for line in log_file.read_text().splitlines()]
            statuses = [int(row[1]) for row in rows]
            ok = statuses.count(200)
            rejected = statuses.count(503)
            assert ok + rejected == 400
            assert 5 <= ok <= 60  # at most 5 at a time for the ~2 s the burst lasts
            assert rejected >= 300
            # rejections are fast: no queueing behind the 1 s origin
            fast = [int(row[2]) for row in rows if row[1] == "503"]
            assert sorted(fast)[len(fast) // 2] < 500_000  # median 503 latency < 0.5 s (µs)
            assert proxy.rss_kib() - rss_before < 64 * 1024
            assert re.search(r"at its limit: \d+ requests in flight", proxy.log_text())
