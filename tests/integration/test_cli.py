"""The ``quicproxy`` command as a user runs it: demo, reverse-proxy, check, certs, graceful stop
and worker processes, each reached by real clients over HTTP/1.1, HTTP/2 and HTTP/3."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.demo.routes import expected_bytes
from tests.support.clients import GTLSCLIENT, Response, curl_request, gtls_request, h3_request
from tests.support.procs import (
    CURL,
    ROOT,
    ProxyProcess,
    ThreadedOrigin,
    curl,
    free_port,
    pattern_sha256,
    run_proxy,
    write_config,
)

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

VERSIONS = ["1.1", "2", "3"]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _ipv6_loopback()


def get(version: str, url: str, workdir: Path, *extra: str) -> Response:
    """GET with Debian curl (HTTP/1.1, HTTP/2) or curl_cffi (HTTP/3); asserts the protocol."""
    if version == "3":
        pytest.importorskip("curl_cffi", reason="curl_cffi is not installed")
        response = h3_request(url)
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        response = curl_request(version, url, workdir, extra=extra, timeout=30)
    assert response.http_version == version
    return response


def quicproxy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m quicproxy ARGS`` to completion (30 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "quicproxy", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` every 50 ms for at most ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- quicproxy demo --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    cert_dir = tmp_path_factory.mktemp("demo-certs")
    port = free_port(ipv6=HAS_IPV6)
    host = ["--host", "localhost"] if HAS_IPV6 else ["--host", "127.0.0.1"]
    with run_proxy(["demo", "--port", str(port), "--cert-dir", str(cert_dir), *host]) as proxy:
        assert proxy.port == port
        assert (cert_dir / "ca.pem").is_file()
        yield proxy


@pytest.mark.parametrize("version", VERSIONS)
def test_demo_index_names_the_protocol(demo: ProxyProcess, version: str, tmp_path: Path) -> None:
    response = get(version, f"https://127.0.0.1:{demo.port}/", tmp_path)
    assert response.status == 200
    assert b"<h1>quicproxy demo</h1>" in response.body
    shown = {"1.1": b"HTTP/1.1", "2": b"HTTP/2", "3": b"HTTP/3"}[version]
    assert b'id="protocol">' + shown + b"<" in response.body


@pytest.mark.parametrize("version", VERSIONS)
def test_demo_bytes(demo: ProxyProcess, version: str, tmp_path: Path) -> None:
    response = get(version, f"https://127.0.0.1:{demo.port}/bytes/1000", tmp_path)
    assert response.status == 200
    assert response.body == expected_bytes(1000)


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) on this machine")
@pytest.mark.parametrize("version", ["1.1", "2"])
def test_demo_over_ipv6_loopback(demo: ProxyProcess, version: str, tmp_path: Path) -> None:
    assert f"quicproxy ready: https://[::1]:{demo.port}/" in demo.log_text()
    index = get(version, f"https://[::1]:{demo.port}/", tmp_path, "-g")
    assert index.status == 200 and b"quicproxy demo" in index.body
    data = get(version, f"https://[::1]:{demo.port}/bytes/1000", tmp_path, "-g")
    assert hashlib.sha256(data.body).hexdigest() == pattern_sha256(1000)


# --- quicproxy reverse-proxy -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_origin() -> Iterator[ThreadedOrigin]:
    with ThreadedOrigin() as origin:
        yield origin


@pytest.fixture(scope="module")
def reverse(
    tmp_path_factory: pytest.TempPathFactory, cli_origin: ThreadedOrigin
) -> Iterator[ProxyProcess]:
    env = {"QUICPROXY_CERT_DIR": str(tmp_path_factory.mktemp("rp-certs"))}
    port = free_port()
    args = ["reverse-proxy", "--from", f"127.0.0.1:{port}"]
    args += ["--to", f"http://127.0.0.1:{cli_origin.port}"]
    with run_proxy(args, env=env) as proxy:
        assert proxy.port == port
        yield proxy


@pytest.mark.parametrize("version", VERSIONS)
def test_reverse_proxy(
    reverse: ProxyProcess, cli_origin: ThreadedOrigin, version: str, tmp_path: Path
) -> None:
    echo = get(version, f"https://127.0.0.1:{reverse.port}/echo/rp-{version}?x=1", tmp_path)
    assert echo.status == 200
    seen = echo.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", f"/echo/rp-{version}", "x=1")
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert "quicproxy" in seen["headers"]["via"]
    assert any(r.target == f"/echo/rp-{version}?x=1" for r in cli_origin.origin.requests_seen)
    data = get(version, f"https://127.0.0.1:{reverse.port}/bytes/1000", tmp_path)
    assert (data.status, data.body) == (200, expected_bytes(1000))


def test_reverse_proxy_rejects_a_bad_url() -> None:
    result = quicproxy("reverse-proxy", "--from", "127.0.0.1:0", "--to", "ftp://127.0.0.1:21")
    assert result.returncode == 2
    assert "ftp://127.0.0.1:21" in result.stderr and "scheme must be http or https" in result.stderr


# --- quicproxy check -------------------------------------------------------------------------

GOOD = """
[server]
workers = 2
grace_period = 5

