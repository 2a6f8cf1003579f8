"""Minimal reproducers of what the adapter fuzzing found, one plain test per finding.

A finding that is not fixed yet is marked ``xfail(strict=True)`` (and the fuzz test that found
it leaves that case out, naming the reproducer); once it is fixed the test passes, strict xfail
turns that into a failure, and both the marker and the exclusion go. All are fixed today.
"""

from __future__ import annotations

from typing import Any

from aioquic.h3.connection import H3Connection
from h2.config import H2Configuration
from h2.connection import H2Connection

from protocols.events import (
    ConnectionClosed,
    ProtocolError,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
)
from protocols.h1 import H1ClientAdapter
from protocols.h2 import H2ClientAdapter, H2ServerAdapter
from protocols.messages import RequestHead, ResponseHead
from protocols.quic_router import QuicRouter

from .h3_upstream import Reply, UpstreamPump
from .quic_pump import Pump, TamperingClient, server_configuration


# Found by the fuzzer against h1.py before its strict parsing landed; fixed there since.
def test_h1_client_reports_a_connection_error_once() -> None:
    adapter = H1ClientAdapter()
    adapter.send_request(RequestHead(b"GET", b"http", b"example.com", b"/", []), end_stream=True)
    (error,) = adapter.receive_data(b"ITTP/1.1 200 \r\ncontent-length: 0\r\n\r\n")
    assert isinstance(error, ProtocolError) and error.stream_id is None
    later = adapter.receive_data(b"more") + adapter.receive_data(b"")
    assert all(isinstance(e, ConnectionClosed) for e in later), later


# Fixed: bytes on an idle HTTP/1.1 upstream connection fail the connection.
def test_h1_client_refuses_a_response_nobody_asked_for() -> None:
    adapter = H1ClientAdapter()
    sid = adapter.send_request(RequestHead(b"GET", b"http", b"example.com", b"/", []), True)
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    (head,) = adapter.receive_data(ok)
    assert isinstance(head, ResponseHeaders) and head.stream_id == sid and head.end_stream
    stale = adapter.receive_data(b"HTTP/1.1 201 Stale\r\ncontent-length: 5\r\n\r\nstale")
    assert not [e for e in stale if isinstance(e, ResponseHeaders | ResponseData)], stale
    assert [e for e in stale if isinstance(e, ProtocolError) and e.stream_id is None], stale


# Fixed: no stream error follows a connection error.
def test_h3_server_emits_nothing_after_a_connection_error(certificate: Any) -> None:
    client = TamperingClient("h3")
    pump = Pump(QuicRouter(server_configuration(certificate)), client)
    pump.http = H3Connection(client)
    pump.run()
    sid = client.get_next_available_stream_id()
    # HEADERS declaring 65,537 bytes (over the 64 KiB limit), one byte of it, then FIN.
    client.send_stream_data(sid, b"\x01\x80\x01\x00\x01x", end_stream=True)
    pump.run()  # the pump's Contract raises on the stream error after the connection error
    errors = [e for e in pump.contract.events if isinstance(e, ProtocolError)]
    assert [e.stream_id for e in errors] == [None]


def _h2_peer(*, client_side: bool) -> H2Connection:
    peer = H2Connection(H2Configuration(client_side=client_side, header_encoding=None))
    peer.initiate_connection()
    return peer


def _settle(adapter: H2ServerAdapter | H2ClientAdapter, peer: H2Connection) -> None:
    for _ in range(10):
        ours, theirs = adapter.data_to_send(), peer.data_to_send()
        if ours:
            peer.receive_data(ours)
        if theirs:
            adapter.receive_data(theirs)
        if not ours and not theirs:
            return


def test_h2_server_content_length_mismatch_is_a_stream_error() -> None:
    adapter, peer = H2ServerAdapter(), _h2_peer(client_side=True)
    _settle(adapter, peer)
    head = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    peer.send_headers(1, [*head, (b"content-length", b"5")])
    peer.send_headers(3, [(b":method", b"GET"), *head[1:]], end_stream=True)
    peer.send_data(1, b"abc", end_stream=True)
    events = adapter.receive_data(peer.data_to_send())
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert [e.stream_id for e in errors] == [1], errors


