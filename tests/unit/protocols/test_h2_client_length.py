"""HTTP/2 client role: a response body that disagrees with its content-length, or DATA on a
response that has none (HEAD, 204, 304), is an error of its stream only; siblings carry on."""

from __future__ import annotations

from typing import Any

import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from protocols.errors import ErrorCode
from protocols.events import (
    ConnectionClosed,
    InformationalResponse,
    ProtocolError,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
)
from protocols.h2 import H2ClientAdapter
from protocols.messages import RequestHead, ResponseHead


class Upstream:
    """An H2ClientAdapter and a real h2 server peer in memory that sends what it is told."""

    def __init__(self) -> None:
        self.adapter = H2ClientAdapter()
        self.peer = H2Connection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.peer.initiate_connection()
        self.peer_events: list[Any] = []
        self.flush()

    def flush(self) -> list[Any]:
        """Move bytes both ways until both sides are quiet; the adapter's events."""
        events: list[Any] = []
        for _ in range(20):
            ours, theirs = self.adapter.data_to_send(), self.peer.data_to_send()
            if ours:
                self.peer_events += self.peer.receive_data(ours)
            if theirs:
                events += self.adapter.receive_data(theirs)
            if not ours and not theirs:
                return events
        raise AssertionError("the connection did not settle")

    def request(self, method: bytes = b"GET") -> int:
        head = RequestHead(method, b"https", b"origin.test", b"/", [], b"2")
        sid = self.adapter.send_request(head, end_stream=True)
        self.flush()
        return sid

    def respond(self, sid: int, status: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        self.peer.send_headers(sid, [(b":status", str(status).encode()), *fields], end_stream=end)

    def resets(self) -> dict[int, ErrorCodes]:
        """The RST_STREAM frames that reached the peer, by stream."""
        return {
            e.stream_id: e.error_code for e in self.peer_events if isinstance(e, h2e.StreamReset)
        }


def body(events: list[Any], sid: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ResponseData) and e.stream_id == sid)


def errors(events: list[Any]) -> list[ProtocolError]:
    return [e for e in events if isinstance(e, ProtocolError)]


def ended(events: list[Any], sid: int) -> bool:
    return ResponseEnd(sid) in events


def assert_stream_error(
    up: Upstream, events: list[Any], sid: int, reason: str, *, still_open: bool
) -> None:
    """One MESSAGE_ERROR for ``sid`` alone, no end for it, the connection still usable.
    ``still_open``: the upstream had not ended the stream, so RST_STREAM(PROTOCOL_ERROR) went
    out; otherwise the stream is closed both ways and nothing may be sent on it (RFC 9113 5.1)."""
    (error,) = errors(events)
    assert (error.stream_id, error.code) == (sid, ErrorCode.MESSAGE_ERROR), error
    assert reason in error.message, error.message
    assert not ended(events, sid), events
    assert not [e for e in events if isinstance(e, ConnectionClosed)], events
    want = {sid: ErrorCodes.PROTOCOL_ERROR} if still_open else {}
    assert up.resets() == want, up.peer_events
    assert not [e for e in up.peer_events if isinstance(e, h2e.ConnectionTerminated)]
    after = up.request()  # a new stream on the same connection works
    up.respond(after, 200, [(b"content-length", b"2")], False)
    up.peer.send_data(after, b"ok", end_stream=True)
    later = up.flush()
    assert body(later, after) == b"ok" and ended(later, after), later


@pytest.mark.parametrize("end", [False, True])
@pytest.mark.parametrize("split", [False, True])
def test_a_body_longer_than_its_content_length_is_a_stream_error(split: bool, end: bool) -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 200, [(b"content-length", b"3")], False)
    if split:  # the declared length arrives whole first: its last byte is held back
        up.peer.send_data(sid, b"abc")
        first = up.flush()
        assert body(first, sid) == b"ab" and not errors(first), first
        up.peer.send_data(sid, b"d", end_stream=end)
    else:
        first = []
        up.peer.send_data(sid, b"abcd", end_stream=end)
    events = first + up.flush()
    assert body(events, sid) == (b"ab" if split else b""), events  # never beyond the length
    assert_stream_error(up, events, sid, "longer than its content-length 3", still_open=not end)


@pytest.mark.parametrize("how", ["with-data", "empty-end", "trailers", "on-head"])
def test_a_body_shorter_than_its_content_length_is_a_stream_error(how: str) -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 200, [(b"content-length", b"5")], how == "on-head")
    if how == "with-data":
        up.peer.send_data(sid, b"abc", end_stream=True)
    elif how == "empty-end":
        up.peer.send_data(sid, b"abc")
        up.peer.end_stream(sid)
    elif how == "trailers":
        up.peer.send_data(sid, b"abc")
        up.peer.send_headers(sid, [(b"x-checksum", b"1")], end_stream=True)
    events = up.flush()
    assert not [e for e in events if isinstance(e, ResponseTrailers)], events
    reason = "without a body" if how == "on-head" else "shorter than its content-length 5"
    assert_stream_error(up, events, sid, reason, still_open=False)


@pytest.mark.parametrize("trailers", [False, True])
def test_a_body_of_exactly_its_content_length_completes(trailers: bool) -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 200, [(b"content-length", b"6")], False)
    up.peer.send_data(sid, b"abc")
    up.peer.send_data(sid, b"def", end_stream=not trailers)
    if trailers:
        up.peer.send_headers(sid, [(b"x-checksum", b"1")], end_stream=True)
    events = up.flush()
    assert not errors(events), events
    assert body(events, sid) == b"abcdef"
    assert events[-1] == ResponseEnd(sid), events
    assert (ResponseTrailers(sid, [(b"x-checksum", b"1")]) in events) == trailers, events
    assert not up.resets()


