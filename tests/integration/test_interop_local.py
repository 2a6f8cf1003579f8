"""The local interop runner's quick subset: real endpoints on 127.0.0.1 through the UDP relay.

One test per (case, peers) cell, so a failure names both; the ngtcp2 columns are skipped where
Debian's ngtcp2 client or server is missing, and cells the runner marks "n/a" (a peer that cannot
take part in that case, e.g. QUIC v2 with an ngtcp2 that lacks it) are skipped with its reason.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from interop import peers
from interop.cases import BY_NAME, QUICK
from interop.relay import Impairment, Relay, RelayConfig
from interop.run_local import BY_KEY, matrix, run_cell

NEEDS = {"qp-ngtcp2": peers.GTLSCLIENT, "ngtcp2-qp": peers.GTLSSERVER, "qp-qp": "python"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("column", list(BY_KEY))
@pytest.mark.parametrize("case", QUICK)
async def test_quick_cell(case: str, column: str, tmp_path: Path) -> None:
    if NEEDS[column] is None:
        pytest.skip(f"{column}: ngtcp2 is not installed")
    result = await run_cell(BY_NAME[case], BY_KEY[column], tmp_path / "cell", quick=True)
    print(matrix([result], [case], [column]))
    if result.outcome.startswith("n/a"):
        pytest.skip(f"{case} on {column}: {result.outcome}")  # nothing was tested
    assert result.outcome == "pass", result.outcome


@pytest.mark.timeout(20)
async def test_relay_forwards_and_impairs() -> None:
    """The relay alone: an echo server behind it, a drop list and corruption toward it."""
    loop = asyncio.get_running_loop()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.setblocking(False)

    def bounce() -> None:
        data, addr = echo.recvfrom(2048)
        echo.sendto(data, addr)

    loop.add_reader(echo, bounce)
    config = RelayConfig(
        server=echo.getsockname(),
        drops_to_server=frozenset({2}),
        to_client=Impairment(corrupt=100.0),
        seed=1,
    )
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    try:
        async with Relay(config) as relay:
            replies = []
            for payload in (b"\xc0not quic", b"dropped", b"\x40short"):
                client.sendto(payload, ("127.0.0.1", relay.port))
                if payload != b"dropped":
                    replies.append(
                        (payload, await asyncio.wait_for(loop.sock_recv(client, 2048), 5))
                    )
            counters = relay.counters
        assert counters.listed_drops == 1
        assert counters.corrupted["s2c"] == 2
        for sent, got in replies:  # one byte flipped, length kept
            assert len(got) == len(sent)
            assert sum(a != b for a, b in zip(sent, got, strict=True)) == 1
    finally:
        loop.remove_reader(echo)
        echo.close()
        client.close()
