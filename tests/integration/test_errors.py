"""What a client sees when things go wrong: a dead, silent, garbled or truncating upstream, a
malformed request, no matching route; and that the proxy survives all of it."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support.procs import CURL, ProxyProcess, ThreadedOrigin, curl, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

VERSIONS = ["1.1", "2", "3"]


# --- raw upstreams ---------------------------------------------------------------------------


def _read_head(conn: socket.socket, limit: float = 5.0) -> bytes:
    """Read a request head (up to the blank line), for at most ``limit`` seconds."""
    data = b""
    deadline = time.monotonic() + limit
    while b"\r\n\r\n" not in data and time.monotonic() < deadline and len(data) < 65536:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept the request and never answer, until the proxy hangs up (30 s at most)."""
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def _garbage(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"NOT HTTP\r\n\r\n")


def _cut_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    """Promise 1000 bytes, send 10, close."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
        b"content-length: 1000\r\n\r\n" + b"0123456789"
    )


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request head and then runs ``behave``."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]) -> None:
        self.behave = behave
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.handlers: list[threading.Thread] = []

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for handler in self.handlers:
            handler.join(5)
        self.sock.close()

    def _serve(self) -> None:
        deadline = time.monotonic() + 900
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            handler = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.handlers.append(handler)
            handler.start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        with conn:
            try:
                if _read_head(conn):
                    self.behave(conn, self.stop)
            except OSError:
                pass


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- fixtures --------------------------------------------------------------------------------


@dataclass
class Setup:
    proxy: ProxyProcess
    silent: RawServer
    garbage: RawServer
    cut: RawServer
    origin: ThreadedOrigin


@pytest.fixture(scope="module")
def errors_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("errors")
    with (
        ThreadedOrigin() as origin,
        RawServer(_silent) as silent,
        RawServer(_garbage) as garbage,
        RawServer(_cut_mid_body) as cut,
    ):
        config = workdir / "errors.toml"
        config.write_text(
            f"""
[server]
workers = 1
grace_period = 2

[tls]
dev_cert_dir = "{workdir / "certs"}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "down"
addresses = ["http://127.0.0.1:{_closed_port()}"]
connect_timeout = 2

[[upstream]]
name = "silent"
addresses = ["http://127.0.0.1:{silent.port}"]
read_timeout = 1

[[upstream]]
name = "garbage"
addresses = ["http://127.0.0.1:{garbage.port}"]
read_timeout = 3

[[upstream]]
name = "cut"
addresses = ["http://127.0.0.1:{cut.port}"]
read_timeout = 3

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin.port}"]
read_timeout = 5

[[route]]
upstream = "down"
path_prefix = "/down/"

[[route]]
upstream = "silent"
path_prefix = "/silent/"

[[route]]
upstream = "garbage"
path_prefix = "/garbage/"

[[route]]
upstream = "cut"
path_prefix = "/cut/"

[[route]]
upstream = "origin"
path_prefix = "/bytes/"

[[route]]
upstream = "origin"
path_prefix = "/echo"

[[route]]
upstream = "origin"
host = "example.test"
"""
        )
        with run_proxy(["run", "-c", str(config)]) as proxy:
            yield Setup(proxy, silent, garbage, cut, origin)


# --- clients ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a client got: status 0 and ``failed`` when no complete response arrived."""

    status: int
    body: bytes
    failed: bool
    detail: str
    elapsed: float
    version: str