def test_a_response_without_content_length_is_not_counted() -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 200, [], False)
    up.peer.send_data(sid, b"any length", end_stream=True)
    events = up.flush()
    assert body(events, sid) == b"any length" and ended(events, sid) and not errors(events)


@pytest.mark.parametrize("empty_data", [False, True])
def test_a_head_response_keeps_its_content_length_without_a_body(empty_data: bool) -> None:
    up = Upstream()
    sid = up.request(b"HEAD")
    up.respond(sid, 200, [(b"content-length", b"1234")], not empty_data)
    if empty_data:  # END_STREAM in an empty DATA frame: still no body
        up.peer.end_stream(sid)
    events = up.flush()
    want = ResponseHead(200, [(b"content-length", b"1234")])
    assert events[0] == ResponseHeaders(sid, want, not empty_data), events
    assert not errors(events) and not body(events, sid) and not up.resets()
    if empty_data:
        assert events[-1] == ResponseEnd(sid)


@pytest.mark.parametrize(("length", "end"), [(None, True), (b"1", True), (b"1234", False)])
def test_a_body_on_a_head_response_is_a_stream_error_siblings_finish(
    length: bytes | None, end: bool
) -> None:
    up = Upstream()
    sid = up.request(b"HEAD")
    sibling = up.request()
    fields = [] if length is None else [(b"content-length", length)]
    up.respond(sid, 200, fields, False)
    up.respond(sibling, 200, [(b"content-length", b"5")], False)
    up.peer.send_data(sibling, b"he")
    up.peer.send_data(sid, b"x", end_stream=end)
    up.peer.send_data(sibling, b"llo", end_stream=True)
    events = up.flush()
    assert not body(events, sid), events
    assert body(events, sibling) == b"hello" and ended(events, sibling), events
    assert_stream_error(up, events, sid, "no content", still_open=not end)


@pytest.mark.parametrize("status", [204, 304])
def test_a_body_on_a_204_or_304_is_a_stream_error(status: int) -> None:
    up = Upstream()
    sid = up.request()
    sibling = up.request()
    fields = [(b"content-length", b"3")] if status == 304 else []
    up.respond(sid, status, fields, False)
    up.peer.send_data(sid, b"abc", end_stream=status == 304)
    up.respond(sibling, 200, [(b"content-length", b"2")], False)
    up.peer.send_data(sibling, b"ok", end_stream=True)
    events = up.flush()
    assert not body(events, sid), events
    assert body(events, sibling) == b"ok" and ended(events, sibling), events
    assert_stream_error(up, events, sid, "no content", still_open=status == 204)


def test_a_304_keeps_the_representations_content_length() -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 304, [(b"content-length", b"1234")], True)
    events = up.flush()
    assert events == [ResponseHeaders(sid, ResponseHead(304, [(b"content-length", b"1234")]), True)]


def test_a_1xx_content_length_is_not_counted() -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 103, [(b"link", b"</a.css>"), (b"content-length", b"99")], False)
    up.respond(sid, 200, [(b"content-length", b"2")], False)
    up.peer.send_data(sid, b"ok", end_stream=True)
    events = up.flush()
    assert isinstance(events[0], InformationalResponse), events
    assert body(events, sid) == b"ok" and ended(events, sid) and not errors(events), events


@pytest.mark.parametrize("fields", [[b"5", b"6"], [b"-1"], [b"5, 5"]])
def test_a_malformed_content_length_is_a_stream_error(fields: list[bytes]) -> None:
    up = Upstream()
    sid = up.request()
    up.respond(sid, 200, [(b"content-length", value) for value in fields], False)
    events = up.flush()
    assert not [e for e in events if isinstance(e, ResponseHeaders)], events
    assert not body(events, sid), events
    assert_stream_error(up, events, sid, "content-length", still_open=True)


def test_one_bad_stream_among_two_leaves_the_other_complete() -> None:
    up = Upstream()
    bad, good = up.request(), up.request()
    up.respond(bad, 200, [(b"content-length", b"4")], False)
    up.respond(good, 200, [(b"content-length", b"10")], False)
    up.peer.send_data(good, b"01234")
    up.peer.send_data(bad, b"abcd")  # whole: its last byte waits for the end
    first = up.flush()
    assert body(first, bad) == b"abc" and body(first, good) == b"01234", first
    up.peer.send_data(bad, b"e")  # one byte too many
    up.peer.send_data(good, b"56789", end_stream=True)
    events = first + up.flush()
    assert body(events, bad) == b"abc", events  # the held-back byte never went on
    assert body(events, good) == b"0123456789" and ended(events, good), events
    assert_stream_error(up, events, bad, "longer than its content-length 4", still_open=True)


def test_a_2xx_to_connect_is_a_tunnel_whatever_its_content_length() -> None:
    up = Upstream()
    head = RequestHead(b"CONNECT", b"", b"origin.test:443", b"", [], b"2")
    sid = up.adapter.send_request(head)
    up.flush()
    up.respond(sid, 200, [(b"content-length", b"0")], False)
    up.peer.send_data(sid, b"tunnelled bytes")
    events = up.flush()
    assert body(events, sid) == b"tunnelled bytes" and not errors(events), events
