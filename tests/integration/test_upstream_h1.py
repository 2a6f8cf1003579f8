"""HTTP/1.1 upstreams: keep-alive reuse, round robin, TLS verification (real origins, real curl)."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.devcerts import DevCerts, ensure_dev_certs
from tests.support.procs import CURL, ThreadedOrigin, curl, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return ensure_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_origin(certs: DevCerts) -> Iterator[ThreadedOrigin]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    with ThreadedOrigin(context) as origin:
        yield origin


def config(path: Path, certs: DevCerts, upstream: str) -> Path:
    path.write_text(
        f"""
[tls]
cert = "{certs.cert}"
key = "{certs.key}"

[[listen]]
address = "127.0.0.1:0"

{upstream}

[[route]]
upstream = "origin"
"""
    )
    return path


def get(port: int, path: str = "/echo", *extra: str) -> tuple[int, bytes]:
    result = curl("--http1.1", "-w", "\n%{http_code}", *extra, f"https://127.0.0.1:{port}{path}")
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status or 0), body


def test_keep_alive_reuses_one_upstream_connection(tmp_path: Path, certs: DevCerts) -> None:
    with ThreadedOrigin() as origin:
        upstream = f'[[upstream]]\nname = "origin"\naddresses = ["127.0.0.1:{origin.port}"]'
        with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstream))]) as proxy:
            args = []
            for i in range(20):
                args += ["-o", "/dev/null", f"https://127.0.0.1:{proxy.port}/bytes/{1000 + i}"]
            result = curl("--http1.1", "-w", "%{http_code}\n", *args)
            assert result.stdout.split() == [b"200"] * 20
            assert origin.origin.connections_accepted == 1


def test_round_robin_over_two_origins(tmp_path: Path, certs: DevCerts) -> None:
    with ThreadedOrigin() as first, ThreadedOrigin() as second:
        upstream = (
            f'[[upstream]]\nname = "origin"\n'
            f'addresses = ["127.0.0.1:{first.port}", "127.0.0.1:{second.port}"]'
        )
        with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstream))]) as proxy:
            for _ in range(10):
                assert get(proxy.port, "/status/200")[0] == 200
            assert len(first.origin.requests_seen) == 5
            assert len(second.origin.requests_seen) == 5


def test_dead_address_fails_over_to_the_live_one(tmp_path: Path, certs: DevCerts) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    with ThreadedOrigin() as live:
        upstream = (
            f'[[upstream]]\nname = "origin"\n'
            f'addresses = ["127.0.0.1:{dead_port}", "127.0.0.1:{live.port}"]'
        )
        with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstream))]) as proxy:
            statuses = [get(proxy.port, "/status/200")[0] for _ in range(6)]
            assert statuses == [200] * 6
            assert len(live.origin.requests_seen) == 6


def test_tls_upstream_verified_with_ca_file(
    tmp_path: Path, certs: DevCerts, tls_origin: ThreadedOrigin
) -> None:
    upstream = (
        f'[[upstream]]\nname = "origin"\naddresses = ["https://127.0.0.1:{tls_origin.port}"]\n'
        f'sni = "localhost"\nca_file = "{certs.ca_cert}"'
    )
    with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstream))]) as proxy:
        status, body = get(proxy.port)
        assert status == 200
        assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"


def test_tls_upstream_with_unknown_ca_is_a_502_naming_the_cause(
    tmp_path: Path, certs: DevCerts, tls_origin: ThreadedOrigin
) -> None:
    upstream = (
        f'[[upstream]]\nname = "origin"\naddresses = ["https://127.0.0.1:{tls_origin.port}"]\n'
        'sni = "localhost"'
    )
    with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstream))]) as proxy:
        status, body = get(proxy.port)
        assert status == 502
        assert b"TLS" in body
        assert "CERTIFICATE_VERIFY_FAILED" in proxy.log_text()


def test_tls_upstream_without_verification_warns(
    tmp_path: Path, certs: DevCerts, tls_origin: ThreadedOrigin
) -> None:
    upstream = (
        f'[[upstream]]\nname = "origin"\naddresses = ["https://127.0.0.1:{tls_origin.port}"]\n'
        "verify = false"
    )
    with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstream))]) as proxy:
        assert get(proxy.port)[0] == 200
        assert "TLS verification is off" in proxy.log_text()


def test_mutual_tls_presents_the_configured_client_certificate(
    tmp_path: Path, certs: DevCerts
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(certs.ca_cert)
    with ThreadedOrigin(context) as origin:
        base = (
            f'[[upstream]]\nname = "origin"\naddresses = ["https://127.0.0.1:{origin.port}"]\n'
            f'sni = "localhost"\nca_file = "{certs.ca_cert}"\n'
        )
        with_cert = base + f'client_cert = "{certs.cert}"\nclient_key = "{certs.key}"'
        with run_proxy(["run", "-c", str(config(tmp_path / "a.toml", certs, with_cert))]) as proxy:
            assert get(proxy.port)[0] == 200
        with run_proxy(["run", "-c", str(config(tmp_path / "b.toml", certs, base))]) as proxy:
            assert get(proxy.port)[0] == 502  # the origin refuses a client without a certificate


def test_total_and_tls_handshake_timeouts(tmp_path: Path, certs: DevCerts) -> None:
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        with ThreadedOrigin() as origin:
            upstreams = (
                f'[[upstream]]\nname = "origin"\naddresses = ["127.0.0.1:{origin.port}"]\n'
                "total_timeout = 1\n\n"
                f'[[upstream]]\nname = "mute"\naddresses = ["https://127.0.0.1:'
                f'{silent.getsockname()[1]}"]\ntls_handshake_timeout = 0.5\n\n'
                '[[route]]\nupstream = "mute"\npath_prefix = "/mute"'
            )
            with run_proxy(["run", "-c", str(config(tmp_path / "p.toml", certs, upstreams))]) as p:
                started = time.monotonic()
                assert get(p.port, "/delay/3")[0] == 504
                assert time.monotonic() - started < 2.5
                assert "exceeded its total timeout of 1s" in p.log_text()
                started = time.monotonic()
                assert get(p.port, "/mute")[0] == 504
                assert time.monotonic() - started < 4  # 0.5 s per try, three tries
                assert "TLS handshake 0.5s" in p.log_text()
    finally:
        stop.set()
        thread.join(5)
        silent.close()
        for conn in accepted:
            conn.close()
