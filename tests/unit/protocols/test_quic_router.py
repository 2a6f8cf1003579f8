"""QuicRouter and QuicServerConnection driven by real aioquic clients, in memory."""

from __future__ import annotations

import os
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, pull_quic_header

from protocols.errors import ErrorCode
from protocols.events import CapacityAvailable, ConnectionClosed, RequestHeaders
from protocols.messages import ResponseHead
from protocols.quic_router import MAX_RESETS_PER_SECOND, QuicRouter
from protocols.quic_tokens import reset_token

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]


def long_header_packet(version: int, size: int = 1200) -> tuple[bytes, bytes, bytes]:
    dcid, scid = os.urandom(8), os.urandom(8)
    packet = bytes([0xC0]) + version.to_bytes(4, "big") + b"\x08" + dcid + b"\x08" + scid
    return packet + bytes(size - len(packet)), dcid, scid


def handshake_done(pair: Any) -> bool:
    return any(isinstance(e, HandshakeCompleted) for e in pair.quic_events)


def test_handshake_through_router_creates_one_connection(router_pair: Any) -> None:
    pair = router_pair()
    pair.transfer()
    assert handshake_done(pair)
    assert pair.created == 1
    assert pair.router.connections() == [pair.conn]
    assert CapacityAvailable(None) in pair.server_events
    assert pair.conn.facts.sni == "localhost"


def test_version_negotiation_for_unknown_version(server_config: QuicConfiguration) -> None:
    router = QuicRouter(server_config)
    datagram, dcid, scid = long_header_packet(0x1A2A3A4A)
    result = router.receive_datagram(datagram, ("127.0.0.1", 1234), now=1.0)
    assert result.connection is None and not result.events
    ((reply, addr),) = result.replies
    assert addr == ("127.0.0.1", 1234)
    header = pull_quic_header(Buffer(data=reply), host_cid_length=8)
    assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION
    assert header.destination_cid == scid and header.source_cid == dcid
    assert QuicProtocolVersion.VERSION_1 in header.supported_versions
    assert router.connections() == []

    small, _, _ = long_header_packet(0x1A2A3A4A, size=100)
    assert router.receive_datagram(small, ("127.0.0.1", 1234), now=1.0).replies == []


def test_garbage_is_dropped(server_config: QuicConfiguration) -> None:
    router = QuicRouter(server_config)
    addr = ("127.0.0.1", 1234)
    for datagram in (b"", b"\x00", b"\x40" + os.urandom(12), os.urandom(3)):
        result = router.receive_datagram(datagram, addr, now=1.0)
        assert result.connection is None and result.replies == [] and not result.new
    small_initial, _, _ = long_header_packet(QuicProtocolVersion.VERSION_1, size=300)
    assert router.receive_datagram(small_initial, addr, now=1.0).connection is None
    assert router.connections() == []


def test_retry_round_trip(router_pair: Any, harness: Any) -> None:
    pair = router_pair(retry=True)
    first = pair.client.datagrams_to_send(pair.now)
    result = pair.router.receive_datagram(first[0][0], pair.client_addr, pair.now)
    assert result.connection is None and pair.router.connections() == []
    ((retry, _),) = result.replies
    header = pull_quic_header(Buffer(data=retry), host_cid_length=8)
    assert header.packet_type == QuicPacketType.RETRY and header.token
    pair.client.receive_datagram(retry, harness.SERVER_ADDR, pair.now)

    pair.transfer()
    assert handshake_done(pair)
    assert pair.created == 1 and len(pair.router.connections()) == 1

    sid = pair.client.get_next_available_stream_id()
    pair.http.send_headers(sid, [*GET, (b":path", b"/after-retry")], end_stream=True)
    pair.transfer()
    heads = [e for e in pair.server_events if isinstance(e, RequestHeaders)]
    assert [e.head.path for e in heads] == [b"/after-retry"]