[[listen]]
address = "127.0.0.1:8443"

[[listen]]
address = "[::1]:8443"

[[upstream]]
name = "app"
addresses = ["http://127.0.0.1:8080", "127.0.0.1:8081"]
read_timeout = 30

[[route]]
upstream = "app"
path_prefix = "/api/"

[[route]]
upstream = "app"
"""

BASE = """
[[listen]]
address = "127.0.0.1:8443"

[[upstream]]
name = "app"
addresses = ["http://127.0.0.1:8080"]

[[route]]
upstream = "app"
"""


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    result = quicproxy("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert f"{path}: ok (2 listeners, 1 upstreams, 2 routes)" in result.stdout


BAD_CONFIGS = [
    pytest.param(
        "[server]\nworkerz = 2\n" + BASE, "server.workerz", "unknown key", id="unknown-key"
    ),
    pytest.param(
        '[server]\ngrace_period = "soon"\n' + BASE,
        "server.grace_period",
        "expected an integer or a number, got str",
        id="wrong-type",
    ),
    pytest.param(
        BASE + '\n[[route]]\nupstream = "nope"\n',
        "route[1].upstream",
        "no upstream named 'nope'",
        id="unknown-upstream",
    ),
    pytest.param(
        BASE.replace('"127.0.0.1:8443"', '"127.0.0.1"'),
        "listen[0].address",
        "has no port",
        id="listen-without-port",
    ),
    pytest.param(
        BASE.replace('"http://127.0.0.1:8080"', '"http://127.0.0.1:8080", "http://a:99999"'),
        "upstream[0].addresses[1]",
        "invalid port",
        id="bad-upstream-port",
    ),
    pytest.param(
        '[tls]\ncert = "missing.pem"\nkey = "missing.key"\n' + BASE,
        "tls.cert",
        "file not found",
        id="missing-cert-file",
    ),
    pytest.param(BASE + "\n[limits\nidle_timeout = 3\n", "", "invalid TOML", id="invalid-toml"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD_CONFIGS)
def test_check_rejects_a_bad_config(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = quicproxy("check", "-c", str(path))
    assert result.returncode != 0
    message = result.stderr
    assert str(path) in message, message
    if key:
        assert f"{key}: " in message, message
    assert reason in message, message
    assert "Traceback" not in message
    assert "ok (" not in result.stdout


def test_check_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = quicproxy("check", "-c", str(path))
    assert result.returncode != 0
    assert f"{path}: file not found" in result.stderr


def test_run_refuses_port_zero_with_workers(tmp_path: Path) -> None:
    path = tmp_path / "zero.toml"
    path.write_text(BASE.replace("127.0.0.1:8443", "127.0.0.1:0"))
    result = quicproxy("run", "-c", str(path), "--workers", "2")
    assert result.returncode == 2
    assert "port 0 needs workers = 1" in result.stderr


# --- quicproxy certs -------------------------------------------------------------------------


def test_certs_are_trusted_through_the_ca(tmp_path: Path, cli_origin: ThreadedOrigin) -> None:
    cert_dir = tmp_path / "made"
    result = quicproxy("certs", "--dir", str(cert_dir))
    assert result.returncode == 0, result.stderr
    for name in ("ca.pem", "localhost.pem", "localhost.key"):
        assert (cert_dir / name).is_file(), name
    assert str(cert_dir / "ca.pem") in result.stdout
    ca_before = (cert_dir / "ca.pem").read_bytes()
    again = quicproxy("certs", "--dir", str(cert_dir))
    assert again.returncode == 0
    assert (cert_dir / "ca.pem").read_bytes() == ca_before, "a second run replaced the CA"

    config = tmp_path / "tls.toml"
    config.write_text(
        f"""
