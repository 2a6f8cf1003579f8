"""Route header rules through the running proxy: ``request_headers`` as the origin sees them and
``response_headers`` as the client sees them, over HTTP/1.1, HTTP/2 (curl) and HTTP/3
(curl_cffi)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clients import Header, Response, curl_request, h3_request
from tests.support.procs import CURL, ProxyProcess, proxy_in_front
from tests.support.recording import OriginRequest, RecordingOrigin

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

RULES = """
request_headers = { set = { "x-env" = "prod", "x-added" = "by-rule" }, remove = ["x-debug", "cookie"] }
response_headers = { set = { "strict-transport-security" = "max-age=63072000", "x-frame-options" = "DENY" }, remove = ["x-powered-by", "server"] }
"""  # noqa: E501


def _origin_answer(request: OriginRequest) -> bytes:
    body = b"ok " + request.target
    return (
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-powered-by: php/5\r\nserver: origin/1\r\n"
        b"strict-transport-security: max-age=1\r\nx-origin: kept\r\n\r\n%s" % (len(body), body)
    )


@dataclass
class Edge:
    proxy: ProxyProcess
    origin: RecordingOrigin


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path) -> Iterator[Edge]:
    with RecordingOrigin(responder=_origin_answer) as origin:
        directory = tmp_path_factory.mktemp("ops-headers")
        with proxy_in_front(origin.port, directory, cert_dir=proxy_cert_dir, extra=RULES) as proxy:
            yield Edge(proxy, origin)


def fetch(version: str, url: str, workdir: Path, headers: list[Header]) -> Response:
    """One GET over HTTP/1.1 or HTTP/2 (Debian curl) or HTTP/3 (curl_cffi)."""
    if version == "3":
        return h3_request(url, headers=headers)
    return curl_request(version, url, workdir, headers=headers)


def _seen(origin: RecordingOrigin, path: str) -> OriginRequest:
    assert origin.wait_for(lambda: any(r.target == path.encode() for r in origin.requests))
    return next(r for r in origin.requests if r.target == path.encode())


def _values(request: OriginRequest, name: bytes) -> list[bytes]:
    return [v for k, v in request.headers if k == name]


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
def test_route_header_rules_reach_origin_and_client(
    edge: Edge, version: str, tmp_path: Path
) -> None:
    path = f"/rules/h{version}"
    sent = [
        ("x-env", "dev"),
        ("x-debug", "1"),
        ("cookie", "session=secret"),
        ("x-keep", "yes"),
    ]
    response = fetch(version, f"https://127.0.0.1:{edge.proxy.port}{path}", tmp_path, sent)
    assert response.status == 200 and response.http_version == version
    assert response.body == b"ok " + path.encode()

    seen = _seen(edge.origin, path)
    assert _values(seen, b"x-env") == [b"prod"]  # set replaces the client's value
    assert _values(seen, b"x-added") == [b"by-rule"]
    assert _values(seen, b"x-debug") == [] and _values(seen, b"cookie") == []  # removed
    assert _values(seen, b"x-keep") == [b"yes"]  # fields no rule names pass unchanged

    assert response.get_all("strict-transport-security") == ["max-age=63072000"]  # replaced
    assert response.get_all("x-frame-options") == ["DENY"]
    assert response.get_all("x-powered-by") == [] and response.get_all("server") == []
    assert response.get_all("x-origin") == ["kept"]
