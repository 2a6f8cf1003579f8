"""An HTTP/2 upstream whose response body disagrees with its content-length fails that one
request (its client stream is reset: the head went out already) and never the others sharing
the upstream connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from tests.support.procs import CURL, ProxyProcess, curl, proxy_args, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


class LyingH2Origin:
    """Cleartext HTTP/2 (prior knowledge). ``/short`` promises 10 bytes and sends 5; ``/long``
    promises 2 and sends 5; anything else gets ``200 ok`` after ``delay`` seconds."""

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> LyingH2Origin:
        thread = threading.Thread(target=self._accept, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        due: list[tuple[float, int]] = []
        sock.settimeout(0.02)
        deadline = time.monotonic() + 30
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
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers)[b":path"]
                        self._answer(conn, event.stream_id, path, due)
                now = time.monotonic()
                for item in [d for d in due if d[0] <= now]:
                    due.remove(item)
                    conn.send_headers(item[1], [(":status", "200"), ("content-length", "2")])
                    conn.send_data(item[1], b"ok", end_stream=True)
                try:
                    sock.sendall(conn.data_to_send())
                except OSError:
                    return

    def _answer(
        self,
        conn: h2.connection.H2Connection,
        stream_id: int,
        path: bytes,
        due: list[tuple[float, int]],
    ) -> None:
        lies = {b"/short": "10", b"/long": "2"}
        if path not in lies:
            due.append((time.monotonic() + self.delay, stream_id))
            return
        conn.send_headers(stream_id, [(":status", "200"), ("content-length", lies[path])])
        conn.send_data(stream_id, b"hello", end_stream=True)


@pytest.fixture(scope="module")
def lying() -> Iterator[LyingH2Origin]:
    with LyingH2Origin() as origin:
        yield origin


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, lying: LyingH2Origin) -> Iterator[ProxyProcess]:
    from quicproxy.devcerts import ensure_dev_certs

    tmp = tmp_path_factory.mktemp("h2-length")
    certs = ensure_dev_certs(tmp / "certs")
    upstream = f'addresses = ["http://127.0.0.1:{lying.port}"]\nprotocol = "h2"\nmax_retries = 0'
    with run_proxy(proxy_args(tmp / "proxy.toml", certs, upstream)) as running:
        yield running


def _get(port: int, path: str) -> tuple[int, bytes]:
    """curl's exit status and the body it received."""
    result = curl("--http2", "-o", "-", f"https://127.0.0.1:{port}{path}")
    return result.returncode, result.stdout


@pytest.mark.parametrize("lie", ["/short", "/long"])
def test_a_lying_response_fails_alone(proxy: ProxyProcess, lying: LyingH2Origin, lie: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        honest = pool.submit(_get, proxy.port, "/honest")  # answered 0.5 s later
        time.sleep(0.2)  # on the same upstream connection by now
        liar = pool.submit(_get, proxy.port, lie)
        code, body = liar.result(20)
        assert code != 0 and body != b"hello"  # the head went out: reset, never a clean end
        assert honest.result(20) == (0, b"ok")
    assert lying.connections == 1  # the shared upstream connection survived the bad stream
