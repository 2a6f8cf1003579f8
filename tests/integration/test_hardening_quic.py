"""QUIC listener hardening on the real proxy: per-source connection cap, the 3x anti-amplification
limit before address validation (with GSO batching), stateless resets smaller than their cause.

Clients are aioquic connections driven by this test (bound to 127.0.0.1 or 127.0.0.2) and raw
UDP sockets that send one packet and count what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent

from interop.certs import chain_certs
from tests.support.procs import ProxyProcess, ThreadedOrigin, run_proxy, write_config

CONNECTION_REFUSED = 0x2


class Client(QuicConnectionProtocol):
    """An HTTP/3 client connection: ``await get(path)`` -> (status, body)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.closed_with: int | None = None
        self.handshake: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._responses: dict[int, tuple[list[int], bytearray, asyncio.Future[None]]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.closed_with = event.error_code
        if (
            isinstance(event, HandshakeCompleted | ConnectionTerminated)
            and not self.handshake.done()
        ):
            self.handshake.set_result(isinstance(event, HandshakeCompleted))
        for h3_event in self.h3.handle_event(event):
            if not isinstance(h3_event, HeadersReceived | DataReceived):
                continue
            entry = self._responses.get(h3_event.stream_id)
            if entry is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                entry[0].append(int(dict(h3_event.headers).get(b":status", b"0")))
            else:
                entry[1].extend(h3_event.data)
            if h3_event.stream_ended and not entry[2].done():
                entry[2].set_result(None)

    async def get(self, path: str) -> tuple[int, bytes]:
        stream_id = self._quic.get_next_available_stream_id()
        done = asyncio.get_running_loop().create_future()
        entry = self._responses[stream_id] = ([], bytearray(), done)
        head = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]
        self.h3.send_headers(stream_id, [*head, (b":path", path.encode())], end_stream=True)
        self.transmit()
        async with asyncio.timeout(10):
            await done
        return (entry[0][0] if entry[0] else 0), bytes(entry[1])


@contextlib.asynccontextmanager
async def client(port: int, local_host: str = "127.0.0.1") -> AsyncIterator[Client]:
    """An aioquic client bound to ``local_host``, connecting to 127.0.0.1:``port`` (its
    handshake is not awaited here: see ``connected``)."""
    config = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE, idle_timeout=15.0
    )
    config.server_name = "localhost"
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Client(QuicConnection(configuration=config)), local_addr=(local_host, 0)
    )
    assert isinstance(protocol, Client)
    protocol.connect(("127.0.0.1", port))
    try:
        yield protocol
    finally:
        protocol.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await protocol.wait_closed()
        transport.close()


async def connected(conn: Client) -> bool:
    """True once the handshake completed; False when the connection ended before that."""
    async with asyncio.timeout(5):
        return await conn.handshake


@pytest.fixture(scope="module")
def capped_proxy(
    tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path
) -> Iterator[ProxyProcess]:
    """The proxy with ``[quic] max_connections_per_source = 3``."""
    with ThreadedOrigin() as origin:
        extra = "\n[quic]\nmax_connections_per_source = 3\n"
        path = tmp_path_factory.mktemp("capped") / "proxy.toml"
        config = write_config(path, origin.port, extra=extra, cert_dir=proxy_cert_dir)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            yield proxy


