"""50 MiB downloads and uploads through the proxy over HTTP/1.1, HTTP/2 and HTTP/3: every byte
arrives (sha256) and the proxy streams instead of buffering (its RSS stays nearly flat)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.clients import GTLSCLIENT, gtls_fetch, h3_request, peak_rss
from tests.support.procs import CURL, ProxyProcess, curl, pattern_sha256

T = TypeVar("T")
SIZE = 50 * 1024 * 1024
MAX_GROWTH_KIB = 64 * 1024
TRANSFER_TIMEOUT = 240

pytestmark = pytest.mark.timeout(300)
no_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
no_gtls = pytest.mark.skipif(GTLSCLIENT is None, reason="gtlsclient (ngtcp2-client) not installed")


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """50 MiB of seeded random bytes on disk, and their sha256."""
    data = random.Random(50).randbytes(SIZE)
    path = tmp_path_factory.mktemp("upload") / "upload.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def transfer_within_memory_budget(proxy: ProxyProcess, transfer: Callable[[], T]) -> T:
    """Run ``transfer`` while sampling the proxy's RSS every 50 ms; fail if it grew >= 64 MiB."""
    with peak_rss(proxy.rss_kib) as rss:
        result = transfer()
    baseline, peak = rss
    assert proxy.proc.poll() is None, "the proxy died:\n" + proxy.log_text()[-3000:]
    assert peak - baseline < MAX_GROWTH_KIB, (
        f"proxy RSS grew by {(peak - baseline) / 1024:.1f} MiB "
        f"({baseline / 1024:.1f} -> {peak / 1024:.1f} MiB) during a {SIZE >> 20} MiB transfer"
    )
    return result


@no_curl
@pytest.mark.parametrize("version", ["1.1", "2"])
def test_download_50_mib_curl(version: str, proxy: ProxyProcess, tmp_path: Path) -> None:
    out = tmp_path / "download.bin"
    url = f"https://127.0.0.1:{proxy.port}/bytes/{SIZE}"
    result = transfer_within_memory_budget(
        proxy,
        lambda: curl(
            f"--http{version}",
            "-w",
            "%{http_version} %{http_code}",
            "-o",
            str(out),
            url,
            timeout=TRANSFER_TIMEOUT,
        ),
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.decode() == f"{version} 200"
    assert out.stat().st_size == SIZE
    assert file_sha256(out) == pattern_sha256(SIZE)


@no_gtls
def test_download_50_mib_h3(proxy: ProxyProcess, tmp_path: Path) -> None:
    out = tmp_path / "dl"
    result = transfer_within_memory_budget(
        proxy,
        lambda: gtls_fetch(
            proxy.port, [f"/bytes/{SIZE}"], out, quiet=True, timeout=TRANSFER_TIMEOUT
        ),
    )
    saved = out / str(SIZE)
    assert saved.exists(), f"gtlsclient saved nothing (exit {result.returncode}):\n{result.log}"
    assert saved.stat().st_size == SIZE
    assert file_sha256(saved) == pattern_sha256(SIZE)


@no_curl
@pytest.mark.parametrize("version", ["1.1", "2"])
def test_upload_50_mib_curl(
    version: str, proxy: ProxyProcess, upload_file: tuple[Path, str]
) -> None:
    path, sha256 = upload_file
    url = f"https://127.0.0.1:{proxy.port}/upload"
    result = transfer_within_memory_budget(
        proxy,
        lambda: curl(
            f"--http{version}",
            "-w",
            "\n%{http_version} %{http_code}",
            "--data-binary",
            f"@{path}",
            url,
            timeout=TRANSFER_TIMEOUT,
        ),
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    body, _, status = result.stdout.decode().rpartition("\n")
    assert status == f"{version} 200"
    assert json.loads(body) == {"received": SIZE, "sha256": sha256}


def test_upload_50_mib_h3(proxy: ProxyProcess, upload_file: tuple[Path, str]) -> None:
    path, sha256 = upload_file
    data = path.read_bytes()
    url = f"https://127.0.0.1:{proxy.port}/upload"
    r = transfer_within_memory_budget(
        proxy, lambda: h3_request(url, method="POST", data=data, timeout=TRANSFER_TIMEOUT)
    )
    assert r.http_version == "3"
    assert r.status == 200, r.body[:500]
    assert r.json() == {"received": SIZE, "sha256": sha256}


@no_curl
@pytest.mark.parametrize("version", ["1.1", "2"])
def test_slow_upload_outlasting_read_timeout(
    version: str, proxy: ProxyProcess, tmp_path: Path
) -> None:
    """A client uploading steadily for longer than the upstream ``read_timeout`` (5 s in the test
    config) is not waiting for the origin: the origin answers as soon as the body has arrived, so
    the client must get that 200, not a 504."""
    data = random.Random(7).randbytes(7 * 1024 * 1024)
    path = tmp_path / "slow.bin"
    path.write_bytes(data)
    result = curl(
        f"--http{version}",
        "--limit-rate",
        "1M",
        "-w",
        "\n%{http_code}",
        "--data-binary",
        f"@{path}",
        f"https://127.0.0.1:{proxy.port}/upload",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    body, _, status = result.stdout.decode().rpartition("\n")
    assert status == "200", body
    assert json.loads(body) == {"received": len(data), "sha256": hashlib.sha256(data).hexdigest()}
