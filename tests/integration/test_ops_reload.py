"""Reload without dropping anything (SIGHUP, ``quicproxy reload``) and certificates by SNI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.certs import issue, quic_verifies, tls_verifies
from tests.support.clients import curl_request, h3_request, httpx_request
from tests.support.loads import LoadLoop
from tests.support.procs import ROOT, ProxyProcess, ThreadedOrigin, free_port, run_proxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def origin() -> Iterator[ThreadedOrigin]:
    with ThreadedOrigin() as served:
        yield served


def write(
    path: Path,
    origin_port: int,
    cert_dir: Path,
    *,
    generation: str,
    port: int = 0,
    workers: int = 1,
    tls: str = "",
    extra: str = "",
) -> Path:
    """A config whose route stamps ``x-generation`` on every response."""
    path.write_text(
        f"""
[server]
workers = {workers}
grace_period = 3
pid_file = "{path.parent / "quicproxy.pid"}"

[tls]
dev_cert_dir = "{cert_dir}"
{tls}

[[listen]]
address = "127.0.0.1:{port}"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin_port}"]

[[route]]
upstream = "origin"
response_headers = {{ set = {{ x-generation = "{generation}" }} }}
{extra}
"""
    )
    return path


def reload_command(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quicproxy", "reload", "-c", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def started(
    origin: ThreadedOrigin, tmp_path: Path, proxy_cert_dir: Path
) -> Iterator[tuple[ProxyProcess, Path]]:
    config = write(tmp_path / "proxy.toml", origin.port, proxy_cert_dir, generation="1")
    with run_proxy(["run", "-c", str(config)]) as proxy:
        yield proxy, config


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_under_load_on_h1_h2_h3_fails_no_request(
    workers: int, origin: ThreadedOrigin, tmp_path: Path, proxy_cert_dir: Path
) -> None:
    port = free_port()
    config = tmp_path / "proxy.toml"
    write(config, origin.port, proxy_cert_dir, generation="1", port=port, workers=workers)
    with run_proxy(["run", "-c", str(config)]) as proxy:
        loops = [LoadLoop(p, proxy.port, "x-generation").start() for p in ("h1", "h2", "h3")]
        slow = ThreadPoolExecutor(3)
        in_flight = [  # started before the first reload, answered after it
            slow.submit(httpx_request, f"https://127.0.0.1:{proxy.port}/delay/2"),
            slow.submit(curl_request, "1.1", f"https://127.0.0.1:{proxy.port}/delay/2", tmp_path),
            slow.submit(h3_request, f"https://127.0.0.1:{proxy.port}/delay/2"),
        ]
        try:
            for loop in loops:
                assert loop.wait_for("1"), f"{loop.protocol}: {loop.failures[:3]}"
            for generation in ("2", "3", "4"):
                write(config, origin.port, proxy_cert_dir, generation=generation, port=port)
                done = reload_command(config)
                assert done.returncode == 0, done.stderr
                for loop in loops:
                    assert loop.wait_for(generation), f"{loop.protocol} never saw {generation}"
            answers = [future.result(timeout=30) for future in in_flight]
        finally:
            for loop in loops:
                loop.finish()
            slow.shutdown(wait=False, cancel_futures=True)
        assert [(a.status, a.get("x-generation")) for a in answers] == [(200, "1")] * 3
        counts = {loop.protocol: dict(loop.seen) for loop in loops}
        print(f"workers={workers} answers by generation: {counts}")
        for loop in loops:
            assert loop.failures == [], f"{loop.protocol}: {loop.failures[:5]}"
            assert loop.total >= 20, counts
        assert proxy.proc.poll() is None  # still serving


def test_a_broken_config_is_refused_and_the_old_one_keeps_serving(
    started: tuple[ProxyProcess, Path], origin: ThreadedOrigin, proxy_cert_dir: Path
) -> None:
    proxy, config = started
    write(config, origin.port, proxy_cert_dir, generation="2", extra="bogus_key = 1")
    done = reload_command(config)
    assert done.returncode == 2
    assert "route[0].bogus_key: unknown key" in done.stderr
    assert "keeps its config" in done.stderr
    # SIGHUP straight to the process (as systemd's ExecReload does): validated there too
    os.kill(proxy.proc.pid, signal.SIGHUP)
    assert proxy.wait_for_log("reload refused, the running config stays")
    assert "bogus_key" in proxy.log_text()
    loop = LoadLoop("h1", proxy.port, "x-generation", fresh_every=2).start()
    try:
        assert loop.wait_for("1")
    finally:
        loop.finish()
    assert loop.failures == [] and set(loop.seen) == {"1"}


def test_what_only_a_restart_applies_is_named_in_the_log(
    started: tuple[ProxyProcess, Path], origin: ThreadedOrigin, proxy_cert_dir: Path
) -> None:
    proxy, config = started
    limits = "[limits]\nidle_timeout = 5"
    write(config, origin.port, proxy_cert_dir, generation="2", tls="", extra=limits)
    assert reload_command(config).returncode == 0
    assert proxy.wait_for_log("limits changed; it applies only after a restart")
    assert proxy.wait_for_log("reloaded")
    loop = LoadLoop("h2", proxy.port, "x-generation").start()
    try:
        assert loop.wait_for("2")  # the route change did apply
    finally:
        loop.finish()


def test_reload_without_a_pid_file_says_what_to_set(tmp_path: Path, origin: ThreadedOrigin) -> None:
    config = write(tmp_path / "p.toml", origin.port, tmp_path, generation="1")
    config.write_text(config.read_text().replace('pid_file = "', 'log_level = "info"\n# "'))
    done = reload_command(config)
    assert done.returncode == 2
    assert "set [server] pid_file (or pass --pid-file)" in done.stderr
    missing = write(tmp_path / "q.toml", origin.port, tmp_path, generation="1")
    done = reload_command(missing)  # a pid_file that no running proxy wrote
    assert done.returncode == 1
    assert "is the proxy running?" in done.stderr


def test_certificates_are_chosen_by_sni_on_tcp_and_quic_and_reloaded_on_change(
    origin: ThreadedOrigin, tmp_path: Path, proxy_cert_dir: Path
) -> None:
    certs = tmp_path / "certs"
    alpha = issue(certs, "alpha", ["alpha.test"])
    beta = issue(certs, "beta", ["beta.test", "*.beta.test"])
    tls = f"""watch_interval = 0.2

