"""PROXY protocol v1/v2 on TCP listeners: honoured from trusted sources, refused from others."""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.net.proxy_header import V2_SIGNATURE
from tests.support.procs import ProxyProcess, ThreadedOrigin, curl, proxy_in_front

pytestmark = pytest.mark.timeout(60)

V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n"
V2_BODY = socket.inet_aton("198.51.100.9") + socket.inet_aton("192.0.2.1") + b"\xc7\x38\x01\xbb"
V2 = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(V2_BODY)) + V2_BODY


def listener(trusted: str) -> str:
    return f"""
[[listen]]
address = "127.0.0.1:0"
quic = false
proxy_protocol = true
proxy_protocol_from = ["{trusted}"]
"""


@pytest.fixture(scope="module")
def origin() -> Iterator[ThreadedOrigin]:
    with ThreadedOrigin() as served:
        yield served


@pytest.fixture(scope="module")
def proxied(
    origin: ThreadedOrigin, tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path
) -> Iterator[ProxyProcess]:
    """A proxy whose second listener takes PROXY headers from 127.0.0.1 only."""
    where = tmp_path_factory.mktemp("proxied")
    extra = listener("127.0.0.0/8")
    with proxy_in_front(origin.port, where, cert_dir=proxy_cert_dir, extra=extra) as proxy:
        yield proxy


def proxy_port(proxy: ProxyProcess) -> int:
    """The PROXY-protocol listener's port, from the 'listening on' log lines."""
    for line in proxy.log_text().splitlines():
        if "listening on 127.0.0.1 port" in line and "(h2, http/1.1)" in line:
            return int(line.split(" port ")[1].split()[0])
    raise AssertionError(proxy.log_text())


def request(port: int, header: bytes, *, tls: bool = True) -> tuple[bytes, dict[str, object]]:
    """Send ``header``, then (over TLS) GET /echo; the status line and the echoed request."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(header)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock: socket.socket = context.wrap_socket(raw, server_hostname="localhost") if tls else raw
    with sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


@pytest.mark.parametrize(("header", "client"), [(V1, "203.0.113.7"), (V2, "198.51.100.9")])
def test_the_header_of_a_trusted_source_gives_the_client_address(
    proxied: ProxyProcess, header: bytes, client: str
) -> None:
    status, echoed = request(proxy_port(proxied), header)
    assert status == b"HTTP/1.1 200 OK"
    headers = echoed["headers"]
    assert isinstance(headers, dict)
    assert headers["x-forwarded-for"] == client
    assert f"for={client}" in str(headers["forwarded"])
    assert proxied.wait_for_log(f"{client}:51000 http/1.1")  # the access log has it too


def test_curl_haproxy_protocol_over_h2(proxied: ProxyProcess) -> None:
    port = proxy_port(proxied)
    done = curl(
        "--http2",
        "--haproxy-protocol",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        f"https://127.0.0.1:{port}/",
    )
    assert done.stdout == b"2 200", done.stderr


def test_a_connection_without_a_header_is_closed(proxied: ProxyProcess) -> None:
    with pytest.raises((ssl.SSLError, OSError, json.JSONDecodeError)):
        request(proxy_port(proxied), b"")
    assert proxied.wait_for_log("connection refused: the connection did not start with a PROXY")


def test_an_untrusted_source_is_refused_even_with_a_valid_header(
    origin: ThreadedOrigin, tmp_path: Path, proxy_cert_dir: Path
) -> None:
    extra = listener("10.0.0.0/8")  # the balancers; this test connects from 127.0.0.1
    with proxy_in_front(origin.port, tmp_path, cert_dir=proxy_cert_dir, extra=extra) as proxy:
        port = proxy_port(proxy)
        with pytest.raises((ssl.SSLError, OSError, json.JSONDecodeError)):
            request(port, V1)
        assert proxy.wait_for_log("connection refused: not a trusted PROXY protocol source")
        # the ordinary listener beside it is not affected
        done = curl("-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{proxy.port}/")
        assert done.stdout == b"200"


def test_a_config_naming_no_trusted_source_is_an_error(tmp_path: Path) -> None:
    from quicproxy.config import ConfigError, load_config

    path = tmp_path / "p.toml"
    path.write_text(
        '[[listen]]\naddress = "127.0.0.1:8443"\nproxy_protocol = true\n'
        '[[upstream]]\nname = "o"\naddresses = ["http://127.0.0.1:1"]\n'
        '[[route]]\nupstream = "o"\n'
    )
    with pytest.raises(
        ConfigError, match=re.escape("listen[0].proxy_protocol_from: list the load")
    ):
        load_config(path)
