"""protocols.h2 driven against real h2 peers (and against each other), in memory, no sockets."""

from __future__ import annotations

from typing import Any, Protocol

import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import FlowControlError
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from protocols.errors import ErrorCode, LocalProtocolError
from protocols.events import (
    CapacityAvailable,
    ConnectionClosed,
    GoAway,
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
from protocols.h2 import H2ClientAdapter, H2ServerAdapter
from protocols.messages import RequestHead, ResponseHead


class Endpoint(Protocol):
    def receive_data(self, data: bytes) -> list[Any]: ...
    def data_to_send(self) -> bytes: ...


def transfer(a: Endpoint, b: Endpoint, rounds: int = 30) -> tuple[list[Any], list[Any]]:
    """Move bytes both ways until nothing is left; return (events of a, events of b)."""
    a_events: list[Any] = []
    b_events: list[Any] = []
    for _ in range(rounds):
        moved = False
        data = a.data_to_send()
        if data:
            moved = True
            b_events += b.receive_data(data)
        data = b.data_to_send()
        if data:
            moved = True
            a_events += a.receive_data(data)
        if not moved:
            return a_events, b_events
    raise AssertionError("transfer did not settle")


def h2_peer(*, client_side: bool, **config: Any) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=client_side, header_encoding=None, **config))
    conn.initiate_connection()
    return conn


def frames_of(data: bytes) -> list[Frame]:
    """Parse a byte string of whole frames (no preface)."""
    frames: list[Frame] = []
    view = memoryview(data)
    offset = 0
    for _ in range(1000):
        if offset >= len(data):
            return frames
        frame, length = Frame.parse_frame_header(view[offset : offset + 9])
        frame.parse_body(view[offset + 9 : offset + 9 + length])
        frames.append(frame)
        offset += 9 + length
    raise AssertionError("too many frames")


REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/a?b=1"),
]


def post(path: bytes = b"/upload") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", path),
    ]


def server_pair(
    peer_settings: dict[SettingCodes | int, int] | None = None, **kwargs: Any
) -> tuple[H2ServerAdapter, H2Connection]:
    server = H2ServerAdapter(**kwargs)
    client = h2_peer(client_side=True)
    if peer_settings:
        client.update_settings(peer_settings)
    server_events, _ = transfer(server, client)
    assert CapacityAvailable(None) in server_events
    return server, client


def client_pair(
    peer_settings: dict[SettingCodes | int, int] | None = None, **kwargs: Any
) -> tuple[H2ClientAdapter, H2Connection]:
    client = H2ClientAdapter(**kwargs)
    server = h2_peer(client_side=False)
    if peer_settings:
        server.update_settings(peer_settings)
    transfer(client, server)
    return client, server


def data_of(events: list[Any]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, RequestData | ResponseData))


# -- server role ---------------------------------------------------------------------------


def test_server_constructor_queues_settings() -> None:
    server = H2ServerAdapter(max_concurrent_streams=7, initial_window=100_000)
    settings: dict[int, int] = {}
    for frame in frames_of(server.data_to_send()):
        settings.update(getattr(frame, "settings", {}))
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 100_000
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 64 * 1024


