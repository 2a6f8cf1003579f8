"""HTTP/2 downgrade smuggling: a body that disagrees with its content-length, and malformed
fields, are errors of their stream only and never hand the owner a complete message."""

from __future__ import annotations

from typing import Any

import h2
import h2.events as h2e
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from protocols import h2_compat
from protocols._message_checks import BodyMeter, declared_length
from protocols.errors import ErrorCode
from protocols.events import (
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestTrailers,
)
from protocols.h2 import H2ServerAdapter
from protocols.messages import ResponseHead

GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/"),
]
POST = [(b":method", b"POST"), *GET[1:]]


def pump(server: H2ServerAdapter, client: H2Connection) -> tuple[list[Any], list[Any]]:
    """Move bytes both ways until both sides are quiet: (server events, client events)."""
    server_events: list[Any] = []
    client_events: list[Any] = []
    for _ in range(20):
        moved = False
        if data := client.data_to_send():
            server_events += server.receive_data(data)
            moved = True
        if data := server.data_to_send():
            client_events += client.receive_data(data)
            moved = True
        if not moved:
            return server_events, client_events
    raise AssertionError("the connection did not settle")


def hostile_pair() -> tuple[H2ServerAdapter, H2Connection]:
    """A server adapter and an h2 client that sends whatever it is told to."""
    server = H2ServerAdapter()
    client = H2Connection(
        H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    client.initiate_connection()
    pump(server, client)
    return server, client


def body(events: list[Any], stream_id: int = 1) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, RequestData) and e.stream_id == stream_id
    )


def statuses(client_events: list[Any]) -> dict[int, bytes]:
    return {
        e.stream_id: dict(e.headers)[b":status"]
        for e in client_events
        if isinstance(e, h2e.ResponseReceived)
    }


def resets(client_events: list[Any]) -> dict[int, ErrorCodes]:
    return {e.stream_id: e.error_code for e in client_events if isinstance(e, h2e.StreamReset)}


def assert_neighbour_served(server: H2ServerAdapter, client: H2Connection) -> None:
    """A normal request on the same connection still arrives, and its response goes back."""
    client.send_headers(3, GET, end_stream=True)
    events, _ = pump(server, client)
    assert [type(e) for e in events] == [RequestHeaders]
    server.send_response(3, ResponseHead(200, []), end_stream=True)
    _, peer = pump(server, client)
    assert statuses(peer) == {3: b"200"}
    assert not any(isinstance(e, h2e.ConnectionTerminated) for e in peer)


def stream_error(events: list[Any]) -> ProtocolError:
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert len(errors) == 1 and errors[0].stream_id == 1, events
    assert errors[0].code is ErrorCode.MESSAGE_ERROR
    return errors[0]


# -- content-length against DATA ------------------------------------------------------------


@pytest.mark.parametrize("end_apart", [False, True])
def test_body_shorter_than_content_length_is_a_400_instead_of_the_end(end_apart: bool) -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"10")])
    client.send_data(1, b"12345", end_stream=not end_apart)
    if end_apart:
        client.end_stream(1)
    events, peer = pump(server, client)
    assert "shorter" in stream_error(events).message
    # A frame that ends the body short is not handed on; earlier ones were.
    assert body(events) == (b"12345" if end_apart else b"")
    assert not any(isinstance(e, RequestEnd) for e in events)
    assert statuses(peer) == {1: b"400"}
    assert_neighbour_served(server, client)


def test_body_longer_than_content_length_is_refused_before_any_byte_of_it() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"5")])
    client.send_data(1, b"1234567890", end_stream=True)
    events, peer = pump(server, client)
    assert "longer" in stream_error(events).message
    assert body(events) == b""
    assert not any(isinstance(e, RequestEnd) for e in events)
    assert statuses(peer) == {1: b"400"}
    assert_neighbour_served(server, client)


