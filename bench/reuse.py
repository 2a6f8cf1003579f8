"""Upstream connection reuse: connections the origin saw per 10,000 proxied requests.

    python -m bench.reuse [--requests 10000]

nginx serves one small file over HTTP/1.1 (cleartext), HTTP/2 (TLS, ALPN) and h2c, logging each
request's connection serial number; quicproxy forwards h2load's HTTP/2 load (10 connections x 10
streams) to each in turn. The figure is the number of distinct upstream connections.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from quicproxy.devcerts import ensure_dev_certs

from .servers import READY, _free_port, _spawn, _wait_listening
from .tools import which

_SERVERS = {
    "h1": ("listen 127.0.0.1:{port};", "http://127.0.0.1:{port}", "h1"),
    "h2 (TLS)": ("listen 127.0.0.1:{port} ssl http2;", "https://127.0.0.1:{port}", "h2"),
    "h2c": ("listen 127.0.0.1:{port} http2;", "http://127.0.0.1:{port}", "h2"),
}


def _nginx_conf(tmp: Path, certs: Path, ports: dict[str, int]) -> str:
    servers = []
    for name, (listen, _, _) in _SERVERS.items():
        port = ports[name]
        servers.append(
            f"server {{ {listen.format(port=port)} root {tmp}/www;"
            f" ssl_certificate {certs}/localhost.pem; ssl_certificate_key {certs}/localhost.key;"
            f" access_log {tmp}/{port}.log c; keepalive_requests 100000; }}"
        )
    return (
        f"daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log;"
        " events { worker_connections 4096; }"
        " http { log_format c '$connection'; " + " ".join(servers) + " }"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reuse")
    parser.add_argument("--requests", type=int, default=10000)
    args = parser.parse_args()
    nginx, h2load = which("nginx"), which("h2load")
    if not nginx or not h2load:
        print("needs nginx and h2load (Debian nginx, nghttp2-client)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        (tmp / "www").mkdir(mode=0o755)
        (tmp / "www" / "small").write_bytes(b"x" * 1024)
        (tmp / "www" / "small").chmod(0o644)
        certs = ensure_dev_certs(tmp / "certs")
        ports = {name: _free_port() for name in _SERVERS}
        (tmp / "nginx.conf").write_text(_nginx_conf(tmp, certs.cert.parent, ports))
        origin = _spawn([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")])
        try:
            if not _wait_listening(ports["h1"], origin):
                print("nginx did not start", file=sys.stderr)
                return 1
            print("upstream | requests | upstream connections | per 10,000 requests")
            for label, (_, url, protocol) in _SERVERS.items():
                port = ports[label]
                config = tmp / f"proxy-{port}.toml"
                config.write_text(
                    f'[server]\nworkers = 1\naccess_log = false\nlog_level = "warning"\n'
                    f'[tls]\ndev_cert_dir = "{certs.cert.parent}"\n'
                    '[[listen]]\naddress = "127.0.0.1:0"\n'
                    f'[[upstream]]\nname = "o"\naddresses = ["{url.format(port=port)}"]\n'
                    f'protocol = "{protocol}"\nca_file = "{certs.ca_cert}"\nsni = "localhost"\n'
                    '[[route]]\nupstream = "o"\n'
                )
                proxy = _spawn([sys.executable, "-m", "quicproxy", "run", "-c", str(config)])
                try:
                    proxy_port = proxy.wait_for(READY)
                    subprocess.run(
                        [h2load, "-n", str(args.requests), "-c", "10", "-m", "10",
                         f"https://127.0.0.1:{proxy_port}/small"],
                        capture_output=True, timeout=300, check=True,
                    )  # fmt: skip
                finally:
                    proxy.stop()
                serials = (tmp / f"{port}.log").read_text().split()
                per = len(set(serials)) * 10000 / max(1, len(serials))
                print(f"{label:8} | {len(serials):8} | {len(set(serials)):20} | {per:.1f}")
        finally:
            origin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
