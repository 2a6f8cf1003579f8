"""RecordingOrigin: an HTTP/1.1 origin on 127.0.0.1 that records every byte and request it got.

Hardening tests need to know what reached the origin, not only what the client saw. The origin
keeps the raw bytes of each connection and the complete requests h11 parsed from them, and
answers in one of several modes: a normal 200, never (a hung origin), a raw byte string of the
test's choosing (malformed responses), or a close right after the request head.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

__all__ = ["OriginRequest", "RecordingOrigin"]


@dataclass
class OriginRequest:
    """A complete request as the origin parsed it."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lowercase), or None."""
        return next((v for k, v in self.headers if k == name), None)


@dataclass
class _Connection:
    raw: bytearray = field(default_factory=bytearray)
    closed: bool = False


Responder = Callable[[OriginRequest], bytes]


def _ok(request: OriginRequest) -> bytes:
    body = b"ok " + request.target
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


class RecordingOrigin:
    """A threaded HTTP/1.1 origin that records what it received.

    ``mode``: ``"ok"`` answers each request 200 (keep-alive), ``"hang"`` reads and never
    answers, ``"raw"`` sends ``raw_response`` after the first complete request head and closes,
    ``"close"`` closes once a request head arrived. ``responder`` replaces the 200 of ``"ok"``.
    """

    def __init__(
        self,
        mode: str = "ok",
        *,
        raw_response: bytes = b"",
        responder: Responder | None = None,
    ) -> None:
        self.mode = mode
        self.raw_response = raw_response
        self.responder = responder or _ok
        self.connections: list[_Connection] = []
        self.requests: list[OriginRequest] = []
        self.heads: list[OriginRequest] = []  # request heads, complete or not (body = b"")
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> RecordingOrigin:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    @property
    def raw(self) -> bytes:
        """Every byte every connection received, in connection order."""
        with self._lock:
            return b"".join(bytes(c.raw) for c in self.connections)

    def open_connections(self) -> int:
        """Connections the proxy has not closed yet."""
        with self._lock:
            return sum(1 for c in self.connections if not c.closed)

    def wait_for(self, check: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``check`` until it holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.02)
        return check()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = _Connection()
            with self._lock:
                self.connections.append(record)
            thread = threading.Thread(target=self._serve, args=(conn, record), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, record: _Connection) -> None:
        conn.settimeout(0.2)
        parser = h11.Connection(h11.SERVER)
        current: OriginRequest | None = None
        body = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                with self._lock:
                    record.raw += data
                parser.receive_data(data)
                while True:
                    try:
                        event = parser.next_event()
                    except h11.RemoteProtocolError:
                        return
                    if event is h11.NEED_DATA or event is h11.PAUSED:
                        break
                    if isinstance(event, h11.Request):
                        current = OriginRequest(
                            bytes(event.method),
                            bytes(event.target),
                            [(bytes(k), bytes(v)) for k, v in event.headers],
                            b"",
                        )
                        body.clear()
                        with self._lock:
                            self.heads.append(current)
                        if self.mode == "close":
                            return
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage) and current is not None:
                        current.body = bytes(body)
                        with self._lock:
                            self.requests.append(current)
                        if self.mode == "hang":
                            continue
                        if self.mode == "raw":
                            conn.sendall(self.raw_response)
                            return
                        conn.sendall(self.responder(current))
                        leftover, _ = parser.trailing_data
                        parser = h11.Connection(h11.SERVER)
                        if leftover:  # b"" would mean end of file to h11
                            parser.receive_data(bytes(leftover))
                    elif isinstance(event, h11.ConnectionClosed):
                        return
        except OSError:
            return
        finally:
            with self._lock:
                record.closed = True
            conn.close()