[tls]
cert = "{cert_dir / "localhost.pem"}"
key = "{cert_dir / "localhost.key"}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{cli_origin.port}"]

[[route]]
upstream = "origin"
"""
    )
    with run_proxy(["run", "-c", str(config)]) as proxy:
        url = f"https://localhost:{proxy.port}/bytes/1000"
        resolve = f"localhost:{proxy.port}:127.0.0.1"
        assert CURL is not None
        base = [CURL, "-sS", "--noproxy", "*", "--max-time", "20", "--resolve", resolve]
        for flag in ("--http1.1", "--http2"):
            verified = subprocess.run(
                [*base, flag, "--cacert", str(cert_dir / "ca.pem"), url],
                capture_output=True,
                timeout=30,
            )
            assert verified.returncode == 0, verified.stderr
            assert verified.stdout == expected_bytes(1000)
        unverified = subprocess.run([*base, url], capture_output=True, timeout=30)
        assert unverified.returncode == 60, "curl accepted the dev cert without its CA"
        requests = pytest.importorskip("curl_cffi.requests")
        r = requests.get(
            url.replace("localhost", "127.0.0.1"),
            http_version="v3only",
            verify=str(cert_dir / "ca.pem"),
            timeout=20,
        )
        assert (r.status_code, r.http_version, r.content) == (200, 30, expected_bytes(1000))


# --- graceful stop ---------------------------------------------------------------------------


class _SlowRequest:
    """GET /delay/2 in the background: Debian curl (h1, h2), or in a thread curl_cffi ("3") or
    ngtcp2's gtlsclient ("3-ngtcp2")."""

    def __init__(self, version: str, url: str, head: Path) -> None:
        self.version = version
        self.result: tuple[int, str, bytes] | Exception | None = None
        if version.startswith("3"):
            if version == "3":
                pytest.importorskip("curl_cffi", reason="curl_cffi is not installed")
            elif GTLSCLIENT is None:
                pytest.skip("gtlsclient (Debian ngtcp2-client) is not installed")
            self.thread = threading.Thread(target=self._h3, args=(url, head), daemon=True)
            self.thread.start()
            return
        assert CURL is not None
        flag = {"1.1": "--http1.1", "2": "--http2"}[version]
        self.head = head
        self.proc = subprocess.Popen(
            [CURL, "-sS", "-k", "--noproxy", "*", "--max-time", "20", flag, "-D", str(head), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def _h3(self, url: str, workdir: Path) -> None:
        try:
            if self.version == "3":
                r = h3_request(url, timeout=20)
            else:
                port = int(url.split(":")[2].split("/")[0])
                path = "/" + url.split("/", 3)[3]
                r = gtls_request(port, path, workdir.with_name("gtls"), timeout=20)
            headers = "".join(f"{n}: {v}\n" for n, v in r.headers)
            self.result = (r.status, headers, r.body)
        except Exception as exc:  # what the client saw
            self.result = exc

    def wait(self) -> tuple[int, str, bytes]:
        """Status, response header text, body; fails the test if the request failed."""
        if self.version.startswith("3"):
            self.thread.join(25)
            assert isinstance(self.result, tuple), f"HTTP/3 request failed: {self.result!r}"
            return self.result
        try:
            out, err = self.proc.communicate(timeout=25)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        assert self.proc.returncode == 0, err.decode(errors="replace")
        text = self.head.read_text()
        return int(text.split()[1]), text, out


@pytest.mark.parametrize("version", [*VERSIONS, "3-ngtcp2"])
def test_sigterm_lets_an_in_flight_request_finish(
    tmp_path: Path, cli_origin: ThreadedOrigin, version: str
) -> None:
    """SIGTERM during a 2 s request: new connections are refused, the request still gets its
    200 over every protocol, and the process exits 0."""
    config = write_config(tmp_path / "p.toml", cli_origin.port, cert_dir=tmp_path / "certs")
    with run_proxy(["run", "-c", str(config)]) as proxy:
        path = f"/delay/2?graceful={version}"
        slow = _SlowRequest(version, f"https://127.0.0.1:{proxy.port}{path}", tmp_path / "head")
        wait_for(
            lambda: any(r.target == path for r in cli_origin.origin.requests_seen),
            10,
            "the slow request to reach the origin",
        )
        proxy.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping: draining" in proxy.log_text(), 5, "the drain to start")
        refused = curl("--http1.1", f"https://127.0.0.1:{proxy.port}/bytes/10", timeout=5)
        assert refused.returncode != 0, "a new connection was accepted while draining"
        status, headers, body = slow.wait()
        assert (status, body) == (200, b"ok\n"), proxy.log_text()
        if not version.startswith("3"):
            # TCP responses sent while draining tell clients the h3 endpoint is going away.
            assert "alt-svc: clear" in headers.lower()
        assert proxy.proc.wait(10) == 0, proxy.log_text()
        assert "Traceback" not in proxy.log_text()


# --- workers ---------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return {int(p) for p in path.read_text().split()}
    except (OSError, ValueError):
        return set()


def test_two_workers_serve_and_one_is_restarted(tmp_path: Path, cli_origin: ThreadedOrigin) -> None:
    port = free_port()
    config = tmp_path / "workers.toml"
    config.write_text(
        f"""
[server]
workers = 2
grace_period = 2

[tls]
dev_cert_dir = "{tmp_path / "certs"}"

[[listen]]
address = "127.0.0.1:{port}"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{cli_origin.port}"]

[[route]]
upstream = "origin"
"""
    )
    with run_proxy(["run", "-c", str(config)]) as proxy:
        pid = proxy.proc.pid
        wait_for(lambda: len(_children(pid)) == 2, 10, "two worker processes")
        workers = _children(pid)

        def all_protocols_work(tag: str) -> None:
            for version in VERSIONS:
                for i in range(4):
                    url = f"https://127.0.0.1:{port}/echo/{tag}-{version}-{i}"
                    response = get(version, url, tmp_path / "w")
                    assert response.status == 200
                    assert response.json()["path"] == f"/echo/{tag}-{version}-{i}"

        all_protocols_work("before")
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in _children(pid) and len(_children(pid)) == 2,
            10,
            "the killed worker to be replaced",
        )
        assert re.search(rf"worker \d \(pid {victim}\) exited .*restarting", proxy.log_text())
        time.sleep(0.5)  # let the new worker bind (until then the other one takes everything)
        all_protocols_work("after")
        replaced = _children(pid)
        assert proxy.stop() == 0, proxy.log_text()
        for child in replaced:
            wait_for(lambda c=child: not Path(f"/proc/{c}").exists(), 5, f"worker {child} to exit")
        assert "Traceback" not in proxy.log_text(), proxy.log_text()
