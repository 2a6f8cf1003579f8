"""The pipeline without sockets: a real h11/h2 client in memory in front of the real server
adapter and driver, the real RequestStarter and pipeline, and the real pool dialing in-memory
upstream connections (real client adapters facing real h11/h2 server state machines)."""

from __future__ import annotations

import asyncio
from typing import Any

import h2.events
import h11
import pytest

from protocols.h1 import H1ServerAdapter
from protocols.h2 import H2ServerAdapter
from quicproxy.errors import ErrorKind, ProxyError
from quicproxy.frontend.base import RequestStarter
from quicproxy.hooks import ProxyHttp
from quicproxy.http import RequestHeader, ResponseHeader
from quicproxy.pipeline import ProxyServices
from quicproxy.retry import RetryPolicy
from quicproxy.session import DownstreamInfo, Session
from quicproxy.upstream.peer import HttpPeer
from quicproxy.upstream.pool import UpstreamPool
from tests.support.memdriver import H2Peer, H11Peer, MemoryDriver, settle, wait_until
from tests.unit.upstream.memory import MemoryConnection, MemoryConnector

pytestmark = pytest.mark.timeout(20)

ORIGIN = HttpPeer("origin.test", 80, protocol="h1")


class Recorder(ProxyHttp[list[str]]):
    """Proxies to ORIGIN and records which hooks ran, in order."""

    def __init__(self, *, answer: int = 0, retries: int = 0) -> None:
        self.answer = answer
        self.retries = retries
        self.calls: list[str] = []
        self.logged: list[ProxyError | None] = []

    def new_ctx(self) -> list[str]:
        return self.calls

    async def request_filter(self, session: Session, ctx: list[str]) -> bool:
        ctx.append("request_filter")
        if self.answer:
            await session.respond(self.answer, "answered here\n")
            return True
        return False

    async def upstream_peer(self, session: Session, ctx: list[str]) -> HttpPeer:
        ctx.append("upstream_peer")
        return ORIGIN

    async def retry_policy(self, session: Session, ctx: list[str]) -> RetryPolicy:
        return RetryPolicy(max_retries=self.retries, backoff_base=0.001, backoff_cap=0.001)

    async def upstream_request_filter(
        self, session: Session, request: RequestHeader, ctx: list[str]
    ) -> None:
        ctx.append("upstream_request_filter")
        request.set("x-through", "pipeline")

    async def response_filter(
        self, session: Session, response: ResponseHeader, ctx: list[str]
    ) -> None:
        ctx.append("response_filter")
        response.set("x-filtered", "yes")

    async def logging(self, session: Session, error: ProxyError | None, ctx: list[str]) -> None:
        ctx.append("logging")
        self.logged.append(error)


class Front(MemoryDriver):
    """A client connection whose requests go to the real RequestStarter."""

    def __init__(self, peer: Any, adapter: Any, starter: RequestStarter, protocol: str) -> None:
        self.starter = starter
        self.info = DownstreamInfo(
            protocol=protocol,
            client_address=("192.0.2.7", 50000),
            server_address=("127.0.0.1", 443),
            tls=True,
        )
        super().__init__(peer, adapter)

    def on_request(self, stream: Any, head: Any, end_stream: bool) -> None:
        self.starter.start(stream, head, end_stream, self.info)


def setup(proxy: Recorder, protocol: str = "http/1.1") -> tuple[Front, MemoryConnector]:
    connector = MemoryConnector()
    starter = RequestStarter(proxy, ProxyServices(pool=UpstreamPool(connector)))
    if protocol == "h2":
        return Front(H2Peer(client_side=True), H2ServerAdapter(), starter, "h2"), connector
    return Front(H11Peer(h11.CLIENT), H1ServerAdapter(), starter, protocol), connector


def h1_get(front: Front, path: str = "/") -> None:
    peer = front.peer
    assert isinstance(peer, H11Peer)
    request = h11.Request(method="GET", target=path, headers=[("host", "site.test")])
    front.wire.send(peer.send(request, h11.EndOfMessage()))


async def h2_get(front: Front, peer: H2Peer) -> None:
    """Once the prefaces crossed, the client sends GET / on stream 1."""
    await settle()
    peer.conn.send_headers(
        1,
        [(":method", "GET"), (":scheme", "https"), (":authority", "site.test"), (":path", "/")],
        end_stream=True,
    )
    front.wire.send(peer.conn.data_to_send())


async def upstream(connector: MemoryConnector) -> MemoryConnection:
    """The one upstream connection, once it saw the request."""
    await wait_until(lambda: bool(connector.connections and connector.connections[0].requests_seen))
    return connector.connections[0]


def answer(conn: MemoryConnection, body: bytes) -> None:
    """The origin's HTTP/1.1 answer with ``body``."""
    assert conn.h1_server is not None
    head = h11.Response(status_code=200, headers=[("content-length", str(len(body)))])
    out = conn.h1_server.send(head) or b""
    out += conn.h1_server.send(h11.Data(data=body)) or b""
    out += conn.h1_server.send(h11.EndOfMessage()) or b""
    conn.handle_events(conn.adapter.receive_data(out))


