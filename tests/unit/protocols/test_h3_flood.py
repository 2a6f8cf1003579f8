"""HTTP/3 flood budgets and QPACK field-section limits, against a real aioquic client in memory."""

from __future__ import annotations

from typing import Any

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, Setting, encode_frame
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.events import ConnectionTerminated

from protocols.errors import ErrorCode
from protocols.events import ProtocolError, RequestData, RequestHeaders, StreamReset
from protocols.limits import ConnectionLimits
from protocols.messages import ResponseHead

GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]
POST = [(b":method", b"POST"), *GET[1:]]
EXCESSIVE_LOAD = 0x107


def connected(router_pair: Any, **limits: int) -> Any:
    pair = router_pair(limits=ConnectionLimits(max_concurrent_streams=1000, **limits))
    pair.transfer()
    pair.take_server_events()
    return pair


def calm(events: list[Any]) -> list[ProtocolError]:
    return [
        e
        for e in events
        if isinstance(e, ProtocolError)
        and e.stream_id is None
        and e.code is ErrorCode.ENHANCE_YOUR_CALM
    ]


def closed_with(pair: Any) -> int | None:
    """The error code of the CONNECTION_CLOSE the client received (it drains until a timer)."""
    for event in pair.quic_events:
        if isinstance(event, ConnectionTerminated):
            return int(event.error_code)
    close = pair.client._close_event
    return None if close is None else int(close.error_code)


def statuses(pair: Any) -> dict[int, int]:
    out: dict[int, int] = {}
    for event in pair.take_client_events():
        if isinstance(event, HeadersReceived):
            out[event.stream_id] = int(dict(event.headers)[b":status"])
    return out


def rapid_reset(pair: Any, count: int, batch: int = 10) -> list[Any]:
    """``count`` requests, each reset (RESET_STREAM + STOP_SENDING) once the server saw it."""
    events: list[Any] = []
    for start in range(0, count, batch):
        ids = []
        for _ in range(min(batch, count - start)):
            ids.append(pair.client.get_next_available_stream_id())
            pair.http.send_headers(ids[-1], GET, end_stream=True)
        pair.transfer()
        for stream_id in ids:
            pair.client.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            pair.client.stop_stream(stream_id, 0x10C)
        pair.transfer()
        events += pair.take_server_events()
    return events


def test_rapid_reset_trips_at_the_budget_and_not_before(router_pair: Any) -> None:
    pair = connected(router_pair, max_premature_resets=50)
    events = rapid_reset(pair, 49)
    assert not calm(events)
    assert len([e for e in events if isinstance(e, RequestHeaders)]) == 49
    assert len([e for e in events if isinstance(e, StreamReset)]) == 49  # each reported once
    events = rapid_reset(pair, 3)
    assert calm(events)
    assert closed_with(pair) == EXCESSIVE_LOAD


def test_a_client_cancelling_a_few_of_many_streams_is_never_cut(router_pair: Any) -> None:
    pair = connected(router_pair, max_premature_resets=20)
    for n in range(150):
        stream_id = pair.client.get_next_available_stream_id()
        pair.http.send_headers(stream_id, GET, end_stream=True)
        if n % 3 == 0:
            pair.client.reset_stream(stream_id, 0x10C)
        pair.transfer()
        assert not calm(pair.take_server_events()), n
        if n % 3:
            pair.conn.adapter.send_response(stream_id, ResponseHead(200, []), end_stream=True)
    pair.transfer()
    assert closed_with(pair) is None


