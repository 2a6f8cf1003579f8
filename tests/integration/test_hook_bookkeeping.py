"""A user's hook proxy gets the balancer's bookkeeping for free: returning ``pick(session)``
counts requests in flight and feeds passive health; a hook without ``upstream_peer`` answers
what it answers and a clear 500 for the rest. In-process server, real HTTP/2 and HTTP/3 clients."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from quicproxy import HttpPeer, ProxyHttp, Session
from quicproxy.config import Config, ListenConfig, PassiveCheck, TlsConfig
from quicproxy.devcerts import ensure_dev_certs
from quicproxy.lb import LoadBalancer, RoundRobin
from quicproxy.server import ProxyServer
from tests.support.clients import curl_request, h3_request
from tests.support.procs import CURL, ThreadedOrigin, free_port

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(CURL is None, reason="needs curl")]


class Balanced(ProxyHttp[None]):
    """Nothing but ``pick``: no start/finish/report calls anywhere."""

    def __init__(self, balancer: LoadBalancer) -> None:
        self.balancer = balancer

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        return self.balancer.pick(session)


class AnswersSome(ProxyHttp[None]):
    """Answers /mine itself and defines no upstream_peer."""

    async def request_filter(self, session: Session, ctx: None) -> bool:
        if session.request.path == "/mine":
            await session.respond(200, "mine\n")
            return True
        return False


async def start(proxy: ProxyHttp[None], tmp_path: Path) -> tuple[ProxyServer, int]:
    certs = ensure_dev_certs(tmp_path / "certs")
    config = Config(
        listen=(ListenConfig("127.0.0.1", 0),),
        upstreams=(),
        routes=(),
        tls=TlsConfig(certs.cert, certs.key),
    )
    server = ProxyServer(config, proxy)
    await server.start()
    return server, server.addresses[0][1]


async def test_pick_counts_in_flight_and_ejects_a_failing_backend(tmp_path: Path) -> None:
    dead = free_port()
    with ThreadedOrigin() as origin:
        peers = [HttpPeer("127.0.0.1", dead), HttpPeer("127.0.0.1", origin.port)]
        passive = PassiveCheck(max_fails=2, fail_window=30, fail_duration=30)
        balancer = LoadBalancer("group", peers, RoundRobin(), passive=passive)
        server, port = await start(Balanced(balancer), tmp_path)
        dead_backend = balancer.backends.get(f"127.0.0.1:{dead}")
        live_backend = balancer.backends.get(f"127.0.0.1:{origin.port}")
        assert dead_backend is not None and live_backend is not None
        try:
            slow = asyncio.create_task(
                asyncio.to_thread(h3_request, f"https://127.0.0.1:{port}/delay/1")
            )
            for _ in range(250):  # up to 5 s for the request to reach the origin
                if live_backend.in_flight:
                    break
                await asyncio.sleep(0.02)
            assert live_backend.in_flight == 1  # counted while the slow request runs
            response = await slow
            assert response.status == 200
            assert live_backend.in_flight == 0 and dead_backend.in_flight == 0
            for index in range(4):  # round robin sends some of these to the dead one first
                url = f"https://127.0.0.1:{port}/echo/{index}"
                answer = await asyncio.to_thread(curl_request, "2", url, tmp_path)
                assert answer.status == 200  # the failed try moved on to the live backend
            assert dead_backend.ejected_until > time.monotonic()  # passive health heard it
            assert live_backend.ejected_until == 0.0
            assert live_backend.in_flight == 0 and dead_backend.in_flight == 0
        finally:
            await server.close()


async def test_a_hook_without_upstream_peer_answers_500_for_the_rest(tmp_path: Path) -> None:
    server, port = await start(AnswersSome(), tmp_path)
    try:
        mine = await asyncio.to_thread(h3_request, f"https://127.0.0.1:{port}/mine")
        other = await asyncio.to_thread(
            curl_request, "2", f"https://127.0.0.1:{port}/other", tmp_path
        )
    finally:
        await server.close()
    assert (mine.status, mine.body) == (200, b"mine\n")
    assert other.status == 500
    assert other.body == b"500 Internal Server Error\n"