def fetch(
    version: str,
    port: int,
    path: str,
    *,
    host: str | None = None,
    timeout: float = 15,
) -> Outcome:
    """One GET over HTTP/1.1 or HTTP/2 (Debian curl) or HTTP/3 (curl_cffi)."""
    url = f"https://127.0.0.1:{port}{path}"
    started = time.monotonic()
    if version == "3":
        requests = pytest.importorskip("curl_cffi.requests", reason="curl_cffi is not installed")
        headers = {"host": host} if host else {}
        try:
            with requests.Session(trust_env=False) as session:
                r = session.get(
                    url, headers=headers, http_version="v3only", verify=False, timeout=timeout
                )
        except Exception as exc:  # curl_cffi raises its own RequestException subclasses
            return Outcome(0, b"", True, repr(exc), time.monotonic() - started, "3")
        got = {30: "3", 20: "2", 2: "1.1"}.get(r.http_version, str(r.http_version))
        return Outcome(r.status_code, r.content, False, "", time.monotonic() - started, got)
    flag = {"1.1": "--http1.1", "2": "--http2"}[version]
    extra = ["-H", f"host: {host}"] if host else []
    result = curl(flag, *extra, "-w", "\n%{http_code} %{http_version}", url, timeout=timeout)
    body, _, trailer = result.stdout.rpartition(b"\n")
    status_text, _, got = trailer.decode().partition(" ")
    return Outcome(
        int(status_text or 0),
        body,
        result.returncode != 0,
        f"curl exit {result.returncode}: {result.stderr.decode(errors='replace').strip()}",
        time.monotonic() - started,
        got,
    )


def _warnings_about(proxy: ProxyProcess, path: str) -> list[str]:
    """The proxy's WARNING lines that mention this request path (bounded wait for the log)."""
    deadline = time.monotonic() + 3
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [
            line
            for line in proxy.log_text().splitlines()
            if " WARNING " in line and f"{path} failed" in line
        ]
        if lines:
            break
        time.sleep(0.05)
    return lines


def _tag(version: str) -> str:
    return "h" + version.replace(".", "")


# --- upstream failures -----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_upstream_down_gives_502_and_one_log_line(errors_setup: Setup, version: str) -> None:
    path = f"/down/{_tag(version)}"
    got = fetch(version, errors_setup.proxy.port, path)
    assert not got.failed, got.detail
    assert got.version == {"1.1": "1.1", "2": "2", "3": "3"}[version]
    assert got.status == 502
    assert got.body.startswith(b"502 Bad Gateway")
    assert len(got.body) < 200
    warnings = _warnings_about(errors_setup.proxy, path)
    assert len(warnings) == 1, warnings
    assert "connect_refused" in warnings[0] or "refused" in warnings[0].lower()


