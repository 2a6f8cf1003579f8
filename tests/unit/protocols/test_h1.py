"""The HTTP/1.1 adapters, driven by real h11 peers in memory."""

from __future__ import annotations

import h11

from protocols.errors import ErrorCode
from protocols.events import (
    ConnectionClosed,
    Event,
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
)
from protocols.h1 import H1ClientAdapter, H1ServerAdapter
from protocols.messages import RequestHead, ResponseHead, get_header


def client_events(client: h11.Connection, data: bytes) -> list[object]:
    client.receive_data(data)
    events: list[object] = []
    for _ in range(100):
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            break
        events.append(event)
    return events


def test_get_without_body_has_end_stream_and_no_request_end() -> None:
    client = h11.Connection(h11.CLIENT)
    server = H1ServerAdapter()
    data = client.send(
        h11.Request(method="GET", target="/a?b=1", headers=[("Host", "example.com:8443")])
    )
    data += client.send(h11.EndOfMessage())
    events = server.receive_data(data)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, RequestHeaders)
    assert event.end_stream
    assert event.head.method == b"GET"
    assert event.head.path == b"/a?b=1"
    assert event.head.authority == b"example.com:8443"
    assert event.head.scheme == b"https"
    assert get_header(event.head.headers, b"host") is None


def test_post_chunked_with_trailers() -> None:
    client = h11.Connection(h11.CLIENT)
    server = H1ServerAdapter()
    data = client.send(
        h11.Request(
            method="POST",
            target="/up",
            headers=[("Host", "h"), ("Transfer-Encoding", "chunked")],
        )
    )
    data += client.send(h11.Data(data=b"hello "))
    data += client.send(h11.Data(data=b"world"))
    data += client.send(h11.EndOfMessage(headers=[("x-sum", "42")]))
    events = server.receive_data(data)
    kinds = [type(e) for e in events]
    assert kinds == [RequestHeaders, RequestData, RequestData, RequestTrailers, RequestEnd]
    assert not events[0].end_stream  # type: ignore[union-attr]
    body = b"".join(e.data for e in events if isinstance(e, RequestData))
    assert body == b"hello world"
    assert events[3].trailers == [(b"x-sum", b"42")]  # type: ignore[union-attr]


def test_response_round_trip_and_keep_alive_with_pipelining() -> None:
    client = h11.Connection(h11.CLIENT)
    server = H1ServerAdapter()
    first = client.send(h11.Request(method="GET", target="/1", headers=[("Host", "h")]))
    first += client.send(h11.EndOfMessage())
    # a pipelined second request arrives before the first response
    second = b"GET /2 HTTP/1.1\r\nhost: h\r\n\r\n"
    events = server.receive_data(first + second)
    assert [e.head.path for e in events if isinstance(e, RequestHeaders)] == [b"/1"]
    server.send_response(1, ResponseHead(200, [(b"content-length", b"5")]))
    server.send_data(1, b"hello", end_stream=True)
    received = client_events(client, server.data_to_send())
    assert isinstance(received[0], h11.Response) and received[0].status_code == 200
    assert isinstance(received[1], h11.Data) and received[1].data == b"hello"
    more: list[Event] = server.next_events()
    assert [e.head.path for e in more if isinstance(e, RequestHeaders)] == [b"/2"]
    assert isinstance(more[0], RequestHeaders) and more[0].stream_id == 2


def test_response_without_length_is_chunked_and_carries_trailers() -> None:
    client = h11.Connection(h11.CLIENT)
    server = H1ServerAdapter()
    server.receive_data(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
    server.send_response(1, ResponseHead(200, []))
    server.send_data(1, b"abc")
    server.send_trailers(1, [(b"x-checksum", b"1")])
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "h")]))
    client.send(h11.EndOfMessage())
    received = client_events(client, server.data_to_send())
    assert isinstance(received[0], h11.Response)
    assert (b"transfer-encoding", b"chunked") in list(received[0].headers)
    end = received[-1]
    assert isinstance(end, h11.EndOfMessage)
    assert list(end.headers) == [(b"x-checksum", b"1")]


