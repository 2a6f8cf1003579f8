"""One-call wrappers around real clients (Debian curl, curl_cffi, ngtcp2's gtlsclient, httpx) that
return what a user would see: status, protocol, response headers and body."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import curl

GTLSCLIENT = shutil.which("gtlsclient")
H2LOAD = shutil.which("h2load")

Header = tuple[str, str]


@dataclass
class Response:
    """A response as a client saw it; header names are lowercase."""

    status: int
    headers: list[Header]
    body: bytes
    http_version: str  # "1.1", "2" or "3"
    trailers: list[Header] = field(default_factory=list)

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def _fields(lines: list[str]) -> list[Header]:
    fields = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip():
            fields.append((name.strip().lower(), value.strip()))
    return fields


def _parse_curl_head(raw: bytes) -> tuple[int, str, list[Header], list[Header]]:
    """Status, version, header fields and trailer fields from a ``curl -D`` dump: the last block
    that starts with a status line (skipping 1xx interim responses), then any trailers."""
    blocks = [b for b in raw.decode("latin-1").replace("\r\n", "\n").split("\n\n") if b.strip()]
    heads = [i for i, b in enumerate(blocks) if b.startswith("HTTP/")]
    assert heads, f"curl wrote no response head: {raw!r}"
    lines = blocks[heads[-1]].split("\n")
    version, status = lines[0].split()[:2]
    trailers = _fields([line for b in blocks[heads[-1] + 1 :] for line in b.split("\n")])
    return int(status), version.removeprefix("HTTP/"), _fields(lines[1:]), trailers


def curl_request(
    version: str,
    url: str,
    workdir: Path,
    *,
    method: str = "GET",
    data: bytes | Path | None = None,
    headers: Sequence[Header] = (),
    extra: Sequence[str] = (),
    timeout: float = 60,
) -> Response:
    """Debian curl with ``--http1.1`` or ``--http2`` (``version`` "1.1" or "2")."""
    flag = {"1.1": "--http1.1", "2": "--http2"}[version]
    head, body = workdir / "curl-head", workdir / "curl-body"
    body.unlink(missing_ok=True)  # curl writes no file for an empty body: no stale one either
    args = [flag, "-X", method, "-D", str(head), "-o", str(body), *extra]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    if data is not None:
        if isinstance(data, bytes):
            source = workdir / "curl-upload"
            source.write_bytes(data)
            data = source
        args += ["--data-binary", f"@{data}"]
    result = curl(*args, url, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    status, got_version, got_headers, trailers = _parse_curl_head(head.read_bytes())
    content = body.read_bytes() if body.exists() else b""
    return Response(status, got_headers, content, got_version, trailers)


def h3_request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: Sequence[Header] = (),
    timeout: float = 30,
) -> Response:
    """curl_cffi's libcurl, HTTP/3 only (``http_version="v3only"``), not verifying the cert."""
    from curl_cffi import requests

    with requests.Session(trust_env=False) as session:
        r = session.request(
            method,
            url,
            data=data,
            headers=list(headers),
            http_version="v3only",
            verify=False,
            timeout=timeout,
        )
    version = {30: "3", 20: "2", 2: "1.1"}.get(r.http_version, str(r.http_version))
    got = [(n.lower(), v) for n, v in r.headers.multi_items()]
    return Response(r.status_code, got, r.content, version)


def httpx_request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: Sequence[Header] = (),
    timeout: float = 30,
) -> Response:
    """httpx with HTTP/2 enabled (ALPN picks it), not verifying the cert."""
    import httpx

    with httpx.Client(http2=True, verify=False, trust_env=False, timeout=timeout) as client:
        r = client.request(method, url, content=data, headers=list(headers))
    version = r.http_version.removeprefix("HTTP/")
    got = [(n.decode().lower(), v.decode()) for n, v in r.headers.raw]
    return Response(r.status_code, got, r.content, version)


_GTLS_FIELD = re.compile(r"^http: stream 0x([0-9a-f]+) \[(:?[^:\]]+): (.*)\]$")
_GTLS_TRAILERS = re.compile(r"^http: stream 0x([0-9a-f]+) trailers started")


@dataclass
class GtlsResult:
    """What gtlsclient printed; its exit status is unreliable, so look at files and headers."""

    returncode: int
    log: str
    headers: dict[int, list[Header]]  # response header fields per stream id
    trailers: dict[int, list[Header]]


def gtls_fetch(
    port: int,
    paths: Sequence[str],
    download_dir: Path,
    *,
    authority: str | None = None,
    method: str = "GET",
    data_file: Path | None = None,
    quiet: bool = False,
    timeout: float = 60,
    extra: Sequence[str] = (),
) -> GtlsResult:
    """Fetch ``paths`` as concurrent streams on ONE HTTP/3 connection to 127.0.0.1:PORT; bodies are
    saved in ``download_dir`` by the last path component (query string included). Unless
    ``quiet``, the response headers of each stream are parsed from the log. ``extra``: more
    gtlsclient options (session and token files, ciphers...)."""
    assert GTLSCLIENT is not None
    download_dir.mkdir(parents=True, exist_ok=True)
    authority = authority or f"127.0.0.1:{port}"
    args = [
        GTLSCLIENT,
        "--exit-on-all-streams-close",
        f"--download={download_dir}",
        "--timeout=20s",
        "--handshake-timeout=10s",
        "-m",
        method,
    ]
    args += ["-q"] if quiet else ["--no-quic-dump", "--no-http-dump"]
    if data_file is not None:
        args += ["-d", str(data_file)]
    args += [*extra, "127.0.0.1", str(port), *(f"https://{authority}{p}" for p in paths)]
    result = subprocess.run(args, capture_output=True, timeout=timeout)
    log = result.stderr.decode(errors="replace") + result.stdout.decode(errors="replace")
    fields: dict[int, list[Header]] = {}
    trailers: dict[int, list[Header]] = {}
    in_trailers: set[int] = set()
    for line in log.splitlines():
        started = _GTLS_TRAILERS.match(line)
        if started:
            in_trailers.add(int(started.group(1), 16))
            continue
        match = _GTLS_FIELD.match(line)
        if match:
            stream = int(match.group(1), 16)
            target = trailers if stream in in_trailers else fields
            target.setdefault(stream, []).append((match.group(2).lower(), match.group(3)))
    return GtlsResult(result.returncode, log, fields, trailers)


