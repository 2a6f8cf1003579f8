"""HTTP/3 and hq-interop adapters driven by real aioquic peers through in-memory pumps."""

from __future__ import annotations

from typing import Any

import pytest
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated

from protocols.engines.aioquic import GatedQuicConnection
from protocols.errors import ErrorCode, LocalProtocolError
from protocols.events import (
    ConnectionClosed,
    InformationalResponse,
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestTrailers,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
    StreamReset,
)
from protocols.h3 import H3ClientAdapter, H3ServerAdapter
from protocols.hq import HqServerAdapter
from protocols.limits import ConnectionLimits
from protocols.messages import RequestHead, ResponseHead

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]


def connected(router_pair: Any, **kwargs: Any) -> Any:
    pair = router_pair(**kwargs)
    pair.transfer()
    pair.take_server_events()
    return pair


def request(pair: Any, headers: list[tuple[bytes, bytes]], end_stream: bool = True) -> int:
    stream_id: int = pair.client.get_next_available_stream_id()
    pair.http.send_headers(stream_id, headers, end_stream=end_stream)
    return stream_id


def of_type(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def responses(events: list[Any]) -> dict[int, dict[str, Any]]:
    """Client-side H3 events folded into {stream_id: {status, headers, body, ended}}."""
    out: dict[int, dict[str, Any]] = {}
    for event in events:
        entry = out.setdefault(event.stream_id, {"body": b"", "ended": False, "headers": []})
        if isinstance(event, HeadersReceived):
            entry["headers"].append(dict(event.headers))
        elif isinstance(event, DataReceived):
            entry["body"] += event.data
        entry["ended"] = entry["ended"] or event.stream_ended
    for entry in out.values():
        status = entry["headers"][0].get(b":status") if entry["headers"] else None
        entry["status"] = None if status is None else int(status)
    return out


def test_get_round_trip_with_body(router_pair: Any) -> None:
    pair = connected(router_pair)
    assert isinstance(pair.conn.adapter, H3ServerAdapter)
    sid = request(pair, [*GET, (b":path", b"/hello?x=1"), (b"user-agent", b"test/1")])
    pair.transfer()

    (head_event,) = of_type(pair.take_server_events(), RequestHeaders)
    assert head_event.stream_id == sid and head_event.end_stream
    head = head_event.head
    assert (head.method, head.scheme, head.authority, head.path) == (
        b"GET",
        b"https",
        b"localhost",
        b"/hello?x=1",
    )
    assert head.headers == [(b"user-agent", b"test/1")]
    assert head.http_version == b"3"

    adapter = pair.conn.adapter
    adapter.send_response(sid, ResponseHead(200, [(b"content-type", b"text/plain")]))
    adapter.send_data(sid, b"hello ")
    adapter.send_data(sid, b"world", end_stream=True)
    pair.transfer()
    got = responses(pair.take_client_events())[sid]
    assert got["status"] == 200
    assert got["headers"][0][b"content-type"] == b"text/plain"
    assert got["body"] == b"hello world" and got["ended"]

    facts = pair.conn.facts
    assert facts.alpn == "h3" and facts.sni == "localhost" and facts.version == 1
    assert facts.rtt > 0 and len(facts.original_dcid) == 16 and not facts.early_data


def test_post_with_body_and_trailers(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = request(pair, [(b":method", b"POST"), *GET[1:], (b":path", b"/up")], end_stream=False)
    pair.http.send_data(sid, b"abc", end_stream=False)
    pair.http.send_data(sid, b"def", end_stream=False)
    pair.http.send_headers(sid, [(b"x-checksum", b"42")], end_stream=True)
    pair.transfer()

    events = [e for e in pair.take_server_events() if getattr(e, "stream_id", None) == sid]
    kinds = [type(e) for e in events]
    assert kinds[0] is RequestHeaders and not events[0].end_stream
    assert kinds[-2:] == [RequestTrailers, RequestEnd]
    assert b"".join(e.data for e in of_type(events, RequestData)) == b"abcdef"
    assert events[-2].trailers == [(b"x-checksum", b"42")]

    adapter = pair.conn.adapter
    adapter.send_informational(sid, ResponseHead(100, []))
    with pytest.raises(LocalProtocolError):
        adapter.send_informational(sid, ResponseHead(101, []))
    adapter.send_response(sid, ResponseHead(201, []))
    adapter.send_trailers(sid, [(b"x-done", b"yes")])
    pair.transfer()
    got = responses(pair.take_client_events())[sid]
    assert [h[b":status"] for h in got["headers"][:2]] == [b"100", b"201"]
    assert got["headers"][2] == {b"x-done": b"yes"} and got["ended"]


def test_frame_error_closes_connection_with_h3_code(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, b"\x00\x01x", end_stream=False)  # DATA before HEADERS
    pair.transfer()
    (error,) = of_type(pair.take_server_events(), ProtocolError)
    assert error.stream_id is None and error.code is ErrorCode.PROTOCOL_ERROR
    pair.now += 5  # past the client's draining period
    pair.client.handle_timer(pair.now)
    pair.drain_client()
    (closed,) = of_type(pair.quic_events, ConnectionTerminated)
    assert closed.error_code == 0x105  # H3_FRAME_UNEXPECTED


def test_lone_fin_after_body_gives_request_end(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = request(pair, [(b":method", b"PUT"), *GET[1:], (b":path", b"/f")], end_stream=False)
    pair.http.send_data(sid, b"x" * 10, end_stream=False)
    pair.transfer()
    assert not of_type(pair.take_server_events(), RequestEnd)
    pair.http.send_data(sid, b"", end_stream=True)
    pair.transfer()
    assert of_type(pair.take_server_events(), RequestEnd) == [RequestEnd(sid)]


def test_one_hundred_concurrent_streams(router_pair: Any) -> None:
    pair = connected(router_pair)
    sids = [request(pair, [*GET, (b":path", f"/item/{i}".encode())]) for i in range(100)]
    pair.transfer(rounds=200)
    heads = of_type(pair.take_server_events(), RequestHeaders)
    assert sorted(e.stream_id for e in heads) == sids
    adapter = pair.conn.adapter
    for event in heads:
        adapter.send_response(event.stream_id, ResponseHead(200, []))
        adapter.send_data(event.stream_id, event.head.path, end_stream=True)
    pair.transfer(rounds=200)
    got = responses(pair.take_client_events())
    assert {sid: got[sid]["body"] for sid in sids} == {
        sid: f"/item/{i}".encode() for i, sid in enumerate(sids)
    }
    assert all(got[sid]["status"] == 200 and got[sid]["ended"] for sid in sids)
    assert adapter._streams == {}  # every finished stream was forgotten


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")], ":path"),
        ([*GET, (b":path", b"/"), (b"X-Upper", b"1")], "X-Upper"),
        ([(b":method", b"GET"), (b"accept", b"*/*"), (b":path", b"/"), *GET[1:]], "after"),
        ([*GET, (b":path", b"/"), (b"x-bad", b"a\x00b")], "x-bad"),
        ([*GET, (b":path", b"/"), (b"connection", b"close")], "connection"),
    ],
)
def test_malformed_request_gets_400_and_neighbours_survive(
    router_pair: Any, headers: list[tuple[bytes, bytes]], reason: str
) -> None:
    pair = connected(router_pair)
    bad = request(pair, headers)
    good = request(pair, [*GET, (b":path", b"/ok")])
    pair.transfer()
    events = pair.take_server_events()
    (error,) = of_type(events, ProtocolError)
    assert error.stream_id == bad and error.code is ErrorCode.MESSAGE_ERROR
    assert reason.lower() in error.message.lower()
    assert [e.stream_id for e in of_type(events, RequestHeaders)] == [good]

    pair.conn.adapter.send_response(good, ResponseHead(204, []), end_stream=True)
    pair.transfer()
    got = responses(pair.take_client_events())
    assert got[bad]["status"] == 400 and got[bad]["ended"]
    assert got[bad]["body"].startswith(b"bad request: ") and got[bad]["body"].endswith(b"\n")
    assert got[good]["status"] == 204
    assert not of_type(pair.quic_events, ConnectionTerminated)


def test_malformed_request_with_body_is_ignored_after_400(router_pair: Any) -> None:
    pair = connected(router_pair)
    bad = request(pair, [(b":method", b"POST"), (b":path", b"/")], end_stream=False)
    pair.http.send_data(bad, b"ignored" * 100, end_stream=True)
    pair.transfer()
    events = pair.take_server_events()
    assert of_type(events, ProtocolError)[0].stream_id == bad
    assert not of_type(events, RequestData) and not of_type(events, RequestEnd)
    assert responses(pair.take_client_events())[bad]["status"] == 400


def test_host_header_stands_in_for_missing_authority(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = request(
        pair, [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"host", b"h.test")]
    )
    pair.transfer()
    (event,) = of_type(pair.take_server_events(), RequestHeaders)
    assert event.stream_id == sid and event.head.authority == b"h.test"
    assert event.head.headers == []


def test_oversized_header_section_gets_431(router_pair: Any) -> None:
    pair = connected(router_pair, limits=ConnectionLimits(max_header_size=1024))
    sid = request(pair, [*GET, (b":path", b"/"), (b"x-big", b"v" * 4000)])
    pair.transfer()
    (error,) = of_type(pair.take_server_events(), ProtocolError)
    assert error.stream_id == sid and error.code is ErrorCode.HEADERS_TOO_LARGE
    assert responses(pair.take_client_events())[sid]["status"] == 431


def test_client_reset_gives_stream_reset_and_sends_are_quiet(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = request(pair, [(b":method", b"POST"), *GET[1:], (b":path", b"/")], end_stream=False)
    pair.transfer()
    assert of_type(pair.take_server_events(), RequestHeaders)[0].stream_id == sid
    pair.client.reset_stream(sid, ErrorCode.CANCEL.h3_code)
    pair.client.stop_stream(sid, ErrorCode.CANCEL.h3_code)
    pair.transfer()
    resets = of_type(pair.take_server_events(), StreamReset)
    assert resets == [StreamReset(sid, ErrorCode.CANCEL)]
    adapter = pair.conn.adapter
    adapter.send_response(sid, ResponseHead(200, []))  # must not raise
    adapter.send_data(sid, b"late", end_stream=True)
    assert adapter.send_capacity(sid) == 0
    pair.transfer()
    assert not of_type(pair.quic_events, ConnectionTerminated)


def test_send_capacity_drops_while_queued_and_recovers_after_acks(router_pair: Any) -> None:
    buffer = 128 * 1024
    pair = connected(router_pair, limits=ConnectionLimits(stream_buffer=buffer))
    sid = request(pair, [*GET, (b":path", b"/big")])
    pair.transfer()
    adapter = pair.conn.adapter
    adapter.send_response(sid, ResponseHead(200, []))
    start = adapter.send_capacity(sid)
    assert buffer - 100 < start <= buffer
    adapter.send_data(sid, b"x" * 100_000)
    assert adapter.send_capacity(sid) <= start - 100_000
    pair.transfer(rounds=200)
    assert adapter.send_capacity(sid) == buffer
    assert responses(pair.take_client_events())[sid]["body"] == b"x" * 100_000
    assert adapter.send_capacity(999) == 0


def test_receive_gating_holds_the_client_until_consumed(router_pair: Any) -> None:
    window = 64 * 1024
    body = bytes(range(256)) * 1024  # 256 KiB
    pair = connected(router_pair, limits=ConnectionLimits(stream_buffer=window))
    sid = request(pair, [(b":method", b"POST"), *GET[1:], (b":path", b"/up")], end_stream=False)
    pair.http.send_data(sid, body, end_stream=True)
    pair.transfer(rounds=200)
    events = pair.take_server_events()
    received = b"".join(e.data for e in of_type(events, RequestData))
    assert window // 2 < len(received) <= window  # held at the window, nothing consumed
    pair.transfer(rounds=50)
    assert not of_type(pair.take_server_events(), RequestData)  # still held

    adapter = pair.conn.adapter
    for _ in range(20):
        adapter.consumed(sid, len(received))
        pair.transfer(rounds=200)
        events = pair.take_server_events()
        chunk = b"".join(e.data for e in of_type(events, RequestData))
        assert len(chunk) <= window
        received += chunk
        if of_type(events, RequestEnd):
            break
    assert received == body


def test_graceful_close_waits_for_in_flight_response(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = request(pair, [*GET, (b":path", b"/slow")])
    pair.transfer()
    adapter = pair.conn.adapter
    adapter.close()
    pair.transfer()
    assert not of_type(pair.quic_events, ConnectionTerminated)
    assert not adapter.drained
    adapter.send_response(sid, ResponseHead(200, []), end_stream=True)
    pair.transfer()
    assert responses(pair.take_client_events())[sid]["status"] == 200
    assert adapter.drained  # answered and acknowledged: the owner may close after a linger
    assert not of_type(pair.quic_events, ConnectionTerminated)
    pair.conn.quic.close(error_code=ErrorCode.NO_ERROR.h3_code)
    pair.transfer()
    pair.now += 5
    pair.client.handle_timer(pair.now)
    pair.drain_client()
    (closed,) = of_type(pair.quic_events, ConnectionTerminated)
    assert closed.error_code == ErrorCode.NO_ERROR.h3_code


def test_hq_interop_get(router_pair: Any) -> None:
    pair = connected(router_pair, alpn="hq-interop")
    assert isinstance(pair.conn.adapter, HqServerAdapter)
    sid = request(pair, [(b":method", b"GET"), (b":path", b"/index.html")])
    pair.transfer()
    (event,) = of_type(pair.take_server_events(), RequestHeaders)
    assert event == RequestHeaders(
        sid, RequestHead(b"GET", b"https", b"", b"/index.html", [], b"0.9"), True
    )
    adapter = pair.conn.adapter
    adapter.send_response(sid, ResponseHead(200, [(b"x-ignored", b"1")]))
    adapter.send_data(sid, b"<h1>hq</h1>", end_stream=True)
    pair.transfer()
    got = responses(pair.take_client_events())[sid]
    assert got["body"] == b"<h1>hq</h1>" and got["ended"]
    assert adapter._streams == {}


def test_hq_interop_malformed_request_line_resets_stream(router_pair: Any) -> None:
    pair = connected(router_pair, alpn="hq-interop")
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, b"NONSENSE\r\n", end_stream=True)
    pair.transfer()
    (error,) = of_type(pair.take_server_events(), ProtocolError)
    assert error.stream_id == sid and error.code is ErrorCode.MESSAGE_ERROR


class H3ServerPeer:
    """aioquic's server-side H3Connection answering every request the same way."""

    def __init__(self, quic: QuicConnection) -> None:
        self.quic = quic
        self.h3: H3Connection | None = None
        self.requests: list[HeadersReceived] = []
        self.bodies: dict[int, bytes] = {}

    def on_event(self, event: Any) -> None:
        if self.h3 is None:
            self.h3 = H3Connection(self.quic)
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.requests.append(h3_event)
            elif isinstance(h3_event, DataReceived):
                sid = h3_event.stream_id
                self.bodies[sid] = self.bodies.get(sid, b"") + h3_event.data


def test_h3_client_adapter_against_aioquic_server(
    harness: Any, server_config: QuicConfiguration
) -> None:
    client_quic = GatedQuicConnection(
        configuration=harness.client_config("h3"), stream_window=64 * 1024
    )
    server_quic = QuicConnection(
        configuration=server_config,
        original_destination_connection_id=client_quic.original_destination_connection_id,
    )
    adapter = H3ClientAdapter(client_quic)
    peer = H3ServerPeer(server_quic)
    client_events: list[Any] = []
    pair = harness.DirectPair(
        client_quic,
        server_quic,
        lambda e: client_events.extend(adapter.handle_event(e)),
        peer.on_event,
    )
    pair.transfer()
    credit = adapter.available_streams()
    assert credit > 0

    head = RequestHead(b"POST", b"https", b"origin.test", b"/api", [(b"x-a", b"1")], b"3")
    sid = adapter.send_request(head)
    assert adapter.available_streams() == credit - 1
    assert adapter.send_capacity(sid) > 0
    adapter.send_data(sid, b"payload")
    adapter.send_trailers(sid, [(b"x-sum", b"7")])
    pair.transfer()
    (req,) = peer.requests[:1]
    assert dict(req.headers)[b":authority"] == b"origin.test"
    assert dict(req.headers)[b"x-a"] == b"1"
    assert peer.bodies[sid] == b"payload"

    assert peer.h3 is not None
    peer.h3.send_headers(sid, [(b":status", b"103"), (b"link", b"</a.css>")])
    peer.h3.send_headers(sid, [(b":status", b"200"), (b"server", b"aioquic")])
    peer.h3.send_data(sid, b"response body", end_stream=False)
    peer.h3.send_headers(sid, [(b"x-trailer", b"t")], end_stream=True)
    pair.transfer()
    kinds = [type(e) for e in client_events]
    assert kinds == [
        InformationalResponse,
        ResponseHeaders,
        ResponseData,
        ResponseTrailers,
        ResponseEnd,
    ]
    assert client_events[0].head == ResponseHead(103, [(b"link", b"</a.css>")])
    assert client_events[1].head.status == 200 and not client_events[1].end_stream
    assert client_events[2].data == b"response body"
    assert client_events[3].trailers == [(b"x-trailer", b"t")]
    adapter.consumed(sid, len(b"response body"))
    assert adapter._streams == {}

    adapter.close()
    with pytest.raises(LocalProtocolError):
        adapter.send_request(head)
    assert adapter.available_streams() == 0
    pair.transfer()
    assert adapter.drained
    client_quic.close(error_code=ErrorCode.NO_ERROR.h3_code)
    pair.transfer()
    pair.now += 5
    server_quic.handle_timer(pair.now)
    client_quic.handle_timer(pair.now)
    while (event := client_quic.next_event()) is not None:
        client_events.extend(adapter.handle_event(event))
    assert client_events[-1] == ConnectionClosed(ErrorCode.NO_ERROR, "")
