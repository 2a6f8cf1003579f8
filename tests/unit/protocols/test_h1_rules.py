"""Strict HTTP/1.1 request rules: every malformed or ambiguous request is refused before h11
(and so the proxy) sees any of it, whatever the read boundaries; valid traffic still passes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from protocols.events import (
    Event,
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestTrailers,
)
from protocols.h1 import H1ServerAdapter
from protocols.messages import ResponseHead

SPLITS = ["whole", "halves", "bytes"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a user of the server adapter would notice: events and the bytes written back."""

    events: list[Event]
    out: bytes

    @property
    def status(self) -> int:
        """The status of the response the adapter wrote (0: none)."""
        return int(self.out[9:12]) if self.out.startswith(b"HTTP/1.1 ") else 0

    @property
    def error(self) -> ProtocolError | None:
        return next((e for e in self.events if isinstance(e, ProtocolError)), None)

    @property
    def heads(self) -> list[RequestHeaders]:
        return [e for e in self.events if isinstance(e, RequestHeaders)]

    def body(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, RequestData))


def pieces(data: bytes, split: str) -> list[bytes]:
    """``whole``: one read; ``halves``: two reads; ``bytes``: one byte per read."""
    if split == "whole":
        return [data]
    if split == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    middle = len(data) // 2
    return [data[:middle], data[middle:]]


def serve(data: bytes, split: str = "whole", server: H1ServerAdapter | None = None) -> Verdict:
    """Feed ``data`` to a server adapter in reads of the given ``split``."""
    server = server or H1ServerAdapter()
    events: list[Event] = []
    for piece in pieces(data, split):
        events += server.receive_data(piece)
    return Verdict(events, server.data_to_send())


def assert_refused(verdict: Verdict, status: int, rule: str) -> None:
    assert verdict.status == status, verdict.out
    head, _, body = verdict.out.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert rule.encode() in body
    assert verdict.error is not None and verdict.error.stream_id is None
    assert rule in verdict.error.message


POST = b"POST /p HTTP/1.1\r\nHost: h\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

