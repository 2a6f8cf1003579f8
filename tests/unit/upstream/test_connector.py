"""Connector without sockets: TLS contexts and ALPN (real TLS handshakes over memory BIOs),
limits from config, and QUIC tickets and tokens per Connector and per peer key (a real aioquic
client made by the Connector, handshaking with quicproxy's QUIC router in memory).

Dialing over real sockets is covered by tests/integration/test_pool.py and test_upstream_*.py.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted

from protocols.h1 import H1ClientAdapter
from protocols.h2 import H2ClientAdapter
from protocols.quic_router import QuicRouter
from quicproxy.config import LimitsConfig
from quicproxy.devcerts import DevCerts, ensure_dev_certs
from quicproxy.net.tcp import ByteStream
from quicproxy.net.tls import server_context
from quicproxy.upstream.connector import Connector, UpstreamConnection, alpn_for
from quicproxy.upstream.limits import UpstreamLimits
from quicproxy.upstream.peer import HttpPeer
from quicproxy.upstream.peer_cache import PeerCache
from quicproxy.upstream.quic_client import client_quic

SERVER = ("127.0.0.1", 4433)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return ensure_dev_certs(tmp_path_factory.mktemp("connector-certs"))


def tls_peer(certs: DevCerts, **changes: object) -> HttpPeer:
    peer = HttpPeer("127.0.0.1", 8443, tls=True, sni="localhost", ca_file=certs.ca_cert)
    return replace(peer, **changes)  # type: ignore[arg-type]


def handshake(client_context: ssl.SSLContext, server: ssl.SSLContext) -> str | None:
    """A TLS handshake over memory BIOs; returns the ALPN protocol the server picked."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    served = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        finished = 0
        for side in (client, served):
            try:
                side.do_handshake()
                finished += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if finished == 2:
            return client.selected_alpn_protocol()
    raise AssertionError("TLS handshake did not finish")


def test_alpn_per_protocol() -> None:
    base = HttpPeer("h", 1, tls=True)
    assert alpn_for(replace(base, protocol="h1")) == ["http/1.1"]
    assert alpn_for(replace(base, protocol="h2")) == ["h2"]
    assert alpn_for(replace(base, protocol="h3")) == ["h3"]
    assert alpn_for(replace(base, protocol="auto")) == ["h2", "http/1.1"]


def test_one_tls_context_per_tls_setting(certs: DevCerts) -> None:
    connector = Connector()
    contexts = connector.contexts
    assert contexts.get(HttpPeer("127.0.0.1", 80)) is None  # cleartext
    base = tls_peer(certs)
    context = contexts.get(base)
    # other addresses, names and limits share the context...
    for same in (
        replace(base, host="10.0.0.9", port=9443, sni="other.test"),
        replace(base, max_requests=3, max_idle=1),
    ):
        assert contexts.get(same) is context
    # ...while any TLS setting gets its own
    others = [
        contexts.get(replace(base, verify=False)),
        contexts.get(replace(base, ca_file=None)),
        contexts.get(replace(base, protocol="h1")),
        contexts.get(replace(base, protocol="h2")),
    ]
    assert len({id(c) for c in [context, *others]}) == 5 == len(contexts)
    assert Connector().contexts.get(base) is not context  # per Connector


def test_the_context_offers_the_protocols_alpn_and_verifies_as_configured(
    certs: DevCerts,
) -> None:
    connector = Connector()
    server = server_context(certs.cert, certs.key, ["h2", "http/1.1"])
    base = tls_peer(certs)
    for protocol, picked in (("auto", "h2"), ("h2", "h2"), ("h1", "http/1.1")):
        context = connector.contexts.get(replace(base, protocol=protocol))
        assert context is not None
        assert handshake(context, server) == picked
    untrusted = connector.contexts.get(replace(base, ca_file=None))  # the dev CA is not trusted
    assert untrusted is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(untrusted, server)
    unverified = connector.contexts.get(replace(base, ca_file=None, verify=False))
    assert unverified is not None
    assert handshake(unverified, server) == "h2"


def test_limits_come_from_config() -> None:
    assert Connector().limits == UpstreamLimits() == UpstreamLimits.from_config(LimitsConfig())
    limits = LimitsConfig(stream_buffer=65536, quic_max_datagram_size=1200)
    connector = Connector(limits)
    assert connector.limits.stream_buffer == 65536
    assert connector.limits.quic_max_datagram_size == 1200
    own = UpstreamLimits(stream_buffer=32768)
    assert Connector(own).limits is own


