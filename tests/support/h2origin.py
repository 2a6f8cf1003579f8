"""H2cOrigin: a threaded cleartext HTTP/2 origin (prior knowledge) whose answers a test scripts."""

from __future__ import annotations

import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["H2cOrigin"]


class H2cOrigin:
    """Answers ``200 ok`` ``delay`` seconds after each request unless ``on_request`` (override
    it) answers itself and returns True. ``max_streams`` is its SETTINGS_MAX_CONCURRENT_STREAMS;
    ``connections`` counts accepted connections, ``answered`` the 200s sent."""

    def __init__(self, *, delay: float = 0.0, max_streams: int = 100) -> None:
        self.delay, self.max_streams = delay, max_streams
        self.connections = 0
        self.answered = 0
        self.lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> H2cOrigin:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._sock.close()

    def on_request(
        self, conn: h2.connection.H2Connection, event: h2.events.RequestReceived
    ) -> bool:
        """Answer ``event`` on ``conn`` and return True, or return False for the delayed 200."""
        return False

    def _accept(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            with self.lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams},
        )
        conn.initiate_connection()
        due: list[tuple[float, int]] = []  # (when, stream id) of the 200s to send
        sock.settimeout(0.02)
        deadline = time.monotonic() + 60
        with sock:
            sock.sendall(conn.data_to_send())
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    data = sock.recv(65536)
                    if not data:
                        return
                    events = conn.receive_data(data)
                except TimeoutError:
                    events = []
                except (OSError, h2.exceptions.ProtocolError):
                    return
                for event in events:
                    if isinstance(event, h2.events.RequestReceived) and not self.on_request(
                        conn, event
                    ):
                        due.append((time.monotonic() + self.delay, event.stream_id))
                now = time.monotonic()
                for item in [d for d in due if d[0] <= now]:
                    due.remove(item)
                    conn.send_headers(item[1], [(":status", "200"), ("content-length", "2")])
                    conn.send_data(item[1], b"ok", end_stream=True)
                    with self.lock:
                        self.answered += 1
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    return
