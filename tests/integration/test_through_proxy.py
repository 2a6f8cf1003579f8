"""Requests through a real ``quicproxy run`` from five real clients: what the origin sees
(forwarding fields, hop-by-hop stripping) and what the client gets back (Alt-Svc, trailers)."""

from __future__ import annotations

import hashlib
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clients import (
    GTLSCLIENT,
    H3Request,
    Header,
    Response,
    aioquic_requests,
    curl_request,
    gtls_request,
    h3_request,
    httpx_request,
)
from tests.support.procs import (
    CURL,
    ProxyProcess,
    curl,
    proxy_in_front,
    run_proxy,
    write_config,
)


@dataclass(frozen=True)
class Client:
    """A real client; ``send(port, path, workdir, method, body, headers)`` returns its Response."""

    name: str
    version: str  # the protocol it must end up speaking: "1.1", "2" or "3"
    send: Callable[[int, str, Path, str, bytes | None, Sequence[Header]], Response]
    sends_headers: bool = True  # gtlsclient cannot add header fields
    shows_trailers: bool = True  # httpx does not expose response trailers


def _curl(version: str) -> Callable[..., Response]:
    def send(
        port: int,
        path: str,
        workdir: Path,
        method: str,
        body: bytes | None,
        headers: Sequence[Header],
    ) -> Response:
        url = f"https://127.0.0.1:{port}{path}"
        return curl_request(version, url, workdir, method=method, data=body, headers=headers)

    return send


def _httpx(
    port: int, path: str, workdir: Path, method: str, body: bytes | None, headers: Sequence[Header]
) -> Response:
    return httpx_request(
        f"https://127.0.0.1:{port}{path}", method=method, data=body, headers=headers
    )


def _curl_cffi(
    port: int, path: str, workdir: Path, method: str, body: bytes | None, headers: Sequence[Header]
) -> Response:
    return h3_request(f"https://127.0.0.1:{port}{path}", method=method, data=body, headers=headers)


def _gtls(
    port: int, path: str, workdir: Path, method: str, body: bytes | None, headers: Sequence[Header]
) -> Response:
    assert not headers, "gtlsclient cannot send extra header fields"
    return gtls_request(port, path, workdir, method=method, data=body)


no_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
no_gtls = pytest.mark.skipif(GTLSCLIENT is None, reason="gtlsclient (ngtcp2-client) not installed")

CURL_H1 = Client("curl-h1", "1.1", _curl("1.1"))
CURL_H2 = Client("curl-h2", "2", _curl("2"))
HTTPX_H2 = Client("httpx-h2", "2", _httpx, shows_trailers=False)
CFFI_H3 = Client("curl_cffi-h3", "3", _curl_cffi)
GTLS_H3 = Client("gtlsclient-h3", "3", _gtls, sends_headers=False)

ALL = [
    pytest.param(CURL_H1, id=CURL_H1.name, marks=no_curl),
    pytest.param(CURL_H2, id=CURL_H2.name, marks=no_curl),
    pytest.param(HTTPX_H2, id=HTTPX_H2.name),
    pytest.param(CFFI_H3, id=CFFI_H3.name),
    pytest.param(GTLS_H3, id=GTLS_H3.name, marks=no_gtls),
]
WITH_HEADERS = [p for p in ALL if p.values[0].sends_headers]  # type: ignore[union-attr]


def echo(response: Response) -> dict[str, object]:
    assert response.status == 200, response.body[:500]
    seen = response.json()
    assert isinstance(seen, dict)
    return seen


@pytest.mark.parametrize("client", ALL)
def test_get_reaches_origin_with_forwarding_fields(
    client: Client, proxy: ProxyProcess, tmp_path: Path
) -> None:
    path = "/echo/a/b?x=1&y=two%20words"
    r = client.send(proxy.port, path, tmp_path, "GET", None, ())
    assert r.http_version == client.version
    seen = echo(r)
    headers = seen["headers"]
    assert isinstance(headers, dict)
    authority = f"127.0.0.1:{proxy.port}"
    assert (seen["method"], seen["path"], seen["query"]) == (
        "GET",
        "/echo/a/b",
        "x=1&y=two%20words",
    )
    assert headers["host"] == authority
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == authority
    assert "for=127.0.0.1;proto=https" in headers["forwarded"]
    assert headers["via"] == f"{client.version} quicproxy"


