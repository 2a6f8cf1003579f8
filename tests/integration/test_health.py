"""Health checks against real origins on 127.0.0.1: thresholds, reasons, recovery, ejection."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

import pytest

from quicproxy.demo import DemoOrigin
from quicproxy.lb.health import ActiveCheck, HealthChecker, PassiveCheck, PassiveHealth
from quicproxy.upstream.peer import HttpPeer


@dataclass
class Target:
    peer: HttpPeer
    healthy: bool = True
    ejected_until: float = 0.0

    @property
    def key(self) -> str:
        return self.peer.address


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_http_check_marks_down_after_threshold_and_up_after_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    origin = DemoOrigin()
    await origin.start()
    port = origin.port
    target = Target(HttpPeer("127.0.0.1", port))
    check = ActiveCheck(path="/status/200", healthy_threshold=2, unhealthy_threshold=2, timeout=1)
    checker = HealthChecker("app", [target], check)
    caplog.set_level(logging.WARNING, "quicproxy.health")

    await checker.check_all()
    assert target.healthy
    await origin.stop()
    await checker.check_all()
    assert target.healthy  # one failure is below the threshold
    await checker.check_all()
    assert not target.healthy
    assert "DOWN after 2 failed checks" in caplog.text
    assert f"127.0.0.1:{port}" in caplog.text

    revived = DemoOrigin("127.0.0.1", port)
    await revived.start()
    try:
        await checker.check_all()
        assert not target.healthy
        await checker.check_all()
        assert target.healthy
        assert "is UP after 2 successful checks" in caplog.text
    finally:
        await revived.stop()


async def test_http_check_expected_status_and_tcp_check() -> None:
    origin = DemoOrigin()
    await origin.start()
    try:
        peer = HttpPeer("127.0.0.1", origin.port)
        bad = HealthChecker("app", [], ActiveCheck(path="/status/503"))
        assert await bad.probe(peer) == "status 503, expected 200-399"
        tcp = HealthChecker("app", [], ActiveCheck(kind="tcp"))
        assert await tcp.probe(peer) is None
        reason = await tcp.probe(HttpPeer("127.0.0.1", closed_port()))
        assert reason is not None and "refused" in reason.lower()
        slow = HealthChecker("app", [], ActiveCheck(path="/delay/3", timeout=0.3))
        assert await slow.probe(peer) == "no answer within 0.3s"
    finally:
        await origin.stop()


async def test_checker_task_runs_on_its_interval() -> None:
    target = Target(HttpPeer("127.0.0.1", closed_port()))
    checker = HealthChecker(
        "app", [target], ActiveCheck(kind="tcp", interval=0.05, unhealthy_threshold=3)
    )
    checker.start()
    try:
        for _ in range(100):
            if not target.healthy:
                break
            await asyncio.sleep(0.02)
        assert not target.healthy
    finally:
        await checker.stop()


def test_passive_ejection_within_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "quicproxy.health")
    target = Target(HttpPeer("127.0.0.1", 1))
    passive = PassiveHealth("app", PassiveCheck(max_fails=3, fail_window=10, fail_duration=30))
    passive.record(target, ok=False, duration=0.1, now=100.0)
    passive.record(target, ok=False, duration=0.1, now=105.0)
    passive.record(target, ok=True, duration=0.1, now=106.0)
    assert target.ejected_until == 0.0
    passive.record(target, ok=False, duration=0.1, now=112.0)  # the first fell out of the window
    assert target.ejected_until == 0.0
    passive.record(target, ok=False, duration=0.1, now=113.0)
    assert target.ejected_until == 143.0
    assert "ejected for 30s" in caplog.text


def test_passive_counts_slow_responses_when_configured() -> None:
    target = Target(HttpPeer("127.0.0.1", 1))
    passive = PassiveHealth("app", PassiveCheck(max_fails=2, slow_threshold=1.0))
    passive.record(target, ok=True, duration=0.5, now=1.0)
    passive.record(target, ok=True, duration=2.0, now=2.0)
    passive.record(target, ok=True, duration=3.0, now=3.0)
    assert target.ejected_until == 33.0


async def test_discovery_resolves_host_names_and_keeps_state() -> None:
    from quicproxy.lb import LoadBalancer, RoundRobin

    balancer = LoadBalancer(
        "app", [HttpPeer("localhost", 8080), HttpPeer("127.0.0.2", 8081)], RoundRobin()
    )
    assert [b.key for b in balancer.backends] == ["localhost:8080", "127.0.0.2:8081"]
    await balancer.resolve()
    keys = [b.key for b in balancer.backends]
    assert "127.0.0.1:8080" in keys and "127.0.0.2:8081" in keys
    assert "localhost:8080" not in keys
    resolved = balancer.backends.get("127.0.0.1:8080")
    assert resolved is not None and resolved.peer.host == "127.0.0.1"
    resolved.in_flight = 3  # a request in flight survives the next round of discovery
    version = balancer.backends.version
    await balancer.resolve()
    assert balancer.backends.get("127.0.0.1:8080") is resolved
    assert resolved.in_flight == 3 and balancer.backends.version == version


async def test_discovery_keeps_addresses_when_a_lookup_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from quicproxy.lb import LoadBalancer, RoundRobin

    balancer = LoadBalancer("app", [HttpPeer("localhost", 8080)], RoundRobin())
    await balancer.resolve()
    before = [b.key for b in balancer.backends]
    assert "127.0.0.1:8080" in before

    async def failing(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", failing)
    await balancer.resolve()
    assert [b.key for b in balancer.backends] == before
    assert "cannot resolve localhost" in caplog.text