def test_get_without_body_is_one_event_with_end_stream() -> None:
    server, client = server_pair()
    headers = [*REQUEST, (b"user-agent", b"t/1"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    client.send_headers(1, headers, end_stream=True)
    events, _ = transfer(server, client)
    head = RequestHead(
        b"GET",
        b"https",
        b"example.com",
        b"/a?b=1",
        [(b"user-agent", b"t/1"), (b"cookie", b"a=1; b=2")],
        http_version=b"2",
    )
    assert events == [RequestHeaders(1, head, True)]


def test_host_header_stands_in_for_missing_authority() -> None:
    server, client = server_pair()
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h.test")]
    client.send_headers(1, [*headers, (b"accept", b"*/*")], end_stream=True)
    events, _ = transfer(server, client)
    assert len(events) == 1
    assert events[0].head.authority == b"h.test"
    assert events[0].head.headers == [(b"accept", b"*/*")]


def test_post_with_body_and_trailers() -> None:
    server, client = server_pair()
    client.send_headers(1, [*post(), (b"te", b"trailers")])
    client.send_data(1, b"hello ")
    client.send_data(1, b"world")
    client.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    events, _ = transfer(server, client)
    assert isinstance(events[0], RequestHeaders)
    assert events[0].end_stream is False
    assert events[0].head.headers == [(b"te", b"trailers")]
    assert events[1:] == [
        RequestData(1, b"hello "),
        RequestData(1, b"world"),
        RequestTrailers(1, [(b"x-checksum", b"abc")]),
        RequestEnd(1),
    ]


def test_bytes_fed_one_at_a_time_give_the_same_events() -> None:
    server = H2ServerAdapter()
    client = h2_peer(client_side=True)
    client.send_headers(1, post())
    client.send_data(1, b"body", end_stream=True)
    events: list[Any] = []
    for byte in client.data_to_send():
        events += server.receive_data(bytes([byte]))
    requests = [e for e in events if not isinstance(e, CapacityAvailable)]
    assert [type(e) for e in requests] == [RequestHeaders, RequestData, RequestEnd]
    assert requests[1] == RequestData(1, b"body")


def test_response_with_body_and_trailers_reaches_client() -> None:
    server, client = server_pair()
    client.send_headers(1, REQUEST, end_stream=True)
    transfer(server, client)
    head = ResponseHead(
        200,
        [
            (b"content-type", b"text/plain"),
            (b"connection", b"keep-alive"),
            (b"transfer-encoding", b"chunked"),
            (b"keep-alive", b"timeout=5"),
            (b"x-a", b"1"),
        ],
    )
    server.send_response(1, head)
    server.send_data(1, b"abc")
    server.send_trailers(1, [(b"x-trailer", b"t")])
    _, peer = transfer(server, client)
    response = next(e for e in peer if isinstance(e, h2e.ResponseReceived))
    assert response.headers == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"x-a", b"1"),
    ]
    assert b"".join(e.data for e in peer if isinstance(e, h2e.DataReceived)) == b"abc"
    trailers = next(e for e in peer if isinstance(e, h2e.TrailersReceived))
    assert trailers.headers == [(b"x-trailer", b"t")]
    assert any(isinstance(e, h2e.StreamEnded) for e in peer)


def test_informational_then_final_response() -> None:
    server, client = server_pair()
    client.send_headers(1, REQUEST, end_stream=True)
    transfer(server, client)
    server.send_informational(1, ResponseHead(103, [(b"link", b"</s.css>; rel=preload")]))
    server.send_response(1, ResponseHead(204, []), end_stream=True)
    _, peer = transfer(server, client)
    kinds = [type(e) for e in peer if not isinstance(e, h2e.WindowUpdated)]
    assert kinds[:2] == [h2e.InformationalResponseReceived, h2e.ResponseReceived]
    assert peer[0].headers == [(b":status", b"103"), (b"link", b"</s.css>; rel=preload")]
    with pytest.raises(LocalProtocolError):
        server.send_informational(1, ResponseHead(200, []))


def test_large_body_is_split_into_frames_of_max_size() -> None:
    server, client = server_pair()
    client.send_headers(1, REQUEST, end_stream=True)
    transfer(server, client)
    server.send_response(1, ResponseHead(200, []))
    assert server.send_capacity(1) == 65_535
    body = bytes(range(256)) * 160  # 40960 bytes
    server.send_data(1, body, end_stream=True)
    _, peer = transfer(server, client)
    chunks = [e.data for e in peer if isinstance(e, h2e.DataReceived)]
    assert b"".join(chunks) == body
    assert len(chunks) == 3
    assert max(len(c) for c in chunks) <= client.max_inbound_frame_size


def test_request_window_stays_closed_until_consumed() -> None:
    window = 100_000
    server, client = server_pair(initial_window=window)
    client.send_headers(1, post())
    assert client.local_flow_control_window(1) == window
    sent = 0
    for _ in range(20):
        size = min(client.local_flow_control_window(1), client.max_outbound_frame_size)
        if size == 0:
            break
        client.send_data(1, b"x" * size)
        sent += size
    events, _ = transfer(server, client)
    assert sent == window
    assert len(data_of(events)) == window
    transfer(server, client)
    assert client.local_flow_control_window(1) == 0  # no credit came back by itself
    with pytest.raises(FlowControlError):
        client.send_data(1, b"x")
    server.consumed(1, window)
    transfer(server, client)
    assert client.local_flow_control_window(1) == window