def test_retry_token_from_another_address_is_refused(router_pair: Any, harness: Any) -> None:
    pair = router_pair(retry=True)
    first = pair.client.datagrams_to_send(pair.now)
    result = pair.router.receive_datagram(first[0][0], pair.client_addr, pair.now)
    pair.client.receive_datagram(result.replies[0][0], harness.SERVER_ADDR, pair.now)
    second = pair.client.datagrams_to_send(pair.now)
    spoofed = pair.router.receive_datagram(second[0][0], ("127.0.0.2", 999), pair.now)
    assert spoofed.connection is None and len(spoofed.replies) == 1  # INVALID_TOKEN close
    assert pair.router.connections() == []


def test_max_connections_drops_new_initials(router_pair: Any, harness: Any) -> None:
    pair = router_pair(max_connections=1)
    pair.transfer()
    assert handshake_done(pair)
    other = harness.RouterPair(pair.router, client_addr=("127.0.0.1", 50001))
    for data, _ in other.client.datagrams_to_send(other.now):
        result = pair.router.receive_datagram(data, other.client_addr, other.now)
        assert result.connection is None and result.replies == []
    assert pair.router.connections() == [pair.conn]


def test_new_connection_ids_are_routed(router_pair: Any) -> None:
    pair = router_pair()
    pair.transfer()
    old_cid = pair.client._peer_cid.cid
    pair.client.change_connection_id()
    assert pair.client._peer_cid.cid != old_cid
    sid = pair.client.get_next_available_stream_id()
    pair.http.send_headers(sid, [*GET, (b":path", b"/migrated")], end_stream=True)
    pair.transfer()
    heads = [e for e in pair.server_events if isinstance(e, RequestHeaders)]
    assert [e.head.path for e in heads] == [b"/migrated"]
    assert pair.created == 1


def test_remove_forgets_the_connection(router_pair: Any) -> None:
    pair = router_pair()
    pair.transfer()
    conn = pair.conn
    pair.router.remove(conn)
    assert pair.router.connections() == []
    pair.client.send_ping(1)
    for data, _ in pair.client.datagrams_to_send(pair.now):
        assert pair.router.receive_datagram(data, pair.client_addr, pair.now).connection is None


def test_idle_timeout_closes_and_router_forgets(router_pair: Any) -> None:
    pair = router_pair()
    pair.transfer()
    conn = pair.conn
    deadline = conn.timer()
    assert deadline is not None
    events: list[Any] = []
    for _ in range(20):  # loss timers first, then the idle timeout
        pair.now = max(pair.now + 1.0, conn.timer() or pair.now)
        events += conn.handle_timer(pair.now)
        if conn.closed:
            break
    assert conn.closed
    assert [e for e in events if isinstance(e, ConnectionClosed)] == [
        ConnectionClosed(ErrorCode.NO_ERROR, "Idle timeout")
    ]
    pair.router.remove(conn)
    assert pair.router.connections() == []


def test_session_resumption_and_0rtt_request(router_pair: Any, harness: Any) -> None:
    tickets: list[Any] = []
    first = QuicConnection(
        configuration=harness.client_config("h3"), session_ticket_handler=tickets.append
    )
    pair = router_pair(client=first)
    pair.transfer()
    assert tickets and tickets[0].max_early_data_size

    config = harness.client_config("h3", session_ticket=tickets[0])
    again = harness.RouterPair(
        pair.router, client=QuicConnection(configuration=config), client_addr=("127.0.0.1", 50002)
    )
    # A request queued before the handshake goes out as 0-RTT data.
    sid = again.client.get_next_available_stream_id()
    again.http.send_headers(sid, [*GET, (b":path", b"/early")], end_stream=True)
    again.transfer()
    completed = [e for e in again.quic_events if isinstance(e, HandshakeCompleted)]
    assert completed and completed[0].session_resumed and completed[0].early_data_accepted
    heads = [e for e in again.server_events if isinstance(e, RequestHeaders)]
    assert [e.head.path for e in heads] == [b"/early"]
    facts = again.conn.facts
    assert facts.early_data and facts.session_resumed
    assert len(pair.router.connections()) == 2

    again.conn.adapter.send_response(sid, ResponseHead(200, []), end_stream=True)
    again.transfer()
    assert not any(isinstance(e, ConnectionTerminated) for e in again.quic_events)


