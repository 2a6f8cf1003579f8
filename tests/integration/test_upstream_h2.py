"""HTTP/2 upstreams: ALPN and prior knowledge, multiplexing, GOAWAY, body flow both ways.

Origins: Debian's nginx (an independent HTTP/2 server) and a second quicproxy in a chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.devcerts import DevCerts, ensure_dev_certs
from tests.support.procs import (
    CURL,
    ThreadedOrigin,
    curl,
    free_port,
    pattern_sha256,
    proxy_args,
    run_proxy,
)

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
H2LOAD = shutil.which("h2load")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


class Nginx:
    """nginx serving static files over h2 (TLS, GOAWAY after 10 requests), h2 (TLS, no limit)
    and h2c, logging the connection serial number of every request."""

    def __init__(self, root: Path, certs: DevCerts) -> None:
        self.root = root
        self.html = root / "html"
        self.html.mkdir()
        self.big = os.urandom(3_000_000)
        (self.html / "big.bin").write_bytes(self.big)
        (self.html / "small.txt").write_text("hello\n")
        self.tls_port, self.limited_port, self.h2c_port = free_port(), free_port(), free_port()
        servers = []
        for port, extra in ((self.tls_port, ""), (self.limited_port, "keepalive_requests 10;")):
            servers.append(
                f"server {{ listen 127.0.0.1:{port} ssl http2; root {self.html};"
                f" ssl_certificate {certs.cert}; ssl_certificate_key {certs.key};"
                f" access_log {root}/{port}.log c; {extra} }}"
            )
        servers.append(
            f"server {{ listen 127.0.0.1:{self.h2c_port} http2; root {self.html};"
            f" access_log {root}/{self.h2c_port}.log c; }}"
        )
        (root / "nginx.conf").write_text(
            f"daemon off; worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log;"
            f" {'user root;' if os.geteuid() == 0 else ''}"
            " events { worker_connections 1024; }"
            " http { log_format c '$connection $server_protocol $request $status';"
            f" {' '.join(servers)} }}"
        )
        self.proc = subprocess.Popen(
            [str(NGINX), "-c", str(root / "nginx.conf"), "-p", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.h2c_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def log(self, port: int) -> list[list[str]]:
        path = self.root / f"{port}.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return ensure_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, certs: DevCerts) -> Iterator[Nginx]:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    server = Nginx(tmp_path_factory.mktemp("nginx"), certs)
    try:
        yield server
    finally:
        server.stop()


def fetch_many(port: int, paths: list[str], *options: str) -> list[bytes]:
    args: list[str] = []
    for path in paths:
        args += ["-o", "/dev/null", f"https://127.0.0.1:{port}{path}"]
    result = curl(*options, "-w", "%{http_code}\n", *args)
    return result.stdout.split()


@needs_nginx
def test_alpn_picks_h2_and_one_connection_carries_sequential_requests(
    tmp_path: Path, certs: DevCerts, nginx: Nginx
) -> None:
    upstream = f'addresses = ["https://127.0.0.1:{nginx.tls_port}"]\nca_file = "{certs.ca_cert}"'
    with run_proxy(proxy_args(tmp_path / "p.toml", certs, upstream)) as proxy:
        statuses = fetch_many(proxy.port, ["/small.txt"] * 30, "--http1.1")
        assert statuses == [b"200"] * 30
    lines = nginx.log(nginx.tls_port)
    assert len(lines) == 30
    assert {line[1] for line in lines} == {"HTTP/2.0"}
    assert len({line[0] for line in lines}) == 1


@needs_nginx
@pytest.mark.skipif(H2LOAD is None, reason="h2load is not installed")
def test_concurrent_requests_are_multiplexed_on_few_connections(
    tmp_path: Path, certs: DevCerts, nginx: Nginx
) -> None:
    before = len(nginx.log(nginx.tls_port))
    upstream = f'addresses = ["https://127.0.0.1:{nginx.tls_port}"]\nca_file = "{certs.ca_cert}"'
    with run_proxy(proxy_args(tmp_path / "p.toml", certs, upstream)) as proxy:
        result = subprocess.run(
            [
                str(H2LOAD),
                "-n",
                "300",
                "-c",
                "3",
                "-m",
                "40",
                f"https://127.0.0.1:{proxy.port}/small.txt",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "300 succeeded" in result.stdout, result.stdout
    lines = nginx.log(nginx.tls_port)[before:]
    assert len(lines) == 300
    # 120 streams in flight fit in nginx's 128 concurrent streams: one or two connections
    assert 1 <= len({line[0] for line in lines}) <= 2


@needs_nginx
def test_goaway_moves_new_requests_to_a_new_connection(
    tmp_path: Path, certs: DevCerts, nginx: Nginx
) -> None:
    upstream = (
        f'addresses = ["https://127.0.0.1:{nginx.limited_port}"]\nca_file = "{certs.ca_cert}"\n'
        'protocol = "h2"'
    )
    with run_proxy(proxy_args(tmp_path / "p.toml", certs, upstream)) as proxy:
        statuses = fetch_many(proxy.port, ["/small.txt"] * 35, "--http1.1")
        assert statuses == [b"200"] * 35
        assert "Traceback" not in proxy.log_text()
    lines = nginx.log(nginx.limited_port)
    assert len(lines) == 35
    assert len({line[0] for line in lines}) == 4  # nginx sends GOAWAY after 10 requests


@needs_nginx
def test_h2c_prior_knowledge_and_body_integrity(
    tmp_path: Path, certs: DevCerts, nginx: Nginx
) -> None:
    upstream = f'addresses = ["http://127.0.0.1:{nginx.h2c_port}"]\nprotocol = "h2"'
    with run_proxy(proxy_args(tmp_path / "p.toml", certs, upstream)) as proxy:
        result = curl("--http2", f"https://127.0.0.1:{proxy.port}/big.bin")
        assert hashlib.sha256(result.stdout).digest() == hashlib.sha256(nginx.big).digest()
    lines = nginx.log(nginx.h2c_port)
    assert lines and {line[1] for line in lines} == {"HTTP/2.0"}


def test_upload_and_download_through_an_h2_hop(tmp_path: Path, certs: DevCerts) -> None:
    """client -h1-> proxy A -h2 (TLS)-> proxy B -h1-> origin: 20 MiB both ways."""
    with ThreadedOrigin() as origin:
        b_upstream = f'addresses = ["127.0.0.1:{origin.port}"]'
        with run_proxy(proxy_args(tmp_path / "b.toml", certs, b_upstream)) as hop:
            a_upstream = (
                f'addresses = ["https://127.0.0.1:{hop.port}"]\nca_file = "{certs.ca_cert}"\n'
                'sni = "localhost"\nprotocol = "h2"'
            )
            with run_proxy(proxy_args(tmp_path / "a.toml", certs, a_upstream)) as proxy:
                size = 20 * 1024 * 1024
                down = curl("--http1.1", f"https://127.0.0.1:{proxy.port}/bytes/{size}")
                assert hashlib.sha256(down.stdout).hexdigest() == pattern_sha256(size)
                payload = tmp_path / "up.bin"
                payload.write_bytes(os.urandom(size))
                up = curl(
                    "--http1.1",
                    "--data-binary",
                    f"@{payload}",
                    f"https://127.0.0.1:{proxy.port}/upload",
                )
                answer = json.loads(up.stdout)
                assert answer["received"] == size
                assert answer["sha256"] == hashlib.sha256(payload.read_bytes()).hexdigest()
                echo = json.loads(curl("--http1.1", f"https://127.0.0.1:{proxy.port}/echo").stdout)
                assert echo["headers"]["via"].startswith("1.1 quicproxy, 2 quicproxy")
            assert " h2 " in hop.log_text()  # proxy B saw HTTP/2 from proxy A


def test_h2_required_but_origin_speaks_only_http11(tmp_path: Path, certs: DevCerts) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    with ThreadedOrigin(context) as origin:
        upstream = (
            f'addresses = ["https://127.0.0.1:{origin.port}"]\nca_file = "{certs.ca_cert}"\n'
            'sni = "localhost"\nprotocol = "h2"'
        )
        with run_proxy(proxy_args(tmp_path / "p.toml", certs, upstream)) as proxy:
            result = curl("-w", "%{http_code}", f"https://127.0.0.1:{proxy.port}/echo")
            assert result.stdout.endswith(b"502")
            assert "did not agree to HTTP/2" in proxy.log_text()


@needs_nginx
async def test_health_check_speaks_http2_to_an_h2_only_origin(
    certs: DevCerts, nginx: Nginx
) -> None:
    from quicproxy.lb.health import ActiveCheck, HealthChecker
    from quicproxy.upstream.peer import HttpPeer

    before = len(nginx.log(nginx.tls_port))
    peer = HttpPeer(
        "127.0.0.1", nginx.tls_port, tls=True, protocol="h2", sni="localhost",
        ca_file=certs.ca_cert,
    )  # fmt: skip
    checker = HealthChecker("h2", [], ActiveCheck(path="/small.txt"))
    assert await checker.probe(peer) is None
    missing = HealthChecker("h2", [], ActiveCheck(path="/missing"))
    assert await missing.probe(peer) == "status 404, expected 200-399"
    lines = nginx.log(nginx.tls_port)[before:]
    assert [line[1] for line in lines] == ["HTTP/2.0", "HTTP/2.0"]
