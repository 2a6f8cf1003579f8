"""Strict HTTP/1.1 response rules (client role): a malformed or ambiguous upstream response is a
ProtocolError (the proxy answers 502 and never reuses the connection), and so is one cut short."""

from __future__ import annotations

import pytest

from protocols.events import (
    ConnectionClosed,
    Event,
    InformationalResponse,
    ProtocolError,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
)
from protocols.h1 import H1ClientAdapter
from protocols.messages import RequestHead
from tests.unit.protocols.test_h1_rules import SPLITS, pieces


def fetch(
    data: bytes,
    split: str = "whole",
    *,
    method: bytes = b"GET",
    eof: bool = False,
    client: H1ClientAdapter | None = None,
) -> tuple[list[Event], H1ClientAdapter]:
    """Send one request with a client adapter and feed it ``data`` as the response."""
    client = client or H1ClientAdapter()
    client.send_request(RequestHead(method, b"http", b"o", b"/", []), end_stream=True)
    client.data_to_send()
    events: list[Event] = []
    for piece in pieces(data, split):
        events += client.receive_data(piece)
    if eof:
        events += client.receive_data(b"")
    return events, client


def error_of(events: list[Event]) -> ProtocolError | None:
    return next((e for e in events if isinstance(e, ProtocolError)), None)


BAD = [
    (b"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200OK\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1  200 OK\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"http/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 O\x00K\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 099 Low\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\ncontent-length: 0\r\n\r\n", "bare LF"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\n", "bare LF"),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "content-length with transfer-encoding",
    ),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nabc", "differing content-length"),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "differing content-length",
    ),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nab", "malformed content-length"),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "unsupported transfer-coding",
    ),
    (b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\ncontent-length: 0\r\n\r\n", "bare CR"),
    (
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\ncontent-length: 0\r\n\r\n",
        "control character in field value",
    ),
    (b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\ncontent-length: 0\r\n\r\n", "obs-fold"),
    (b"HTTP/1.1 200 OK\r\nX A: a\r\ncontent-length: 0\r\n\r\n", "invalid field name"),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n",
        "malformed chunk size",
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n",
        "chunk data not followed by CRLF",
    ),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a\nab\r\n0\r\n\r\n", "bare LF"),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX y\r\n\r\n",
        "field line without a colon",
    ),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("raw", "rule"), BAD)
def test_malformed_responses_are_protocol_errors(raw: bytes, rule: str, split: str) -> None:
    events, client = fetch(raw, split)
    error = error_of(events)
    assert error is not None and rule in error.message, events
    assert error.stream_id is None
    assert not any(isinstance(e, ResponseEnd) for e in events)
    assert client.available_streams() == 0


@pytest.mark.parametrize("split", SPLITS)
def test_data_after_a_complete_response_makes_the_connection_unusable(split: str) -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    events, client = fetch(raw + b"HTTP/1.1 200 OK\r\n\r\nsmuggled", split)
    assert b"".join(e.data for e in events if isinstance(e, ResponseData)) == b"ok"
    assert any(isinstance(e, ResponseEnd) for e in events)
    assert client.available_streams() == 0
    assert client.must_close


def test_data_before_any_request_makes_the_connection_unusable() -> None:
    """An idle pooled connection that gets bytes (say a 408 before the origin closes it) fails
    as a whole, so the pool closes it instead of keeping a wedged connection."""
    client = H1ClientAdapter()
    events = client.receive_data(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert [(type(e), getattr(e, "stream_id", 0)) for e in events] == [(ProtocolError, None)]
    assert client.available_streams() == 0


def test_a_bad_chunk_in_the_same_read_as_the_head_emits_no_head() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"
    events, _ = fetch(raw)
    assert [type(e) for e in events] == [ProtocolError]


def test_header_limits() -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(1001))
    events, _ = fetch(b"HTTP/1.1 200 OK\r\n" + many + b"content-length: 0\r\n\r\n")
    error = error_of(events)
    assert error is not None and "too many header fields" in error.message
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000
    events, _ = fetch(big, "halves")
    error = error_of(events)
    assert error is not None and "header section too large" in error.message
    events, _ = fetch(
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",
        client=H1ClientAdapter(max_header_size=4096),
    )
    assert error_of(events) is not None


GOOD = [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 200, b"OK", b"ok"),
    (b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok", 200, b"", b"ok"),
    (b"HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nok", 200, b"", b"ok"),
    (b"HTTP/1.1 404 Not\tFound \xe9\r\ncontent-length: 0\r\n\r\n", 404, b"Not\tFound \xe9", b""),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok", 200, b"OK", b"ok"),
    (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;x=1\r\nok\r\n0\r\nx-t: 1\r\n\r\n",
        200,
        b"OK",
        b"ok",
    ),
    (
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        204,
        b"No Content",
        b"",
    ),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("raw", "status", "reason", "body"), GOOD)
def test_valid_responses_pass(
    raw: bytes, status: int, reason: bytes, body: bytes, split: str
) -> None:
    events, client = fetch(raw, split)
    assert error_of(events) is None
    heads = [e for e in events if isinstance(e, ResponseHeaders)]
    assert [(h.head.status, h.head.reason) for h in heads] == [(status, reason)]
    assert b"".join(e.data for e in events if isinstance(e, ResponseData)) == body
    assert any(isinstance(e, ResponseEnd) for e in events) or heads[0].end_stream
    assert client.available_streams() == 1


def test_informational_then_final_and_trailers() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n"
    raw += b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n\r\n"
    events, _ = fetch(raw, "bytes")
    kinds = [type(e) for e in events]
    assert kinds == [InformationalResponse, ResponseHeaders, ResponseTrailers, ResponseEnd]


def test_head_response_with_length_has_no_body_and_the_connection_is_reused() -> None:
    events, client = fetch(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", method=b"HEAD")
    assert isinstance(events[0], ResponseHeaders) and events[0].end_stream
    assert client.available_streams() == 1
    events, client = fetch(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx", client=client)
    assert b"".join(e.data for e in events if isinstance(e, ResponseData)) == b"x"


def test_a_body_until_close_ends_cleanly_at_eof() -> None:
    events, client = fetch(b"HTTP/1.0 200 OK\r\n\r\nsome bytes", eof=True)
    assert b"".join(e.data for e in events if isinstance(e, ResponseData)) == b"some bytes"
    assert any(isinstance(e, ResponseEnd) for e in events)
    assert client.available_streams() == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\ncontent-",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n",
    ],
)
def test_a_response_cut_short_is_never_a_clean_end(raw: bytes) -> None:
    events, client = fetch(raw, eof=True)
    assert not any(isinstance(e, ResponseEnd) for e in events)
    assert any(isinstance(e, ProtocolError | ConnectionClosed) for e in events)
    assert client.available_streams() == 0


def test_an_error_h11_finds_is_reported_once() -> None:
    events, client = fetch(b"\x00HTTP/1.1 200 OK\r\n\r\n", "bytes", eof=True)
    assert [type(e) for e in events if not isinstance(e, ConnectionClosed)] == [ProtocolError]
    assert client.available_streams() == 0