@pytest.mark.parametrize("client", ALL)
def test_post_body_reaches_origin_intact(
    client: Client, proxy: ProxyProcess, tmp_path: Path
) -> None:
    body = random.Random(client.name).randbytes(40_000)
    r = client.send(proxy.port, "/echo?kind=post", tmp_path, "POST", body, ())
    assert r.http_version == client.version
    seen = echo(r)
    assert seen["method"] == "POST"
    assert seen["query"] == "kind=post"
    assert seen["body_size"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("client", ALL)
def test_status_passes_through(client: Client, proxy: ProxyProcess, tmp_path: Path) -> None:
    r = client.send(proxy.port, "/status/503", tmp_path, "GET", None, ())
    assert r.status == 503
    assert r.body == b"status 503\n"


def expected_alt_svc(client: Client, port: int) -> list[str]:
    """Ours on TCP responses; nothing on HTTP/3 responses (the client already speaks h3)."""
    return [] if client.version == "3" else [f'h3=":{port}"; ma=86400']


@pytest.mark.parametrize("client", ALL)
def test_alt_svc_advertises_h3_on_tcp_only(
    client: Client, proxy: ProxyProcess, tmp_path: Path
) -> None:
    r = client.send(proxy.port, "/bytes/100", tmp_path, "GET", None, ())
    assert r.status == 200
    assert r.get_all("alt-svc") == expected_alt_svc(client, proxy.port)


@pytest.mark.parametrize("client", ALL)
def test_origin_alt_svc_never_reaches_client(
    client: Client, proxy: ProxyProcess, tmp_path: Path
) -> None:
    r = client.send(proxy.port, "/alt-svc", tmp_path, "GET", None, ())
    assert r.status == 200
    assert r.body == b"this response carries an alt-svc header\n"
    assert r.get_all("alt-svc") == expected_alt_svc(client, proxy.port)
    assert all("9999" not in value for value in r.get_all("alt-svc"))


@pytest.fixture(scope="module")
def answering_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """Routes only ``only.example`` to a live origin and /dead/ to a closed port: the proxy
    answers 404 (no route) and 502 (connect refused) itself."""
    directory = tmp_path_factory.mktemp("answering")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    extra = f"""host = "only.example"

[[upstream]]
name = "dead"
addresses = ["http://127.0.0.1:{dead}"]

[[route]]
upstream = "dead"
path_prefix = "/dead/"
"""
    with proxy_in_front(dead, directory, cert_dir=directory, extra=extra) as proxy:
        yield proxy


@pytest.mark.parametrize("client", ALL)
def test_answers_the_proxy_makes_itself_advertise_h3_too(
    client: Client, answering_proxy: ProxyProcess, tmp_path: Path
) -> None:
    """Answers made by the proxy, not the origin, tell TCP clients of HTTP/3 like any other."""
    port = answering_proxy.port
    no_route = client.send(port, "/nowhere", tmp_path, "GET", None, ())
    assert no_route.status == 404
    assert no_route.get_all("alt-svc") == expected_alt_svc(client, port)
    refused = client.send(port, "/dead/x", tmp_path, "GET", None, ())
    assert refused.status == 502
    assert refused.get_all("alt-svc") == expected_alt_svc(client, port)


HOP_BY_HOP_H1: list[Header] = [
    ("connection", "x-drop, keep-alive"),
    ("x-drop", "1"),
    ("keep-alive", "timeout=5"),
    ("te", "trailers"),
    ("proxy-connection", "keep-alive"),
    ("x-keep", "kept"),
]


@no_curl
def test_hop_by_hop_fields_stripped_h1(proxy: ProxyProcess, tmp_path: Path) -> None:
    r = CURL_H1.send(proxy.port, "/echo", tmp_path, "GET", None, HOP_BY_HOP_H1)
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert headers["x-keep"] == "kept"  # an end-to-end field goes through
    for name in ("x-drop", "keep-alive", "te", "proxy-connection"):
        assert name not in headers, f"{name} reached the origin: {headers}"
    assert "x-drop" not in headers.get("connection", "")


def test_te_trailers_stripped_h2(proxy: ProxyProcess, tmp_path: Path) -> None:
    """``te: trailers`` is the one hop-by-hop field h2 allows; it must not go upstream either."""
    r = HTTPX_H2.send(proxy.port, "/echo", tmp_path, "GET", None, [("te", "trailers")])
    assert r.http_version == "2"
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert "te" not in headers


def test_te_trailers_stripped_h3(proxy: ProxyProcess) -> None:
    (r,) = aioquic_requests(
        proxy.port, [H3Request("/echo", headers=[("te", "trailers"), ("x-keep", "kept")])]
    )
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert headers["x-keep"] == "kept"
    assert "te" not in headers


SPOOFED: list[Header] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "evil.test"),
    ("forwarded", "for=6.6.6.6;proto=http"),
]


