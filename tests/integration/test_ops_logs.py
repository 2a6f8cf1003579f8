"""JSON access log, W3C traceparent and the client's SNI, through the running proxy over
HTTP/1.1 and HTTP/2 (curl) and HTTP/3 (curl_cffi): what the origin received and what the log
line says about the same request."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import Header, Response, curl_request, h3_request
from tests.support.procs import CURL, ProxyProcess, run_proxy
from tests.support.recording import OriginRequest, RecordingOrigin

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

GENERATED = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-01")
PROTOCOL = {"1.1": "http/1.1", "2": "h2", "3": "h3"}


@dataclass
class Edge:
    proxy: ProxyProcess
    origin: RecordingOrigin

    def request_at_origin(self, path: str) -> OriginRequest:
        target = path.encode()
        assert self.origin.wait_for(lambda: any(r.target == target for r in self.origin.requests))
        return next(r for r in self.origin.requests if r.target == target)

    def log_record(self, path: str) -> dict[str, Any]:
        """The JSON access log line of the request for ``path`` (waited for, bounded)."""
        deadline = time.monotonic() + 5
        while True:
            for line in list(self.proxy.lines):
                if line.startswith("{"):
                    record: dict[str, Any] = json.loads(line)
                    if record.get("path") == path:
                        return record
            assert time.monotonic() < deadline, f"no access log line for {path}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path) -> Iterator[Edge]:
    with RecordingOrigin() as origin:
        config = tmp_path_factory.mktemp("ops-logs") / "proxy.toml"
        config.write_text(
            f"""
[server]
workers = 1
grace_period = 3
access_log_format = "json"

[tls]
dev_cert_dir = "{proxy_cert_dir}"

[[listen]]
address = "127.0.0.1:0"

[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin.port}"]
read_timeout = 5

[[route]]
upstream = "origin"
"""
        )
        with run_proxy(["run", "-c", str(config)]) as proxy:
            yield Edge(proxy, origin)


def fetch(
    version: str, url: str, workdir: Path, headers: list[Header], extra: tuple[str, ...] = ()
) -> Response:
    if version == "3":
        return h3_request(url, headers=headers)
    return curl_request(version, url, workdir, headers=headers, extra=extra)


def _one(request: OriginRequest, name: bytes) -> list[str]:
    return [v.decode() for k, v in request.headers if k == name]


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
def test_a_valid_traceparent_goes_upstream_unchanged_and_is_logged(
    edge: Edge, version: str, tmp_path: Path
) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    path = f"/trace/given/h{version}"
    headers = [("traceparent", traceparent), ("tracestate", "vendor=abc")]
    url = f"https://127.0.0.1:{edge.proxy.port}{path}"
    response = fetch(version, url, tmp_path, headers)
    assert response.status == 200 and response.http_version == version

    seen = edge.request_at_origin(path)
    assert _one(seen, b"traceparent") == [traceparent]
    assert _one(seen, b"tracestate") == ["vendor=abc"]

    record = edge.log_record(path)
    assert record["trace_id"] == trace_id
    assert record["protocol"] == PROTOCOL[version]
    assert (record["method"], record["status"], record["error"]) == ("GET", 200, None)
    assert record["bytes_out"] == len(response.body)
    assert record["upstream"] == f"127.0.0.1:{edge.origin.port}"
    assert record["client"].startswith("127.0.0.1:")
    assert record["authority"].startswith("127.0.0.1")


@pytest.mark.parametrize("version", ["1.1", "2", "3"])
@pytest.mark.parametrize("sent", ["absent", "invalid"])
def test_a_missing_or_invalid_traceparent_is_generated_and_logged(
    edge: Edge, version: str, sent: str, tmp_path: Path
) -> None:
    path = f"/trace/{sent}/h{version}"
    bad = f"00-{secrets.token_hex(16).upper()}-{secrets.token_hex(8)}-01"  # uppercase: invalid
    headers = [] if sent == "absent" else [("traceparent", bad), ("tracestate", "vendor=abc")]
    response = fetch(version, f"https://127.0.0.1:{edge.proxy.port}{path}", tmp_path, headers)
    assert response.status == 200

    seen = edge.request_at_origin(path)
    (traceparent,) = _one(seen, b"traceparent")
    match = GENERATED.fullmatch(traceparent)
    assert match is not None, traceparent
    assert traceparent != bad and _one(seen, b"tracestate") == []
    assert edge.log_record(path)["trace_id"] == match.group(1)


@pytest.mark.parametrize("version", ["1.1", "2"])
def test_the_clients_sni_is_known_on_tcp(edge: Edge, version: str, tmp_path: Path) -> None:
    port = edge.proxy.port
    named = f"/sni/named/h{version}"
    resolve = ("--resolve", f"localhost:{port}:127.0.0.1")
    response = fetch(version, f"https://localhost:{port}{named}", tmp_path, [], resolve)
    assert response.status == 200 and response.http_version == version
    assert edge.log_record(named)["sni"] == "localhost"
    # an IP address is never sent as SNI (RFC 6066)
    bare = f"/sni/bare/h{version}"
    assert fetch(version, f"https://127.0.0.1:{port}{bare}", tmp_path, []).status == 200
    assert edge.log_record(bare)["sni"] is None