def test_connection_window_is_not_the_bottleneck_for_several_streams() -> None:
    window = 100_000
    server, client = server_pair(initial_window=window)
    received = 0
    for stream_id in (1, 3, 5):
        client.send_headers(stream_id, post())
        for _ in range(20):
            size = min(client.local_flow_control_window(stream_id), client.max_outbound_frame_size)
            if size == 0:
                break
            client.send_data(stream_id, b"y" * size)
        events, _ = transfer(server, client)
        received += len(data_of(events))
    assert received == 3 * window  # far beyond the 65,535-byte default connection window


def test_padding_is_credited_by_the_adapter() -> None:
    server, client = server_pair(initial_window=1000)
    client.send_headers(1, post())
    client.send_data(1, b"p" * 300, pad_length=255)
    events, _ = transfer(server, client)
    assert data_of(events) == b"p" * 300
    assert client.local_flow_control_window(1) == 1000 - 556
    server.consumed(1, 300)  # with the 256 padding bytes: past half the window
    transfer(server, client)
    assert client.local_flow_control_window(1) == 1000


def test_send_capacity_follows_the_client_window() -> None:
    server, client = server_pair(peer_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    client.send_headers(1, REQUEST, end_stream=True)
    transfer(server, client)
    assert server.send_capacity(1) == 10
    server.send_response(1, ResponseHead(200, []))
    server.send_data(1, b"0123456789")
    assert server.send_capacity(1) == 0
    with pytest.raises(LocalProtocolError):
        server.send_data(1, b"!")
    client.increment_flow_control_window(5000, stream_id=1)
    events, peer = transfer(server, client)
    assert CapacityAvailable(1) in events
    assert server.send_capacity(1) == 5000
    assert b"".join(e.data for e in peer if isinstance(e, h2e.DataReceived)) == b"0123456789"


def test_client_reset_is_reported_and_later_sends_are_swallowed() -> None:
    server, client = server_pair()
    client.send_headers(1, post())
    client.send_data(1, b"partial")
    transfer(server, client)
    client.reset_stream(1, ErrorCodes.CANCEL)
    events, _ = transfer(server, client)
    assert events == [StreamReset(1, ErrorCode.CANCEL)]
    server.send_response(1, ResponseHead(200, []))
    server.send_data(1, b"late")
    server.end_stream(1)
    server.consumed(1, 7)
    assert server.send_capacity(1) == 0
    assert server.data_to_send() == b""


def test_reset_returns_the_connection_credit_of_unconsumed_bytes() -> None:
    window = 64 * 1024
    server, client = server_pair(initial_window=window)  # connection window 4 * 64 KiB
    for stream_id in (1, 3):
        client.send_headers(stream_id, post())
        for _ in range(10):
            size = min(client.local_flow_control_window(stream_id), client.max_outbound_frame_size)
            if size == 0:
                break
            client.send_data(stream_id, b"z" * size)
    transfer(server, client)
    assert client.outbound_flow_control_window == 4 * window - 2 * window
    client.reset_stream(1, ErrorCodes.CANCEL)
    client.reset_stream(3, ErrorCodes.CANCEL)
    transfer(server, client)
    assert client.outbound_flow_control_window == 4 * window


def test_garbage_after_handshake_is_a_connection_error_with_goaway() -> None:
    server, client = server_pair()
    events = server.receive_data(b"\xff" * 32)
    assert len(events) == 1
    assert isinstance(events[0], ProtocolError)
    assert events[0].stream_id is None
    assert events[0].code is ErrorCode.FRAME_SIZE_ERROR
    peer = client.receive_data(server.data_to_send())
    assert any(isinstance(e, h2e.ConnectionTerminated) for e in peer)
    assert server.receive_data(b"more garbage") == []


def test_garbage_instead_of_preface() -> None:
    server = H2ServerAdapter()
    events = server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in events] == [ProtocolError]
    goaways = [f for f in frames_of(server.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1
    assert goaways[0].error_code == ErrorCodes.PROTOCOL_ERROR


def test_invalid_path_gets_400_on_its_own_stream() -> None:
    server, client = server_pair()
    bad = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"e.com"),
        (b":path", b"x"),
    ]
    client.send_headers(1, bad, end_stream=True)
    events, peer = transfer(server, client)
    assert events == [ProtocolError(1, ErrorCode.MESSAGE_ERROR, "invalid :path")]
    response = next(e for e in peer if isinstance(e, h2e.ResponseReceived))
    assert (b":status", b"400") in response.headers
    body = b"".join(e.data for e in peer if isinstance(e, h2e.DataReceived))
    assert body == b"bad request: invalid :path\n"
    # The connection lives on: the next request is served normally.
    client.send_headers(3, REQUEST, end_stream=True)
    events, _ = transfer(server, client)
    assert [type(e) for e in events] == [RequestHeaders]


