"""The TCP frontend without sockets: ALPN picks the adapter, ``[limits]`` reaches it, and a
refused request head gets its 4xx (real h11/h2 clients in memory, the real DownstreamTcp)."""

from __future__ import annotations

from typing import Any

import h2.events
import h11
import pytest

from protocols.h1 import H1ServerAdapter
from protocols.h2 import H2ServerAdapter
from quicproxy.config import LimitsConfig
from quicproxy.frontend.base import RequestStarter
from quicproxy.frontend.tcp import DownstreamTcp
from quicproxy.hooks import ProxyHttp
from quicproxy.pipeline import ProxyServices
from quicproxy.session import Session
from tests.support.memdriver import H2Peer, H11Peer, MemoryWire, settle, wait_until

pytestmark = pytest.mark.timeout(10)


class Hello(ProxyHttp[None]):
    def new_ctx(self) -> None:
        return None

    async def request_filter(self, session: Session, ctx: None) -> bool:
        await session.respond(200, f"hello over {session.downstream.protocol}\n")
        return True


def connect(peer: H11Peer | H2Peer, limits: LimitsConfig, *, alpn: str | None, tls: bool) -> Any:
    wire = MemoryWire(peer)
    wire.alpn = alpn
    starter = RequestStarter(Hello(), ProxyServices(limits=limits))
    connections: set[DownstreamTcp] = set()
    front = DownstreamTcp(wire, starter, limits, tls, connections)  # type: ignore[arg-type]
    wire.driver = front
    return front, wire


async def test_alpn_h2_gets_the_h2_adapter_with_the_configured_settings() -> None:
    peer = H2Peer(client_side=True)
    limits = LimitsConfig(max_concurrent_streams=7, stream_buffer=128 * 1024)
    front, wire = connect(peer, limits, alpn="h2", tls=True)
    assert isinstance(front.adapter, H2ServerAdapter)
    await settle()  # the prefaces and SETTINGS cross
    remote = peer.conn.remote_settings
    assert remote.max_concurrent_streams == 7
    assert remote.initial_window_size == 128 * 1024
    assert remote.max_header_list_size == limits.max_header_size
    peer.conn.send_headers(
        1,
        [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/")],
        end_stream=True,
    )
    wire.send(peer.conn.data_to_send())
    await wait_until(lambda: bool(peer.of(h2.events.StreamEnded)))
    assert peer.body(1) == b"hello over h2\n"
    assert front.info.protocol == "h2" and front.info.tls


async def test_no_alpn_gets_http11_and_a_cleartext_listener_says_http() -> None:
    peer = H11Peer(h11.CLIENT)
    front, wire = connect(peer, LimitsConfig(), alpn=None, tls=False)
    assert isinstance(front.adapter, H1ServerAdapter)
    request = h11.Request(method="GET", target="/", headers=[("host", "a.test")])
    wire.send(peer.send(request, h11.EndOfMessage()))
    await wait_until(lambda: bool(peer.of(h11.EndOfMessage)))
    assert peer.body() == b"hello over http/1.1\n"
    assert front.info.protocol == "http/1.1" and not front.info.tls


async def test_the_configured_request_line_limit_answers_414() -> None:
    peer = H11Peer(h11.CLIENT)
    _front, wire = connect(peer, LimitsConfig(max_request_line=300), alpn="http/1.1", tls=True)
    wire.send(b"GET /" + b"a" * 400 + b" HTTP/1.1\r\nhost: a.test\r\n\r\n")
    await wait_until(lambda: bool(peer.of(h11.Response)))
    assert peer.of(h11.Response)[0].status_code == 414


async def test_the_configured_header_count_limit_answers_431_on_h1() -> None:
    peer = H11Peer(h11.CLIENT)
    _front, wire = connect(peer, LimitsConfig(max_header_count=10), alpn=None, tls=True)
    fields = "".join(f"x-{n}: v\r\n" for n in range(12))
    wire.send(f"GET / HTTP/1.1\r\nhost: a.test\r\n{fields}\r\n".encode())
    await wait_until(lambda: bool(peer.of(h11.Response)))
    assert peer.of(h11.Response)[0].status_code == 431


async def test_a_head_that_trickles_past_the_header_timeout_gets_408_and_a_close() -> None:
    peer = H11Peer(h11.CLIENT)
    _front, wire = connect(peer, LimitsConfig(header_timeout=0.2), alpn=None, tls=True)
    wire.send(b"GET / HTTP/1.1\r\nhost: a.")  # and nothing more
    await wait_until(lambda: wire.closed, within=3)
    assert peer.of(h11.Response)[0].status_code == 408
