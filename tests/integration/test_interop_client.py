"""The interop endpoint's client role (``interop/client.py``) against real servers on 127.0.0.1.

Peers: quicproxy's own server role (hq-interop and h3) and Debian's ngtcp2 server
``gtlsserver`` (h3 only, so its cases run with CLIENT_ALPN=h3). Every downloaded file is
compared byte for byte; the client's stderr line per connection and its qlog show the QUIC
version, cipher, resumption, 0-RTT, Retry and key update.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quicproxy.devcerts import ensure_dev_certs
from tests.support.procs import ROOT, free_port, interop_server, stop_process

pytestmark = pytest.mark.timeout(60)

GTLSSERVER = shutil.which("gtlsserver")
NAMES = ["small.bin", "medium.bin", "large.bin"]
MANY = [f"many/f{index}" for index in range(300)]
needs_gtlsserver = pytest.mark.skipif(
    GTLSSERVER is None, reason="ngtcp2-server (gtlsserver) is not installed"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """www (three files up to 3 MB, 300 small ones) and certs, as the runner mounts them."""
    root = tmp_path_factory.mktemp("interop-client")
    www = root / "www"
    (www / "many").mkdir(parents=True)
    for name, size in (("small.bin", 1000), ("medium.bin", 300_000), ("large.bin", 3_000_000)):
        (www / name).write_bytes(os.urandom(size))
    for index, name in enumerate(MANY):
        (www / name).write_bytes(os.urandom(100 + index * 7))
    certs = ensure_dev_certs(root / "dev")
    (root / "certs").mkdir()
    shutil.copy(certs.cert, root / "certs" / "cert.pem")
    shutil.copy(certs.key, root / "certs" / "priv.key")
    return root


@pytest.fixture(scope="module")
def quicproxy(site: Path) -> Iterator[int]:
    """One server for every case but retry (resumption needs the same process anyway)."""
    port = free_port()
    with interop_server(site, "transfer", port):
        yield port


def start_gtlsserver(site: Path, port: int, *options: str) -> subprocess.Popen[str]:
    assert GTLSSERVER is not None
    proc = subprocess.Popen(
        [GTLSSERVER, "-q", f"--htdocs={site / 'www'}", *options, "127.0.0.1", str(port),
         str(site / "certs" / "priv.key"), str(site / "certs" / "cert.pem")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.poll() is None:  # until its UDP port is taken
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                break
        time.sleep(0.05)
    return proc


@pytest.fixture
def gtlsserver(site: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """ngtcp2's server with the options in the test's parameter (e.g. packet loss)."""
    port = free_port()
    options = [option.replace("{port2}", str(free_port())) for option in request.param]
    proc = start_gtlsserver(site, port, *options)
    try:
        yield port
    finally:
        stop_process(proc)


def run_client(
    port: int, testcase: str, names: list[str], target: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``ROLE=client interop/run_endpoint.sh`` downloading ``names`` into ``target``."""
    env = {
        **os.environ,
        "ROLE": "client",
        "TESTCASE": testcase,
        "REQUESTS": " ".join(f"https://127.0.0.1:{port}/{name}" for name in names),
        "DOWNLOADS": str(target),
        "CLIENT_TIMEOUT": "25",
        **extra,
    }
    return subprocess.run(
        ["bash", str(ROOT / "interop" / "run_endpoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
    )


def assert_downloaded(
    result: subprocess.CompletedProcess[str], site: Path, target: Path, names: list[str]
) -> None:
    assert result.returncode == 0, result.stderr
    for name in names:
        saved = target / Path(name).name
        assert saved.read_bytes() == (site / "www" / name).read_bytes(), name


def qlog_text(directory: Path) -> str:
    files = sorted(directory.glob("*.qlog"))
    assert files, "no qlog written"
    return "".join(path.read_text() for path in files)


# Against quicproxy's server role.


@pytest.mark.parametrize(
    ("testcase", "names", "expected"),
    [
        ("handshake", ["small.bin"], "ALPN hq-interop"),
        ("http3", NAMES, "ALPN h3"),
        ("chacha20", ["medium.bin"], "CHACHA20_POLY1305_SHA256"),
        ("v2", ["medium.bin"], "QUIC v2 (0x6b3343cf)"),
        ("multiconnect", NAMES, "connection 3:"),
        ("multiplexing", MANY, "300 files"),
    ],
)
def test_cases_against_quicproxy(
    quicproxy: int, site: Path, tmp_path: Path, testcase: str, names: list[str], expected: str
) -> None:
    result = run_client(quicproxy, testcase, names, tmp_path / "downloads")
    assert_downloaded(result, site, tmp_path / "downloads", names)
    assert expected in result.stderr


def test_transfer_writes_key_log_and_qlog(quicproxy: int, site: Path, tmp_path: Path) -> None:
    keys, qlog, target = tmp_path / "keys.log", tmp_path / "qlog", tmp_path / "downloads"
    result = run_client(
        quicproxy, "transfer", NAMES, target, SSLKEYLOGFILE=str(keys), QLOGDIR=str(qlog)
    )
    assert_downloaded(result, site, target, NAMES)
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text()
    assert '"packet_type": "1RTT"' in qlog_text(qlog)


def test_keyupdate_against_quicproxy(quicproxy: int, site: Path, tmp_path: Path) -> None:
    qlog, target = tmp_path / "qlog", tmp_path / "downloads"
    result = run_client(quicproxy, "keyupdate", NAMES, target, QLOGDIR=str(qlog))
    assert_downloaded(result, site, target, NAMES)
    assert '"trigger": "local_update"' in qlog_text(qlog)  # the client initiated it


def test_resumption_against_quicproxy(quicproxy: int, site: Path, tmp_path: Path) -> None:
    target = tmp_path / "downloads"
    result = run_client(quicproxy, "resumption", NAMES, target)
    assert_downloaded(result, site, target, NAMES)
    lines = result.stderr.splitlines()
    first = next(line for line in lines if "connection 1:" in line)
    second = next(line for line in lines if "connection 2:" in line)
    assert "resumed no" in first and "1 files" in first
    assert "resumed yes" in second and "early data accepted no" in second


def test_zerortt_against_quicproxy(quicproxy: int, site: Path, tmp_path: Path) -> None:
    qlog, target = tmp_path / "qlog", tmp_path / "downloads"
    result = run_client(quicproxy, "zerortt", NAMES, target, QLOGDIR=str(qlog))
    assert_downloaded(result, site, target, NAMES)
    second = next(line for line in result.stderr.splitlines() if "connection 2:" in line)
    assert "resumed yes" in second and "early data accepted yes" in second
    assert '"packet_type": "0RTT"' in qlog_text(qlog)  # the requests went as early data


def test_retry_against_quicproxy(site: Path, tmp_path: Path) -> None:
    port = free_port()
    qlog, target = tmp_path / "qlog", tmp_path / "downloads"
    with interop_server(site, "retry", port):
        result = run_client(port, "retry", NAMES, target, QLOGDIR=str(qlog))
    assert_downloaded(result, site, target, NAMES)
    assert '"packet_type": "retry"' in qlog_text(qlog)


# Exit statuses without a peer.


@pytest.mark.parametrize("testcase", ["versionnegotiation", "no-such-case"])
def test_unsupported_testcase_exits_127(tmp_path: Path, testcase: str) -> None:
    result = run_client(free_port(), testcase, ["small.bin"], tmp_path)
    assert result.returncode == 127
    assert "unsupported test case" in result.stderr


def test_no_server_exits_1_within_the_timeout(tmp_path: Path) -> None:
    result = run_client(free_port(), "transfer", ["small.bin"], tmp_path, CLIENT_TIMEOUT="2")
    assert result.returncode == 1
    assert "timed out after 2s" in result.stderr.splitlines()[-1]


# Against Debian's ngtcp2 server (HTTP/3 only).


@needs_gtlsserver
@pytest.mark.parametrize("gtlsserver", [[]], indirect=True)
@pytest.mark.parametrize(
    ("testcase", "expected"),
    [
        ("http3", "ALPN h3"),
        ("resumption", "resumed yes, early data accepted no"),
        ("zerortt", "resumed yes, early data accepted yes"),
        ("chacha20", "CHACHA20_POLY1305_SHA256"),
    ],
)
def test_cases_against_ngtcp2(
    gtlsserver: int, site: Path, tmp_path: Path, testcase: str, expected: str
) -> None:
    target = tmp_path / "downloads"
    result = run_client(gtlsserver, testcase, NAMES, target, CLIENT_ALPN="h3")
    assert_downloaded(result, site, target, NAMES)
    assert expected in result.stderr


@needs_gtlsserver
@pytest.mark.parametrize("gtlsserver", [["--tx-loss=0.1", "--rx-loss=0.1"]], indirect=True)
def test_multiconnect_under_loss_against_ngtcp2(
    gtlsserver: int, site: Path, tmp_path: Path
) -> None:
    names = ["small.bin", "medium.bin"]
    target = tmp_path / "downloads"
    result = run_client(gtlsserver, "multiconnect", names, target, CLIENT_ALPN="h3")
    assert_downloaded(result, site, target, names)


@needs_gtlsserver
@pytest.mark.parametrize("gtlsserver", [["--preferred-ipv4-addr=127.0.0.1:{port2}"]], indirect=True)
def test_migrates_to_the_preferred_address_of_ngtcp2(
    gtlsserver: int, site: Path, tmp_path: Path
) -> None:
    target = tmp_path / "downloads"
    result = run_client(gtlsserver, "connectionmigration", NAMES, target, CLIENT_ALPN="h3")
    assert_downloaded(result, site, target, NAMES)
    assert "migrated to 127.0.0.1 port" in result.stderr
