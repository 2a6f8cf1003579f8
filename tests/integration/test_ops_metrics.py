"""/metrics on the admin listener after real traffic: requests by protocol (curl over h1 and h2,
curl_cffi over h3), status class and upstream, latency histograms, pool reuse and Alt-Svc; with
two workers the scrape adds up what both served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.admin import Samples, admin_url, scrape, total, wait_for
from tests.support.clients import h3_request
from tests.support.procs import CURL, ProxyProcess, ThreadedOrigin, curl, free_port, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

ACCESS_PID = re.compile(r"quicproxy\.access\[(\d+)\]")


def _config(path: Path, origin_port: int, *, workers: int = 1, port: int = 0) -> list[str]:
    path.write_text(
        f"""
[server]
workers = {workers}
grace_period = 3

[tls]
dev_cert_dir = "{path.parent / "certs"}"

[[listen]]
address = "127.0.0.1:{port}"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin_port}"]

[[route]]
upstream = "origin"

[admin]
address = "127.0.0.1:0"
"""
    )
    return ["run", "-c", str(path)]


def _curl_many(version: str, port: int, paths: list[str], new_connections: bool) -> list[str]:
    """One curl run fetching every path (each on a new connection if asked); the statuses."""
    args: list[str] = ["-H", "connection: close"] if new_connections else []
    for path in paths:
        args += ["-o", "/dev/null", f"https://127.0.0.1:{port}{path}"]
    result = curl(version, "-w", "%{http_code}\n", *args)
    return result.stdout.decode().split()


def _requests(samples: Samples, **labels: str) -> float:
    return total(samples, "quicproxy_requests_total", **labels)


def test_requests_counted_by_protocol_status_class_and_upstream(
    tmp_path: Path, demo_origin: ThreadedOrigin
) -> None:
    with run_proxy(_config(tmp_path / "p.toml", demo_origin.port)) as proxy:
        base = admin_url(proxy)
        assert (
            _curl_many("--http1.1", proxy.port, ["/"] * 3 + ["/status/404"] * 2, False)
            == ["200"] * 3 + ["404"] * 2
        )
        assert _curl_many("--http2", proxy.port, ["/status/503"] * 2 + ["/"], False) == [
            "503",
            "503",
            "200",
        ]
        h3 = [h3_request(f"https://127.0.0.1:{proxy.port}/bytes/100").status for _ in range(4)]
        assert h3 == [200] * 4
        expected = {
            ("h1", "2xx"): 3,
            ("h1", "4xx"): 2,
            ("h2", "5xx"): 2,
            ("h2", "2xx"): 1,
            ("h3", "2xx"): 4,
        }

        def counted() -> bool:
            samples = scrape(base)
            return all(
                _requests(samples, protocol=p, status_class=c, upstream="origin") == n
                for (p, c), n in expected.items()
            )

        assert wait_for(counted), scrape(base)
        samples = scrape(base)
        assert _requests(samples) == 12  # nothing else was counted
        for protocol, count in (("h1", 5), ("h2", 3), ("h3", 4)):
            name = "quicproxy_request_duration_seconds_count"
            assert total(samples, name, protocol=protocol) == count
            assert total(samples, "quicproxy_request_duration_seconds_sum", protocol=protocol) > 0
        # every proxied request got an upstream connection: one opened per curl run (h1 keeps
        # it alive; the origin speaks h1 only) and per h3 client, the rest reused
        assert wait_for(
            lambda: (
                total(scrape(base), "quicproxy_upstream_acquisitions_total") == 12
                and total(scrape(base), "quicproxy_upstream_connections_opened_total") >= 1
            )
        ), scrape(base)
        samples = scrape(base)
        reused = total(samples, "quicproxy_upstream_acquisitions_total", connection="reused")
        assert reused >= 6
        # Alt-Svc goes on TCP responses only: the 8 over h1 and h2
        assert total(samples, "quicproxy_alt_svc_advertised_total") == 8
        assert total(samples, "quicproxy_upstream_healthy", upstream="origin") == 1
        assert total(samples, "quicproxy_workers") == 1


def test_a_request_with_no_route_counts_without_upstream(
    tmp_path: Path, demo_origin: ThreadedOrigin
) -> None:
    config = tmp_path / "p.toml"
    _config(config, demo_origin.port)
    config.write_text(
        config.read_text().replace(
            'upstream = "origin"\n\n[admin]',
            'upstream = "origin"\npath_prefix = "/app/"\n\n[admin]',
        )
    )
    with run_proxy(["run", "-c", str(config)]) as proxy:
        base = admin_url(proxy)
        assert _curl_many("--http2", proxy.port, ["/nothing-here"], False) == ["404"]
        assert wait_for(
            lambda: _requests(scrape(base), protocol="h2", status_class="4xx", upstream="-") == 1
        ), scrape(base)


def _pids_serving(proxy: ProxyProcess) -> set[str]:
    return set(ACCESS_PID.findall(proxy.log_text()))


def test_two_workers_add_up(tmp_path: Path, demo_origin: ThreadedOrigin) -> None:
    args = _config(tmp_path / "p.toml", demo_origin.port, workers=2, port=free_port())
    with run_proxy(args) as proxy:
        base = admin_url(proxy)
        assert wait_for(lambda: total(scrape(base), "quicproxy_workers") == 2), scrape(base)
        sent = 0
        for _ in range(5):  # new connections spread over both workers (SO_REUSEPORT)
            assert _curl_many("--http1.1", proxy.port, ["/"] * 20, True) == ["200"] * 20
            sent += 20
            if len(_pids_serving(proxy)) == 2:
                break
        assert len(_pids_serving(proxy)) == 2, "one worker served every connection"
        assert wait_for(
            lambda: _requests(scrape(base), protocol="h1", status_class="2xx") == sent
        ), (sent, scrape(base))
        samples = scrape(base)
        assert total(samples, "quicproxy_request_duration_seconds_count", protocol="h1") == sent
        assert total(samples, "quicproxy_workers") == 2
