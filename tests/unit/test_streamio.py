"""StreamIO and ConnectionDriver without sockets: the real TcpDriver and adapters, with a REAL h11
or h2 peer on the other end of an in-memory wire (tests/support/memdriver.py)."""

from __future__ import annotations

import asyncio

import h2.events
import h11
import pytest
from h2.errors import ErrorCodes

from protocols.h1 import H1ClientAdapter, H1ServerAdapter
from protocols.h2 import H2ClientAdapter, H2ServerAdapter
from protocols.messages import RequestHead, ResponseHead
from quicproxy import streamio
from quicproxy.errors import ErrorKind, ErrorSource, ProxyError
from tests.support.memdriver import H2Peer, H11Peer, MemoryDriver, settle, wait_until

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/upload"),
]
PEER_WINDOW = 65_535  # the h2 peer's default windows (it sends no INITIAL_WINDOW_SIZE)


async def h2_server(**adapter_options: int) -> tuple[MemoryDriver, H2Peer]:
    peer = H2Peer(client_side=True)
    driver = MemoryDriver(peer, H2ServerAdapter(**adapter_options))
    await settle()  # prefaces and SETTINGS ACKs both ways
    return driver, peer


def h2_send(driver: MemoryDriver, peer: H2Peer, body: bytes = b"", *, end: bool = True) -> None:
    """The peer sends a request on stream 1 (or more of its body)."""
    if 1 not in peer.conn.streams:
        peer.conn.send_headers(1, REQUEST, end_stream=end and not body)
    for offset in range(0, len(body), 16_384):
        last = offset + 16_384 >= len(body)
        peer.conn.send_data(1, body[offset : offset + 16_384], end_stream=end and last)
    driver.wire.send(peer.data_to_send())


def h11_request(peer: H11Peer, body: bytes | None = None) -> bytes:
    headers = [("host", "example.com")]
    if body is None:
        return peer.send(h11.Request(method="GET", target="/", headers=headers), h11.EndOfMessage())
    headers.append(("content-length", str(len(body))))
    request = h11.Request(method="POST", target="/", headers=headers)
    return peer.send(request, h11.Data(data=body), h11.EndOfMessage())


async def test_h2_send_waits_for_the_window_and_resumes_on_window_update() -> None:
    driver, peer = await h2_server()
    h2_send(driver, peer)
    stream = driver.accepted[0][0]
    stream.send_head(ResponseHead(200, []))
    body = bytes(range(256)) * 400  # 102,400 bytes: over the peer's window
    sender = asyncio.create_task(stream.send_data(body))
    await wait_until(lambda: len(peer.body(1)) == PEER_WINDOW)
    await settle()
    assert not sender.done()  # waiting for window: nothing went beyond it
    assert len(peer.body(1)) == PEER_WINDOW
    peer.ack(1)  # WINDOW_UPDATE for the stream and the connection
    driver.wire.flush_peer()
    await asyncio.wait_for(sender, 2)
    await wait_until(lambda: len(peer.body(1)) == len(body))
    assert peer.body(1) == body
    assert stream.bytes_sent == len(body)
    driver.shutdown()


async def test_h1_send_waits_while_the_socket_is_full_and_resumes_on_resume_writing() -> None:
    peer = H11Peer(h11.CLIENT)
    driver = MemoryDriver(peer, H1ServerAdapter(scheme=b"http"))
    driver.wire.send(h11_request(peer))
    stream = driver.accepted[0][0]
    stream.send_head(ResponseHead(200, [(b"content-length", b"5")]))
    driver.pause_writing()  # the transport's write buffer is over its high water
    sender = asyncio.create_task(stream.send_data(b"hello"))
    await settle()
    assert not sender.done()
    assert peer.body() == b""
    driver.resume_writing()
    await asyncio.wait_for(sender, 2)
    stream.end()
    await settle()
    assert [r.status_code for r in peer.of(h11.Response)] == [200]
    assert peer.body() == b"hello"
    assert peer.of(h11.EndOfMessage)
    driver.shutdown()


