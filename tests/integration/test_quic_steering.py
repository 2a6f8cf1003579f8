"""With several workers, QUIC packets follow their connection ID to the worker that owns it.

The ngtcp2 client migrates to a new local port 50 ms into each download (active migration with
path validation). Without steering, the kernel's 4-tuple hash sends the new path to either
worker, and about half the downloads stall (seen while writing this test); with steering all
complete.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from quicproxy.net import steering
from tests.support.procs import ThreadedOrigin, free_port, run_proxy

GTLSCLIENT = shutil.which("gtlsclient")


def test_cids_carry_the_worker_index() -> None:
    for workers in (2, 3, 7):
        for index in range(workers):
            cids = {steering.steered_cid(index, workers) for _ in range(200)}
            assert all(len(cid) == 8 and cid[0] % workers == index for cid in cids)
            assert len(cids) == 200


def test_kernel_steers_short_headers_by_connection_id() -> None:
    port = free_port()
    assert steering.prepare([("127.0.0.1", port)], 2)
    sockets = steering._sockets.pop(("127.0.0.1", port))
    try:
        for sock in sockets:
            sock.settimeout(2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for first in range(6):
                client.sendto(bytes([0x40, first]) + bytes(30), ("127.0.0.1", port))
            got = [[sockets[i].recv(100)[1] for _ in range(3)] for i in range(2)]
        assert got == [[0, 2, 4], [1, 3, 5]]
    finally:
        for sock in sockets:
            sock.close()


def two_workers(tmp_path: Path, port: int, origin_port: int) -> Path:
    """A config with two workers on a fixed port (steering needs one known before forking)."""
    config = tmp_path / "p.toml"
    config.write_text(
        f"""
[server]
workers = 2
grace_period = 2
[tls]
dev_cert_dir = "{tmp_path / "certs"}"
[[listen]]
address = "127.0.0.1:{port}"
[[upstream]]
name = "origin"
addresses = ["http://127.0.0.1:{origin_port}"]
[[route]]
upstream = "origin"
"""
    )
    return config


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client is not installed")
@pytest.mark.timeout(120)
def test_migrating_clients_keep_their_worker(tmp_path: Path) -> None:
    assert GTLSCLIENT is not None
    port = free_port()
    with ThreadedOrigin() as origin:
        config = two_workers(tmp_path, port, origin.port)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            time.sleep(0.5)  # the second worker binds just after the first announces
            sizes = []
            for run in range(6):
                target = tmp_path / f"dl{run}"
                target.mkdir()
                subprocess.run(
                    [GTLSCLIENT, "-q", "--exit-on-all-streams-close", "--timeout=3s",
                     "--change-local-addr=50ms", f"--download={target}", "127.0.0.1", str(port),
                     f"https://127.0.0.1:{port}/bytes/3000000"],
                    capture_output=True,
                    timeout=30,
                )  # fmt: skip
                body = target / "3000000"
                sizes.append(body.stat().st_size if body.exists() else 0)
            assert "steered to workers by connection ID" in proxy.log_text()
    assert sizes == [3_000_000] * 6


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client is not installed")
@pytest.mark.timeout(120)
def test_restarted_workers_answer_lost_connections_with_a_stateless_reset(
    tmp_path: Path,
) -> None:
    """Workers killed mid-upload come back without the connection; the client's next packets
    get a stateless reset it accepts (the tokens derive from a key the supervisor made)."""
    assert GTLSCLIENT is not None
    port = free_port()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(80 * 1024 * 1024))
    with ThreadedOrigin() as origin:
        config = two_workers(tmp_path, port, origin.port)
        with run_proxy(["run", "-c", str(config)]) as proxy:
            time.sleep(0.5)
            client = subprocess.Popen(
                [GTLSCLIENT, "--exit-on-all-streams-close", "--timeout=30s", "-m", "POST",
                 "-d", str(upload), "127.0.0.1", str(port), f"https://127.0.0.1:{port}/upload"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            time.sleep(1.5)  # the upload is under way
            workers = Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children")
            for pid in workers.read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            try:
                log, _ = client.communicate(timeout=20)  # far below the 30 s idle timeout
            finally:
                client.kill()
            assert "restarting" in proxy.log_text()
    assert re.search(r"pkt rx 0 SR token=0x[0-9a-f]{32}", log)
    assert "ERR_DRAINING" in log
