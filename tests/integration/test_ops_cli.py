"""The startup line names each listener's real scheme: ``http://`` for a cleartext listener."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.procs import CURL, ThreadedOrigin, curl, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

READY_LINE = re.compile(r"quicproxy ready: (https?)://127\.0\.0\.1:(\d+)/ \(([^)]*)\)")


def test_ready_lines_name_the_scheme_of_each_listener(tmp_path: Path, proxy_cert_dir: Path) -> None:
    with ThreadedOrigin() as origin:
        config = tmp_path / "proxy.toml"
        config.write_text(
            f"""
[server]
workers = 1

[tls]
dev_cert_dir = "{proxy_cert_dir}"

[[listen]]
address = "127.0.0.1:0"

[[listen]]
address = "127.0.0.1:0"
tls = false

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin.port}"]

[[route]]
upstream = "origin"
"""
        )
        with run_proxy(["run", "-c", str(config)]) as proxy:
            deadline = time.monotonic() + 10
            while len(READY_LINE.findall(proxy.log_text())) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            ready = READY_LINE.findall(proxy.log_text())
            assert [(scheme, protocols) for scheme, _, protocols in ready] == [
                ("https", "h3, h2, http/1.1"),
                ("http", "h2c, http/1.1"),
            ]
            for scheme, port, _ in ready:  # each printed URL answers as printed
                result = curl(
                    "-o", "/dev/null", "-w", "%{http_code}", f"{scheme}://127.0.0.1:{port}/"
                )
                assert result.stdout == b"200", result.stderr
