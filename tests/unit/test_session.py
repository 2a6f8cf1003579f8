"""Session's response writer without sockets: the real TcpDriver and server adapters, with a REAL
h11 or h2 client on the other end of an in-memory wire (tests/support/memdriver.py)."""

from __future__ import annotations

import asyncio

import h2.events
import h11
import pytest

from protocols.h1 import H1ServerAdapter
from protocols.h2 import H2ServerAdapter
from protocols.messages import ResponseHead
from quicproxy.errors import ErrorKind, ProxyError
from quicproxy.session import DownstreamInfo, Session
from tests.support.memdriver import H2Peer, H11Peer, MemoryDriver, settle

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
]


def _session(driver: MemoryDriver, protocol: str) -> Session:
    stream, head, end_stream = driver.accepted[0]
    info = DownstreamInfo(protocol, ("127.0.0.1", 50000), ("127.0.0.1", 443), tls=True)
    return Session(stream, head, info, end_stream)


async def h1_session() -> tuple[Session, MemoryDriver, H11Peer]:
    peer = H11Peer(h11.CLIENT)
    driver = MemoryDriver(peer, H1ServerAdapter())
    request = h11.Request(method="GET", target="/", headers=[("host", "example.com")])
    driver.wire.send(peer.send(request, h11.EndOfMessage()))
    return _session(driver, "http/1.1"), driver, peer


async def h2_session() -> tuple[Session, MemoryDriver, H2Peer]:
    peer = H2Peer(client_side=True)
    driver = MemoryDriver(peer, H2ServerAdapter())
    await settle()
    peer.conn.send_headers(1, REQUEST, end_stream=True)
    driver.wire.send(peer.data_to_send())
    return _session(driver, "h2"), driver, peer


def h2_response(peer: H2Peer) -> dict[bytes, bytes]:
    (response,) = peer.of(h2.events.ResponseReceived)
    return dict(response.headers)


async def test_respond_over_h1_writes_status_type_length_and_body() -> None:
    session, driver, peer = await h1_session()
    await session.respond(200, "hello")
    await settle()
    (response,) = peer.of(h11.Response)
    assert response.status_code == 200
    headers = dict(response.headers)
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"content-length"] == b"5"
    assert peer.body() == b"hello"
    assert len(peer.of(h11.EndOfMessage)) == 1
    assert session.response_status == 200 and session.response_finished
    assert session.bytes_out == 5
    driver.shutdown()


async def test_respond_over_h2_writes_status_type_length_and_body() -> None:
    session, driver, peer = await h2_session()
    await session.respond(404, b"not here\n", headers=[(b"x-why", b"missing")])
    await settle()
    headers = h2_response(peer)
    assert headers[b":status"] == b"404"
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"content-length"] == b"9"
    assert headers[b"x-why"] == b"missing"
    assert peer.body(1) == b"not here\n"
    assert [e.stream_id for e in peer.of(h2.events.StreamEnded)] == [1]
    driver.shutdown()


async def test_respond_204_has_no_body_fields_and_ends_with_the_head() -> None:
    session, driver, peer = await h2_session()
    await session.respond(204)
    await settle()
    headers = h2_response(peer)
    assert headers[b":status"] == b"204"
    assert b"content-length" not in headers and b"content-type" not in headers
    (response,) = peer.of(h2.events.ResponseReceived)
    assert response.stream_ended is not None  # END_STREAM on the HEADERS frame
    assert not peer.of(h2.events.DataReceived)
    driver.shutdown()


async def test_write_response_head_after_a_failure_raises_and_sends_nothing() -> None:
    session, driver, peer = await h1_session()
    error = ProxyError.downstream(ErrorKind.DOWNSTREAM_GONE, "the client left")
    session.stream.fail(error)
    with pytest.raises(ProxyError) as caught:
        await session.write_response_head(ResponseHead(200, [(b"content-length", b"0")]))
    assert caught.value is error
    assert not session.response_started and session.response_status is None
    await settle()
    assert peer.received == b""  # the h1 adapter would have written it: nothing reached it
    driver.shutdown()


async def test_write_response_head_on_a_closed_connection_raises() -> None:
    session, driver, peer = await h2_session()
    driver.connection_failed("connection lost")
    with pytest.raises(ProxyError):
        await session.write_response_head(ResponseHead(200, []))
    assert not session.response_started
    await settle()
    assert not peer.of(h2.events.ResponseReceived)


async def test_informational_after_the_final_head_is_dropped() -> None:
    session, driver, peer = await h2_session()
    session.write_informational(ResponseHead(103, [(b"link", b"</style.css>; rel=preload")]))
    await session.write_response_head(ResponseHead(200, [(b"content-length", b"2")]))
    session.write_informational(ResponseHead(103, [(b"link", b"</late.js>; rel=preload")]))
    await session.write_body(b"ok")
    session.finish_response()
    await settle()
    heads = [
        e
        for e in peer.events
        if isinstance(e, h2.events.InformationalResponseReceived | h2.events.ResponseReceived)
    ]
    assert [type(e).__name__ for e in heads] == [
        "InformationalResponseReceived",
        "ResponseReceived",
    ]
    assert dict(heads[0].headers)[b"link"] == b"</style.css>; rel=preload"
    assert peer.body(1) == b"ok"
    driver.shutdown()


async def test_informational_over_h1_goes_before_the_response_only() -> None:
    session, driver, peer = await h1_session()
    session.write_informational(ResponseHead(103, [(b"link", b"</style.css>; rel=preload")]))
    await session.write_response_head(ResponseHead(200, [(b"content-length", b"0")]), True)
    session.write_informational(ResponseHead(103, []))
    await settle()
    assert [e.status_code for e in peer.of(h11.InformationalResponse)] == [103]
    assert [e.status_code for e in peer.of(h11.Response)] == [200]
    assert peer.conn.their_state is h11.DONE  # the late 103 did not corrupt the stream
    driver.shutdown()


async def test_finish_response_with_trailers_over_h2() -> None:
    session, driver, peer = await h2_session()
    await session.write_response_head(ResponseHead(200, [(b"trailer", b"x-checksum")]))
    await session.write_body(b"payload")
    session.finish_response([(b"x-checksum", b"abc123")])
    await settle()
    assert h2_response(peer)[b":status"] == b"200"
    assert peer.body(1) == b"payload"
    (trailers,) = peer.of(h2.events.TrailersReceived)
    assert dict(trailers.headers) == {b"x-checksum": b"abc123"}
    assert [e.stream_id for e in peer.of(h2.events.StreamEnded)] == [1]
    assert session.response_finished and session.stream.local_ended
    with pytest.raises(ProxyError):  # the stream has ended: no more body
        await asyncio.wait_for(session.write_body(b"late"), 1)
    driver.shutdown()


async def test_finish_response_with_trailers_over_chunked_h1() -> None:
    session, driver, peer = await h1_session()
    await session.write_response_head(ResponseHead(200, []))  # no length: chunked
    await session.write_body(b"payload")
    session.finish_response([(b"x-checksum", b"abc123")])
    await settle()
    assert dict(peer.of(h11.Response)[0].headers)[b"transfer-encoding"] == b"chunked"
    assert peer.body() == b"payload"
    (end,) = peer.of(h11.EndOfMessage)
    assert list(end.headers) == [(b"x-checksum", b"abc123")]
    driver.shutdown()
