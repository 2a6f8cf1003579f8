"""Start the origin (nginx, or the DemoOrigin as a fallback) and the proxy as subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ROOT", "Origin", "Proxy", "start_origin", "start_proxy"]

ROOT = Path(__file__).resolve().parents[1]
SMALL_SIZE = 1024
READY = re.compile(r"quicproxy ready: https://127\.0\.0\.1:(\d+)/")
ORIGIN_READY = re.compile(r"origin ready: (\d+)")
START_TIMEOUT = 30.0

_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
    }}
}}
"""

_PROXY_CONF = """\
[server]
workers = 1
grace_period = 2
log_level = "warning"
access_log = false

[tls]
dev_cert_dir = "{tmp}/certs"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{port}"]

[[route]]
upstream = "origin"
"""


@dataclass
class _Process:
    """A subprocess whose merged stdout/stderr is collected by a thread."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, ""):
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> int:
        """The first group of the first output line matching ``pattern``, as an int."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.proc.args!r} did not start:\n{''.join(self.lines)}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


def _spawn(args: list[str]) -> _Process:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return _Process(proc)


@dataclass
class Origin:
    """A running cleartext HTTP/1.1 origin and the paths of its test files."""

    kind: str
    process: _Process
    port: int
    small_path: str
    large_paths: dict[int, str]

    def path_for(self, size: int) -> str:
        """The path of a response of exactly ``size`` bytes."""
        return self.large_paths.get(size) or f"/bytes/{size}"

    def stop(self) -> None:
        self.process.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_nginx(nginx: str, tmp: Path, sizes: list[int]) -> Origin:
    www = tmp / "www"
    www.mkdir()
    (www / "small").write_bytes(b"x" * SMALL_SIZE)
    large = {}
    for size in sizes:  # sparse files: no disk I/O, nginx sends zeros
        name = f"large-{size}"
        with (www / name).open("wb") as handle:
            handle.truncate(size)
        large[size] = f"/{name}"
    for path in (tmp, www, *www.iterdir()):  # readable whoever nginx runs as
        path.chmod(0o755)
    for attempt in range(3):
        port = _free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(tmp=tmp, port=port))
        process = _spawn(
            [nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]
        )
        if _wait_listening(port, process):
            return Origin("nginx", process, port, "/small", large)
        process.stop()
        if attempt == 2:
            log = (tmp / "nginx-error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx did not start:\n{''.join(process.lines)}{log}")
    raise AssertionError("unreachable")


def _wait_listening(port: int, process: _Process, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return True
    return False


def start_origin(tmp: Path, sizes: list[int], *, prefer_nginx: bool = True) -> Origin:
    """nginx serving ``/small`` and sparse ``/large-N`` files, else the DemoOrigin (/bytes/N)."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if nginx and prefer_nginx:
        return _start_nginx(nginx, tmp, sizes)
    process = _spawn([sys.executable, "-m", "bench.demo_origin"])
    port = process.wait_for(ORIGIN_READY)
    return Origin("demo", process, port, f"/bytes/{SMALL_SIZE}", {})


@dataclass
class Proxy:
    """The running quicproxy (workers = 1, so its pid is the one doing the work)."""

    process: _Process
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.proc.poll() is None

    def output(self) -> str:
        return "".join(self.process.lines)

    def stop(self) -> None:
        self.process.stop()


def start_proxy(tmp: Path, origin_port: int) -> Proxy:
    """``python -m quicproxy run -c CONFIG`` on 127.0.0.1:<ephemeral> (TCP+TLS and QUIC)."""
    config = tmp / "quicproxy.toml"
    config.write_text(_PROXY_CONF.format(tmp=tmp, port=origin_port))
    process = _spawn([sys.executable, "-m", "quicproxy", "run", "-c", str(config)])
    return Proxy(process, process.wait_for(READY))