async def test_write_timeout_raises_write_timeout_upstream() -> None:
    peer = H2Peer(client_side=False)  # an upstream h2 server that never grants window
    driver = MemoryDriver(
        peer, H2ClientAdapter(), peer_side=ErrorSource.UPSTREAM, write_timeout=0.1
    )
    await settle()
    stream = driver.open_stream(RequestHead(b"POST", b"https", b"example.com", b"/", []), False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(stream.send_data(bytes(100_000)), 2)
    assert caught.value.kind is ErrorKind.WRITE_TIMEOUT
    assert caught.value.source is ErrorSource.UPSTREAM
    assert loop.time() - started >= 0.1
    await settle()
    assert len(peer.body(1)) == PEER_WINDOW  # what the window allowed, and no more
    driver.shutdown()


async def test_write_timeout_downstream_blames_the_client() -> None:
    driver, peer = await h2_server()
    driver.write_timeout = 0.05
    h2_send(driver, peer)
    stream = driver.accepted[0][0]
    stream.send_head(ResponseHead(200, []))
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(stream.send_data(bytes(100_000)), 2)
    assert caught.value.kind is ErrorKind.DOWNSTREAM_GONE
    await settle()
    assert len(peer.body(1)) == PEER_WINDOW
    driver.shutdown()


async def test_fail_wakes_waiting_writers_and_readers() -> None:
    driver, peer = await h2_server()
    h2_send(driver, peer, end=False)  # headers only: the body is still to come
    stream = driver.accepted[0][0]
    reader = asyncio.create_task(stream.body.read())
    stream.send_head(ResponseHead(200, []))
    writer = asyncio.create_task(stream.send_data(bytes(100_000)))
    await wait_until(lambda: len(peer.body(1)) == PEER_WINDOW)
    await settle()
    assert not reader.done() and not writer.done()
    error = ProxyError.downstream(ErrorKind.DOWNSTREAM_GONE, "gone")
    stream.fail(error)
    done, _ = await asyncio.wait({reader, writer}, timeout=2)
    assert done == {reader, writer}
    assert reader.exception() is error
    assert writer.exception() is error
    assert len(peer.body(1)) == PEER_WINDOW  # nothing more was sent after the failure
    driver.shutdown()


async def test_peer_reset_calls_on_peer_gone_once() -> None:
    driver, peer = await h2_server()
    h2_send(driver, peer, end=False)
    stream = driver.accepted[0][0]
    calls: list[int] = []
    stream.on_peer_gone = lambda: calls.append(1)
    peer.conn.reset_stream(1, ErrorCodes.CANCEL)
    driver.wire.send(peer.data_to_send())
    assert calls == [1]
    assert stream.error is not None and stream.error.kind is ErrorKind.DOWNSTREAM_GONE
    driver.connection_failed("connection lost")  # fails every stream again
    assert calls == [1]
    with pytest.raises(ProxyError):
        stream.send_head(ResponseHead(200, []))
    await settle()
    assert not peer.of(h2.events.ResponseReceived)
    driver.shutdown()


async def test_refused_stream_from_an_upstream_may_be_retried() -> None:
    peer = H2Peer(client_side=False)
    driver = MemoryDriver(peer, H2ClientAdapter(), peer_side=ErrorSource.UPSTREAM)
    await settle()
    stream = driver.open_stream(RequestHead(b"GET", b"https", b"example.com", b"/", []), True)
    await settle()
    assert [e.stream_id for e in peer.of(h2.events.RequestReceived)] == [1]
    peer.conn.reset_stream(1, ErrorCodes.REFUSED_STREAM)
    driver.wire.send(peer.data_to_send())
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(stream.response, 1)
    assert caught.value.kind is ErrorKind.UPSTREAM_RESET
    assert caught.value.retry
    driver.shutdown()


async def test_close_credits_back_buffered_bytes() -> None:
    driver, peer = await h2_server(initial_window=40_000, connection_window=PEER_WINDOW)
    h2_send(driver, peer, bytes(40_000), end=False)
    stream = driver.accepted[0][0]
    await settle()
    assert stream.body.buffered == 40_000
    assert peer.conn.local_flow_control_window(1) == 0  # nothing was credited yet
    assert peer.conn.outbound_flow_control_window == PEER_WINDOW - 40_000
    stream.close()  # never read: the bytes are credited back anyway
    await settle()
    assert peer.conn.local_flow_control_window(1) == 40_000
    assert peer.conn.outbound_flow_control_window == PEER_WINDOW
    driver.shutdown()


async def test_reset_credits_back_buffered_bytes_and_resets_the_stream() -> None:
    driver, peer = await h2_server(initial_window=40_000, connection_window=PEER_WINDOW)
    h2_send(driver, peer, bytes(40_000), end=False)
    stream = driver.accepted[0][0]
    await settle()
    assert peer.conn.outbound_flow_control_window == PEER_WINDOW - 40_000
    stream.reset()
    stream.close()
    await settle()
    resets = peer.of(h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.CANCEL)]
    assert peer.conn.outbound_flow_control_window == PEER_WINDOW  # the shared window is whole
    assert 1 not in driver.streams
    driver.shutdown()