def gtls_request(
    port: int,
    path: str,
    download_dir: Path,
    *,
    authority: str | None = None,
    method: str = "GET",
    data: bytes | None = None,
    timeout: float = 60,
) -> Response:
    """One request with gtlsclient, as a Response (status 0 when no response head arrived).
    gtlsclient cannot send extra header fields."""
    data_file = None
    if data is not None:
        data_file = download_dir / "gtls-upload.bin"
        download_dir.mkdir(parents=True, exist_ok=True)
        data_file.write_bytes(data)
    out = download_dir / "gtls-out"
    result = gtls_fetch(
        port,
        [path],
        out,
        authority=authority,
        method=method,
        data_file=data_file,
        timeout=timeout,
    )
    head = result.headers.get(0, [])
    status = int(next((v for n, v in head if n == ":status"), "0"))
    name = path.rstrip("/").rsplit("/", 1)[-1] or "index.html"
    body_file = out / name
    body = body_file.read_bytes() if body_file.exists() else b""
    plain = [(n, v) for n, v in head if not n.startswith(":")]
    return Response(status, plain, body, "3", result.trailers.get(0, []))


@contextmanager
def peak_rss(read_kib: Callable[[], int], interval: float = 0.05) -> Iterator[list[int]]:
    """Sample ``read_kib()`` every ``interval`` s in a thread while the block runs; the yielded list
    holds [baseline, peak] in KiB when the block ends."""
    result = [read_kib(), 0]
    stop = threading.Event()
    peak = [result[0]]

    def sample() -> None:
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                peak[0] = max(peak[0], read_kib())
            except (OSError, ValueError):
                return
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(5)
        try:
            result[1] = max(peak[0], read_kib())
        except (OSError, ValueError):
            result[1] = peak[0]


@dataclass(frozen=True)
class H3Request:
    """One request for :func:`aioquic_requests`."""

    path: str
    method: str = "GET"
    headers: Sequence[Header] = ()
    body: bytes = b""


def aioquic_requests(
    port: int, requests: Sequence[H3Request], *, authority: str | None = None, timeout: float = 60
) -> list[Response]:
    """Send every request as its own stream, all at once, on ONE aioquic HTTP/3 connection to
    127.0.0.1:PORT. Returns the responses in order (status 0 for a reset stream)."""
    import asyncio

    async def bounded() -> list[Response]:
        async with asyncio.timeout(timeout):
            return await _aioquic_requests(port, requests, authority or f"127.0.0.1:{port}")

    return asyncio.run(bounded())


async def _aioquic_requests(
    port: int, requests: Sequence[H3Request], authority: str
) -> list[Response]:
    import asyncio
    import ssl

    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent, StreamReset

    class _Pending:
        def __init__(self) -> None:
            self.head: list[Header] | None = None
            self.trailers: list[Header] = []
            self.body = bytearray()
            self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.pending: dict[int, _Pending] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamReset) and event.stream_id in self.pending:
                self._finish(event.stream_id)
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

        def _h3_event(self, event: H3Event) -> None:
            if not isinstance(event, HeadersReceived | DataReceived):
                return
            pending = self.pending.get(event.stream_id)
            if pending is None:
                return
            if isinstance(event, HeadersReceived):
                fields = [(n.decode().lower(), v.decode()) for n, v in event.headers]
                if pending.head is None or pending.head[0] == (":status", "100"):
                    pending.head = fields
                else:
                    pending.trailers = fields
            else:
                pending.body += event.data
            if event.stream_ended:
                self._finish(event.stream_id)

        def _finish(self, stream_id: int) -> None:
            done = self.pending[stream_id].done
            if not done.done():
                done.set_result(None)

        async def request(self, req: H3Request) -> Response:
            stream_id = self._quic.get_next_available_stream_id()
            pending = self.pending[stream_id] = _Pending()
            head = [
                (b":method", req.method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", req.path.encode()),
                *((n.lower().encode(), v.encode()) for n, v in req.headers),
            ]
            self.h3.send_headers(stream_id, head, end_stream=not req.body)
            if req.body:
                self.h3.send_data(stream_id, req.body, end_stream=True)
            self.transmit()
            await pending.done
            fields = pending.head or []
            status = int(next((v for n, v in fields if n == ":status"), "0"))
            plain = [(n, v) for n, v in fields if not n.startswith(":")]
            return Response(status, plain, bytes(pending.body), "3", pending.trailers)

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    config.server_name = "localhost"
    async with connect("127.0.0.1", port, configuration=config, create_protocol=Client) as c:
        assert isinstance(c, Client)
        responses = await asyncio.gather(*(c.request(r) for r in requests))
        c.close()
    return list(responses)