async def response(front: Front) -> h11.Response:
    """The client's response, once it ended."""
    peer = front.peer
    assert isinstance(peer, H11Peer)
    await wait_until(lambda: bool(peer.of(h11.EndOfMessage)))
    (got,) = peer.of(h11.Response)
    return got


async def test_hooks_run_in_order_and_change_what_each_side_sees() -> None:
    proxy = Recorder()
    front, connector = setup(proxy)
    h1_get(front, "/page")
    conn = await upstream(connector)
    answer(conn, b"from the origin")
    await wait_until(lambda: "logging" in proxy.calls)
    assert proxy.calls == [
        "request_filter",
        "upstream_peer",
        "upstream_request_filter",
        "response_filter",
        "logging",
    ]
    assert proxy.logged == [None]
    got = await response(front)
    assert got.status_code == 200 and (b"x-filtered", b"yes") in got.headers
    assert front.peer.body() == b"from the origin"
    (seen,) = conn.h1_requests  # the origin saw the header the hook added, and the forwarding
    assert (b"x-through", b"pipeline") in seen.headers
    assert (b"x-forwarded-for", b"192.0.2.7") in seen.headers
    assert seen.target == b"/page"
    assert connector.dials == [ORIGIN]


async def test_a_hook_that_answers_itself_dials_nothing() -> None:
    proxy = Recorder(answer=403)
    front, connector = setup(proxy)
    h1_get(front)
    await wait_until(lambda: "logging" in proxy.calls)
    assert proxy.calls == ["request_filter", "logging"]
    assert (await response(front)).status_code == 403
    assert front.peer.body() == b"answered here\n"
    assert connector.dials == []


async def test_a_refused_connect_is_retried_then_answered_502() -> None:
    proxy = Recorder(retries=2)
    front, connector = setup(proxy)
    connector.refuse = {"h1"}
    h1_get(front)
    await wait_until(lambda: "logging" in proxy.calls)
    assert len(connector.dials) == 3  # the first try and two retries
    assert (await response(front)).status_code == 502
    (error,) = proxy.logged
    assert error is not None and error.kind is ErrorKind.CONNECT_REFUSED


async def test_an_upstream_that_dies_before_answering_is_a_502() -> None:
    proxy = Recorder()
    front, connector = setup(proxy)
    h1_get(front)
    conn = await upstream(connector)
    conn.lose()
    await wait_until(lambda: "logging" in proxy.calls)
    assert (await response(front)).status_code == 502
    (error,) = proxy.logged
    assert error is not None and error.source.value == "upstream"


async def test_a_proxy_without_upstream_peer_answers_500() -> None:
    class Bare(ProxyHttp[None]):
        def new_ctx(self) -> None:
            return None

    connector = MemoryConnector()
    starter = RequestStarter(Bare(), ProxyServices(pool=UpstreamPool(connector)))
    front = Front(H11Peer(h11.CLIENT), H1ServerAdapter(), starter, "http/1.1")
    h1_get(front)
    await wait_until(lambda: bool(front.peer.of(h11.Response)))
    assert (await response(front)).status_code == 500
    assert connector.dials == []


async def test_a_client_reset_cancels_the_upstream_request_at_once() -> None:
    proxy = Recorder()
    front, connector = setup(proxy, "h2")
    peer = front.peer
    assert isinstance(peer, H2Peer)
    await h2_get(front, peer)
    conn = await upstream(connector)
    peer.conn.reset_stream(1)
    front.wire.send(peer.conn.data_to_send())
    # HTTP/1.1 upstream: the only way to abandon the request is to close its connection
    await wait_until(lambda: conn.transport_closed)
    await wait_until(lambda: "logging" in proxy.calls)
    assert "response_filter" not in proxy.calls
    assert not peer.of(h2.events.ResponseReceived)


async def test_a_large_response_is_relayed_within_the_flow_control_window() -> None:
    """The client grants no window: the proxy holds at most about one stream buffer of the
    response and the origin's remaining bytes stay unread; acknowledging lets it all through."""
    proxy = Recorder()
    front, connector = setup(proxy, "h2")
    peer = front.peer
    assert isinstance(peer, H2Peer)
    await h2_get(front, peer)
    conn = await upstream(connector)
    body = bytes(range(256)) * 4096  # 1 MiB
    answer(conn, body)
    await wait_until(lambda: bool(peer.of(h2.events.ResponseReceived)))
    await settle(50)
    assert len(peer.body(1)) <= 65535  # h2's initial window: nothing beyond it was sent
    for _ in range(200):
        if peer.of(h2.events.StreamEnded):
            break
        peer.ack(1)
        peer.conn.increment_flow_control_window(1 << 20)
        front.wire.send(peer.conn.data_to_send())
        await asyncio.sleep(0.005)
    assert peer.body(1) == body