HEAD_CASES = [
    # framing: Content-Length with Transfer-Encoding, either order
    (
        POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "content-length with transfer-encoding",
    ),
    (
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
        "content-length with transfer-encoding",
    ),
    # Transfer-Encoding behind whitespace: obs-fold or a first field with leading whitespace
    (POST + b"\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "obs-fold"),
    (
        b"POST / HTTP/1.1\r\n\tTransfer-Encoding: chunked\r\nHost: h\r\n\r\n",
        400,
        "whitespace before the first field",
    ),
    (POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, "whitespace before the colon"),
    (POST + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400, "whitespace before the colon"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", 400, "obs-fold"),
    # line ends
    (b"GET / HTTP/1.1\nHost: h\n\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n", 400, "bare CR"),
    (b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare LF"),
    # Content-Length
    (POST + b"Content-Length: +5\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length: -5\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length: 0x5\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length: 5 5\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length:\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length: 5,\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length: 99999999999999999999\r\n\r\nhello", 400, "malformed content-length"),
    (POST + b"Content-Length: 5, 6\r\n\r\nhello", 400, "differing content-length"),
    (
        POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        400,
        "differing content-length",
    ),
    # Transfer-Encoding
    (
        POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        "unsupported transfer-coding",
    ),
    (POST + b"Transfer-Encoding: identity\r\n\r\n", 501, "unsupported transfer-coding"),
    (POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400, "chunked more than once"),
    (
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        "chunked more than once",
    ),
    (POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, "chunked is not the final"),
    (POST + b"Transfer-Encoding:\r\n\r\n", 400, "malformed transfer-encoding"),
    (POST + b"Transfer-Encoding: chunked,\r\n\r\n", 400, "malformed transfer-encoding"),
    (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "transfer-encoding in HTTP/1.0",
    ),
    # field names and values
    (b"GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n\r\n", 400, "invalid field name"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400, "invalid field name"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400, "field line without a colon"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400, "control character in field value"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", 400, "control character in field value"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", 400, "control character in field value"),
    # Host
    (b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "missing Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
    (b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400, "more than one Host"),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host"),
    (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, "invalid Host"),
    (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400, "invalid Host"),
    # request line
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET /\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "empty line"),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version"),
    (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version"),
    (b"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version"),
    # request-target forms
    (
        b"GET http://other/x HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "absolute-form authority differs from Host",
    ),
    (b"GET http://user@h/x HTTP/1.1\r\nHost: user@h\r\n\r\n", 400, "invalid Host"),
    (b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request-target"),
    (b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request-target"),
    (b"GET h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 400, "authority-form"),
    (b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "CONNECT needs an authority-form"),
    (b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400, "CONNECT needs an authority-form"),
    (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "asterisk-form"),
    (b"GET x/y HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request-target"),
]

CHUNK_CASES = [
    (b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", "malformed chunk size"),
    (b"-1\r\na\r\n0\r\n\r\n", "malformed chunk size"),
    (b"+1\r\na\r\n0\r\n\r\n", "malformed chunk size"),
    (b" 1\r\na\r\n0\r\n\r\n", "malformed chunk size"),
    (b"1 \r\na\r\n0\r\n\r\n", "malformed chunk size"),
    (b"\r\na\r\n0\r\n\r\n", "malformed chunk size"),
    (b"1" + b"0" * 16 + b"\r\na\r\n0\r\n\r\n", "chunk size too large"),
    (b"f" * 40 + b"\r\na\r\n0\r\n\r\n", "chunk size too large"),
    (b"5;ext=1\nhello\r\n0\r\n\r\n", "bare LF"),
    (b"5\nhello\r\n0\r\n\r\n", "bare LF"),
    (b"5;e\x01x\r\nhello\r\n0\r\n\r\n", "malformed chunk extension"),
    (b"5;\r\nhello\r\n0\r\n\r\n", "malformed chunk extension"),
    (b"5 ;a\r\nhello\r\n0\r\n\r\n", "malformed chunk size"),
    (b'5;a="x\r\nhello\r\n0\r\n\r\n', "malformed chunk extension"),
    (b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
    (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
    (b"5\r\nhello\r0\r\n\r\n", "chunk data not followed by CRLF"),
    (b"0\r\nX y: z\r\n\r\n", "invalid field name"),
    (b"0\r\nX-T\r\n\r\n", "field line without a colon"),
    (b"0\r\nX-T: 1\r\n more\r\n\r\n", "obs-fold"),
    (b"0\r\nX-T: 1\n\r\n", "bare LF"),
    (b"0\r\nX-T: a\x00\r\n\r\n", "control character in field value"),
    (b"0\r\n\n", "bare LF"),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("raw", "status", "rule"), HEAD_CASES)
def test_malformed_heads_are_refused_and_nothing_is_emitted(
    raw: bytes, status: int, rule: str, split: str
) -> None:
    verdict = serve(raw, split)
    assert verdict.heads == []
    assert_refused(verdict, status, rule)


@pytest.mark.parametrize(("chunks", "rule"), CHUNK_CASES)
def test_bad_chunk_in_the_same_read_as_the_head_emits_nothing(chunks: bytes, rule: str) -> None:
    verdict = serve(CHUNKED + chunks)
    assert verdict.heads == []
    assert_refused(verdict, 400, rule)


@pytest.mark.parametrize("split", ["head-then-rest", "bytes"])
@pytest.mark.parametrize(("chunks", "rule"), CHUNK_CASES)
def test_bad_chunk_in_a_later_read_is_an_error_before_the_request_ends(
    chunks: bytes, rule: str, split: str
) -> None:
    server = H1ServerAdapter()
    first = serve(CHUNKED, server=server)
    assert len(first.heads) == 1 and first.error is None
    verdict = serve(chunks, "whole" if split == "head-then-rest" else "bytes", server)
    assert not any(isinstance(e, RequestEnd | RequestTrailers) for e in verdict.events)
    assert_refused(verdict, 400, rule)
    assert server.must_close
    assert serve(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", server=server).events == []


def test_bad_chunk_after_the_response_started_closes_without_a_400() -> None:
    server = H1ServerAdapter()
    serve(CHUNKED + b"5\r\nhello\r\n", server=server)

    server.send_response(1, ResponseHead(200, [(b"content-length", b"10")]))
    server.send_data(1, b"part")
    server.data_to_send()
    verdict = serve(b"5\r\nworldXX", server=server)
    assert verdict.out == b""
    assert verdict.error is not None and "chunk data not followed by CRLF" in verdict.error.message


def test_a_bad_pipelined_request_waits_for_the_good_one_before_it_to_be_answered() -> None:

    server = H1ServerAdapter()
    good = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
    verdict = serve(good + b"GET /2 HTTP/1.1\r\nHost: h\r\nX@: 1\r\n\r\n", server=server)
    assert [e.head.path for e in verdict.heads] == [b"/1"]
    assert verdict.error is None and verdict.out == b""
    server.send_response(1, ResponseHead(200, [(b"content-length", b"2")]))
    server.send_data(1, b"ok", end_stream=True)
    later = server.next_events()
    out = server.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 400 Bad Request" in out
    assert not any(isinstance(e, RequestHeaders) for e in later)
    assert any(isinstance(e, ProtocolError) for e in later)


GOOD_CASES = [
    # (request bytes, expected requests: (method, authority, path, body))
    (
        b"GET /a?b=1 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n",
        [(b"GET", b"example.com:8443", b"/a?b=1", b"")],
    ),
    (
        CHUNKED
        + b'5;name=value;q="a \\" b"\r\nhello\r\n6;x = y ;z\r\n world\r\n'
        + b"0;last\r\nX-Sum: 1\r\nX-Two: 2\r\n\r\n",
        [(b"POST", b"h", b"/p", b"hello world")],
    ),
    (POST + b"Content-Length: 5\r\n\r\nhello", [(b"POST", b"h", b"/p", b"hello")]),
    (
        POST + b"Content-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
        [(b"POST", b"h", b"/p", b"hello")],
    ),
    (
        POST + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        [(b"POST", b"h", b"/p", b"abc")],
    ),
    (POST + b"Content-Length: 0\r\n\r\n", [(b"POST", b"h", b"/p", b"")]),
    (
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n" + POST + b"Content-Length: 2\r\n\r\nok",
        [(b"GET", b"h", b"/1", b""), (b"POST", b"h", b"/p", b"ok")],
    ),
    (
        b"GET http://Example.COM/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [(b"GET", b"example.com", b"/x?y", b"")],
    ),
    (b"GET https://h:8443?q HTTP/1.1\r\nHost: h:8443\r\n\r\n", [(b"GET", b"h:8443", b"/?q", b"")]),
    (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", [(b"OPTIONS", b"h", b"*", b"")]),
    (b"GET / HTTP/1.0\r\n\r\n", [(b"GET", b"", b"/", b"")]),
    (b"GET http://h/ HTTP/1.0\r\n\r\n", [(b"GET", b"h", b"/", b"")]),
    (b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", [(b"GET", b"h", b"/", b"")]),
    (
        b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n"
        + b"X-Empty:\r\nX-Obs: caf\xc3\xa9\r\nX-Tab: a\tb\r\n\r\n",
        [(b"GET", b"[::1]:8443", b"/", b"")],
    ),
    (
        b"GET /~a!$&'()*+,;=:@%20/?x=/? HTTP/1.1\r\nHost: h\r\n\r\n",
        [(b"GET", b"h", b"/~a!$&'()*+,;=:@%20/?x=/?", b"")],
    ),
    (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", [(b"GET", b"", b"/", b"")]),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("raw", "expected"), GOOD_CASES)
def test_valid_requests_pass(
    raw: bytes, expected: list[tuple[bytes, bytes, bytes, bytes]], split: str
) -> None:

    server = H1ServerAdapter()
    verdict = serve(raw, split, server)
    events = list(verdict.events)
    seen = []
    for _ in range(len(expected)):
        heads = [e for e in events if isinstance(e, RequestHeaders)]
        assert heads, events
        head = heads[0].head
        body = b"".join(e.data for e in events if isinstance(e, RequestData))
        seen.append((head.method, head.authority, head.path, body))
        assert not any(isinstance(e, ProtocolError) for e in events)
        server.send_response(heads[0].stream_id, ResponseHead(204, []), end_stream=True)
        events = server.next_events()
    assert seen == expected
    assert verdict.out == b""


def test_trailers_and_extensions_reach_the_events() -> None:
    verdict = serve(CHUNKED + b"3;a=b\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n", "bytes")
    kinds = [type(e) for e in verdict.events if not isinstance(e, RequestData)]
    assert kinds == [RequestHeaders, RequestTrailers, RequestEnd]
    assert verdict.body() == b"abc"
    trailers = next(e for e in verdict.events if isinstance(e, RequestTrailers))
    assert trailers.trailers == [(b"x-sum", b"42")]


def test_connect_is_emitted_like_h2_does() -> None:
    verdict = serve(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert verdict.error is None
    head = verdict.heads[0].head
    assert (head.method, head.authority, head.path) == (b"CONNECT", b"example.com:443", b"")