[[tls.certificates]]
cert = "{alpha.cert}"
key = "{alpha.key}"

[[tls.certificates]]
cert = "{beta.cert}"
key = "{beta.key}"
"""
    config = write(tmp_path / "proxy.toml", origin.port, proxy_cert_dir, generation="1", tls=tls)
    with run_proxy(["run", "-c", str(config)]) as proxy:
        port = proxy.port
        for verifies in (tls_verifies, quic_verifies):
            assert verifies(port, "alpha.test", alpha.ca), verifies.__name__
            assert verifies(port, "beta.test", beta.ca), verifies.__name__
            assert verifies(port, "www.beta.test", beta.ca), verifies.__name__  # wildcard
            assert not verifies(port, "alpha.test", beta.ca), verifies.__name__
            assert not verifies(port, "other.test", alpha.ca), verifies.__name__  # default
        assert tls_verifies(port, "beta.test", beta.ca, alpn="http/1.1")

        old_ca = tmp_path / "old-beta-ca.pem"
        old_ca.write_bytes(beta.ca.read_bytes())
        renewed = issue(certs, "beta", ["beta.test"])  # new CA, same files: a renewal
        assert proxy.wait_for_log("certificate files changed", timeout=10)
        assert tls_verifies(port, "beta.test", renewed.ca)
        assert quic_verifies(port, "beta.test", renewed.ca)
        assert not tls_verifies(port, "beta.test", old_ca)

        (certs / "alpha.pem").write_text("not a certificate\n")  # broken: the old one stays
        assert proxy.wait_for_log("cannot be used yet", timeout=10)
        assert tls_verifies(port, "alpha.test", alpha.ca)
        assert quic_verifies(port, "alpha.test", alpha.ca)


def test_a_second_proxy_with_the_same_pid_file_refuses_to_start(
    started: tuple[ProxyProcess, Path],
) -> None:
    proxy, config = started
    pid_file = config.parent / "quicproxy.pid"
    assert pid_file.read_text().strip() == str(proxy.proc.pid)
    second = subprocess.run(
        [sys.executable, "-m", "quicproxy", "run", "-c", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert f"process {proxy.proc.pid} is running" in second.stderr
    assert pid_file.read_text().strip() == str(proxy.proc.pid)  # untouched
    assert reload_command(config).returncode == 0  # and still reaches the first one


def test_an_unusable_certificate_is_a_config_error_at_start_and_on_reload(
    started: tuple[ProxyProcess, Path], origin: ThreadedOrigin, proxy_cert_dir: Path
) -> None:
    proxy, config = started
    broken = config.parent / "broken.pem"
    broken.write_text("not a certificate\n")
    tls = f'cert = "{broken}"\nkey = "{broken}"'
    other = write(
        config.parent / "other.toml", origin.port, proxy_cert_dir, generation="1", tls=tls
    )
    start = subprocess.run(
        [sys.executable, "-m", "quicproxy", "run", "-c", str(other)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert start.returncode == 2
    assert "tls: " in start.stderr and "cannot read a PEM certificate" in start.stderr
    assert "Traceback" not in start.stderr
    write(config, origin.port, proxy_cert_dir, generation="2", tls=tls)
    os.kill(proxy.proc.pid, signal.SIGHUP)
    assert proxy.wait_for_log("reload refused, the running config stays")
    loop = LoadLoop("h2", proxy.port, "x-generation", fresh_every=2).start()
    try:
        assert loop.wait_for("1")  # still the old config and certificate
    finally:
        loop.finish()
    assert set(loop.seen) == {"1"}