def test_invalid_field_name_with_body_pending_gets_400_and_no_error_reset() -> None:
    server, client = server_pair()
    client.send_headers(1, [*post(), (b"bad(name", b"v")])
    events, peer = transfer(server, client)
    assert events == [ProtocolError(1, ErrorCode.MESSAGE_ERROR, "invalid field name b'bad(name'")]
    assert any(isinstance(e, h2e.ResponseReceived) for e in peer)
    resets = [e for e in peer if isinstance(e, h2e.StreamReset)]
    assert resets[0].error_code == ErrorCodes.NO_ERROR


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (REQUEST[:3], "missing mandatory b':path'"),
        ([*REQUEST, (b"X-Upper", b"v")], "uppercase"),
        ([*REQUEST, (b"connection", b"close")], "connection-specific"),
        ([*REQUEST, (b"te", b"gzip")], "te"),
        ([REQUEST[0], (b"x-a", b"1"), *REQUEST[1:]], "pseudo-header"),
        ([*REQUEST, (b":path", b"/again")], "duplicate"),
    ],
)
def test_malformed_request_is_a_400_on_its_stream_only(
    fields: list[tuple[bytes, bytes]], reason: str
) -> None:
    """RFC 9113 section 8.1.1: a stream error, so the client's other requests carry on."""
    server = H2ServerAdapter()
    client = h2_peer(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    transfer(server, client)
    client.send_headers(1, fields, end_stream=True)
    client.send_headers(3, REQUEST, end_stream=True)
    events, peer = transfer(server, client)
    assert isinstance(events[0], ProtocolError) and events[0].stream_id == 1
    assert reason.lower() in events[0].message.lower()
    assert events[1] == RequestHeaders(
        3, RequestHead(b"GET", b"https", b"example.com", b"/a?b=1", [], b"2"), True
    )
    status = {
        e.stream_id: dict(e.headers)[b":status"]
        for e in peer
        if isinstance(e, h2e.ResponseReceived)
    }
    assert status == {1: b"400"}
    assert not any(isinstance(e, h2e.ConnectionTerminated) for e in peer)


def test_pseudo_header_in_request_trailers_resets_that_stream() -> None:
    server, client = server_pair()
    client.send_headers(1, post(), end_stream=False)
    client.send_headers(3, REQUEST, end_stream=True)
    transfer(server, client)
    client.config.validate_outbound_headers = False
    client.send_headers(1, [(b":path", b"/late")], end_stream=True)
    events, peer = transfer(server, client)
    assert events == [ProtocolError(1, ErrorCode.MESSAGE_ERROR, events[0].message)]
    resets = [e for e in peer if isinstance(e, h2e.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.PROTOCOL_ERROR)]


def test_connect_passes_through_and_extended_connect_is_refused() -> None:
    server, client = server_pair()
    client.send_headers(1, [(b":method", b"CONNECT"), (b":authority", b"db.internal:5432")])
    client.send_headers(
        3,
        [*REQUEST[1:], (b":method", b"CONNECT"), (b":protocol", b"websocket")],
        end_stream=True,
    )
    events, peer = transfer(server, client)
    assert events == [
        RequestHeaders(1, RequestHead(b"CONNECT", b"", b"db.internal:5432", b"", [], b"2"), False),
        ProtocolError(3, ErrorCode.MESSAGE_ERROR, "extended CONNECT is not supported"),
    ]
    response = next(e for e in peer if isinstance(e, h2e.ResponseReceived))
    assert response.stream_id == 3


def test_send_misuse_raises_local_protocol_error() -> None:
    server, client = server_pair()
    client.send_headers(1, REQUEST, end_stream=True)
    transfer(server, client)
    with pytest.raises(LocalProtocolError):
        server.send_data(1, b"body before head")
    with pytest.raises(LocalProtocolError):
        server.send_response(1, ResponseHead(100, []))
    with pytest.raises(LocalProtocolError):
        server.send_response(1, ResponseHead(200, [(b"x-bad", b"a\r\nb")]))
    server.send_response(1, ResponseHead(200, []), end_stream=True)
    server.send_data(99, b"unknown stream is ignored")
    assert server.send_capacity(99) == 0


def test_graceful_close_lets_open_streams_finish_and_refuses_new_ones() -> None:
    server = H2ServerAdapter()
    client = H2ClientAdapter()
    transfer(client, server)
    first = client.send_request(RequestHead(b"POST", b"https", b"e.com", b"/1", []))
    _, server_events = transfer(client, server)
    assert [type(e) for e in server_events] == [RequestHeaders]
    server.close()
    second = client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/2", []), True)
    client_events, server_events = transfer(client, server)
    assert client_events == [GoAway(first), StreamReset(second, ErrorCode.REFUSED_STREAM)]
    assert server_events == []
    assert client.available_streams() == 0
    with pytest.raises(LocalProtocolError):
        client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/3", []))
    # The stream opened before the GOAWAY still completes in both directions.
    client.send_data(first, b"body", end_stream=True)
    _, server_events = transfer(client, server)
    assert server_events == [RequestData(first, b"body"), RequestEnd(first)]
    server.send_response(first, ResponseHead(200, []))
    server.send_data(first, b"done", end_stream=True)
    client_events, _ = transfer(client, server)
    assert client_events == [
        ResponseHeaders(first, ResponseHead(200, []), False),
        ResponseData(first, b"done"),
        ResponseEnd(first),
    ]


def test_close_with_error_sends_goaway_and_stops() -> None:
    server, client = server_pair()
    server.close(ErrorCode.ENHANCE_YOUR_CALM)
    peer = client.receive_data(server.data_to_send())
    terminated = [e for e in peer if isinstance(e, h2e.ConnectionTerminated)]
    assert terminated[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_eof_is_reported_once() -> None:
    server, _ = server_pair()
    events = server.receive_data(b"")
    assert [type(e) for e in events] == [ConnectionClosed]
    assert server.receive_data(b"") == []


# -- client role ---------------------------------------------------------------------------


def test_client_sends_preface_and_settings() -> None:
    _, server = client_pair(initial_window=70_000, max_header_list_size=8192)
    assert server.remote_settings.enable_push == 0
    assert server.remote_settings.initial_window_size == 70_000
    assert server.remote_settings.max_header_list_size == 8192


def test_request_response_round_trip() -> None:
    client, server = client_pair()
    head = RequestHead(
        b"GET",
        b"https",
        b"example.com",
        b"/x",
        [
            (b"accept", b"*/*"),
            (b"connection", b"close"),
            (b"keep-alive", b"5"),
            (b"proxy-connection", b"keep-alive"),
            (b"te", b"trailers"),
            (b"host", b"example.com"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
        ],
    )
    stream_id = client.send_request(head, end_stream=True)
    assert stream_id == 1
    _, peer = transfer(client, server)
    request = next(e for e in peer if isinstance(e, h2e.RequestReceived))
    assert request.headers == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/x"),
        (b"accept", b"*/*"),
        (b"te", b"trailers"),
    ]
    server.send_headers(1, [(b":status", b"200"), (b"content-type", b"text/plain")])
    server.send_data(1, b"hello")
    server.send_headers(1, [(b"x-t", b"v")], end_stream=True)
    events, _ = transfer(client, server)
    assert events == [
        ResponseHeaders(1, ResponseHead(200, [(b"content-type", b"text/plain")]), False),
        ResponseData(1, b"hello"),
        ResponseTrailers(1, [(b"x-t", b"v")]),
        ResponseEnd(1),
    ]


def test_te_other_than_trailers_is_dropped() -> None:
    client, server = client_pair()
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", [(b"te", b"gzip")]), True)
    _, peer = transfer(client, server)
    request = next(e for e in peer if isinstance(e, h2e.RequestReceived))
    assert all(name != b"te" for name, _ in request.headers)


def test_request_body_and_trailers_reach_the_server() -> None:
    client, server = client_pair()
    stream_id = client.send_request(RequestHead(b"PUT", b"https", b"e.com", b"/f", []))
    assert client.send_capacity(stream_id) == 65_535
    client.send_data(stream_id, b"abc")
    client.send_trailers(stream_id, [(b"x-sum", b"1")])
    _, peer = transfer(client, server)
    assert b"".join(e.data for e in peer if isinstance(e, h2e.DataReceived)) == b"abc"
    assert [e.headers for e in peer if isinstance(e, h2e.TrailersReceived)] == [[(b"x-sum", b"1")]]
    assert any(isinstance(e, h2e.StreamEnded) for e in peer)


def test_informational_response() -> None:
    client, server = client_pair()
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), end_stream=True)
    transfer(client, server)
    server.send_headers(1, [(b":status", b"103"), (b"link", b"</a>")])
    server.send_headers(1, [(b":status", b"204")], end_stream=True)
    events, _ = transfer(client, server)
    assert events == [
        InformationalResponse(1, ResponseHead(103, [(b"link", b"</a>")])),
        ResponseHeaders(1, ResponseHead(204, []), True),
    ]


