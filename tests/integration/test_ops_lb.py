"""Weights through the running proxy: two origins weighted 3:1 get requests 3:1 with every
algorithm that reads weights (counted at the origins)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.procs import CURL, ThreadedOrigin, curl, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

REQUESTS = 120


@pytest.fixture
def origins() -> Iterator[list[ThreadedOrigin]]:
    with ExitStack() as stack:
        yield [stack.enter_context(ThreadedOrigin()) for _ in range(2)]


def _config(path: Path, ports: list[int], lb: str) -> list[str]:
    path.write_text(
        f"""
[server]
workers = 1

[tls]
dev_cert_dir = "{path.parent / "certs"}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "app"
addresses = ["127.0.0.1:{ports[0]}", "127.0.0.1:{ports[1]}"]
weights = [3, 1]
lb = "{lb}"

[[route]]
upstream = "app"
"""
    )
    return ["run", "-c", str(path)]


@pytest.mark.parametrize("lb", ["round_robin", "least_connections", "power_of_two"])
def test_two_origins_weighted_three_to_one(
    tmp_path: Path, origins: list[ThreadedOrigin], lb: str
) -> None:
    with run_proxy(_config(tmp_path / "p.toml", [o.port for o in origins], lb)) as proxy:
        args: list[str] = []
        for _ in range(REQUESTS):
            args += ["-o", "/dev/null", f"https://127.0.0.1:{proxy.port}/status/200"]
        result = curl("--http1.1", "-w", "%{http_code}\n", *args)
        assert result.stdout.decode().split() == ["200"] * REQUESTS
    heavy, light = (len(o.origin.requests_seen) for o in origins)
    assert heavy + light == REQUESTS
    if lb == "power_of_two":  # random: 90 expected, 3 standard deviations either way
        assert 76 <= heavy <= 104, (heavy, light)
    else:  # deterministic: idle backends share by smooth weighted round robin
        assert (heavy, light) == (90, 30)