async def test_h1_reading_pauses_over_high_water_and_resumes_at_low_water() -> None:
    peer = H11Peer(h11.CLIENT)
    driver = MemoryDriver(peer, H1ServerAdapter(scheme=b"http"))  # 256 KiB high water
    body = bytes(300_000)
    driver.wire.send(h11_request(peer, body))
    stream = driver.accepted[0][0]
    assert stream.body.buffered == len(body)
    assert driver.wire.reading_changes == [False]  # h1 has no flow control: stop the socket
    received = 0
    while (chunk := await asyncio.wait_for(stream.body.read(), 1)) is not None:
        received += len(chunk)
    assert received == len(body)
    stream.body.release(200_000)  # 100,000 still buffered: above the 64 KiB low water
    assert driver.wire.reading_changes == [False]
    stream.body.release(100_000 - 64 * 1024)  # exactly at low water
    assert driver.wire.reading_changes == [False, True]
    driver.shutdown()


async def test_h2_never_pauses_reading_flow_control_bounds_it() -> None:
    peer = H2Peer(client_side=True)
    adapter = H2ServerAdapter()  # 256 KiB stream window
    driver = MemoryDriver(peer, adapter, stream_buffer=64 * 1024)  # high water below it
    await settle()
    h2_send(driver, peer, bytes(200_000), end=False)
    stream = driver.accepted[0][0]
    assert stream.body.above_high_water
    assert driver.wire.reading_changes == []
    assert driver.wire.reading
    driver.shutdown()


async def test_stop_receiving_resets_with_no_error_after_the_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streamio, "STOP_RECEIVING_DELAY", 0.05)
    driver, peer = await h2_server()
    h2_send(driver, peer, b"part of the upload", end=False)
    stream = driver.accepted[0][0]
    stream.send_head(ResponseHead(413, [(b"content-length", b"0")]), end_stream=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream.stop_receiving()
    await settle()
    assert [e.stream_id for e in peer.of(h2.events.StreamEnded)] == [1]  # the whole response
    assert not peer.of(h2.events.StreamReset)  # not yet: some clients drop a response then
    await wait_until(lambda: bool(peer.of(h2.events.StreamReset)))
    assert loop.time() - started >= 0.05
    resets = peer.of(h2.events.StreamReset)
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.NO_ERROR)]
    driver.shutdown()


async def test_stop_receiving_sends_nothing_when_the_body_ended_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(streamio, "STOP_RECEIVING_DELAY", 0.05)
    driver, peer = await h2_server()
    h2_send(driver, peer, b"part", end=False)
    stream = driver.accepted[0][0]
    stream.send_head(ResponseHead(200, [(b"content-length", b"0")]), end_stream=True)
    stream.stop_receiving()
    h2_send(driver, peer, b"rest", end=True)  # the upload completes before the delay
    await asyncio.sleep(0.1)
    assert stream.body.ended
    assert not peer.of(h2.events.StreamReset)
    driver.shutdown()


async def test_client_stream_over_h1_gets_informational_and_response() -> None:
    peer = H11Peer(h11.SERVER)  # the upstream origin
    driver = MemoryDriver(peer, H1ClientAdapter(), peer_side=ErrorSource.UPSTREAM)
    stream = driver.open_stream(RequestHead(b"GET", b"http", b"origin", b"/x", []), True)
    informational: list[int] = []
    stream.informational = lambda head: informational.append(head.status)
    await settle()
    requests = peer.of(h11.Request)
    assert [(r.method, r.target) for r in requests] == [(b"GET", b"/x")]
    driver.wire.send(
        peer.send(
            h11.InformationalResponse(status_code=103, headers=[("link", "</s.css>")]),
            h11.Response(status_code=200, headers=[("content-length", "2")]),
            h11.Data(data=b"ok"),
            h11.EndOfMessage(),
        )
    )
    head = await asyncio.wait_for(stream.response, 1)
    assert head.status == 200
    assert informational == [103]
    assert await asyncio.wait_for(stream.body.read(), 1) == b"ok"
    assert await asyncio.wait_for(stream.body.read(), 1) is None
    driver.shutdown()


async def test_open_stream_on_a_closed_connection_fails_without_sending() -> None:
    peer = H11Peer(h11.SERVER)
    driver = MemoryDriver(peer, H1ClientAdapter(), peer_side=ErrorSource.UPSTREAM)
    driver.connection_failed("connection lost")
    with pytest.raises(ProxyError) as caught:
        driver.open_stream(RequestHead(b"GET", b"http", b"origin", b"/", []), True)
    assert caught.value.kind is ErrorKind.UPSTREAM_RESET
    await settle()
    assert peer.received == b""