def test_response_window_stays_closed_until_consumed() -> None:
    client, server = client_pair(initial_window=20_000)
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), end_stream=True)
    transfer(client, server)
    server.send_headers(1, [(b":status", b"200")])
    assert server.local_flow_control_window(1) == 20_000
    server.send_data(1, b"a" * 16_384)
    server.send_data(1, b"b" * 3_616)
    events, _ = transfer(client, server)
    assert len(data_of(events)) == 20_000
    assert server.local_flow_control_window(1) == 0
    client.consumed(1, 20_000)
    transfer(client, server)
    assert server.local_flow_control_window(1) == 20_000


def test_goaway_stops_new_streams_and_refuses_unprocessed_ones() -> None:
    client, server = client_pair()
    one = client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/1", []), True)
    three = client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/2", []), True)
    transfer(client, server)
    server.close_connection(last_stream_id=one)
    events = client.receive_data(server.data_to_send())
    assert events == [GoAway(one), StreamReset(three, ErrorCode.REFUSED_STREAM)]
    assert client.available_streams() == 0
    with pytest.raises(LocalProtocolError):
        client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/3", []))


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_graceful_goaway_lets_the_in_flight_response_finish(byte_by_byte: bool) -> None:
    client, server = client_pair()
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/1", []), True)
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/2", []), True)
    transfer(client, server)
    server.send_headers(1, [(b":status", b"200")])
    before = server.data_to_send()
    goaway = GoAwayFrame(0, last_stream_id=1, error_code=0).serialize()
    server.send_data(1, b"done", end_stream=True)
    after = server.data_to_send()
    wire = before + goaway + after
    events: list[Any] = []
    if byte_by_byte:
        for byte in wire:
            events += client.receive_data(bytes([byte]))
    else:
        events = client.receive_data(wire)
    assert events == [
        ResponseHeaders(1, ResponseHead(200, []), False),
        GoAway(1),
        StreamReset(3, ErrorCode.REFUSED_STREAM),
        ResponseData(1, b"done"),
        ResponseEnd(1),
    ]