def test_trailers_dropped_when_length_is_known() -> None:
    server = H1ServerAdapter()
    server.receive_data(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
    server.send_response(1, ResponseHead(200, [(b"content-length", b"3")]))
    server.send_data(1, b"abc")
    server.send_trailers(1, [(b"x-checksum", b"1")])
    out = server.data_to_send()
    assert out.endswith(b"abc")
    assert b"x-checksum" not in out


def test_expect_100_continue_is_answered() -> None:
    server = H1ServerAdapter()
    server.receive_data(
        b"PUT /u HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
    )
    assert server.data_to_send().startswith(b"HTTP/1.1 100 ")


def test_malformed_request_gets_400_and_close() -> None:
    server = H1ServerAdapter()
    events = server.receive_data(b"GARBAGE\r\n\r\n")
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert events[0].stream_id is None
    out = server.data_to_send()
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in out


def test_oversized_headers_get_431() -> None:
    server = H1ServerAdapter(max_header_size=4096)
    events = server.receive_data(b"GET / HTTP/1.1\r\nhost: h\r\nx-big: " + b"a" * 8000)
    assert any(isinstance(e, ProtocolError) for e in events)
    assert server.data_to_send().startswith(b"HTTP/1.1 431 ")


def test_absolute_form_target() -> None:
    server = H1ServerAdapter()
    events = server.receive_data(
        b"GET http://example.com/x?y HTTP/1.1\r\nhost: example.com\r\n\r\n"
    )
    head = events[0].head  # type: ignore[union-attr]
    assert (head.scheme, head.authority, head.path) == (b"http", b"example.com", b"/x?y")


def test_absolute_form_with_another_host_is_refused() -> None:
    server = H1ServerAdapter()
    events = server.receive_data(b"GET http://example.com/x HTTP/1.1\r\nhost: other\r\n\r\n")
    assert [type(e) for e in events] == [ProtocolError]
    assert server.data_to_send().startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_http10_client_is_closed_after_response() -> None:
    server = H1ServerAdapter()
    server.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    server.send_response(1, ResponseHead(200, []))
    server.send_data(1, b"bye", end_stream=True)
    assert server.data_to_send().endswith(b"bye")
    assert any(isinstance(e, ConnectionClosed) for e in server.next_events())


def test_client_adapter_round_trip_and_reuse() -> None:
    origin = h11.Connection(h11.SERVER)
    client = H1ClientAdapter()
    assert client.available_streams() == 1
    head = RequestHead(b"POST", b"http", b"origin:80", b"/p", [(b"x-a", b"1")])
    sid = client.send_request(head)
    client.send_data(sid, b"body", end_stream=True)
    origin.receive_data(client.data_to_send())
    request = origin.next_event()
    assert isinstance(request, h11.Request)
    assert (b"host", b"origin:80") in list(request.headers)
    assert (b"transfer-encoding", b"chunked") in list(request.headers)
    data = origin.next_event()
    assert isinstance(data, h11.Data) and data.data == b"body"
    assert isinstance(origin.next_event(), h11.EndOfMessage)
    wire = origin.send(h11.InformationalResponse(status_code=103, headers=[("link", "</a>")]))
    wire += origin.send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
    wire += origin.send(h11.Data(data=b"ok"))
    wire += origin.send(h11.EndOfMessage(headers=[("x-t", "v")]))
    events = client.receive_data(wire)
    kinds = [type(e) for e in events]
    assert kinds == [
        InformationalResponse,
        ResponseHeaders,
        ResponseData,
        ResponseTrailers,
        ResponseEnd,
    ]
    assert client.available_streams() == 1  # clean exchange: reusable


def test_client_get_without_body_and_empty_response() -> None:
    origin = h11.Connection(h11.SERVER)
    client = H1ClientAdapter()
    sid = client.send_request(RequestHead(b"GET", b"http", b"o", b"/", []), end_stream=True)
    origin.receive_data(client.data_to_send())
    request = origin.next_event()
    assert isinstance(request, h11.Request)
    assert b"transfer-encoding" not in dict(request.headers)
    assert isinstance(origin.next_event(), h11.EndOfMessage)
    wire = origin.send(h11.Response(status_code=204, headers=[]))
    wire += origin.send(h11.EndOfMessage())
    events = client.receive_data(wire)
    assert len(events) == 1
    assert isinstance(events[0], ResponseHeaders) and events[0].end_stream
    assert events[0].stream_id == sid


def test_client_sees_garbage_as_protocol_error() -> None:
    client = H1ClientAdapter()
    client.send_request(RequestHead(b"GET", b"http", b"o", b"/", []), end_stream=True)
    events = client.receive_data(b"NOT HTTP\r\n\r\n")
    assert isinstance(events[-1], ProtocolError)
    assert client.available_streams() == 0


def test_client_truncated_body_is_an_error() -> None:
    client = H1ClientAdapter()
    client.send_request(RequestHead(b"GET", b"http", b"o", b"/", []), end_stream=True)
    events = client.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    events += client.receive_data(b"")
    assert isinstance(events[0], ResponseHeaders)
    assert isinstance(events[-1], ProtocolError)
    assert not any(isinstance(e, ResponseEnd) for e in events)


def test_reset_mid_body_closes_the_connection() -> None:
    server = H1ServerAdapter()
    server.receive_data(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n")
    server.send_response(1, ResponseHead(200, [(b"content-length", b"100")]))
    server.send_data(1, b"partial")
    assert not any(isinstance(e, ConnectionClosed) for e in server.next_events())
    server.reset_stream(1, ErrorCode.INTERNAL_ERROR)
    assert any(isinstance(e, ConnectionClosed) for e in server.next_events())