async def test_tcp_connections_take_the_connectors_stream_buffer() -> None:
    connector = Connector(LimitsConfig(stream_buffer=65536))
    buffer = connector.limits.stream_buffer
    h2c = UpstreamConnection(ByteStream(lambda s: h2c), HttpPeer("h", 1, protocol="h2"), buffer)
    h1 = UpstreamConnection(ByteStream(lambda s: h1), HttpPeer("h", 1, protocol="h1"), buffer)
    try:
        assert isinstance(h2c.adapter, H2ClientAdapter) and h2c.multiplexed  # prior knowledge
        assert isinstance(h1.adapter, H1ClientAdapter) and not h1.multiplexed
        assert h2c.stream_buffer == h1.stream_buffer == 65536
    finally:
        h2c.connection_lost(None)
        h1.connection_lost(None)


def test_quic_datagrams_take_the_configured_size() -> None:
    peer = HttpPeer("127.0.0.1", 4433, tls=True, protocol="h3", verify=False)
    for limits, size in ((None, 1350), (LimitsConfig(quic_max_datagram_size=1200), 1200)):
        connector = Connector(limits)
        quic = client_quic(peer, connector.limits, connector.quic)
        quic.connect(SERVER, now=1.0)
        assert [len(data) for data, _ in quic.datagrams_to_send(1.0)] == [size]  # padded Initial


def quic_handshake(router: QuicRouter, client: QuicConnection, port: int) -> HandshakeCompleted:
    """Pump datagrams between ``client`` and ``router`` until both are quiet."""
    addr = ("127.0.0.1", port)
    now = 1.0
    client.connect(SERVER, now=now)
    server = None
    done: list[HandshakeCompleted] = []
    idle = 0
    for _ in range(200):
        moved = False
        for data, _ in client.datagrams_to_send(now):
            moved = True
            result = router.receive_datagram(data, addr, now)
            server = result.connection or server
            for reply, _ in result.replies:
                client.receive_datagram(reply, SERVER, now)
        if server is not None:
            for data, _ in server.datagrams_to_send(now):
                moved = True
                client.receive_datagram(data, SERVER, now)
            server.pending_events()
        while (event := client.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                done.append(event)
        idle = 0 if moved else idle + 1
        if idle >= 3 and done:
            return done[0]
        now += 0.005
    raise AssertionError("QUIC handshake did not settle")


def test_quic_tickets_and_tokens_are_kept_per_connector_and_per_peer_key(
    certs: DevCerts,
) -> None:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    configuration.load_cert_chain(str(certs.cert), str(certs.key))
    router = QuicRouter(configuration)
    connector = Connector()
    peer = replace(tls_peer(certs), port=SERVER[1], protocol="h3")
    resumption = connector.quic

    first = quic_handshake(router, client_quic(peer, connector.limits, resumption), 50001)
    assert first.alpn_protocol == "h3" and not first.session_resumed
    assert resumption.tickets.get(peer.key()) is not None  # the server's session ticket
    assert resumption.tokens.get(peer.key())  # and its NEW_TOKEN token

    # a peer with the same key (other limits) resumes; ones with other keys do not
    same_key = replace(peer, max_requests=5)
    again = quic_handshake(router, client_quic(same_key, connector.limits, resumption), 50002)
    assert again.session_resumed
    unverified = replace(peer, verify=False)
    other = quic_handshake(router, client_quic(unverified, connector.limits, resumption), 50003)
    assert not other.session_resumed  # never resume an unverified peer from a verified ticket
    assert len(resumption.tickets) == len(resumption.tokens) == 2

    # another Connector keeps its own
    fresh = Connector()
    assert fresh.quic.tickets.get(peer.key()) is None
    alone = quic_handshake(router, client_quic(peer, fresh.limits, fresh.quic), 50004)
    assert not alone.session_resumed


def test_ticket_and_token_caches_are_bounded() -> None:
    connector = Connector(UpstreamLimits(peer_cache_size=2))
    for cache in (connector.quic.tickets, connector.quic.tokens):
        assert cache.limit == 2
    tokens: PeerCache[bytes] = connector.quic.tokens
    keys = [HttpPeer(f"10.0.0.{i}", 443, tls=True, protocol="h3").key() for i in range(3)]
    for index, key in enumerate(keys):
        tokens.store(key, bytes([index]))
    assert tokens.get(keys[0]) is None  # the oldest is forgotten
    assert [tokens.get(k) for k in keys[1:]] == [b"\x01", b"\x02"]
    tokens.store(keys[1], b"\x11")  # storing again makes it the newest
    tokens.store(keys[0], b"\x00")
    assert tokens.get(keys[2]) is None and tokens.get(keys[1]) == b"\x11"
    assert Connector().quic.tickets.limit == 1024