def test_goaway_inside_a_header_block_is_left_to_h2() -> None:
    client, _ = client_pair()
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), True)
    open_block = HeadersFrame(1, data=b"\x88")  # :status 200, no END_HEADERS
    wire = open_block.serialize() + GoAwayFrame(0, last_stream_id=1).serialize()
    events = client.receive_data(wire)
    assert [type(e) for e in events] == [ProtocolError]


def test_goaway_with_error_closes_the_connection() -> None:
    client, server = client_pair()
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), True)
    server.close_connection(error_code=ErrorCodes.INTERNAL_ERROR, last_stream_id=0)
    events = client.receive_data(server.data_to_send())
    assert events[:2] == [GoAway(0), StreamReset(1, ErrorCode.REFUSED_STREAM)]
    assert isinstance(events[2], ConnectionClosed)
    assert events[2].code is ErrorCode.INTERNAL_ERROR
    assert client.available_streams() == 0
    assert client.receive_data(b"") == []


def test_concurrent_streams_respect_the_server_limit() -> None:
    client = H2ClientAdapter()
    assert client.available_streams() == 100  # assumed until the server's SETTINGS arrive
    server = h2_peer(client_side=False)
    server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    events, _ = transfer(client, server)
    assert CapacityAvailable(None) in events
    assert client.available_streams() == 2
    ids = [
        client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), True)
        for _ in range(2)
    ]
    assert ids == [1, 3]
    assert client.available_streams() == 0
    with pytest.raises(LocalProtocolError):
        client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), True)
    transfer(client, server)
    server.send_headers(1, [(b":status", b"204")], end_stream=True)
    transfer(client, server)
    assert client.available_streams() == 1


