"""The examples run as a user runs them (``python examples/X.py ...``) and answer real clients over
HTTP/1.1, HTTP/2 (Debian curl) and HTTP/3 (curl_cffi)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from quicproxy.demo.routes import expected_bytes
from tests.support.clients import Header, Response, curl_request, h3_request
from tests.support.procs import CURL, ROOT, ProxyProcess, ThreadedOrigin, free_port, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

VERSIONS = ["1.1", "2", "3"]
PROTOCOL_NAMES = {"1.1": "http/1.1", "2": "h2", "3": "h3"}


def get(version: str, url: str, workdir: Path, headers: Sequence[Header] = ()) -> Response:
    if version == "3":
        pytest.importorskip("curl_cffi", reason="curl_cffi is not installed")
        response = h3_request(url, headers=headers)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        response = curl_request(version, url, workdir, headers=headers, timeout=30)
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


@pytest.fixture(scope="module")
def custom(example_certs: dict[str, str], example_origin: ThreadedOrigin) -> Iterator[ProxyProcess]:
    port = free_port()
    script = ROOT / "examples" / "custom_hooks.py"
    args = [f"127.0.0.1:{port}", f"http://127.0.0.1:{example_origin.port}"]
    with run_proxy(args, script=script, env=example_certs) as proxy:
        yield proxy


@pytest.mark.parametrize("version", VERSIONS)
def test_custom_hooks_answer_guard_and_tag(
    custom: ProxyProcess, example_origin: ThreadedOrigin, version: str, tmp_path: Path
) -> None:
    base = f"https://127.0.0.1:{custom.port}"
    health = get(version, f"{base}/healthz", tmp_path)
    assert (health.status, health.body) == (200, b"ok\n")
    assert len(health.get("x-request-id") or "") == 16
    denied = get(version, f"{base}/private/v{version}", tmp_path)
    assert denied.status == 401
    assert denied.get("www-authenticate") == 'Bearer realm="example"'
    assert not [r for r in example_origin.origin.requests_seen if r.target.startswith("/private")]
    token = [("authorization", "Bearer let-me-in")]
    allowed = get(version, f"{base}/private/echo-{version}", tmp_path, headers=token)
    assert allowed.status == 404  # the demo origin has no /private: but it was asked
    asked = [r for r in example_origin.origin.requests_seen if r.target.startswith("/private")]
    assert [r.target for r in asked] == [f"/private/echo-{version}"]
    example_origin.origin.requests_seen.clear()
    echo = get(version, f"{base}/echo/tagged-{version}", tmp_path, headers=token)
    assert echo.status == 200
    seen = echo.json()
    assert seen["headers"]["x-request-id"] == echo.get("x-request-id")
    assert echo.get("server") is None
    assert "authorization" not in seen["headers"]
    line = f"request {echo.get('x-request-id')} GET /echo/tagged-{version} over"
    assert custom.wait_for_log(line), custom.log_text()


def test_custom_hooks_answer_failures_as_json(
    example_certs: dict[str, str], tmp_path: Path
) -> None:
    port, dead = free_port(), free_port()
    script = ROOT / "examples" / "custom_hooks.py"
    args = [f"127.0.0.1:{port}", f"http://127.0.0.1:{dead}"]
    with run_proxy(args, script=script, env=example_certs) as proxy:
        response = get("2", f"https://127.0.0.1:{port}/anything", tmp_path)
        assert response.status == 502
        assert response.get("content-type") == "application/json"
        assert response.json()["error"] == "connect_refused"
        assert "Traceback" not in proxy.log_text()


def test_load_balancer_spreads_and_skips_a_dead_backend(
    example_certs: dict[str, str], tmp_path: Path
) -> None:
    with ThreadedOrigin() as first, ThreadedOrigin() as second:
        port, dead = free_port(), free_port()
        script = ROOT / "examples" / "load_balancer.py"
        urls = [f"http://127.0.0.1:{o}" for o in (first.port, second.port, dead)]
        with run_proxy([f"127.0.0.1:{port}", *urls], script=script, env=example_certs) as proxy:
            served = []
            for index in range(6):
                response = get("1.1", f"https://127.0.0.1:{port}/echo/lb-{index}", tmp_path)
                assert response.status == 200, proxy.log_text()
                served.append(response.get("x-served-by"))
            assert {f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"} == set(served)
            for origin in (first, second):
                seen = [r for r in origin.origin.requests_seen if r.target.startswith("/echo/lb-")]
                assert 2 <= len(seen) <= 4  # round robin, the dead one's turns moved on
            assert "Traceback" not in proxy.log_text()


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


def test_examples_stop_cleanly(
    hello: ProxyProcess, simple: ProxyProcess, custom: ProxyProcess
) -> None:
    """Run last: SIGTERM ends the examples with status 0 and no traceback."""
    for proxy in (hello, simple, custom):
        assert proxy.stop() == 0, proxy.log_text()
        assert "Traceback" not in proxy.log_text(), proxy.log_text()


def test_every_example_config_validates() -> None:
    import subprocess
    import sys

    from tests.support.procs import ROOT

    configs = sorted((ROOT / "examples").glob("*.toml"))
    assert configs
    for config in configs:
        checked = subprocess.run(
            [sys.executable, "-m", "quicproxy", "check", "-c", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert checked.returncode == 0, f"{config.name}: {checked.stderr}"
