"""The upstream pool against a real origin: reuse within a peer key, fresh connections across."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

from protocols.messages import RequestHead
from quicproxy.demo import DemoOrigin
from quicproxy.devcerts import ensure_dev_certs
from quicproxy.upstream.peer import HttpPeer
from quicproxy.upstream.pool import UpstreamPool


async def exchange(pool: UpstreamPool, peer: HttpPeer) -> bool:
    conn, reused = await pool.acquire(peer)
    stream = conn.open_stream(RequestHead(b"GET", b"https", b"localhost", b"/status/200", []), True)
    assert (await stream.response).status == 200
    while await stream.body.read() is not None:
        pass
    stream.close()
    pool.release(conn, clean=True)
    return reused


async def test_same_key_reuses_and_different_keys_do_not(tmp_path: Path) -> None:
    certs = ensure_dev_certs(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    origin = DemoOrigin(ssl_context=context)
    await origin.start()
    pool = UpstreamPool()
    try:
        base = HttpPeer(
            "127.0.0.1", origin.port, tls=True, sni="localhost", ca_file=certs.ca_cert,
            protocol="h1",
        )  # fmt: skip
        reused = [await exchange(pool, base) for _ in range(20)]
        assert reused == [False] + [True] * 19
        assert origin.connections_accepted == 1
        # equal keys share connections: a copy with other limits is the same peer
        assert await exchange(pool, replace(base, max_requests=5))
        assert origin.connections_accepted == 1
        # any difference in the key means a connection of its own
        for variant in (
            replace(base, sni="127.0.0.1", verify=False),
            replace(base, verify=False),
            replace(base, ca_file=None, verify=False),
        ):
            assert not await exchange(pool, variant)
        assert origin.connections_accepted == 4
        assert pool.connections_opened == 4
    finally:
        pool.close()
        await origin.stop()
