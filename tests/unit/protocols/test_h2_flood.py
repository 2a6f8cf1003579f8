"""HTTP/2 flood budgets and field-section limits, driven by a real h2 client in memory."""

from __future__ import annotations

import time
from typing import Any

import h2.events as h2e
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from protocols.errors import ErrorCode
from protocols.events import (
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    StreamReset,
)
from protocols.h2 import H2ServerAdapter
from protocols.messages import ResponseHead

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
]
POST = [(b":method", b"POST"), *REQUEST[1:]]
OK = ResponseHead(200, [])


def connect(**kwargs: Any) -> tuple[H2ServerAdapter, H2Connection]:
    """A server adapter and a real h2 client, past the preface and both SETTINGS exchanges."""
    server = H2ServerAdapter(**kwargs)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    for _ in range(5):
        if data := client.data_to_send():  # b"" would mean end of file
            server.receive_data(data)
        client.receive_data(server.data_to_send())
    return server, client


def frames(data: bytes) -> list[Frame]:
    out: list[Frame] = []
    view, offset = memoryview(data), 0
    while offset < len(data):
        frame, length = Frame.parse_frame_header(view[offset : offset + 9])
        frame.parse_body(view[offset + 9 : offset + 9 + length])
        out.append(frame)
        offset += 9 + length
    return out


def goaway_codes(server: H2ServerAdapter) -> list[int]:
    return [f.error_code for f in frames(server.data_to_send()) if isinstance(f, GoAwayFrame)]


def calm(events: list[Any]) -> list[ProtocolError]:
    return [
        e
        for e in events
        if isinstance(e, ProtocolError)
        and e.stream_id is None
        and e.code is ErrorCode.ENHANCE_YOUR_CALM
    ]


def headers_frame(encoder: Encoder, stream_id: int, fields: list[tuple[bytes, bytes]]) -> bytes:
    frame = HeadersFrame(stream_id, encoder.encode(fields), flags=["END_HEADERS", "END_STREAM"])
    return bytes(frame.serialize())


def rapid_reset(count: int, first: int = 1) -> bytes:
    """``count`` HEADERS + RST_STREAM(CANCEL) pairs, as raw frames (one HPACK context)."""
    encoder = Encoder()
    out = bytearray()
    for i in range(count):
        stream_id = first + 2 * i
        out += headers_frame(encoder, stream_id, REQUEST)
        out += RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL).serialize()
    return bytes(out)


def test_rapid_reset_trips_at_the_budget_and_not_before() -> None:
    server, _ = connect(max_premature_resets=100)
    events = server.receive_data(rapid_reset(99))  # HEADERS and RST in the same read
    assert not calm(events)
    assert sum(isinstance(e, RequestHeaders) for e in events) == 99
    assert sum(isinstance(e, StreamReset) for e in events) == 99  # every reset reported
    server.data_to_send()
    events = server.receive_data(rapid_reset(5, first=199))
    assert sum(isinstance(e, StreamReset) for e in events) == 1  # the 100th, then the cut
    assert calm(events)
    assert goaway_codes(server) == [ErrorCodes.ENHANCE_YOUR_CALM]
    assert server.receive_data(rapid_reset(1, first=301)) == []


def test_a_client_cancelling_a_few_of_many_streams_is_never_cut() -> None:
    server, client = connect(max_premature_resets=100, max_requests=0)
    for n in range(1500):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, REQUEST, end_stream=True)
        if n % 3 == 0:  # a third of them cancelled before the answer
            client.reset_stream(stream_id, ErrorCodes.CANCEL)
        events = server.receive_data(client.data_to_send())
        assert not calm(events), n
        if n % 3:
            server.send_response(stream_id, OK, end_stream=True)
        client.receive_data(server.data_to_send())


def flood(server: H2ServerAdapter, frame: Frame, count: int) -> list[Any]:
    return server.receive_data(bytes(frame.serialize()) * count)


def idle_frames() -> list[Frame]:
    ping = PingFrame(0, opaque_data=b"12345678")
    settings = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535})
    return [
        ping,
        settings,
        WindowUpdateFrame(0, window_increment=1),
        PriorityFrame(1, depends_on=0, stream_weight=16),
        RstStreamFrame(1, error_code=ErrorCodes.CANCEL),  # stream 1 is closed already
        WindowUpdateFrame(1, window_increment=1),
    ]


