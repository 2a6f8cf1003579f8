"""Serve the demo origin: an asyncio HTTP/1.1 server on h11, one task per connection.

`DemoOrigin` owns the listener and the connection tasks; `Exchange` is one request/response on a
connection, with streaming body reads (hashed and counted, never stored) and streaming writes. What
each path answers lives in `routes.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, cast

import h11

from quicproxy.demo import routes

__all__ = ["DemoOrigin", "Exchange", "SeenRequest"]

log = logging.getLogger(__name__)

SERVER_NAME: Final = "quicproxy-demo-origin"
IDLE_TIMEOUT: Final = 60.0  # longest wait for the next bytes from a client
WRITE_TIMEOUT: Final = 60.0  # longest wait for a client to take the bytes we wrote
STOP_TIMEOUT: Final = 5.0
READ_SIZE: Final = 64 * 1024
MAX_SEEN: Final = 1000

_SERVER_HEADER: Final = (b"server", SERVER_NAME.encode())


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the origin received it (header names lowercased, body only summarized)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body_size: int
    body_sha256: str


class _ClientGone(Exception):
    """The client closed, reset or stalled the connection; nothing more can be said to it."""


class _Wire:
    """An h11 server connection glued to an asyncio stream pair, every await under a timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conn = h11.Connection(h11.SERVER)
        self._reader = reader
        self._writer = writer
        self.eof = False

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            try:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    data = await self._reader.read(READ_SIZE)
            except (TimeoutError, OSError) as exc:
                raise _ClientGone from exc
            self.eof = not data
            self.conn.receive_data(data)

    async def send(self, event: h11.Event) -> None:
        pieces = self.conn.send_with_data_passthrough(event)
        if pieces:
            self._writer.writelines(pieces)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await self._writer.drain()
        except (TimeoutError, OSError) as exc:
            raise _ClientGone from exc


class Exchange:
    """One request on a connection and the means to answer it.

    Read the body with `receive()` (sends `100 Continue` first when the client waits for it);
    answer with `respond()` or `start()` + `write()` + `end()`. The `server` header is added to
    every response and bodies of HEAD responses are dropped.
    """

    def __init__(self, origin: DemoOrigin, wire: _Wire, request: h11.Request) -> None:
        self._origin = origin
        self._wire = wire
        self.request = request
        self.method = request.method.decode("ascii", "replace")
        self.target = request.target.decode("ascii", "replace")
        self.headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        self.body_size = 0
        self._hash = hashlib.sha256()
        self.body_done = False
        self.response_started = False
        self.close_after = False
        self._recorded = False

    @property
    def http_version(self) -> str:
        return self.request.http_version.decode("ascii", "replace")

    @property
    def body_sha256(self) -> str:
        return self._hash.hexdigest()

    async def receive(self) -> bytes | None:
        """The next chunk of the request body, or None once it is complete."""
        if self.body_done:
            return None
        if self._wire.conn.they_are_waiting_for_100_continue:
            await self._wire.send(
                h11.InformationalResponse(
                    status_code=100, headers=[_SERVER_HEADER], reason=b"Continue"
                )
            )
        event = await self._wire.next_event()
        if isinstance(event, h11.Data):
            self.body_size += len(event.data)
            self._hash.update(event.data)
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            self.body_done = True
            self.record()
            return None
        raise h11.RemoteProtocolError(f"unexpected {event!r} in a request body")

    async def discard_body(self) -> None:
        """Read and drop the body so the connection can be reused, unless the client waits on us."""
        if self._wire.conn.they_are_waiting_for_100_continue:
            self.close_after = True  # refuse the body instead of asking for it; then close
            return
        while await self.receive() is not None:
            pass

    def record(self) -> None:
        """Add this request to the origin's `requests_seen` (once)."""
        if not self._recorded:
            self._recorded = True
            self._origin._record(
                SeenRequest(
                    self.method, self.target, self.headers, self.body_size, self.body_sha256
                )
            )

    async def start(
        self, status: int, headers: Iterable[tuple[str, str]] = (), *, chunked: bool = False
    ) -> None:
        """Send the response head; without content-length h11 frames the body itself."""
        self.record()
        self.response_started = True
        raw = [_SERVER_HEADER, *((n.encode("latin-1"), v.encode("latin-1")) for n, v in headers)]
        if chunked:
            raw.append((b"transfer-encoding", b"chunked"))
        if self.close_after:
            raw.append((b"connection", b"close"))
        await self._wire.send(h11.Response(status_code=status, headers=raw, reason=_reason(status)))

    async def write(self, data: bytes) -> None:
        if data and self.method != "HEAD":
            await self._wire.send(h11.Data(data=data))

    async def end(self, trailers: Iterable[tuple[str, str]] = ()) -> None:
        raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in trailers]
        if self.request.http_version < b"1.1" or self.method == "HEAD":
            raw = []  # no chunked framing to carry trailers
        await self._wire.send(h11.EndOfMessage(headers=raw))

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/plain; charset=utf-8",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a whole response with a known length (no body at all for 1xx, 204 and 304)."""
        head = list(headers)
        if status not in (204, 304):
            head += [("content-type", content_type), ("content-length", str(len(body)))]
        await self.start(status, head)
        if status not in (204, 304):
            await self.write(body)
        await self.end()


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class DemoOrigin:
    """A small HTTP/1.1 origin for demos and tests; see `routes.py` for what it serves."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self._port = port
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests_seen: list[SeenRequest] = []
        self.connections_accepted = 0

    @property
    def port(self) -> int:
        """The bound port once started, the requested one before."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("DemoOrigin already started")
        self._server = await asyncio.start_server(
            self._serve, self.host, self._port, limit=READ_SIZE, ssl=self.ssl_context
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):
                await server.wait_closed()

    async def __aenter__(self) -> DemoOrigin:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _record(self, seen: SeenRequest) -> None:
        self.requests_seen.append(seen)
        if len(self.requests_seen) > MAX_SEEN:
            del self.requests_seen[: len(self.requests_seen) - MAX_SEEN]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_accepted += 1
        wire = _Wire(reader, writer)
        try:
            await self._serve_requests(wire)
        except _ClientGone:
            log.debug("demo origin: client went away")
        except Exception:
            log.exception("demo origin: connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve_requests(self, wire: _Wire) -> None:
        conn = wire.conn
        while True:
            try:
                event = await wire.next_event()
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
                if not isinstance(event, h11.Request):
                    raise h11.RemoteProtocolError(f"expected a request, got {event!r}")
                exchange = Exchange(self, wire, event)
                try:
                    await routes.dispatch(exchange)
                finally:
                    exchange.record()
            except (_ClientGone, h11.LocalProtocolError):
                raise
            except h11.RemoteProtocolError as exc:
                log.debug("demo origin: bad request: %s", exc)
                if not wire.eof and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send_error(wire, exc.error_status_hint, str(exc))
                return
            except Exception as exc:
                log.exception("demo origin: route failed")
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send_error(wire, 500, type(exc).__name__)
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            if conn.our_state is not h11.DONE:
                raise RuntimeError(f"route left the response unfinished: {conn.our_state}")
            conn.start_next_cycle()

    @staticmethod
    async def _send_error(wire: _Wire, status: int, message: str) -> None:
        body = f"{status} {_reason(status).decode()}: {message}\n".encode("ascii", "replace")
        headers = [
            _SERVER_HEADER,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        with contextlib.suppress(h11.LocalProtocolError):
            await wire.send(
                h11.Response(status_code=status, headers=headers, reason=_reason(status))
            )
            await wire.send(h11.Data(data=body))
            await wire.send(h11.EndOfMessage())