def test_last_declared_byte_waits_for_end_stream_and_an_extra_frame_is_the_error() -> None:
    """The byte completing content-length is not handed on until END_STREAM confirms the
    length: one more DATA frame turns into the stream error and no RequestEnd ever comes."""
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"5")])
    client.send_data(1, b"12345")
    events, _ = pump(server, client)
    assert body(events) == b"1234"
    client.send_data(1, b"6")
    events, peer = pump(server, client)
    assert "longer" in stream_error(events).message
    assert body(events) == b""
    assert not any(isinstance(e, RequestEnd) for e in events)
    assert statuses(peer) == {1: b"400"}
    assert resets(peer) == {1: ErrorCodes.NO_ERROR}  # the upload is stopped after the 400
    assert_neighbour_served(server, client)


def test_exact_body_then_empty_end_stream_releases_the_last_byte_with_the_end() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"5")])
    client.send_data(1, b"123")
    client.send_data(1, b"45")
    events, _ = pump(server, client)
    assert body(events) == b"1234"
    client.end_stream(1)
    events, _ = pump(server, client)
    assert events == [RequestData(1, b"5"), RequestEnd(1)]


def test_exact_body_with_end_stream_on_the_last_frame_is_not_split() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"5")])
    client.send_data(1, b"12345", end_stream=True)
    events, _ = pump(server, client)
    assert events[1:] == [RequestData(1, b"12345"), RequestEnd(1)]


def test_held_byte_comes_before_the_trailers_and_short_body_with_trailers_is_an_error() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"2")])
    client.send_data(1, b"ab")
    client.send_headers(1, [(b"x-sum", b"1")], end_stream=True)
    client.send_headers(3, [*POST, (b"content-length", b"3")])
    client.send_data(3, b"ab")
    client.send_headers(3, [(b"x-sum", b"1")], end_stream=True)
    events, peer = pump(server, client)
    ones = [e for e in events if getattr(e, "stream_id", None) == 1]
    assert ones[1:] == [
        RequestData(1, b"a"),
        RequestData(1, b"b"),
        RequestTrailers(1, [(b"x-sum", b"1")]),
        RequestEnd(1),
    ]
    threes = [e for e in events if getattr(e, "stream_id", None) == 3]
    assert [type(e) for e in threes] == [RequestHeaders, RequestData, ProtocolError]
    assert statuses(peer) == {3: b"400"}


def test_content_length_on_a_request_that_ends_with_its_head_is_a_400() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"3")], end_stream=True)
    events, peer = pump(server, client)
    assert events == [stream_error(events)]
    assert statuses(peer) == {1: b"400"}
    assert_neighbour_served(server, client)


def test_mismatch_after_the_response_started_is_a_protocol_error_reset() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"4")])
    client.send_data(1, b"ab")
    pump(server, client)
    server.send_response(1, ResponseHead(200, []))
    client.send_data(1, b"cdef")
    events, peer = pump(server, client)
    stream_error(events)
    assert statuses(peer) == {1: b"200"}
    assert resets(peer) == {1: ErrorCodes.PROTOCOL_ERROR}
    server.send_data(1, b"late")  # the owner's later sends are swallowed
    assert_neighbour_served(server, client)


def test_credit_of_refused_bodies_comes_back() -> None:
    """Bodies that broke their content-length do not shrink the connection window: after
    nearly a whole window of them, a normal upload of 200 KiB still has room."""
    server, client = hostile_pair()
    chunk = b"x" * 16_000
    for stream_id in range(1, 17, 2):  # 8 streams x 120 KB: 960 KB of the 1 MiB window
        client.send_headers(stream_id, [*POST, (b"content-length", b"5")])
        for _ in range(7):
            client.send_data(stream_id, chunk)
        client.send_data(stream_id, chunk[:8_000], end_stream=True)
        pump(server, client)
    client.send_headers(17, POST)
    pump(server, client)
    assert client.local_flow_control_window(17) >= 200 * 1024


@pytest.mark.parametrize(
    ("lengths", "reason"),
    [
        ([b"5", b"6"], "differing"),
        ([b"5, 5"], "malformed"),
        ([b"+5"], "malformed"),
        ([b"-1"], "malformed"),
        ([b"0x10"], "malformed"),
    ],
)
def test_differing_or_malformed_content_length_is_a_400(lengths: list[bytes], reason: str) -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, *((b"content-length", v) for v in lengths)])
    client.send_data(1, b"12345", end_stream=True)
    events, peer = pump(server, client)
    assert events == [stream_error(events)]
    assert reason in events[0].message
    assert statuses(peer) == {1: b"400"}
    assert_neighbour_served(server, client)