def test_control_frame_floods_trip_after_the_budget() -> None:
    for frame in idle_frames():
        server, client = connect(max_control_frames=1000)
        client.send_headers(1, REQUEST, end_stream=True)  # the budget refills here
        server.receive_data(client.data_to_send())
        server.send_response(1, OK, end_stream=True)
        assert not calm(flood(server, frame, 1000)), frame
        events = flood(server, frame, 5)
        assert calm(events), frame
        assert goaway_codes(server)[-1:] == [ErrorCodes.ENHANCE_YOUR_CALM]


def test_empty_data_flood_trips() -> None:
    server, _ = connect(max_control_frames=1000)
    encoder = Encoder()
    head = HeadersFrame(1, encoder.encode(POST), flags=["END_HEADERS"]).serialize()
    events = server.receive_data(bytes(head) + bytes(DataFrame(1, b"").serialize()) * 1000)
    assert not calm(events)
    assert calm(server.receive_data(bytes(DataFrame(1, b"").serialize()) * 2))


def test_useful_work_refills_the_budget() -> None:
    server, client = connect(max_control_frames=1000)
    ping = bytes(PingFrame(0, opaque_data=b"12345678").serialize())
    for _ in range(5):
        assert not calm(server.receive_data(ping * 900))
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, REQUEST, end_stream=True)  # a new request
        assert not calm(server.receive_data(client.data_to_send()))


