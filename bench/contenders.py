"""Other reverse proxies run side by side with quicproxy, on the same origin and certificate.

Caddy (Debian ``caddy``; h1, h2 and h3) and nginx as a proxy (h1 and h2: Debian's nginx has no
HTTP/3). Each gets one process doing the work, as quicproxy's one worker: Caddy with
``GOMAXPROCS=1``, nginx with one worker and no master. Not on the machine: the contender is
skipped with a note.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import tools
from .servers import Proxy, _free_port, _Process, _wait_listening

__all__ = ["CONTENDERS", "PROTOCOLS_OF", "start_contender"]

PROTOCOLS_OF = {"caddy": ("h1", "h2", "h3"), "nginx": ("h1", "h2")}
CONTENDERS = tuple(PROTOCOLS_OF)

_CADDYFILE = """\
{{
    admin off
    auto_https disable_redirects
    skip_install_trust
    servers {{
        protocols h1 h2 h3
    }}
}}
https://127.0.0.1:{port} {{
    tls {cert} {key}
    reverse_proxy 127.0.0.1:{origin}
}}
"""

_NGINX_PROXY = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx-proxy.pid;
error_log {tmp}/nginx-proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/pbody;
    proxy_temp_path {tmp}/pproxy;
    fastcgi_temp_path {tmp}/pfastcgi;
    uwsgi_temp_path {tmp}/puwsgi;
    scgi_temp_path {tmp}/pscgi;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def _spawn(args: list[str], env: dict[str, str]) -> _Process:
    proc = subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return _Process(proc)


def start_contender(name: str, tmp: Path, origin_port: int) -> Proxy | None:
    """``name`` in front of the origin on a free port, with quicproxy's dev certificate from
    ``tmp/certs`` (made by the quicproxy run before); None when it is not installed."""
    cert, key = tmp / "certs" / "localhost.pem", tmp / "certs" / "localhost.key"
    binary = tools.which(name)
    if binary is None or not cert.exists():
        return None
    port = _free_port()
    values = {"tmp": tmp, "port": port, "origin": origin_port, "cert": cert, "key": key}
    if name == "caddy":
        conf = tmp / "Caddyfile"
        conf.write_text(_CADDYFILE.format(**values))
        home = tmp / "caddy-home"
        home.mkdir(exist_ok=True)
        env = {"GOMAXPROCS": "1", "HOME": str(home), "XDG_DATA_HOME": str(home)}
        process = _spawn([binary, "run", "--config", str(conf), "--adapter", "caddyfile"], env)
    else:
        conf = tmp / "nginx-proxy.conf"
        conf.write_text(_NGINX_PROXY.format(**values))
        process = _spawn([binary, "-p", str(tmp), "-c", str(conf)], {})
    if not _wait_listening(port, process):
        process.stop()
        raise RuntimeError(f"{name} did not start:\n{''.join(process.lines)[-2000:]}")
    return Proxy(process, port)
