"""HTTP/1.1 server limits (request line, head size, field count, requests per connection) and
the adapter API the driver's timers use: ``reading_head``, ``send_error``, early responses."""

from __future__ import annotations

import h11
import pytest

from protocols.events import ConnectionClosed, Event, ProtocolError, RequestData, RequestHeaders
from protocols.h1 import H1ServerAdapter
from protocols.messages import ResponseHead
from tests.unit.protocols.test_h1_rules import assert_refused, serve


def trickle(server: H1ServerAdapter, data: bytes, step: int) -> tuple[list[Event], int]:
    """Feed ``data`` ``step`` bytes at a time until the adapter reports an error; returns the
    events and how many bytes it had been given by then."""
    events: list[Event] = []
    for offset in range(0, len(data), step):
        events += server.receive_data(data[offset : offset + step])
        if any(isinstance(e, ProtocolError) for e in events):
            return events, offset + step
    return events, len(data)


@pytest.mark.parametrize("split", ["whole", "halves", "bytes"])
def test_request_line_over_the_limit_is_414(split: str) -> None:
    raw = b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    verdict = serve(raw, split, H1ServerAdapter(max_request_line=100))
    assert verdict.heads == []
    assert_refused(verdict, 414, "request line too long")


def test_request_line_at_the_limit_passes() -> None:
    line = b"GET /" + b"a" * 86 + b" HTTP/1.1"
    assert len(line) == 100
    verdict = serve(line + b"\r\nHost: h\r\n\r\n", server=H1ServerAdapter(max_request_line=100))
    assert len(verdict.heads) == 1


def test_a_huge_request_line_is_refused_while_it_trickles_in() -> None:
    server = H1ServerAdapter()  # 8 KiB request line by default
    events, fed = trickle(server, b"GET /" + b"a" * 100_000, 512)
    assert any(isinstance(e, ProtocolError) for e in events)
    assert fed <= 8192 + 512
    assert server.data_to_send().startswith(b"HTTP/1.1 414 URI Too Long\r\n")


def test_a_64_kib_field_is_431() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    verdict = serve(raw)
    assert verdict.heads == []
    assert_refused(verdict, 431, "header section too large")


def test_a_huge_head_is_refused_while_it_trickles_in() -> None:
    server = H1ServerAdapter(max_header_size=4096)
    events, fed = trickle(server, b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 100_000, 100)
    assert any(isinstance(e, ProtocolError) for e in events)
    assert fed <= 4096 + 100
    assert server.data_to_send().startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("count", [101, 5000])
def test_too_many_fields_is_431(count: int) -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))
    verdict = serve(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")
    assert verdict.heads == []
    assert_refused(verdict, 431, "too many header fields")


def test_field_count_limit_is_exact() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    ok = serve(
        b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n",
        server=H1ServerAdapter(max_header_count=10),
    )
    assert len(ok.heads) == 1
    more = serve(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-10: v\r\n" + fields + b"\r\n",
        server=H1ServerAdapter(max_header_count=10),
    )
    assert_refused(more, 431, "too many header fields")


def test_trailers_count_against_the_limits() -> None:
    trailers = b"".join(b"X-%d: v\r\n" % i for i in range(20))
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + trailers
    verdict = serve(raw + b"\r\n", server=H1ServerAdapter(max_header_count=10))
    assert_refused(verdict, 431, "too many trailer fields")


def answer(server: H1ServerAdapter, stream_id: int) -> bytes:
    server.send_response(stream_id, ResponseHead(200, [(b"content-length", b"2")]))
    server.send_data(stream_id, b"ok", end_stream=True)
    return server.data_to_send()


def test_max_requests_closes_after_the_nth_response() -> None:
    server = H1ServerAdapter(max_requests=2)
    get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    events = server.receive_data(get * 3)
    assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [1]
    assert b"connection: close" not in answer(server, 1).lower()
    events = server.next_events()
    assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [2]
    assert b"connection: close" in answer(server, 2).lower()
    events = server.next_events()
    assert not any(isinstance(e, RequestHeaders) for e in events)
    assert any(isinstance(e, ConnectionClosed) for e in events)


def test_max_requests_zero_is_unlimited() -> None:
    server = H1ServerAdapter(max_requests=0)
    get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    for stream_id in range(1, 30):
        events = server.receive_data(get)
        assert [e.stream_id for e in events if isinstance(e, RequestHeaders)] == [stream_id]
        assert b"connection: close" not in answer(server, stream_id).lower()
        server.next_events()


def test_reading_head_tracks_a_partial_head() -> None:
    server = H1ServerAdapter()
    assert not server.reading_head
    server.receive_data(b"GET / HT")
    assert server.reading_head
    server.receive_data(b"TP/1.1\r\nHost: h\r\n")
    assert server.reading_head
    server.receive_data(b"\r\n")
    assert not server.reading_head
    answer(server, 1)
    server.next_events()
    assert not server.reading_head
    server.receive_data(b"G")
    assert server.reading_head


def test_reading_head_is_false_while_a_body_arrives() -> None:
    server = H1ServerAdapter()
    server.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    assert not server.reading_head


def test_send_error_during_a_partial_head() -> None:
    server = H1ServerAdapter()
    server.receive_data(b"GET / HTTP/1.1\r\nHost:")
    server.send_error(408, "request head not received in time")
    out = server.data_to_send()
    assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in out.lower()
    assert out.endswith(b"request head not received in time\n")
    assert any(isinstance(e, ConnectionClosed) for e in server.next_events())
    assert not any(isinstance(e, RequestHeaders) for e in server.receive_data(b" h\r\n\r\n"))


def test_send_error_while_the_body_arrives() -> None:
    client = h11.Connection(h11.CLIENT)
    server = H1ServerAdapter()
    wire = client.send(
        h11.Request(method="POST", target="/u", headers=[("Host", "h"), ("Content-Length", "100")])
    )
    assert isinstance(server.receive_data(wire + b"abc")[0], RequestHeaders)
    server.send_error(413, "request body too large")
    client.receive_data(server.data_to_send())
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 413
    assert (b"connection", b"close") in list(response.headers)
    assert isinstance(client.next_event(), h11.Data)
    assert isinstance(client.next_event(), h11.EndOfMessage)
    assert any(isinstance(e, ConnectionClosed) for e in server.next_events())
    rest = b"d" * 97 + b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n"
    assert not any(isinstance(e, RequestHeaders) for e in server.receive_data(rest))


def test_send_error_after_the_response_started_sends_nothing() -> None:
    server = H1ServerAdapter()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    server.send_response(1, ResponseHead(200, [(b"content-length", b"10")]))
    server.data_to_send()
    server.send_error(408, "late")
    assert server.data_to_send() == b""
    assert server.must_close


def test_an_early_response_closes_and_the_rest_is_never_a_request() -> None:
    server = H1ServerAdapter()
    events = server.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
    assert isinstance(events[0], RequestHeaders)
    out = answer(server, 1)
    assert b"connection: close" in out.lower()
    assert any(isinstance(e, ConnectionClosed) for e in server.next_events())
    smuggled = b"cdefghij" + b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    events = server.receive_data(smuggled) + server.next_events()
    assert not any(isinstance(e, RequestHeaders) for e in events)


def test_a_response_after_the_whole_body_keeps_the_connection() -> None:
    server = H1ServerAdapter()
    events = server.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab")
    assert [type(e) for e in events][:2] == [RequestHeaders, RequestData]
    assert b"connection: close" not in answer(server, 1).lower()
    assert not server.must_close