def test_unknown_connection_id_gets_a_stateless_reset(server_config: QuicConfiguration) -> None:
    router = QuicRouter(server_config)
    addr = ("127.0.0.1", 1234)
    cid = os.urandom(8)
    result = router.receive_datagram(b"\x40" + cid + os.urandom(60), addr, now=1.0)
    [(reset, to)] = result.replies
    assert to == addr and result.connection is None
    assert len(reset) == 43 and reset[0] & 0xC0 == 0x40  # shorter than the packet; short header
    assert reset[-16:] == reset_token(cid)
    small = router.receive_datagram(b"\x40" + cid + os.urandom(8), addr, now=1.0)
    assert small.replies == []  # a reset must be smaller than what triggered it
    for _ in range(MAX_RESETS_PER_SECOND):
        router.receive_datagram(b"\x40" + os.urandom(60), addr, now=1.5)
    assert router.resets_sent == MAX_RESETS_PER_SECOND  # rate limited within one second
    assert router.receive_datagram(b"\x40" + os.urandom(60), addr, now=2.1).replies
    quiet = QuicRouter(server_config, stateless_reset=False)
    assert quiet.receive_datagram(b"\x40" + cid + os.urandom(60), addr, now=1.0).replies == []


def test_issued_connection_ids_carry_derived_reset_tokens(router_pair: Any) -> None:
    pair = router_pair()
    pair.transfer()
    quic = pair.conn.quic
    assert len(quic._host_cids) > 1
    for entry in quic._host_cids:
        assert entry.stateless_reset_token == reset_token(entry.cid)


def test_retired_connection_ids_get_no_stateless_reset(router_pair: Any) -> None:
    """Packets still in flight to a connection ID the client retired (after migrating, say)
    are dropped quietly: a reset there could kill the live connection."""
    pair = router_pair()
    pair.transfer()
    router, conn = pair.router, pair.conn
    retired = conn.quic.host_cid
    router._drop_cid(conn, retired)  # as the ConnectionIdRetired event does
    late = router.receive_datagram(b"\x40" + retired + os.urandom(60), ("127.0.0.1", 1), 9.0)
    assert late.replies == [] and late.connection is None
    fresh = router.receive_datagram(b"\x40" + os.urandom(68), ("127.0.0.1", 1), 9.0)
    assert len(fresh.replies) == 1  # an ID nobody knows still gets its reset


def test_connections_per_source_are_capped(server_config: QuicConfiguration, harness: Any) -> None:
    """Beyond the cap, a new connection from the same IP is refused with CONNECTION_REFUSED in
    an Initial; the others and other IPs carry on; a removed connection frees its place."""
    router = QuicRouter(server_config, max_connections_per_source=2)

    def pair(host: str, port: int) -> Any:
        return harness.RouterPair(router, client_addr=(host, port))

    first, second = pair("10.0.0.1", 1001), pair("10.0.0.1", 1002)
    for p in (first, second):
        p.transfer()
        assert handshake_done(p)
    refused = pair("10.0.0.1", 1003)
    refused.transfer()
    assert refused.created == 0 and not handshake_done(refused)
    refused.client.handle_timer(refused.now + 10.0)  # the end of its draining period
    refused.drain_client()
    closes = [e for e in refused.quic_events if isinstance(e, ConnectionTerminated)]
    assert closes and closes[0].error_code == 0x2  # CONNECTION_REFUSED
    assert all(len(reply) < 1200 for reply in refused.replies)  # smaller than the Initial
    assert router.refused >= 1 and len(router.connections()) == 2

    other = pair("10.0.0.2", 1001)  # another IP is unaffected
    other.transfer()
    assert handshake_done(other) and len(router.connections()) == 3

    first.client.close()
    first.transfer()
    assert first.conn is not None
    router.remove(first.conn)  # as the listener does once the connection is closed
    router.remove(first.conn)  # twice is harmless
    again = pair("10.0.0.1", 1004)
    again.transfer()
    assert handshake_done(again) and again.created == 1
    limitless = QuicRouter(server_config)
    for port in range(5):
        p = harness.RouterPair(limitless, client_addr=("10.0.0.1", 2000 + port))
        p.transfer()
        assert handshake_done(p)
