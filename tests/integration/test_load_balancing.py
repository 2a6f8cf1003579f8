"""Load balancing through the running proxy: failover, health down/up, stickiness, the example."""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.procs import CURL, ROOT, ThreadedOrigin, curl, free_port, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture
def origins() -> Iterator[list[ThreadedOrigin]]:
    with ExitStack() as stack:
        yield [stack.enter_context(ThreadedOrigin()) for _ in range(3)]


def config(path: Path, ports: list[int], extra: str) -> list[str]:
    addresses = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
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
addresses = [{addresses}]
connect_timeout = 1
{extra}

[[route]]
upstream = "app"
"""
    )
    return ["run", "-c", str(path)]


def statuses(port: int, count: int, path: str = "/status/200", *extra: str) -> list[str]:
    args: list[str] = []
    for _ in range(count):
        args += ["-o", "/dev/null", f"https://127.0.0.1:{port}{path}"]
    result = curl("--http1.1", *extra, "-w", "%{http_code}\n", *args)
    return result.stdout.decode().split()


def wait_for_log(proxy: object, text: str, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in proxy.log_text():  # type: ignore[attr-defined]
            return True
        time.sleep(0.05)
    return False


def test_killed_backend_fails_over_is_marked_down_and_comes_back(
    tmp_path: Path, origins: list[ThreadedOrigin]
) -> None:
    ports = [o.port for o in origins]
    health = (
        '[upstream.health_check]\nkind = "http"\npath = "/status/200"\ninterval = 0.2\n'
        "timeout = 0.5\nhealthy_threshold = 2\nunhealthy_threshold = 2"
    )
    with run_proxy(config(tmp_path / "p.toml", ports, health)) as proxy:
        assert statuses(proxy.port, 9) == ["200"] * 9
        assert [len(o.origin.requests_seen) > 0 for o in origins] == [True] * 3
        victim = origins[1]
        victim.__exit__(None, None, None)
        # idempotent requests right after the kill: connect failures fail over, nobody sees it
        assert statuses(proxy.port, 30) == ["200"] * 30
        assert wait_for_log(proxy, f"127.0.0.1:{ports[1]} in 'app' is DOWN after 2 failed checks")
        revived = ThreadedOrigin(port=ports[1]).__enter__()
        try:
            assert wait_for_log(proxy, f"127.0.0.1:{ports[1]} in 'app' is UP")
            assert statuses(proxy.port, 12) == ["200"] * 12
            assert len(revived.origin.requests_seen) >= 3  # back in rotation
        finally:
            revived.__exit__(None, None, None)


def test_all_backends_down_is_a_fast_503_with_retry_after(
    tmp_path: Path, origins: list[ThreadedOrigin]
) -> None:
    ports = [o.port for o in origins]
    health = '[upstream.health_check]\nkind = "tcp"\ninterval = 0.1\nunhealthy_threshold = 1'
    with run_proxy(config(tmp_path / "p.toml", ports, health)) as proxy:
        for origin in origins:
            origin.__exit__(None, None, None)
        assert wait_for_log(proxy, f"127.0.0.1:{ports[2]} in 'app' is DOWN")
        assert wait_for_log(proxy, f"127.0.0.1:{ports[0]} in 'app' is DOWN")
        assert wait_for_log(proxy, f"127.0.0.1:{ports[1]} in 'app' is DOWN")
        started = time.monotonic()
        result = curl("--http1.1", "-i", f"https://127.0.0.1:{proxy.port}/status/200")
        assert time.monotonic() - started < 2
        head = result.stdout.decode(errors="replace").lower()
        assert head.startswith("http/1.1 503")
        assert "retry-after: 1" in head
        assert "no healthy backend" in proxy.log_text()


def test_ketama_on_a_header_is_sticky(tmp_path: Path, origins: list[ThreadedOrigin]) -> None:
    ports = [o.port for o in origins]
    extra = 'lb = "ketama"\nhash_key = "header:x-user"'
    with run_proxy(config(tmp_path / "p.toml", ports, extra)) as proxy:
        for user in ("alice", "bob", "carol", "dave"):
            before = [len(o.origin.requests_seen) for o in origins]
            assert statuses(proxy.port, 6, "/status/200", "-H", f"x-user: {user}") == ["200"] * 6
            grew = [len(o.origin.requests_seen) - b for o, b in zip(origins, before, strict=True)]
            assert sorted(grew) == [0, 0, 6]  # one backend got all six


def test_weighted_round_robin_follows_weights(
    tmp_path: Path, origins: list[ThreadedOrigin]
) -> None:
    ports = [o.port for o in origins]
    extra = 'lb = "weighted_round_robin"\nweights = [4, 1, 1]'
    with run_proxy(config(tmp_path / "p.toml", ports, extra)) as proxy:
        assert statuses(proxy.port, 30) == ["200"] * 30
    assert [len(o.origin.requests_seen) for o in origins] == [20, 5, 5]


def test_load_balancer_example(tmp_path: Path, origins: list[ThreadedOrigin]) -> None:
    port = free_port()
    urls = [f"http://127.0.0.1:{o.port}" for o in origins]
    env = {
        "QUICPROXY_CERT_DIR": str(tmp_path / "certs"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    script = ROOT / "examples" / "load_balancer.py"
    with run_proxy([f"127.0.0.1:{port}", *urls], script=script, env=env) as proxy:
        served = collections.Counter()
        for _ in range(9):
            result = curl("--http2", "-i", f"https://127.0.0.1:{proxy.port}/echo")
            text = result.stdout.decode()
            head, _, body = text.partition("\r\n\r\n")
            assert head.startswith("HTTP/2 200")
            assert json.loads(body)["path"] == "/echo"
            served[head.split("x-served-by: ")[1].split("\r\n")[0]] += 1
        assert sorted(served.values()) == [3, 3, 3]
        origins[0].__exit__(None, None, None)
        assert wait_for_log(proxy, "is DOWN after 2 failed checks")
        assert statuses(proxy.port, 6) == ["200"] * 6
        assert proxy.stop() == 0


@pytest.mark.parametrize("lb", ["round_robin", "least_connections", "power_of_two"])
def test_two_origins_weighted_three_to_one(
    tmp_path: Path, origins: list[ThreadedOrigin], lb: str
) -> None:
    """Every algorithm that reads weights sends 3:1 to origins weighted 3:1 (counted there)."""
    requests = 120
    weighted = origins[:2]
    extra = f'weights = [3, 1]\nlb = "{lb}"'
    with run_proxy(config(tmp_path / "p.toml", [o.port for o in weighted], extra)) as proxy:
        assert statuses(proxy.port, requests) == ["200"] * requests
    heavy, light = (len(o.origin.requests_seen) for o in weighted)
    assert heavy + light == requests
    if lb == "power_of_two":  # random: 90 expected, 3 standard deviations either way
        assert 76 <= heavy <= 104, (heavy, light)
    else:  # deterministic: idle backends share by smooth weighted round robin
        assert (heavy, light) == (90, 30)