def test_long_download_with_window_updates_never_trips() -> None:
    server, client = connect(max_control_frames=100)
    client.send_headers(1, REQUEST, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_response(1, OK)
    updates = 0
    chunk = b"x" * 8192
    for _ in range(2000):  # 16 MB; the client credits every chunk back
        server.send_data(1, chunk[: server.send_capacity(1)])
        for event in client.receive_data(server.data_to_send()):
            if isinstance(event, h2e.DataReceived) and event.flow_controlled_length:
                client.acknowledge_received_data(event.flow_controlled_length, 1)
        out = client.data_to_send()
        updates += sum(isinstance(f, WindowUpdateFrame) for f in frames(out))
        assert not out or not calm(server.receive_data(out))
    assert updates > 400  # four times the budget went by


def test_long_upload_never_trips() -> None:
    server, client = connect(max_control_frames=100)
    client.send_headers(1, POST)
    server.receive_data(client.data_to_send())
    received = 0
    for _ in range(1000):
        client.send_data(1, b"y" * min(4096, client.local_flow_control_window(1)))
        events = server.receive_data(client.data_to_send())
        assert not calm(events)
        for event in events:
            if isinstance(event, RequestData):
                received += len(event.data)
                server.consumed(1, len(event.data))
        client.receive_data(server.data_to_send())
    client.end_stream(1)
    assert RequestEnd(1) in server.receive_data(client.data_to_send())
    assert received == 1000 * 4096


def test_continuation_flood_is_cut_before_buffering_megabytes() -> None:
    server, _ = connect(max_header_list_size=16 * 1024)
    encoder = Encoder()
    start = HeadersFrame(1, encoder.encode(REQUEST), flags=["END_STREAM"]).serialize()
    piece = bytes(ContinuationFrame(1, b"\x00" * 16000).serialize())
    fed, events = len(start), server.receive_data(bytes(start))
    for _ in range(256):  # up to 4 MB
        events += server.receive_data(piece)
        fed += len(piece)
        if calm(events):
            break
    assert calm(events), "never cut"
    assert fed <= 2 * 16 * 1024 + len(piece) + len(start)
    assert goaway_codes(server) == [ErrorCodes.ENHANCE_YOUR_CALM]


def test_many_empty_continuations_count_as_idle_frames() -> None:
    server, _ = connect(max_control_frames=10)
    encoder = Encoder()
    start = HeadersFrame(1, encoder.encode(REQUEST), flags=["END_STREAM"]).serialize()
    events = server.receive_data(bytes(start) + bytes(ContinuationFrame(1, b"").serialize()) * 20)
    assert calm(events)


def response_status(server: H2ServerAdapter, client: H2Connection) -> dict[int, bytes]:
    statuses: dict[int, bytes] = {}
    for event in client.receive_data(server.data_to_send()):
        if isinstance(event, h2e.ResponseReceived):
            statuses[event.stream_id] = dict(event.headers)[b":status"]
    return statuses


def test_hpack_bomb_gets_431_on_its_stream_and_the_next_stream_works() -> None:
    server, client = connect(max_header_list_size=64 * 1024)
    big = [(b"x-bomb", b"b" * 4000)] * 20  # ~80 KiB decoded, ~4 KiB encoded (indexed)
    client.send_headers(1, [*REQUEST, *big], end_stream=True)
    encoded = client.data_to_send()
    assert len(encoded) < 8 * 1024
    events = server.receive_data(encoded)
    assert [type(e) for e in events] == [ProtocolError]
    assert events[0].stream_id == 1 and events[0].code is ErrorCode.HEADERS_TOO_LARGE
    assert response_status(server, client) == {1: b"431"}
    client.send_headers(3, [*REQUEST, (b"x-bomb", b"b" * 4000)], end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert [type(e) for e in events] == [RequestHeaders]  # HPACK state still in step
    server.send_response(3, OK, end_stream=True)
    assert response_status(server, client) == {3: b"200"}


def test_an_unfinished_oversized_request_is_answered_431_then_reset_no_error() -> None:
    server, client = connect(max_header_list_size=8 * 1024)
    client.send_headers(1, [*POST, (b"cookie", b"c" * 9000)])
    events = server.receive_data(client.data_to_send())
    assert events[0] == ProtocolError(1, ErrorCode.HEADERS_TOO_LARGE, events[0].message)
    got = frames(server.data_to_send())
    assert any(isinstance(f, HeadersFrame) for f in got)
    resets = [f for f in got if isinstance(f, RstStreamFrame)]
    assert [r.error_code for r in resets] == [ErrorCodes.NO_ERROR]


def test_a_block_beyond_the_hard_decode_cap_is_a_connection_error() -> None:
    server, client = connect(max_header_list_size=8 * 1024)
    client.send_headers(1, [*REQUEST, *[(b"x-bomb", b"b" * 4000)] * 12], end_stream=True)
    events = server.receive_data(client.data_to_send())  # 48 KiB > 4 x 8 KiB
    assert [e.code for e in events if isinstance(e, ProtocolError)] == [ErrorCode.ENHANCE_YOUR_CALM]


def test_field_count_limit() -> None:
    server, client = connect(max_header_count=100)
    fields = [(f"x-f{i}".encode(), b"v") for i in range(101)]
    client.send_headers(1, [*REQUEST, *fields[:100]], end_stream=True)
    client.send_headers(3, [*REQUEST, *fields], end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert isinstance(events[0], RequestHeaders) and events[0].stream_id == 1
    assert events[1] == ProtocolError(3, ErrorCode.HEADERS_TOO_LARGE, events[1].message)
    assert response_status(server, client) == {3: b"431"}


def test_max_header_list_size_is_advertised() -> None:
    _server, client = connect(max_header_list_size=12345)
    assert client.remote_settings.max_header_list_size == 12345


def test_max_requests_sends_a_graceful_goaway_and_refuses_later_streams() -> None:
    server, client = connect(max_requests=3)
    for stream_id in (1, 3, 5, 7):
        client.send_headers(stream_id, REQUEST, end_stream=True)
    events = server.receive_data(client.data_to_send())  # all four in one read
    assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [1, 3, 5]
    got = frames(server.data_to_send())
    goaways = [f for f in got if isinstance(f, GoAwayFrame)]
    assert [(g.last_stream_id, g.error_code) for g in goaways] == [(5, 0)]
    assert [(f.stream_id, f.error_code) for f in got if isinstance(f, RstStreamFrame)] == [
        (7, ErrorCodes.REFUSED_STREAM)
    ]
    for stream_id in (1, 3, 5):  # the accepted ones are still answered
        server.send_response(stream_id, OK, end_stream=True)
    assert response_status(server, client) == {1: b"200", 3: b"200", 5: b"200"}


def test_budget_checks_are_cheap() -> None:
    server, _ = connect(max_premature_resets=10**6)
    data = rapid_reset(2000)
    started = time.perf_counter()
    server.receive_data(data)
    assert time.perf_counter() - started < 5.0