# Fixed: the client role counts response DATA itself (not for HEAD, 204, 304): a stream error.
def test_h2_client_body_on_a_head_response_is_a_stream_error() -> None:
    adapter, peer = H2ClientAdapter(), _h2_peer(client_side=False)
    _settle(adapter, peer)
    head = RequestHead(b"HEAD", b"https", b"a", b"/", [], b"2")
    sid = adapter.send_request(head, end_stream=True)
    adapter.send_request(RequestHead(b"GET", b"https", b"a", b"/", [], b"2"), end_stream=True)
    peer.receive_data(adapter.data_to_send())
    peer.send_headers(sid, [(b":status", b"200")])
    peer.send_data(sid, b"x", end_stream=True)
    events = adapter.receive_data(peer.data_to_send())
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert [e.stream_id for e in errors] == [sid], errors


# -- HTTP/3 client role (H3ClientAdapter against aioquic's server) -----------------------------


def _h3_upstream(certificate: Any) -> UpstreamPump:
    pump = UpstreamPump(certificate)
    assert pump.run(lambda: pump.adapter.available_streams() > 0)
    return pump


H3_BODYLESS_LENGTH = (
    "aioquic's H3Connection checks content-length against the DATA received without knowing "
    "the request method, so a HEAD (or 304) response carrying the representation's length is "
    "a stream error (H3_MESSAGE_ERROR) and the client gets a 502; RFC 9114 4.1.2 allows a "
    "non-zero content-length on a response defined to have no content"
)


def test_h3_client_accepts_content_length_on_a_head_response(certificate: Any) -> None:
    pump = _h3_upstream(certificate)
    head = RequestHead(b"HEAD", b"https", b"origin.test", b"/file", [], b"3")
    sid = pump.request(head, [], Reply([], 200, [], [b"hello"], [], length=True))
    assert sid is not None
    pump.run()
    events = [e for e in pump.contract.events if getattr(e, "stream_id", None) == sid]
    want = ResponseHead(200, [(b"content-length", b"5")])
    assert events == [ResponseHeaders(sid, want, end_stream=True)], events


H3_STOP_SENDING = (
    "STOP_SENDING(H3_NO_ERROR) from an origin that answers before reading the whole request "
    "body (RFC 9114 4.1) is reported as StreamReset(NO_ERROR) before the complete response "
    "that follows; streamio fails the stream on StreamReset, so the client gets a 502 instead "
    "of the origin's answer (e.g. a 413)"
)


def test_h3_client_keeps_a_response_after_stop_sending(certificate: Any) -> None:
    pump = _h3_upstream(certificate)
    head = RequestHead(b"POST", b"https", b"origin.test", b"/upload", [], b"3")
    reply = Reply([], 413, [], [b"too large"], [], early=True)
    sid = pump.request(head, [b"x" * 1000], reply)  # early: the body waits for the answer
    assert sid is not None
    pump.run()
    pump.send_body(sid, [b"x" * 1000])  # the owner's body pump: the stream is stopped now
    pump.run()
    events = [e for e in pump.contract.events if getattr(e, "stream_id", None) == sid]
    assert events[:3] == [
        ResponseHeaders(sid, ResponseHead(413, []), end_stream=False),
        ResponseData(sid, b"too large"),
        ResponseEnd(sid),
    ], events


H3_STATUS_BELOW_100 = (
    "aioquic only checks that :status has three digits; H3ClientAdapter turns '000' or '099' "
    "into InformationalResponse(status=0 or 99) and then hands over the body without any "
    "final head (the owner waits for a response head that never comes, and an h2 or h3 "
    "client's send_informational raises LocalProtocolError); RFC 9110 15 makes statuses "
    "outside 100..599 invalid, so this is a malformed response: a stream error"
)


def test_h3_client_refuses_a_status_below_100(certificate: Any) -> None:
    pump = _h3_upstream(certificate)
    head = RequestHead(b"GET", b"https", b"origin.test", b"/", [], b"3")
    reply = Reply([], 200, [], [b"body"], [], spoil=(0, "status", b":status", b"000"))
    sid = pump.request(head, [], reply)
    assert sid is not None
    pump.run()
    events = [e for e in pump.contract.events if getattr(e, "stream_id", None) == sid]
    assert [type(e) for e in events] == [ProtocolError], events
