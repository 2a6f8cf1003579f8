"""The admin listener of a running proxy: /healthz for probes (503 while draining), the status
page (parsed with html.parser: no headless Chromium on this machine), POST /drain reaching every
worker, and a broken [admin] table refused with the key named."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.admin import (
    StatusPage,
    admin_get,
    admin_url,
    scrape,
    status_page,
    total,
    wait_for,
)
from tests.support.procs import (
    CURL,
    ROOT,
    ProxyProcess,
    ThreadedOrigin,
    curl,
    free_port,
    run_proxy,
)

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

ACCESS_PID = re.compile(r"quicproxy\.access\[(\d+)\]")


def _config(
    path: Path,
    addresses: list[str],
    *,
    workers: int = 1,
    port: int = 0,
    extra: str = "",
    admin: str = '[admin]\naddress = "127.0.0.1:0"\n',
) -> list[str]:
    listed = ", ".join(f'"{a}"' for a in addresses)
    path.write_text(
        f"""
[server]
workers = {workers}
grace_period = 5

[tls]
dev_cert_dir = "{path.parent / "certs"}"

[[listen]]
address = "127.0.0.1:{port}"

[[upstream]]
name = "app"
addresses = [{listed}]
{extra}

[[route]]
upstream = "app"

{admin}
"""
    )
    return ["run", "-c", str(path)]


@pytest.fixture
def origins() -> Iterator[list[ThreadedOrigin]]:
    with ExitStack() as stack:
        yield [stack.enter_context(ThreadedOrigin()) for _ in range(2)]


def _get(port: int, path: str = "/") -> str:
    result = curl(
        "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{port}{path}"
    )
    return result.stdout.decode()


def test_healthz_is_200_while_serving_and_503_while_draining(
    tmp_path: Path, demo_origin: ThreadedOrigin
) -> None:
    with run_proxy(_config(tmp_path / "p.toml", [f"127.0.0.1:{demo_origin.port}"])) as proxy:
        base = admin_url(proxy)
        assert wait_for(lambda: admin_get(base + "/healthz") == (200, "ok\n"))
        slow: list[str] = []
        client = threading.Thread(target=lambda: slow.append(_get(proxy.port, "/delay/3")))
        client.start()
        # in flight now (sampled once a second)
        assert wait_for(lambda: total(scrape(base), "quicproxy_upstream_in_flight") == 1, 2.5)
        proxy.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: admin_get(base + "/healthz") == (503, "draining\n"), 2)
        assert proxy.proc.poll() is None  # still draining the slow request
        client.join(10)
        assert slow == ["200"]  # the in-flight request finished within the grace period
        assert proxy.proc.wait(10) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), 1).close()


def test_status_page_lists_backends_with_their_state(
    tmp_path: Path, demo_origin: ThreadedOrigin
) -> None:
    dead = free_port()  # nothing listens there
    check = '[upstream.health_check]\nkind = "tcp"\ninterval = 0.2\nunhealthy_threshold = 1\n'
    addresses = [f"127.0.0.1:{demo_origin.port}", f"127.0.0.1:{dead}"]
    with run_proxy(_config(tmp_path / "p.toml", addresses, extra=check)) as proxy:
        base = admin_url(proxy)
        assert _get(proxy.port, "/") == "200"
        assert _get(proxy.port, "/status/404") == "404"
        expected = [
            [f"127.0.0.1:{demo_origin.port}", "healthy", "no", "no", "0"],
            [f"127.0.0.1:{dead}", "unhealthy", "no", "no", "0"],
        ]
        assert wait_for(lambda: status_page(base).tables.get("upstream") == expected), status_page(
            base
        ).tables
        page = status_page(base)
        assert "Upstream app (2 requests)" in page.headings
        h1_row = next(row for row in page.tables["protocols"] if row[0] == "h1")
        assert h1_row[:3] == ["h1", "2", "2xx: 1, 4xx: 1"]
        assert h1_row[3].endswith(" ms")


def _served_by(proxy: ProxyProcess) -> set[str]:
    return set(ACCESS_PID.findall(proxy.log_text()))


def _burst(port: int, count: int) -> list[str]:
    """``count`` GETs from one curl run, each on a new connection (spread over workers)."""
    args: list[str] = ["-H", "connection: close"]
    for _ in range(count):
        args += ["-o", "/dev/null", f"https://127.0.0.1:{port}/"]
    return curl("--http1.1", "-w", "%{http_code}\n", *args).stdout.decode().split()


def test_drain_takes_a_backend_out_on_every_worker_and_undrain_brings_it_back(
    tmp_path: Path, origins: list[ThreadedOrigin]
) -> None:
    kept, drained = origins
    addresses = [f"127.0.0.1:{o.port}" for o in origins]
    args = _config(tmp_path / "p.toml", addresses, workers=2, port=free_port())
    with run_proxy(args) as proxy:
        base = admin_url(proxy)
        assert wait_for(lambda: total(scrape(base), "quicproxy_workers") == 2)
        target = f"{base}/drain?upstream=app&backend=127.0.0.1:{drained.port}"
        status, text = admin_get(target, "POST")
        assert (status, text) == (200, f"drained 127.0.0.1:{drained.port} in 'app' on 2 workers\n")
        before = len(drained.origin.requests_seen)
        statuses: list[str] = []
        for _ in range(4):
            statuses += _burst(proxy.port, 20)
            if len(_served_by(proxy)) == 2:
                break
        assert len(_served_by(proxy)) == 2, "one worker served every connection"
        assert statuses == ["200"] * len(statuses)
        assert len(drained.origin.requests_seen) == before  # no worker sent it anything
        assert len(kept.origin.requests_seen) >= len(statuses)
        samples = scrape(base)
        assert total(samples, "quicproxy_upstream_draining", backend=f"127.0.0.1:{drained.port}")

        status, text = admin_get(target + "&undrain=1", "POST")
        assert (status, text) == (
            200,
            f"undrained 127.0.0.1:{drained.port} in 'app' on 2 workers\n",
        )
        assert _burst(proxy.port, 20) == ["200"] * 20
        assert len(drained.origin.requests_seen) > before  # in rotation again


def test_drain_names_what_it_does_not_know(tmp_path: Path, demo_origin: ThreadedOrigin) -> None:
    with run_proxy(_config(tmp_path / "p.toml", [f"127.0.0.1:{demo_origin.port}"])) as proxy:
        base = admin_url(proxy)
        status, text = admin_get(f"{base}/drain?upstream=nope&backend=127.0.0.1:1", "POST")
        assert status == 404 and "no upstream named 'nope' (known: app)" in text
        status, text = admin_get(f"{base}/drain?upstream=app&backend=127.0.0.1:1", "POST")
        assert status == 404 and "no backend '127.0.0.1:1' in upstream 'app'" in text
        assert admin_get(f"{base}/drain?upstream=app&backend=x")[0] == 405  # GET
        assert admin_get(f"{base}/drain", "POST")[0] == 400
        assert admin_get(f"{base}/nowhere")[0] == 404
        assert _get(proxy.port) == "200"  # nothing was drained


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ('[admin]\naddress = "127.0.0.1"\n', r"admin\.address: '127\.0\.0\.1' has no port"),
        ('[admin]\naddress = "127.0.0.1:99999"\n', r"admin\.address: .* invalid port"),
        ("[admin]\naddress = 9901\n", r"admin\.address: expected a string"),
        ("[admin]\nport = 9901\n", r"admin\.port: unknown key"),
    ],
)
def test_a_broken_admin_table_names_the_key(tmp_path: Path, admin: str, message: str) -> None:
    args = _config(tmp_path / "p.toml", ["127.0.0.1:9"], admin=admin)
    for command in (args, ["check", *args[1:]]):
        result = subprocess.run(
            [sys.executable, "-m", "quicproxy", *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, result
        assert re.search(message, result.stderr), result.stderr


def test_an_admin_port_in_use_fails_the_start_naming_it(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        admin = f'[admin]\naddress = "127.0.0.1:{port}"\n'
        args = _config(tmp_path / "p.toml", ["127.0.0.1:9"], admin=admin)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "quicproxy", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert f"admin listener on 127.0.0.1:{port}" in result.stderr


CHROMIUM = shutil.which("chromium")
HEADLESS = [  # keeps a root, sandboxless, offline Chromium quiet and off the network
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def _chromium(tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    profile = tmp_path / f"chromium-{len(list(tmp_path.glob('chromium-*')))}"
    done = subprocess.run(
        [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.timeout(120)
def test_status_page_in_chromium(tmp_path: Path, demo_origin: ThreadedOrigin) -> None:
    addresses = [f"127.0.0.1:{demo_origin.port}"]
    with run_proxy(_config(tmp_path / "p.toml", addresses)) as proxy:
        base = admin_url(proxy)
        assert _get(proxy.port, "/") == "200"
        assert wait_for(lambda: bool(status_page(base).tables.get("protocols")))
        page = StatusPage()
        page.feed(_chromium(tmp_path, "--dump-dom", base + "/"))  # the DOM Chromium built
        assert page.tables["upstream"] == [
            [f"127.0.0.1:{demo_origin.port}", "healthy", "no", "no", "0"]
        ]
        assert any(row[:2] == ["h1", "1"] for row in page.tables["protocols"])
        shot = tmp_path / "status.png"
        _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,800", base + "/")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
