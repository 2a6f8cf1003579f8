"""The interop endpoint's server role, driven by independent clients on 127.0.0.1.

HTTP/3 through Debian's ngtcp2 client (its exit status is unreliable: the files are compared),
hq-interop (HTTP/0.9 over QUIC) through aioquic's own H0 client.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h0.connection import H0Connection
from aioquic.h3.events import DataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent

from quicproxy.devcerts import ensure_dev_certs
from tests.support.procs import ROOT, free_port, interop_server

GTLSCLIENT = shutil.which("gtlsclient")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interop")
    (root / "www").mkdir()
    for name, size in (("small.bin", 1000), ("medium.bin", 300_000), ("large.bin", 3_000_000)):
        (root / "www" / name).write_bytes(os.urandom(size))
    certs = ensure_dev_certs(root / "dev")
    (root / "certs").mkdir()
    shutil.copy(certs.cert, root / "certs" / "cert.pem")
    shutil.copy(certs.key, root / "certs" / "priv.key")
    return root


@pytest.fixture
def running(site: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    testcase, extra = request.param
    port = free_port()
    with interop_server(site, testcase, port, **extra):
        yield port, site


def gtls_download(port: int, names: list[str], target: Path, *, verbose: bool = False) -> str:
    """Download with the ngtcp2 client; its packet log only when ``verbose`` (it is large)."""
    assert GTLSCLIENT is not None
    urls = [f"https://127.0.0.1:{port}/{name}" for name in names]
    quiet = [] if verbose else ["-q"]
    result = subprocess.run(
        [GTLSCLIENT, *quiet, "--exit-on-all-streams-close", f"--download={target}", "--timeout=10s",
         "127.0.0.1", str(port), *urls],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    return result.stdout + result.stderr


def assert_same(site: Path, target: Path, names: list[str]) -> None:
    for name in names:
        assert (target / name).read_bytes() == (site / "www" / name).read_bytes(), name


NAMES = ["small.bin", "medium.bin", "large.bin"]


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("transfer", {}), ("http3", {})], indirect=True)
def test_transfer_over_http3_with_ngtcp2(running: tuple[int, Path], tmp_path: Path) -> None:
    port, site = running
    gtls_download(port, NAMES, tmp_path)
    assert_same(site, tmp_path, NAMES)


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("retry", {})], indirect=True)
def test_retry_testcase_sends_a_retry(running: tuple[int, Path], tmp_path: Path) -> None:
    port, site = running
    log = gtls_download(port, ["small.bin"], tmp_path, verbose=True)
    assert "type=Retry" in log
    assert_same(site, tmp_path, ["small.bin"])


@pytest.mark.parametrize("running", [("handshake", {})], indirect=True)
async def test_hq_interop_with_aioquic(running: tuple[int, Path]) -> None:
    port, site = running

    class Hq(QuicConnectionProtocol):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.h0 = H0Connection(self._quic)
            self.bodies: dict[int, bytearray] = {}
            self.done: dict[int, asyncio.Future[bytes]] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            for h0_event in self.h0.handle_event(event):
                if isinstance(h0_event, DataReceived):
                    body = self.bodies.setdefault(h0_event.stream_id, bytearray())
                    body.extend(h0_event.data)
                    if h0_event.stream_ended:
                        self.done[h0_event.stream_id].set_result(bytes(body))

        async def get(self, path: str) -> bytes:
            stream_id = self._quic.get_next_available_stream_id()
            self.done[stream_id] = asyncio.get_running_loop().create_future()
            self.h0.send_headers(stream_id, [(b":method", b"GET"), (b":path", path.encode())])
            self.h0.send_data(stream_id, b"", end_stream=True)
            self.transmit()
            return await asyncio.wait_for(self.done[stream_id], 20)

    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["hq-interop"], verify_mode=ssl.CERT_NONE
    )
    async with connect("127.0.0.1", port, configuration=configuration, create_protocol=Hq) as hq:
        assert isinstance(hq, Hq)
        bodies = await asyncio.gather(*(hq.get(f"/{name}") for name in NAMES))
    for name, body in zip(NAMES, bodies, strict=True):
        assert body == (site / "www" / name).read_bytes()


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
def test_key_log_and_qlog_are_written(site: Path, tmp_path: Path) -> None:
    port = free_port()
    keys, qlog = tmp_path / "keys.log", tmp_path / "qlog"
    with interop_server(site, "transfer", port, SSLKEYLOGFILE=str(keys), QLOGDIR=str(qlog)):
        gtls_download(port, ["small.bin"], tmp_path)
        assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text()
    assert list(qlog.glob("*.qlog"))  # written once the client's connection ended


def test_unknown_testcase_exits_127(site: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "interop.endpoint", "server"],
        env={**os.environ, "TESTCASE": "no-such-case", "WWW": str(site / "www")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 127
    assert "unsupported test case" in result.stderr


CHACHA = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("chacha20", {})], indirect=True)
def test_chacha20(running: tuple[int, Path], tmp_path: Path) -> None:
    port, site = running
    assert GTLSCLIENT is not None
    result = subprocess.run(
        [GTLSCLIENT, "--exit-on-all-streams-close", "--timeout=10s", f"--download={tmp_path}",
         f"--ciphers={CHACHA}", "127.0.0.1", str(port), f"https://127.0.0.1:{port}/medium.bin"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert "Negotiated cipher suite is CHACHA20-POLY1305" in result.stdout + result.stderr
    assert_same(site, tmp_path, ["medium.bin"])


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("zerortt", {})], indirect=True)
def test_resumption_and_zerortt(running: tuple[int, Path], tmp_path: Path) -> None:
    port, site = running
    assert GTLSCLIENT is not None
    state = [f"--session-file={tmp_path / 'session'}", f"--tp-file={tmp_path / 'tp'}"]
    logs = []
    for run in ("first", "second"):
        target = tmp_path / run
        target.mkdir()
        result = subprocess.run(
            [GTLSCLIENT, "--exit-on-all-streams-close", "--timeout=10s", f"--download={target}",
             *state, "127.0.0.1", str(port), f"https://127.0.0.1:{port}/small.bin"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        logs.append(result.stdout + result.stderr)
        assert_same(site, target, ["small.bin"])
    assert "type=0RTT" not in logs[0]
    assert "type=0RTT" in logs[1]  # resumed, and the request went as early data


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("keyupdate", {})], indirect=True)
def test_key_update(running: tuple[int, Path], tmp_path: Path) -> None:
    port, site = running
    assert GTLSCLIENT is not None
    result = subprocess.run(
        [GTLSCLIENT, "--exit-on-all-streams-close", "--timeout=10s", f"--download={tmp_path}",
         "--key-update=1ms", "127.0.0.1", str(port), f"https://127.0.0.1:{port}/medium.bin"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert "Initiate key update" in log
    assert re.search(r"pkt rx .*type=1RTT k=1", log)  # the server answered in the new phase
    assert_same(site, tmp_path, ["medium.bin"])


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("connectionmigration", {})], indirect=True)
def test_connection_migration_to_the_preferred_address(
    running: tuple[int, Path], tmp_path: Path
) -> None:
    port, site = running
    log = gtls_download(port, ["medium.bin"], tmp_path, verbose=True)
    assert f"preferred_address.ipv4_port={port + 1}" in log
    assert f"selected server preferred_address is [127.0.0.1]:{port + 1}" in log
    assert re.search(
        rf"Path validation against path .*remote:\[127\.0\.0\.1\]:{port + 1}\}} succeeded", log
    )
    assert f"remote=[127.0.0.1]:{port + 1}" in log  # and the transfer moved there
    assert_same(site, tmp_path, ["medium.bin"])


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("running", [("ecn", {})], indirect=True)
def test_ecn_marks_and_ack_ecn_counts(running: tuple[int, Path], tmp_path: Path) -> None:
    """The server marks its packets ECT(0) and reports the client's marks in ACK_ECN frames:
    ngtcp2 validates ECN on the path only when those counts add up."""
    port, site = running
    log = gtls_download(port, ["medium.bin"], tmp_path, verbose=True)
    received = re.findall(r"Received packet: .* ecn=(0x[0-9a-f]+) ", log)
    assert received and set(received) == {"0x2"}  # every server packet ECT(0)
    assert re.search(r"frm rx \d+ 1RTT ACK\(0x03\) ect0=[1-9]", log)
    assert "path is ECN capable" in log
    assert_same(site, tmp_path, ["medium.bin"])
