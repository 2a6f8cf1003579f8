"""Raw clients for traffic a normal client would not send: a TLS socket, an h2-library client."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events

__all__ = ["H2Client", "tls_socket"]


def tls_socket(port: int, alpn: str = "http/1.1", timeout: float = 5.0) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:PORT offering one ALPN protocol, verifying nothing."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


class H2Client:
    """The h2 library over TLS, driven by the test: streams it resets, abandons or never reads."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = tls_socket(port, "h2")
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def send(self, headers: list[tuple[str, str]], end_stream: bool = True) -> int:
        """Open a stream with exactly ``headers`` (pseudo-headers included)."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        self.flush()
        return stream_id

    def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]] = (), end: bool = True
    ) -> int:
        """Open a stream for ``method path`` on this proxy, with extra ``headers``."""
        pseudo = [(":method", method), (":scheme", "https"), (":path", path)]
        return self.send([*pseudo, (":authority", f"localhost:{self.port}"), *headers], end)

    def _read(self, deadline: float) -> list[h2.events.Event] | None:
        """The events of one read (None: closed, or nothing before ``deadline``)."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ssl.SSLError, OSError):
            return None
        if not data:
            return None
        events = self.conn.receive_data(data)
        self.flush()
        return events

    def events(self, limit: float = 5.0, until: type | None = None) -> list[h2.events.Event]:
        """Events until one of type ``until``, the connection closes, or ``limit`` seconds."""
        out: list[h2.events.Event] = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and (new := self._read(deadline)) is not None:
            out += new
            if until is not None and any(isinstance(e, until) for e in new):
                break
        return out

    def status(self, stream_id: int, limit: float = 5.0) -> int:
        """The response status of ``stream_id`` (0: none within ``limit`` seconds)."""
        for event in self.events(limit, until=h2.events.StreamEnded):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                return int(dict(event.headers)[b":status"])
        return 0

    def receive(self, want: int, limit: float = 5.0) -> int:
        """Read (never crediting it back) until ``want`` body bytes came; returns the count."""
        got = 0
        deadline = time.monotonic() + limit
        while got < want and time.monotonic() < deadline:
            events = self._read(deadline)
            if events is None:
                break
            got += sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived))
        return got

    def close(self) -> None:
        self.sock.close()