@pytest.mark.timeout(60)
async def test_connections_per_source_are_capped(capped_proxy: ProxyProcess) -> None:
    """Three connections from 127.0.0.1 are served, a fourth is refused (CONNECTION_REFUSED)
    while the three carry on, 127.0.0.2 is unaffected, and a closed connection frees a place."""
    port = capped_proxy.port
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(client(port)) for _ in range(3)]
        assert [await connected(c) for c in held] == [True, True, True]

        async with client(port) as fourth:
            assert not await connected(fourth)
            assert fourth.closed_with == CONNECTION_REFUSED

        for conn in held:  # the existing connections still work
            status, body = await conn.get("/bytes/100")
            assert (status, len(body)) == (200, 100)

        async with client(port, "127.0.0.2") as elsewhere:  # another address: not capped
            assert await connected(elsewhere)
            assert (await elsewhere.get("/bytes/10"))[0] == 200

        leaving = held.pop()
        leaving.close()
        async with asyncio.timeout(5):
            await leaving.wait_closed()
        accepted = False
        deadline = time.monotonic() + 10  # the server forgets it after its draining period
        while not accepted and time.monotonic() < deadline:
            async with client(port) as again:
                accepted = await connected(again)
                if accepted:
                    assert (await again.get("/bytes/10"))[0] == 200
            if not accepted:
                await asyncio.sleep(0.3)
        assert accepted, "no new connection accepted after one of the three closed"


@pytest.fixture(scope="module")
def long_chain_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """The proxy serving a 16-certificate chain (its handshake flight is far above 3x a client
    Initial), with Retry off so that only the amplification limit protects the address."""
    base = tmp_path_factory.mktemp("long-chain")
    chain_size = chain_certs(base / "certs", 16)
    assert chain_size > 3 * 1200
    with ThreadedOrigin() as origin:
        config = base / "proxy.toml"
        config.write_text(
            f"""
[server]
workers = 1
[tls]
cert = "{base / "certs" / "cert.pem"}"
key = "{base / "certs" / "priv.key"}"
[[listen]]
address = "127.0.0.1:0"
[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin.port}"]
[[route]]
upstream = "origin"
[quic]
retry = "off"
"""
        )
        with run_proxy(["run", "-c", str(config)]) as proxy:
            yield proxy


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def receive_for(sock: socket.socket, seconds: float) -> list[bytes]:
    """Every datagram that arrives within ``seconds``."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(65535))
        except TimeoutError:
            break
    return got


@pytest.mark.timeout(30)
def test_server_sends_at_most_three_times_what_an_unvalidated_client_sent(
    long_chain_proxy: ProxyProcess,
) -> None:
    """One client Initial, never answered: over the whole retransmission period the server's
    replies (several datagrams at once, batched with GSO) total at most 3x its size."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    config.server_name = "localhost"
    quic = QuicConnection(configuration=config)
    quic.connect(("127.0.0.1", long_chain_proxy.port), now=time.monotonic())
    [(initial, _)] = quic.datagrams_to_send(now=time.monotonic())
    with contextlib.closing(udp_socket()) as sock:
        sock.sendto(initial, ("127.0.0.1", long_chain_proxy.port))
        replies = receive_for(sock, 5.0)  # the server's PTOs would come within 0.2-3.2 s
    sent = sum(len(r) for r in replies)
    assert len(replies) >= 2, "the server answered with a flight of several datagrams"
    assert len(initial) < sent <= 3 * len(initial), (len(initial), [len(r) for r in replies])
    assert "GSO unavailable" not in long_chain_proxy.log_text()


@pytest.mark.timeout(30)
def test_stateless_resets_are_smaller_than_the_packet_that_caused_them(
    long_chain_proxy: ProxyProcess,
) -> None:
    """Short-header packets for connections the server does not know get a stateless reset
    (a short-header-looking packet) shorter than themselves; packets too small get none."""
    port = long_chain_proxy.port
    with contextlib.closing(udp_socket()) as sock:
        for size in (1200, 200, 44, 30, 22, 21, 12):
            packet = bytes([0x40 | (os.urandom(1)[0] & 0x3F)]) + os.urandom(size - 1)
            sock.sendto(packet, ("127.0.0.1", port))
            replies = receive_for(sock, 0.5)
            if size <= 21:  # a reset must be at least 21 bytes and smaller than its cause
                assert replies == [], size
                continue
            assert len(replies) == 1, size
            [reset] = replies
            assert 21 <= len(reset) < size and reset[0] & 0xC0 == 0x40, (size, len(reset))