@pytest.mark.parametrize("version", VERSIONS)
def test_silent_upstream_gives_504_quickly(errors_setup: Setup, version: str) -> None:
    path = f"/silent/{_tag(version)}"
    got = fetch(version, errors_setup.proxy.port, path)
    assert not got.failed, got.detail
    assert got.status == 504
    assert got.body.startswith(b"504 Gateway Timeout")
    assert 0.9 <= got.elapsed < 5, f"504 took {got.elapsed:.2f}s with read_timeout = 1"
    warnings = _warnings_about(errors_setup.proxy, path)
    assert len(warnings) == 1, warnings
    assert "read_timeout" in warnings[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_garbage_from_upstream_gives_502(errors_setup: Setup, version: str) -> None:
    path = f"/garbage/{_tag(version)}"
    got = fetch(version, errors_setup.proxy.port, path)
    assert not got.failed, got.detail
    assert got.status == 502
    assert got.body.startswith(b"502 Bad Gateway")
    assert got.elapsed < 5
    assert len(_warnings_about(errors_setup.proxy, path)) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_upstream_closing_mid_body_is_an_incomplete_response_not_a_hang(
    errors_setup: Setup, version: str
) -> None:
    port = errors_setup.proxy.port
    got = fetch(version, port, f"/cut/{_tag(version)}", timeout=10)
    assert got.elapsed < 8, f"client waited {got.elapsed:.1f}s for a truncated response"
    # The client must notice: an error (curl non-zero exit, a reset stream), never a clean 1000.
    assert got.failed, f"looked complete: status {got.status}, {len(got.body)} bytes"
    assert "exit 28" not in got.detail, "curl timed out: the proxy left the response hanging"
    assert len(got.body) < 1000
    # ... and the proxy goes on serving.
    after = fetch(version, port, "/bytes/1000")
    assert not after.failed, after.detail
    assert (after.status, len(after.body)) == (200, 1000)


def test_mid_body_close_over_h2_resets_only_that_stream(errors_setup: Setup) -> None:
    """On one HTTP/2 connection, the truncated response fails and the next request succeeds."""
    port = errors_setup.proxy.port
    result = curl(
        "--http2",
        "-w",
        "%{http_code} %{http_version} %{size_download}\n",
        "-o",
        "/dev/null",
        f"https://127.0.0.1:{port}/cut/h2-shared",
        "-o",
        "/dev/null",
        f"https://127.0.0.1:{port}/bytes/5000",
        timeout=10,
    )
    stderr = result.stderr.decode(errors="replace")
    # curl's exit status is the last transfer's; the first one's failure is on stderr.
    assert "HTTP/2 stream 1 was not closed cleanly" in stderr, stderr
    first, second = result.stdout.decode().splitlines()
    status, _, size = first.split()
    assert status in ("000", "200") and int(size) < 1000, first  # curl reports 000 on failure
    assert second == "200 2 5000"
    assert result.returncode == 0, stderr


# --- downstream problems ---------------------------------------------------------------------


def _raw_h1(port: int, payload: bytes) -> tuple[bytes, bool]:
    """Send ``payload`` on a TLS connection (ALPN http/1.1); read what comes back until the proxy
    closes the connection (then the flag is True) or 5 s pass."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    data = b""
    closed = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(payload)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(data) < 1 << 20:
            try:
                chunk = tls.recv(65536)
            except TimeoutError:
                continue
            except (ssl.SSLError, ConnectionResetError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    return data, closed


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="garbage-request-line"),
        pytest.param(
            b"GET /echo HTTP/1.1\r\nhost: 127.0.0.1\r\nthis is not a header\r\n\r\n",
            id="invalid-header-line",
        ),
    ],
)
def test_malformed_h1_request_gets_400(errors_setup: Setup, payload: bytes) -> None:
    proxy = errors_setup.proxy
    seen_before = len(errors_setup.origin.origin.requests_seen)
    answer, closed = _raw_h1(proxy.port, payload)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    # One response, then the connection closes (it said "connection: close").
    assert answer.count(b"HTTP/1.1 ") == 1, (
        f"{answer.count(b'HTTP/1.1 ')} responses: {answer[:400]!r}"
    )
    assert closed, "the proxy kept the connection open after a 400"
    assert len(errors_setup.origin.origin.requests_seen) == seen_before, "reached the origin"
    time.sleep(0.2)
    assert "Traceback" not in proxy.log_text(), proxy.log_text()[-3000:]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_route_gives_404(errors_setup: Setup, version: str) -> None:
    got = fetch(version, errors_setup.proxy.port, f"/nowhere/{_tag(version)}")
    assert not got.failed, got.detail
    assert got.status == 404
    assert b"no route" in got.body


def test_host_route_still_matches_its_host(errors_setup: Setup) -> None:
    """The same path with the routed host reaches the origin (whose own 404 text differs)."""
    got = fetch("1.1", errors_setup.proxy.port, "/nowhere/routed", host="example.test")
    assert not got.failed, got.detail
    assert got.status == 404
    assert got.body == b"404 not found: /nowhere/routed\n"


# --- and the proxy is fine -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_proxy_still_serves_after_the_errors(errors_setup: Setup, version: str) -> None:
    """Runs last in this module: after every failure above, normal requests still work."""
    proxy = errors_setup.proxy
    assert proxy.proc.poll() is None, "the proxy exited:\n" + proxy.log_text()
    got = fetch(version, proxy.port, "/bytes/20000")
    assert not got.failed, got.detail
    assert (got.status, len(got.body)) == (200, 20000)
    echo = fetch(version, proxy.port, "/echo")
    assert echo.status == 200 and b'"method": "GET"' in echo.body
    assert "Traceback" not in proxy.log_text(), proxy.log_text()


def test_no_traceback_after_shutdown(errors_setup: Setup) -> None:
    """A clean stop after all of the above: exit status 0 and still no traceback."""
    proxy = errors_setup.proxy
    code = proxy.stop()
    assert code == 0, proxy.log_text()
    time.sleep(0.2)
    assert "Traceback" not in proxy.log_text(), proxy.log_text()