def test_repeated_equal_content_length_collapses_into_one() -> None:
    server, client = hostile_pair()
    client.send_headers(1, [*POST, (b"content-length", b"2"), (b"content-length", b"2")])
    client.send_data(1, b"ok", end_stream=True)
    events, _ = pump(server, client)
    assert events[0].head.headers == [(b"content-length", b"2")]
    assert events[1:] == [RequestData(1, b"ok"), RequestEnd(1)]


# -- malformed fields -------------------------------------------------------------------------


MALFORMED = {
    "connection": [*GET, (b"connection", b"close")],
    "keep-alive": [*GET, (b"keep-alive", b"timeout=5")],
    "proxy-connection": [*GET, (b"proxy-connection", b"keep-alive")],
    "transfer-encoding": [*POST, (b"transfer-encoding", b"chunked")],
    "upgrade": [*GET, (b"upgrade", b"websocket")],
    "te-gzip": [*GET, (b"te", b"gzip")],
    "uppercase-name": [*GET, (b"X-Upper", b"v")],
    "cr-in-name": [*GET, (b"x-a\rb", b"v")],
    "lf-in-name": [*GET, (b"x-a\nb", b"v")],
    "nul-in-name": [*GET, (b"x-a\x00b", b"v")],
    "cr-in-value": [*GET, (b"x-a", b"v\rw")],
    "lf-in-value": [*GET, (b"x-a", b"v\nx-b: w")],
    "nul-in-value": [*GET, (b"x-a", b"v\x00w")],
    "path-empty": [*GET[:3], (b":path", b"")],
    "path-no-slash": [*GET[:3], (b":path", b"a/b")],
    "path-space": [*GET[:3], (b":path", b"/a b HTTP/1.1")],
    "path-ctl": [*GET[:3], (b":path", b"/a\tb")],
    "path-del": [*GET[:3], (b":path", b"/a\x7fb")],
    "missing-method": GET[1:],
    "missing-path": GET[:3],
    "duplicate-path": [*GET, (b":path", b"/again")],
    "duplicate-method": [(b":method", b"POST"), *GET],
    "pseudo-after-regular": [*GET[:3], (b"x-a", b"1"), GET[3]],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_is_a_400_on_its_stream_and_never_an_event(case: str) -> None:
    server, client = hostile_pair()
    client.send_headers(1, MALFORMED[case], end_stream=True)
    events, peer = pump(server, client)
    assert events == [stream_error(events)]
    assert statuses(peer) == {1: b"400"}
    assert_neighbour_served(server, client)


# -- the pieces -----------------------------------------------------------------------------


def test_body_meter_boundaries() -> None:
    meter = BodyMeter(3)
    assert meter.take(b"ab") == b"ab"
    assert meter.take(b"") == b""
    assert meter.take(b"c") == b""  # the last declared byte is held back
    assert meter.finish() == b"c"
    assert BodyMeter(3).take(b"abcd") is None
    short = BodyMeter(3)
    assert short.take(b"ab") == b"ab"
    assert short.finish() is None and "shorter" in short.problem()
    assert BodyMeter(None).take(b"any") == b"any" and BodyMeter(None).finish() == b""
    assert declared_length([(b"content-length", b"7"), (b"content-length", b"7")]) == 7
    assert declared_length([(b"x", b"1")]) is None


def test_h2_compat_and_version_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    """h2 private state the server adapter relies on; fails loudly when h2 changes."""
    h2_compat.check_compat()
    assert h2.__version__ in h2_compat.TESTED_H2_VERSIONS, (
        f"h2 {h2.__version__} is untested: re-check protocols/h2_compat.py against its private "
        "state, then add the version to TESTED_H2_VERSIONS"
    )
    monkeypatch.delattr(h2.stream.H2Stream, "_initialize_content_length")
    with pytest.raises(RuntimeError, match="_initialize_content_length"):
        h2_compat.check_compat()
