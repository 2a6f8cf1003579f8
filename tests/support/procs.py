"""Start real processes (the proxy, origins) and real clients (curl, ngtcp2, curl_cffi)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quicproxy.demo import DemoOrigin
from quicproxy.devcerts import DevCerts

PATTERN = bytes(range(256)) * 256
CURL = shutil.which("curl")
GTLSCLIENT = shutil.which("gtlsclient")
ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"quicproxy ready: https?://(\S+):(\d+)/")


def pattern_sha256(size: int) -> str:
    """The sha256 of the demo origin's ``/bytes/N`` content."""
    digest = hashlib.sha256()
    full, rest = divmod(size, len(PATTERN))
    for _ in range(full):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


class ThreadedOrigin:
    """A DemoOrigin on its own event loop in a thread, so sync tests can use it."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        self.origin = DemoOrigin("127.0.0.1", port, ssl_context)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedOrigin:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.origin.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop.is_closed():
            return  # stopped already (tests kill origins on purpose)
        asyncio.run_coroutine_threadsafe(self.origin.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        return self.origin.port


@dataclass
class ProxyProcess:
    """A running ``quicproxy`` subprocess and what it printed."""

    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    def rss_kib(self) -> int:
        """Resident memory of the proxy process, in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+)", status)
        return int(match.group(1)) if match else 0

    def log_text(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, text: str, timeout: float = 5.0) -> bool:
        """True once ``text`` appears in what the process printed (polled, bounded)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def _pump(stream: object, lines: list[str]) -> None:
    assert hasattr(stream, "readline")
    for line in iter(stream.readline, ""):
        lines.append(line)


@contextlib.contextmanager
def run_proxy(
    args: list[str], *, env: dict[str, str] | None = None, script: Path | None = None
) -> Iterator[ProxyProcess]:
    """Start ``python -m quicproxy ARGS`` (or ``python SCRIPT ARGS``) and wait for its ready line
    (30 s at most); SIGTERM it on exit."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, str(script)] if script else [sys.executable, "-m", "quicproxy"]
    proc = subprocess.Popen(
        [*command, *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    port = 0
    while time.monotonic() < deadline and not port:
        for line in list(lines):
            match = READY.search(line)
            if match:
                port = int(match.group(2))
                break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    handle = ProxyProcess(proc, port, lines)
    try:
        if not port:
            raise RuntimeError("proxy did not start:\n" + "".join(lines))
        yield handle
    finally:
        handle.stop()
        reader.join(5)


def write_config(path: Path, origin_port: int, *, extra: str = "", cert_dir: Path) -> Path:
    """A config listening on 127.0.0.1:0 (TCP+TLS, QUIC) and a cleartext port, to one origin."""
    path.write_text(
        f"""
[server]
workers = 1
grace_period = 3

[tls]
dev_cert_dir = "{cert_dir}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin_port}"]
read_timeout = 5

[[route]]
upstream = "origin"
{extra}
"""
    )
    return path


@contextlib.contextmanager
def proxy_in_front(
    origin_port: int, directory: Path, *, cert_dir: Path, extra: str = ""
) -> Iterator[ProxyProcess]:
    """``quicproxy run`` with :func:`write_config`'s config (plus ``extra``) in ``directory``."""
    config = write_config(directory / "proxy.toml", origin_port, extra=extra, cert_dir=cert_dir)
    with run_proxy(["run", "-c", str(config)]) as proxy:
        yield proxy


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Debian's curl, never through a proxy, verifying nothing (-k)."""
    assert CURL is not None
    return subprocess.run(
        [CURL, "-sS", "-k", "--noproxy", "*", "--max-time", str(timeout), *args],
        capture_output=True,
        timeout=timeout + 10,
    )


def proxy_args(path: Path, certs: DevCerts, upstream: str) -> list[str]:
    """Write a one-upstream config (``upstream``: the body of its [[upstream]] table) using
    ``certs``, listening on 127.0.0.1:0; returns the ``quicproxy`` arguments to run it."""
    path.write_text(
        f"""
[server]
workers = 1

[tls]
cert = "{certs.cert}"
key = "{certs.key}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "origin"
{upstream}

[[route]]
upstream = "origin"
"""
    )
    return ["run", "-c", str(path)]


def free_port(*, ipv6: bool = False) -> int:
    """A port number free for both TCP and UDP on 127.0.0.1 (and ::1 when ``ipv6``)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            others = [(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1")]
            if ipv6:
                others += [
                    (socket.AF_INET6, socket.SOCK_STREAM, "::1"),
                    (socket.AF_INET6, socket.SOCK_DGRAM, "::1"),
                ]
            try:
                for family, kind, host in others:
                    with socket.socket(family, kind) as sock:
                        sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


@contextlib.contextmanager
def interop_server(site: Path, testcase: str, port: int, **extra: str) -> Iterator[None]:
    """The interop endpoint's server role on 127.0.0.1:``port``, serving ``site/www`` with
    ``site/certs``; yields once it printed its ready line (bounded), stops it on exit."""
    env = {
        **os.environ,
        "ROLE": "server",
        "TESTCASE": testcase,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WWW": str(site / "www"),
        "CERTS": str(site / "certs"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    proc = subprocess.Popen(
        ["bash", str(ROOT / "interop" / "run_endpoint.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(200):  # the ready line comes within a few seconds
            line = proc.stdout.readline()
            if not line or READY.search(line):
                break
        yield
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, wait up to 10 s, then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