@pytest.mark.parametrize("client", WITH_HEADERS)
def test_client_forwarding_fields_are_replaced(
    client: Client, proxy: ProxyProcess, tmp_path: Path
) -> None:
    r = client.send(proxy.port, "/echo", tmp_path, "GET", None, SPOOFED)
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"
    assert "6.6.6.6" not in headers["forwarded"]
    assert headers["forwarded"].startswith("for=127.0.0.1;proto=https")


@pytest.mark.parametrize("client", WITH_HEADERS)
def test_trusted_proxy_chain_is_appended(
    client: Client, trusting_proxy: ProxyProcess, tmp_path: Path
) -> None:
    headers_sent = [("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]
    r = client.send(trusting_proxy.port, "/echo", tmp_path, "GET", None, headers_sent)
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert headers["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert headers["forwarded"].startswith("for=6.6.6.6, for=127.0.0.1;proto=https")


@pytest.mark.parametrize("client", ALL)
def test_response_trailers_reach_client(
    client: Client, proxy: ProxyProcess, tmp_path: Path
) -> None:
    r = client.send(proxy.port, "/trailers", tmp_path, "GET", None, ())
    assert r.status == 200
    assert r.body == b"hello\n"
    if not client.shows_trailers:
        return
    if client is CFFI_H3:  # libcurl hands trailers to the header callback
        assert ("x-checksum", "abc") in r.headers
    else:
        assert r.trailers == [("x-checksum", "abc")]
        assert "x-checksum" not in dict(r.headers)


@no_curl
@pytest.mark.parametrize("version", ["1.1", "2"])
def test_named_authority_is_forwarded_curl(
    version: str, proxy: ProxyProcess, tmp_path: Path
) -> None:
    """``--resolve`` keeps traffic on 127.0.0.1 while the client uses another authority."""
    authority = f"proxy.test:{proxy.port}"
    r = curl_request(
        version,
        f"https://{authority}/echo?via=name",
        tmp_path,
        extra=["--resolve", f"{authority}:127.0.0.1"],
    )
    assert r.http_version == version
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert headers["host"] == authority
    assert headers["x-forwarded-host"] == authority
    assert f'host="{authority}"' in headers["forwarded"]


@no_gtls
def test_named_authority_is_forwarded_h3(proxy: ProxyProcess, tmp_path: Path) -> None:
    authority = f"proxy.test:{proxy.port}"
    r = gtls_request(proxy.port, "/echo?via=name", tmp_path, authority=authority)
    headers = echo(r)["headers"]
    assert isinstance(headers, dict)
    assert headers["host"] == authority
    assert headers["via"] == "3 quicproxy"


@no_curl
@pytest.mark.parametrize("version", ["1.1", "2"])
def test_upload_cut_short_by_an_error_response(
    version: str, proxy_cert_dir: Path, tmp_path: Path
) -> None:
    """The upstream is down: the proxy answers 502 while the client is still uploading, the client
    stops and closes. The client sees the 502; the proxy keeps serving and logs no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = write_config(tmp_path / "dead.toml", dead_port, cert_dir=proxy_cert_dir)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(random.Random(3).randbytes(2 * 1024 * 1024))
    with run_proxy(["run", "-c", str(config)]) as dead_proxy:
        url = f"https://127.0.0.1:{dead_proxy.port}/upload"
        result = curl(
            f"--http{version}",
            "--limit-rate",
            "1M",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            f"@{upload}",
            url,
            timeout=30,
        )
        assert result.stdout.decode().rpartition("\n")[2] == "502"
        status = curl(
            "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{dead_proxy.port}/"
        )
        assert status.stdout == b"502"  # still serving
        time.sleep(0.5)  # let the closing connection's events reach the log
        log = dead_proxy.log_text()
    assert "Traceback" not in log, traceback_summary(log)


def traceback_summary(log: str) -> str:
    """The log without traceback frames, then the first frames of the first traceback."""
    lines = log.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    outline = [line for line in lines if not line.startswith(" ")]
    return "\n".join([*outline[:40], "first traceback:", *lines[first : first + 16]])
