"""100 concurrent streams on ONE connection through the proxy: HTTP/2 (h2load) and HTTP/3
(gtlsclient, an aioquic client). Every response must be complete and correct, and the proxy's
access log must show them all coming from a single client connection."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from quicproxy.demo.routes import expected_bytes
from tests.support.clients import GTLSCLIENT, H2LOAD, H3Request, aioquic_requests, gtls_fetch
from tests.support.procs import ProxyProcess

STREAMS = 100
ACCESS = re.compile(
    r'quicproxy\.access\[\d+\]: (127\.0\.0\.1:\d+) (\S+) "(\S+) (\S+) (\S+)" (\d{3})'
)

pytestmark = pytest.mark.timeout(180)


def access_lines(proxy: ProxyProcess, marker: str, count: int) -> list[tuple[str, str, str, int]]:
    """(client address, protocol, path, status) of the access-log lines whose path contains
    ``marker``, once ``count`` of them are there (5 s at most)."""
    deadline = time.monotonic() + 5
    while True:
        found = []
        for line in list(proxy.lines):
            match = ACCESS.search(line)
            if match and marker in match.group(5):
                client, protocol, _, _, path, status = match.groups()
                found.append((client, protocol, path, int(status)))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_one_connection(proxy: ProxyProcess, marker: str, protocol: str) -> None:
    lines = access_lines(proxy, marker, STREAMS)
    assert len(lines) == STREAMS, f"{len(lines)} access-log lines for {marker}"
    assert {line[1] for line in lines} == {protocol}
    assert {line[3] for line in lines} == {200}
    clients = {line[0] for line in lines}
    assert len(clients) == 1, f"requests came over {len(clients)} connections: {clients}"


@pytest.mark.skipif(H2LOAD is None, reason="h2load (nghttp2-client) is not installed")
def test_100_streams_on_one_h2_connection(proxy: ProxyProcess) -> None:
    assert H2LOAD is not None
    marker = f"h2load-{uuid.uuid4().hex[:8]}"
    url = f"https://127.0.0.1:{proxy.port}/bytes/1000?run={marker}"
    result = subprocess.run(
        [H2LOAD, "-n", str(STREAMS), "-c", "1", "-m", str(STREAMS), "-T", "30", "-N", "30", url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Application protocol: h2" in out, out
    assert re.search(
        rf"requests: {STREAMS} total, {STREAMS} started, {STREAMS} done, "
        rf"{STREAMS} succeeded, 0 failed, 0 errored",
        out,
    ), out
    assert f"status codes: {STREAMS} 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out
    data = re.search(r"traffic: .*\((\d+)\) data", out)
    assert data is not None, out
    assert int(data.group(1)) == STREAMS * 1000  # every body arrived in full
    assert_one_connection(proxy, marker, "h2")


@pytest.mark.skipif(GTLSCLIENT is None, reason="gtlsclient (ngtcp2-client) is not installed")
def test_100_streams_on_one_h3_connection_gtlsclient(proxy: ProxyProcess, tmp_path: Path) -> None:
    marker = f"gtls-{uuid.uuid4().hex[:8]}"
    sizes = range(1001, 1001 + STREAMS)  # distinct names: gtlsclient saves by the last component
    paths = [f"/bytes/{n}?run={marker}" for n in sizes]
    out = tmp_path / "dl"
    result = gtls_fetch(proxy.port, paths, out, quiet=True, timeout=90)
    missing = [n for n in sizes if not (out / f"{n}?run={marker}").exists()]
    assert not missing, (
        f"{len(missing)} responses missing (exit {result.returncode}): {missing[:10]}"
    )
    for n in sizes:
        assert (out / f"{n}?run={marker}").read_bytes() == expected_bytes(n), f"/bytes/{n}"
    assert_one_connection(proxy, marker, "h3")


def test_100_streams_on_one_h3_connection_aioquic(proxy: ProxyProcess) -> None:
    marker = f"aioquic-{uuid.uuid4().hex[:8]}"
    rng = random.Random(100)
    requests = []
    for i in range(STREAMS):
        if i % 2:
            requests.append(
                H3Request(f"/upload?run={marker}&i={i}", "POST", body=rng.randbytes(5000 + i))
            )
        else:
            requests.append(H3Request(f"/bytes/{20_000 + i}?run={marker}&i={i}"))
    responses = aioquic_requests(proxy.port, requests, timeout=90)
    assert len(responses) == STREAMS
    for i, (request, response) in enumerate(zip(requests, responses, strict=True)):
        assert response.status == 200, (request.path, response.status, response.body[:200])
        if request.method == "POST":
            assert response.json() == {
                "received": len(request.body),
                "sha256": hashlib.sha256(request.body).hexdigest(),
            }, request.path
        else:
            assert response.body == expected_bytes(20_000 + i), request.path
    assert_one_connection(proxy, marker, "h3")
