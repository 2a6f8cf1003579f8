"""Fixtures for the QUIC adapter tests: a throwaway certificate and in-memory QUIC pumps.

The pumps move datagrams between a REAL aioquic client and our server side (a ``QuicRouter``
or a bare connection) with a fake clock: no sockets, every loop bounded.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aioquic.h0.connection import H0Connection
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import H3Event
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.events import Event
from protocols.quic import QuicServerConnection
from protocols.quic_router import QuicRouter

CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)
STEP = 0.005  # fake seconds per pump round: lets delayed ACKs go out, far below any PTO


def make_certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed ECDSA P-256 certificate for localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@pytest.fixture(scope="session")
def certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return make_certificate()


@pytest.fixture
def server_config(certificate: tuple[Any, Any]) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"])
    config.certificate, config.private_key = certificate
    return config


def client_config(alpn: str = "h3", **kwargs: Any) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
        **kwargs,
    )


class RouterPair:
    """An aioquic client (+ H3Connection or H0Connection) talking to a QuicRouter."""

    def __init__(
        self,
        router: QuicRouter,
        *,
        alpn: str = "h3",
        client: QuicConnection | None = None,
        now: float = 1.0,
        client_addr: tuple[str, int] = CLIENT_ADDR,
    ) -> None:
        self.now = now
        self.router = router
        self.client_addr = client_addr
        self.client = client or QuicConnection(configuration=client_config(alpn))
        self.client.connect(SERVER_ADDR, now=self.now)
        self.http: H3Connection | H0Connection = (
            H3Connection(self.client) if alpn == "h3" else H0Connection(self.client)
        )
        self.conn: QuicServerConnection | None = None
        self.server_events: list[Event] = []
        self.client_events: list[H3Event] = []
        self.quic_events: list[QuicEvent] = []
        self.replies: list[bytes] = []
        self.created = 0

    def transfer(self, rounds: int = 60, idle_rounds: int = 3) -> None:
        """Pump datagrams both ways until nothing moved for ``idle_rounds`` rounds."""
        idle = 0
        for _ in range(rounds):
            moved = False
            for data, _addr in self.client.datagrams_to_send(self.now):
                moved = True
                result = self.router.receive_datagram(data, self.client_addr, self.now)
                if result.connection is not None:
                    self.conn = result.connection
                self.created += result.new
                self.server_events.extend(result.events)
                for reply, _ in result.replies:
                    self.replies.append(reply)
                    self.client.receive_datagram(reply, SERVER_ADDR, self.now)
            if self.conn is not None:
                for data, _addr in self.conn.datagrams_to_send(self.now):
                    moved = True
                    self.client.receive_datagram(data, SERVER_ADDR, self.now)
                self.server_events.extend(self.conn.pending_events())
            self.drain_client()
            idle = 0 if moved else idle + 1
            if idle >= idle_rounds:
                return
            self.now += STEP
        raise AssertionError("transfer() did not settle")

    def drain_client(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.quic_events.append(event)
            self.client_events.extend(self.http.handle_event(event))

    def take_server_events(self) -> list[Event]:
        events, self.server_events = self.server_events, []
        return events

    def take_client_events(self) -> list[H3Event]:
        events, self.client_events = self.client_events, []
        return events


class DirectPair:
    """Two QuicConnections wired together, each side with an event callback."""

    def __init__(
        self,
        client: QuicConnection,
        server: QuicConnection,
        on_client: Callable[[QuicEvent], None],
        on_server: Callable[[QuicEvent], None],
    ) -> None:
        self.now = 1.0
        self.client, self.server = client, server
        self.on_client, self.on_server = on_client, on_server
        self.client.connect(SERVER_ADDR, now=self.now)

    def transfer(self, rounds: int = 60, idle_rounds: int = 3) -> None:
        idle = 0
        for _ in range(rounds):
            moved = False
            for data, _ in self.client.datagrams_to_send(self.now):
                moved = True
                self.server.receive_datagram(data, CLIENT_ADDR, self.now)
            while (event := self.server.next_event()) is not None:
                self.on_server(event)
            for data, _ in self.server.datagrams_to_send(self.now):
                moved = True
                self.client.receive_datagram(data, SERVER_ADDR, self.now)
            while (event := self.client.next_event()) is not None:
                self.on_client(event)
            idle = 0 if moved else idle + 1
            if idle >= idle_rounds:
                return
            self.now += STEP
        raise AssertionError("transfer() did not settle")


@pytest.fixture
def router_pair(server_config: QuicConfiguration) -> Callable[..., RouterPair]:
    """Build a handshaken-on-demand RouterPair: ``router_pair(alpn=..., **router_kwargs)``."""

    def build(alpn: str = "h3", client: QuicConnection | None = None, **kwargs: Any) -> RouterPair:
        return RouterPair(QuicRouter(server_config, **kwargs), alpn=alpn, client=client)

    return build


@pytest.fixture
def harness() -> SimpleNamespace:
    """The pump classes and helpers, for tests that build their own pairs."""
    return SimpleNamespace(
        RouterPair=RouterPair,
        DirectPair=DirectPair,
        client_config=client_config,
        CLIENT_ADDR=CLIENT_ADDR,
        SERVER_ADDR=SERVER_ADDR,
    )
