"""The demo origin on 127.0.0.1, exercised by httpx, curl and raw sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from quicproxy.demo import DemoOrigin

PATTERN = bytes(range(256)) * 256
CURL = shutil.which("curl")
CURL_TIMEOUT = 60
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture
async def origin() -> AsyncIterator[DemoOrigin]:
    server = DemoOrigin("127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(origin: DemoOrigin) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=origin.url, trust_env=False, timeout=30) as c:
        yield c


async def curl(*args: str) -> bytes:
    """Run curl without blocking the event loop the origin lives on; return its stdout."""
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL,
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        str(CURL_TIMEOUT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(CURL_TIMEOUT + 10):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out


async def raw_exchange(origin: DemoOrigin, data: bytes) -> bytes:
    """Send bytes on a fresh TCP connection and read until the server closes it."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", origin.port)
        writer.write(data)
        await writer.drain()
        try:
            return await reader.read(-1)
        finally:
            writer.close()


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    full, rest = divmod(size, len(PATTERN))
    for _ in range(full):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


async def test_port_is_bound(origin: DemoOrigin) -> None:
    assert origin.port > 0
    assert origin.url == f"http://127.0.0.1:{origin.port}"


async def test_index_page_shows_client_protocol(client: httpx.AsyncClient) -> None:
    r = await client.get("/", headers={"via": "3 quicproxy", "x-forwarded-proto": "https"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["server"] == "quicproxy-demo-origin"
    assert "quicproxy demo" in r.text
    assert '<strong id="protocol">HTTP/3</strong>' in r.text
    assert "https" in r.text
    for route in ("/echo", "/bytes/", "/upload", "/status/", "/delay/", "/trailers", "/alt-svc"):
        assert route in r.text


async def test_echo_post(client: httpx.AsyncClient, origin: DemoOrigin) -> None:
    body = random.Random(7).randbytes(300_000)
    r = await client.post(
        "/echo/some/path?a=1&b=2",
        content=body,
        headers=[("x-repeat", "one"), ("x-repeat", "two"), ("X-Mixed-Case", "v")],
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    echo = r.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/echo/some/path"
    assert echo["query"] == "a=1&b=2"
    assert echo["headers"]["x-repeat"] == "one, two"
    assert echo["headers"]["x-mixed-case"] == "v"
    assert echo["body_size"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    seen = origin.requests_seen[-1]
    assert (seen.method, seen.target) == ("POST", "/echo/some/path?a=1&b=2")
    assert ("x-mixed-case", "v") in seen.headers
    assert (seen.body_size, seen.body_sha256) == (len(body), hashlib.sha256(body).hexdigest())


async def test_bytes_10_mib(client: httpx.AsyncClient) -> None:
    size = 10 * 1024 * 1024
    digest = hashlib.sha256()
    received = 0
    async with client.stream("GET", f"/bytes/{size}") as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        assert r.headers["content-type"] == "application/octet-stream"
        async for chunk in r.aiter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == expected_sha256(size)


async def test_bytes_odd_size_and_head(client: httpx.AsyncClient) -> None:
    r = await client.get("/bytes/70000")
    assert r.content == (PATTERN * 2)[:70000]
    r = await client.head("/bytes/70000")
    assert r.headers["content-length"] == "70000" and r.content == b""


@needs_curl
async def test_bytes_chunked_with_curl(origin: DemoOrigin, tmp_path: Path) -> None:
    size = 3 * 1024 * 1024 + 5
    out = tmp_path / "body"
    head = (await curl("-D", "-", "-o", str(out), f"{origin.url}/bytes/{size}?chunked=1")).lower()
    assert b"transfer-encoding: chunked" in head
    assert b"content-length" not in head
    assert out.stat().st_size == size
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected_sha256(size)


@pytest.mark.parametrize("arg", ["abc", "-1", "1.5", str(10 * 1024**3 + 1)])
async def test_bytes_rejects_bad_sizes(client: httpx.AsyncClient, arg: str) -> None:
    r = await client.get(f"/bytes/{arg}")
    assert r.status_code == 400


@needs_curl
async def test_upload_20_mib_with_curl(origin: DemoOrigin, tmp_path: Path) -> None:
    data = random.Random(20).randbytes(20 * 1024 * 1024)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    out = await curl("--data-binary", f"@{src}", f"{origin.url}/upload")
    answer = json.loads(out)
    assert answer == {"received": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    seen = origin.requests_seen[-1]
    assert seen.method == "POST" and seen.body_size == len(data)
    assert ("expect", "100-continue") in seen.headers  # curl asks first for large bodies


async def test_expect_100_continue_is_answered(origin: DemoOrigin) -> None:
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", origin.port)
        writer.write(
            b"PUT /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"
            b"expect: 100-continue\r\nconnection: close\r\n\r\n"
        )
        await writer.drain()
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b"abc")
        await writer.drain()
        final = await reader.read(-1)
        writer.close()
    assert final.startswith(b"HTTP/1.1 200 ")
    assert hashlib.sha256(b"abc").hexdigest().encode() in final


@needs_curl
async def test_trailers_with_curl(origin: DemoOrigin) -> None:
    raw = await curl("--raw", "-i", f"{origin.url}/trailers")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"6\r\nhello\n\r\n0\r\nx-checksum: abc\r\n\r\n"
    headers_and_trailers = await curl("-D", "-", "-o", "/dev/null", f"{origin.url}/trailers")
    assert b"x-checksum: abc" in headers_and_trailers


async def test_status_and_not_found(client: httpx.AsyncClient) -> None:
    r = await client.get("/status/503")
    assert r.status_code == 503 and r.text == "status 503\n"
    assert r.headers["server"] == "quicproxy-demo-origin"
    r = await client.get("/status/204")
    assert r.status_code == 204 and r.content == b""
    r = await client.get("/no/such/thing")
    assert r.status_code == 404 and "not found" in r.text
    assert r.headers["server"] == "quicproxy-demo-origin"


async def test_delay_headers_alt_svc(client: httpx.AsyncClient) -> None:
    r = await client.get("/delay/0.05")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert (await client.get("/delay/61")).status_code == 400
    r = await client.get("/headers", headers={"x-hello": "world"})
    assert r.json()["x-hello"] == "world"
    r = await client.get("/alt-svc")
    assert r.headers["alt-svc"] == 'h3=":9999"; ma=60'


async def test_malformed_request_gets_400_and_close(origin: DemoOrigin) -> None:
    response = await raw_exchange(origin, b"GARBAGE\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"server: quicproxy-demo-origin" in response.lower()
    assert b"connection: close" in response.lower()
    # the origin survives and still answers
    ok = await raw_exchange(
        origin, b"GET /status/200 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200 ")


async def test_keep_alive(client: httpx.AsyncClient, origin: DemoOrigin) -> None:
    assert (await client.get("/status/200")).status_code == 200
    assert (await client.post("/echo", content=b"x")).json()["body_size"] == 1
    assert (await client.get("/headers")).status_code == 200
    assert origin.connections_accepted == 1


async def test_pipelined_requests(origin: DemoOrigin) -> None:
    request = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
    last = b"GET /status/201 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    response = await raw_exchange(origin, request * 3 + last)
    assert response.count(b"HTTP/1.1 200 OK") == 3
    assert response.count(b"HTTP/1.1 201 Created") == 1
    assert origin.connections_accepted == 1
    assert [s.target for s in origin.requests_seen[-4:]] == ["/echo"] * 3 + ["/status/201"]


async def test_stop_closes_idle_connections(origin: DemoOrigin) -> None:
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", origin.port)
        writer.write(b"GET /status/200 HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"status 200\n")
        await origin.stop()
        assert await reader.read(-1) == b""
        writer.close()
