"""Static files from config (`static = DIR` routes) and from the CLI (`quicproxy file-server`),
over h1 and h2 (curl) and h3 (curl_cffi): validators, 304, one range, HEAD, no escape."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.clients import curl_request, h3_request
from tests.support.procs import CURL, ThreadedOrigin, proxy_in_front, run_proxy

pytestmark = [pytest.mark.skipif(CURL is None, reason="curl is not installed")]

DATA = os.urandom(300_000)


def site(root: Path) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "big.bin").write_bytes(DATA)
    (root / "docs" / "index.html").write_text("<p>docs</p>\n")
    return root


def test_a_static_route_beside_a_proxied_one(
    tmp_path: Path, demo_origin: ThreadedOrigin, proxy_cert_dir: Path
) -> None:
    www = site(tmp_path / "www")
    extra = f'\n[[route]]\npath_prefix = "/assets/"\nstatic = "{www}"\n'
    with proxy_in_front(demo_origin.port, tmp_path, cert_dir=proxy_cert_dir, extra=extra) as proxy:
        base = f"https://127.0.0.1:{proxy.port}"
        for version in ("1.1", "2"):
            got = curl_request(version, f"{base}/assets/big.bin", tmp_path)
            assert (got.status, got.body) == (200, DATA), version
            assert got.get("content-type") == "application/octet-stream"
            assert got.get("accept-ranges") == "bytes"
            assert got.get("alt-svc") is not None  # the proxy's own answers advertise h3 too
        h3 = h3_request(f"{base}/assets/big.bin")
        assert (h3.status, h3.body, h3.http_version) == (200, DATA, "3")
        docs = curl_request("2", f"{base}/assets/docs/", tmp_path)
        assert (docs.status, docs.body) == (200, b"<p>docs</p>\n")
        assert docs.get("content-type") == "text/html"
        # the other route still goes to the origin
        assert curl_request("2", f"{base}/echo", tmp_path).json()["path"] == "/echo"

        etag = got.get("etag")
        assert etag is not None and etag.startswith('W/"')
        again = curl_request(
            "2", f"{base}/assets/big.bin", tmp_path, headers=[("if-none-match", etag)]
        )
        assert (again.status, again.body) == (304, b"")
        since = got.get("last-modified")
        assert since is not None
        again = curl_request(
            "1.1", f"{base}/assets/big.bin", tmp_path, headers=[("if-modified-since", since)]
        )
        assert again.status == 304

        part = curl_request(
            "2", f"{base}/assets/big.bin", tmp_path, headers=[("range", "bytes=1000-1999")]
        )
        assert (part.status, part.body) == (206, DATA[1000:2000])
        assert part.get("content-range") == f"bytes 1000-1999/{len(DATA)}"
        tail = h3_request(f"{base}/assets/big.bin", headers=[("range", "bytes=-10")])
        assert (tail.status, tail.body) == (206, DATA[-10:])
        beyond = curl_request(
            "1.1", f"{base}/assets/big.bin", tmp_path, headers=[("range", "bytes=400000-")]
        )
        assert beyond.status == 416
        assert beyond.get("content-range") == f"bytes */{len(DATA)}"

        head = h3_request(f"{base}/assets/big.bin", method="HEAD")
        assert (head.status, head.get("content-length"), head.body) == (200, str(len(DATA)), b"")
        post = curl_request("2", f"{base}/assets/big.bin", tmp_path, method="POST", data=b"x")
        assert post.status == 405
        assert curl_request("2", f"{base}/assets/nothing", tmp_path).status == 404
        escape = curl_request("1.1", f"{base}/assets/%2e%2e/%2e%2e/etc/passwd", tmp_path)
        assert escape.status in (400, 404)


def test_file_server_command(tmp_path: Path) -> None:
    www = site(tmp_path / "www")
    args = ["file-server", "--root", str(www), "--listen", "127.0.0.1:0"]
    with run_proxy(args, env={"HOME": str(tmp_path)}) as server:
        base = f"https://127.0.0.1:{server.port}"
        got = curl_request("2", f"{base}/big.bin", tmp_path)
        assert (got.status, got.body) == (200, DATA)
        assert h3_request(f"{base}/docs/").body == b"<p>docs</p>\n"


def test_a_static_route_needs_a_directory(tmp_path: Path) -> None:
    from quicproxy.config import ConfigError, load_config

    path = tmp_path / "p.toml"
    path.write_text('[[listen]]\naddress = "127.0.0.1:8443"\n[[route]]\nstatic = "missing"\n')
    with pytest.raises(ConfigError, match=re.escape("route[0].static: not a directory")):
        load_config(path)