def control_flood(pair: Any, frame: bytes, count: int) -> list[Any]:
    control = pair.http._local_control_stream_id
    for _ in range(count // 100):
        pair.client.send_stream_data(control, frame * 100)
        pair.transfer()
    return pair.take_server_events()


def test_control_stream_floods_trip(router_pair: Any) -> None:
    floods = [
        encode_frame(0x21, b""),  # a reserved (grease) frame type
        encode_frame(0xF0700, encode_uint_var(0) + b"u=1"),  # PRIORITY_UPDATE
        encode_frame(FrameType.MAX_PUSH_ID, encode_uint_var(8)),
    ]
    for frame in floods:
        pair = connected(router_pair, max_control_frames=500)
        assert not calm(control_flood(pair, frame, 400)), frame
        assert calm(control_flood(pair, frame, 200)), frame
        assert closed_with(pair) == EXCESSIVE_LOAD


def test_empty_data_and_unknown_frames_on_a_request_stream_trip(router_pair: Any) -> None:
    for frame in (encode_frame(FrameType.DATA, b""), encode_frame(0x40, b"xx")):
        pair = connected(router_pair, max_control_frames=300)
        stream_id = pair.client.get_next_available_stream_id()
        pair.http.send_headers(stream_id, POST)
        pair.transfer()
        pair.client.send_stream_data(stream_id, frame * 300)
        pair.transfer()
        assert not calm(pair.take_server_events())
        pair.client.send_stream_data(stream_id, frame * 5)
        pair.transfer()
        assert calm(pair.take_server_events())


def test_long_upload_never_trips(router_pair: Any) -> None:
    pair = connected(router_pair, max_control_frames=50)
    stream_id = pair.client.get_next_available_stream_id()
    pair.http.send_headers(stream_id, POST)
    received = 0
    for _ in range(200):
        pair.http.send_data(stream_id, b"u" * 4000, end_stream=False)
        pair.transfer()
        for event in pair.take_server_events():
            assert not calm([event])
            if isinstance(event, RequestData):
                received += len(event.data)
                pair.conn.adapter.consumed(stream_id, len(event.data))
    assert received == 200 * 4000


def test_long_download_never_trips(router_pair: Any) -> None:
    pair = connected(router_pair, max_control_frames=50)
    stream_id = pair.client.get_next_available_stream_id()
    pair.http.send_headers(stream_id, GET, end_stream=True)
    pair.transfer()
    adapter = pair.conn.adapter
    adapter.send_response(stream_id, ResponseHead(200, []))
    got = 0
    for _ in range(200):
        adapter.send_data(stream_id, b"d" * min(8000, adapter.send_capacity(stream_id)))
        pair.transfer()
        got += sum(len(e.data) for e in pair.take_client_events() if isinstance(e, DataReceived))
        assert not calm(pair.take_server_events())
    assert got > 1_000_000 and closed_with(pair) is None


def test_qpack_bomb_gets_431_and_the_next_stream_works(router_pair: Any) -> None:
    pair = connected(router_pair, max_header_count=10000)
    first = pair.client.get_next_available_stream_id()
    pair.http.send_headers(first, [*GET, (b"x-bomb", b"b" * 1000)], end_stream=True)
    pair.transfer()  # the client's encoder now has the big field in its dynamic table
    pair.conn.adapter.send_response(first, ResponseHead(200, []), end_stream=True)
    pair.transfer()
    assert statuses(pair) == {first: 200}
    pair.take_server_events()
    bomb = pair.client.get_next_available_stream_id()
    pair.http.send_headers(bomb, [*GET, *[(b"x-bomb", b"b" * 1000)] * 2000], end_stream=True)
    sent = pair.client._streams[bomb].sender._buffer  # the encoded request
    assert len(sent) < 4000  # a small block that would decode to 2 MB
    pair.transfer()
    events = pair.take_server_events()
    assert [(e.stream_id, e.code) for e in events if isinstance(e, ProtocolError)] == [
        (bomb, ErrorCode.HEADERS_TOO_LARGE)
    ]
    assert not any(isinstance(e, RequestHeaders) for e in events)
    assert statuses(pair) == {bomb: 431}
    ok = pair.client.get_next_available_stream_id()
    pair.http.send_headers(ok, [*GET, (b"x-bomb", b"b" * 1000)], end_stream=True)
    pair.transfer()
    (head,) = [e for e in pair.take_server_events() if isinstance(e, RequestHeaders)]
    assert head.stream_id == ok and (b"x-bomb", b"b" * 1000) in head.head.headers
    pair.conn.adapter.send_response(ok, ResponseHead(200, []), end_stream=True)
    pair.transfer()
    assert statuses(pair) == {ok: 200}
    assert closed_with(pair) is None


def test_a_decoded_section_over_the_limit_gets_431(router_pair: Any) -> None:
    pair = connected(router_pair)
    sid = pair.client.get_next_available_stream_id()
    pair.http.send_headers(sid, [*GET, *[(b"x-big", b"v" * 3000)] * 25], end_stream=True)
    pair.transfer()  # ~76 KB decoded, under the 16x bound: decoded, then refused
    events = pair.take_server_events()
    assert [(e.stream_id, e.code) for e in events if isinstance(e, ProtocolError)] == [
        (sid, ErrorCode.HEADERS_TOO_LARGE)
    ]
    assert statuses(pair) == {sid: 431}


def test_field_count_limit(router_pair: Any) -> None:
    pair = connected(router_pair, max_header_count=100)
    fields = [(f"x-f{i}".encode(), b"v") for i in range(101)]
    first = pair.client.get_next_available_stream_id()
    pair.http.send_headers(first, [*GET, *fields[:100]], end_stream=True)
    second = pair.client.get_next_available_stream_id()
    pair.http.send_headers(second, [*GET, *fields], end_stream=True)
    pair.transfer()
    events = pair.take_server_events()
    assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [first]
    assert [(e.stream_id, e.code) for e in events if isinstance(e, ProtocolError)] == [
        (second, ErrorCode.HEADERS_TOO_LARGE)
    ]
    assert statuses(pair) == {second: 431}


def test_max_field_section_size_is_advertised(router_pair: Any) -> None:
    pair = connected(router_pair)
    settings = pair.http.received_settings
    assert settings is not None and settings[Setting.MAX_FIELD_SECTION_SIZE] == 64 * 1024