def test_malformed_status_is_a_stream_error() -> None:
    client = H2ClientAdapter()
    server = h2_peer(client_side=False, validate_outbound_headers=False)
    transfer(client, server)
    client.send_request(RequestHead(b"GET", b"https", b"e.com", b"/", []), True)
    transfer(client, server)
    server.send_headers(1, [(b":status", b"2x0")])
    events, peer = transfer(client, server)
    assert events == [ProtocolError(1, ErrorCode.MESSAGE_ERROR, "invalid :status b'2x0'")]
    resets = [f for f in peer if isinstance(f, h2e.StreamReset)]
    assert resets[0].error_code == ErrorCodes.PROTOCOL_ERROR


def test_server_reset_is_reported_to_the_client() -> None:
    client, server = client_pair()
    stream_id = client.send_request(RequestHead(b"POST", b"https", b"e.com", b"/", []))
    transfer(client, server)
    server.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
    events, _ = transfer(client, server)
    assert events == [StreamReset(stream_id, ErrorCode.REFUSED_STREAM)]
    client.send_data(stream_id, b"ignored")
    assert client.send_capacity(stream_id) == 0


def test_raw_frames_helper_sanity() -> None:
    # frames_of is used above to inspect bytes; make sure it parses what h2 writes.
    frame = DataFrame(1, data=b"x")
    frame.flags.add("END_STREAM")
    parsed = frames_of(frame.serialize() + RstStreamFrame(1, error_code=8).serialize())
    assert [type(f) for f in parsed] == [DataFrame, RstStreamFrame]


def test_adapters_move_a_large_body_both_ways_within_flow_control() -> None:
    server = H2ServerAdapter(initial_window=20_000)
    client = H2ClientAdapter(initial_window=30_000)
    transfer(client, server)
    body = bytes(range(251)) * 2000  # 502,000 bytes, many windows' worth
    stream_id = client.send_request(RequestHead(b"POST", b"https", b"e.com", b"/echo", []))
    upload = download = b""
    sent_up = sent_down = 0
    responded = False
    ends: list[Any] = []
    for _ in range(500):
        if sent_up < len(body):
            n = min(client.send_capacity(stream_id), len(body) - sent_up)
            if n:
                end = sent_up + n == len(body)
                client.send_data(stream_id, body[sent_up : sent_up + n], end_stream=end)
                sent_up += n
        if responded and sent_down < len(body):
            n = min(server.send_capacity(stream_id), len(body) - sent_down)
            if n:
                end = sent_down + n == len(body)
                server.send_data(stream_id, body[sent_down : sent_down + n], end_stream=end)
                sent_down += n
        client_events, server_events = transfer(client, server)
        for event in server_events:
            if isinstance(event, RequestHeaders):
                server.send_response(stream_id, ResponseHead(200, []))
                responded = True
            elif isinstance(event, RequestData):
                upload += event.data
                server.consumed(stream_id, len(event.data))
        for event in client_events:
            if isinstance(event, ResponseData):
                download += event.data
                client.consumed(stream_id, len(event.data))
        both = server_events + client_events
        ends += [e for e in both if isinstance(e, RequestEnd | ResponseEnd)]
        if len(ends) == 2:
            break
    assert upload == body
    assert download == body
    assert sorted(map(repr, ends)) == [repr(RequestEnd(stream_id)), repr(ResponseEnd(stream_id))]
