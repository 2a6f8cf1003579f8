"""In-memory upstream connections for pool tests: real client adapters, real server peers.

``MemoryConnection`` is a ``ConnectionDriver`` with quicproxy's own client adapter (h1 or h2)
whose bytes go to a REAL server state machine in memory (h11 or the h2 library) instead of a
socket; the server's SETTINGS, responses and GOAWAY come back through the adapter as they would
over TCP. ``MemoryConnector`` is a ``Connector`` whose ``connect`` makes them: a test double of
the dialer only, so the pool's bookkeeping can be tested without sockets. Real dialing is covered
by tests/integration/test_pool.py and test_upstream_*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from protocols.h1 import H1ClientAdapter
from protocols.h2 import H2ClientAdapter
from protocols.messages import RequestHead
from quicproxy.errors import ErrorKind, ErrorSource, ProxyError
from quicproxy.streamio import ConnectionDriver, StreamIO
from quicproxy.upstream.connection import PooledConnection
from quicproxy.upstream.connector import Connector
from quicproxy.upstream.peer import HttpPeer

MULTIPLEXED = ("h2", "h3")  # h3 peers get an HTTP/2 server here: the pool treats both alike


def get(path: str = "/") -> RequestHead:
    return RequestHead(b"GET", b"https", b"origin.test", path.encode(), [])


class MemoryConnection(ConnectionDriver):
    """One upstream connection to an in-memory server (h11, or h2 with ``max_streams``)."""

    def __init__(self, peer: HttpPeer, max_streams: int) -> None:
        self.multiplexed = peer.protocol in MULTIPLEXED
        adapter = H2ClientAdapter() if self.multiplexed else H1ClientAdapter()
        super().__init__(adapter, peer_side=ErrorSource.UPSTREAM, write_timeout=5.0)
        self.peer = peer
        self.last_activity = self.loop.time()
        self.on_gone: Callable[[PooledConnection], None] | None = None
        self.transport_closed = False
        self.requests_seen: list[int] = []  # stream ids the server received requests on
        self.h1_requests: list[h11.Request] = []  # what the h1 server parsed, in order
        self.h2_server: H2Connection | None = None
        self.h1_server: h11.Connection | None = None
        if self.multiplexed:
            self.h2_server = H2Connection(H2Configuration(client_side=False))
            self.h2_server.local_settings = Settings(
                client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: max_streams}
            )
            self.h2_server.initiate_connection()
        else:
            self.h1_server = h11.Connection(h11.SERVER)
        self.flush()

    @property
    def reusable(self) -> bool:
        return not self.closed and not self.going_away and self.adapter.available_streams() > 0

    # -- ConnectionDriver ---------------------------------------------------------------------

    def flush(self) -> None:
        data = self.adapter.data_to_send()
        if data:
            self._to_server(data)
        self._from_server()
        events = self.adapter.next_events()
        if events:
            self.handle_events(events)

    def close_transport(self) -> None:
        """As TcpDriver: the socket closes, every stream fails, the owner hears of it."""
        if self.transport_closed:
            return
        self.transport_closed = True
        self.connection_failed("closed by the proxy")
        if self.on_gone is not None:
            self.on_gone(self)

    # -- the server side ----------------------------------------------------------------------

    def _to_server(self, data: bytes) -> None:
        if self.h2_server is not None:
            for event in self.h2_server.receive_data(data):
                if isinstance(event, RequestReceived):
                    self.requests_seen.append(event.stream_id)
            return
        assert self.h1_server is not None
        self.h1_server.receive_data(data)
        while True:
            h1_event = self.h1_server.next_event()
            if h1_event is h11.NEED_DATA or h1_event is h11.PAUSED:
                return
            if isinstance(h1_event, h11.Request):
                self.requests_seen.append(len(self.requests_seen) + 1)
                self.h1_requests.append(h1_event)

    def _from_server(self) -> None:
        if self.h2_server is not None:
            out = self.h2_server.data_to_send()
            if out:
                self.handle_events(self.adapter.receive_data(out))

    def respond(self, stream_id: int, status: int = 200) -> None:
        """The server answers one request with an empty body."""
        if self.h2_server is not None:
            self.h2_server.send_headers(stream_id, [(":status", str(status))], end_stream=True)
            self._from_server()
            return
        assert self.h1_server is not None
        response = h11.Response(status_code=status, headers=[("content-length", "0")])
        out = self.h1_server.send(response) + (self.h1_server.send(h11.EndOfMessage()) or b"")
        self.handle_events(self.adapter.receive_data(out or b""))
        self.h1_server.start_next_cycle()

    def goaway(self) -> None:
        """The server sends a graceful GOAWAY (h2, NO_ERROR) and goes on serving the streams it
        covers, as servers do when they drain; the h2 library's own ``close_connection`` would
        stop it from answering them."""
        assert self.h2_server is not None
        self._from_server()
        last = self.h2_server.highest_inbound_stream_id
        frame = GoAwayFrame(0, last_stream_id=last, error_code=0).serialize()
        self.handle_events(self.adapter.receive_data(frame))

    def lose(self) -> None:
        """The server closes the socket."""
        self.transport_closed = True
        self.connection_failed("connection closed")
        if self.on_gone is not None:
            self.on_gone(self)


async def exchange(conn: PooledConnection, path: str = "/") -> StreamIO:
    """One complete GET on ``conn``: the server answers 200 and the stream is closed."""
    assert isinstance(conn, MemoryConnection)
    stream = conn.open_stream(get(path), end_stream=True)
    conn.flush()
    conn.respond(stream.stream_id)
    assert (await asyncio.wait_for(stream.response, 1)).status == 200
    assert await asyncio.wait_for(stream.body.read(), 1) is None
    stream.close()
    return stream


class MemoryConnector(Connector):
    """Dials ``MemoryConnection``s; records each dial; may hold dials (``gate``) or refuse
    the protocols in ``refuse`` as a dead port would."""

    def __init__(self, max_streams: int = 100) -> None:
        super().__init__()
        self.max_streams = max_streams
        self.dials: list[HttpPeer] = []
        self.connections: list[MemoryConnection] = []
        self.gate: asyncio.Event | None = None
        self.refuse: set[str] = set()

    async def connect(self, peer: HttpPeer) -> PooledConnection:
        self.dials.append(peer)
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 5)
        if peer.protocol in self.refuse:
            raise ProxyError.upstream(
                ErrorKind.CONNECT_REFUSED, f"connect to {peer.address} failed: refused"
            )
        conn = MemoryConnection(peer, self.max_streams)
        self.connections.append(conn)
        return conn
