"""Minimal reproducers of what the adapter fuzzing found, one plain test per finding.

A finding that is not fixed yet is marked ``xfail(strict=True)``: once it is fixed the test
passes, strict xfail turns that into a failure, and the marker (and the matching quirk in the
fuzz test's ``Contract``) must go.
"""

from __future__ import annotations

from typing import Any

import pytest
from aioquic.h3.connection import H3Connection
from h2.config import H2Configuration
from h2.connection import H2Connection

from protocols.events import ConnectionClosed, ProtocolError, ResponseData, ResponseHeaders
from protocols.h1 import H1ClientAdapter
from protocols.h2 import H2ClientAdapter, H2ServerAdapter
from protocols.messages import RequestHead
from protocols.quic_router import QuicRouter

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


H2_STREAM_ERROR = (
    "h2 raises InvalidBodyLengthError (a connection-wide ProtocolError) when DATA disagrees "
    "with content-length; the adapter makes it a connection error and every sibling stream is "
    "lost, where RFC 9113 8.1.1 makes a malformed message an error of its stream only"
)


@pytest.mark.xfail(strict=True, reason=H2_STREAM_ERROR)
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


@pytest.mark.xfail(strict=True, reason=H2_STREAM_ERROR)
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
