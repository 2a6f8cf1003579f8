"""LoadBalancer.resolve: a failed lookup of one host name never drops that name's addresses
(nor another entry's), whether or not the upstream sets ``sni``."""

from __future__ import annotations

import asyncio
import socket

import pytest

from quicproxy.lb import LoadBalancer, RoundRobin
from quicproxy.upstream.peer import HttpPeer


class Resolver:
    """Answers getaddrinfo from a table; a name mapped to None fails as an unknown name does."""

    def __init__(self) -> None:
        self.table: dict[str, list[str] | None] = {}

    async def getaddrinfo(self, host: str, port: int, **kwargs: object) -> list[object]:
        addresses = self.table.get(host)
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


def _use(resolver: Resolver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver.getaddrinfo)


def _keys(balancer: LoadBalancer) -> list[str]:
    return [b.key for b in balancer.backends]


def _selectable(balancer: LoadBalancer) -> set[str]:
    return {balancer.select("127.0.0.1", [], "/").key for _ in range(2 * len(balancer.backends))}


async def test_failed_lookup_keeps_the_addresses_of_an_upstream_with_sni(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = Resolver()
    _use(resolver, monkeypatch)
    peer = HttpPeer("app.internal", 8443, tls=True, sni="api.example")
    balancer = LoadBalancer("app", [peer], RoundRobin())
    resolver.table["app.internal"] = ["10.0.0.1", "10.0.0.2"]
    await balancer.resolve()
    assert _keys(balancer) == ["10.0.0.1:8443", "10.0.0.2:8443"]
    assert all(b.peer.server_name == "api.example" for b in balancer.backends)
    resolver.table["app.internal"] = None  # the DNS server is down
    await balancer.resolve()
    assert _keys(balancer) == ["10.0.0.1:8443", "10.0.0.2:8443"]
    assert _selectable(balancer) == {"10.0.0.1:8443", "10.0.0.2:8443"}


async def test_failed_first_lookup_keeps_the_configured_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = Resolver()
    _use(resolver, monkeypatch)
    peers = [HttpPeer("app.internal", 8080), HttpPeer("127.0.0.9", 8080)]
    balancer = LoadBalancer("app", peers, RoundRobin())
    await balancer.resolve()  # app.internal does not resolve (yet)
    assert _keys(balancer) == ["app.internal:8080", "127.0.0.9:8080"]
    resolver.table["app.internal"] = ["10.0.0.1"]
    await balancer.resolve()
    assert _keys(balancer) == ["10.0.0.1:8080", "127.0.0.9:8080"]


async def test_failed_lookup_keeps_each_entry_of_one_name_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two ports of one host name: a failure keeps each entry's own addresses, no duplicates,
    and the weights stay with their entries."""
    resolver = Resolver()
    _use(resolver, monkeypatch)
    peers = [HttpPeer("app.internal", 8080), HttpPeer("app.internal", 8081)]
    balancer = LoadBalancer("app", peers, RoundRobin(), weights=[3, 1])
    resolver.table["app.internal"] = ["10.0.0.1"]
    await balancer.resolve()
    before = [(b.key, b.weight) for b in balancer.backends]
    assert before == [("10.0.0.1:8080", 3), ("10.0.0.1:8081", 1)]
    resolver.table["app.internal"] = None
    await balancer.resolve()
    assert [(b.key, b.weight) for b in balancer.backends] == before


async def test_empty_answer_is_a_failure_not_an_empty_group(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = Resolver()
    _use(resolver, monkeypatch)
    balancer = LoadBalancer("app", [HttpPeer("app.internal", 8080)], RoundRobin())
    resolver.table["app.internal"] = ["10.0.0.1"]
    await balancer.resolve()
    resolver.table["app.internal"] = []
    await balancer.resolve()
    assert _keys(balancer) == ["10.0.0.1:8080"]
    assert "resolved to no address" in caplog.text
