"""The examples run as a user runs them (``python examples/X.py ...``) and answer real clients over
HTTP/1.1, HTTP/2 (Debian curl) and HTTP/3 (curl_cffi)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.demo.routes import expected_bytes
from tests.support.clients import Response, curl_request, h3_request
from tests.support.procs import CURL, ROOT, ProxyProcess, ThreadedOrigin, free_port, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

VERSIONS = ["1.1", "2", "3"]
PROTOCOL_NAMES = {"1.1": "http/1.1", "2": "h2", "3": "h3"}


def get(version: str, url: str, workdir: Path) -> Response:
    if version == "3":
        pytest.importorskip("curl_cffi", reason="curl_cffi is not installed")
        response = h3_request(url)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        response = curl_request(version, url, workdir, timeout=30)
    assert response.http_version == version
    return response


def _env(**extra: str) -> dict[str, str]:
    """The project root on PYTHONPATH, as ``pip install -e .`` would make it importable."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    return {"PYTHONPATH": os.pathsep.join(paths), **extra}


@pytest.fixture(scope="module")
def example_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The examples use the development certificates: keep them in a temporary directory."""
    return _env(QUICPROXY_CERT_DIR=str(tmp_path_factory.mktemp("example-certs")))


@pytest.fixture(scope="module")
def hello(example_certs: dict[str, str]) -> Iterator[ProxyProcess]:
    port = free_port()
    script = ROOT / "examples" / "hello_server.py"
    with run_proxy([f"127.0.0.1:{port}"], script=script, env=example_certs) as proxy:
        assert proxy.port == port
        yield proxy


@pytest.fixture(scope="module")
def example_origin() -> Iterator[ThreadedOrigin]:
    with ThreadedOrigin() as origin:
        yield origin


@pytest.fixture(scope="module")
def simple(example_certs: dict[str, str], example_origin: ThreadedOrigin) -> Iterator[ProxyProcess]:
    port = free_port()
    script = ROOT / "examples" / "simple_proxy.py"
    args = [f"127.0.0.1:{port}", f"http://127.0.0.1:{example_origin.port}"]
    with run_proxy(args, script=script, env=example_certs) as proxy:
        assert proxy.port == port
        yield proxy


@pytest.mark.parametrize("version", VERSIONS)
def test_hello_server_answers_itself(hello: ProxyProcess, version: str, tmp_path: Path) -> None:
    for path in ("/", "/any/path?q=1"):
        response = get(version, f"https://127.0.0.1:{hello.port}{path}", tmp_path)
        assert response.status == 200
        expected = f"Hello, world! You came over {PROTOCOL_NAMES[version]}.\n"
        assert response.body == expected.encode()


@pytest.mark.parametrize("version", VERSIONS)
def test_simple_proxy_tags_requests(
    simple: ProxyProcess, example_origin: ThreadedOrigin, version: str, tmp_path: Path
) -> None:
    echo = get(version, f"https://127.0.0.1:{simple.port}/echo/simple-{version}", tmp_path)
    assert echo.status == 200
    seen = echo.json()
    assert seen["path"] == f"/echo/simple-{version}"
    assert seen["headers"]["x-simple-proxy"] == "1"
    origin_saw = [r for r in example_origin.origin.requests_seen if r.target == seen["path"]]
    assert len(origin_saw) == 1
    data = get(version, f"https://127.0.0.1:{simple.port}/bytes/1000", tmp_path)
    assert (data.status, data.body) == (200, expected_bytes(1000))


def test_simple_proxy_usage_message() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "simple_proxy.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **_env()},
    )
    assert result.returncode != 0
    assert "usage: simple_proxy.py LISTEN_HOST:PORT ORIGIN_URL" in result.stderr


def test_examples_stop_cleanly(hello: ProxyProcess, simple: ProxyProcess) -> None:
    """Run last: SIGTERM ends both examples with status 0 and no traceback."""
    for proxy in (hello, simple):
        assert proxy.stop() == 0, proxy.log_text()
        assert "Traceback" not in proxy.log_text(), proxy.log_text()
