"""UpstreamPool's bookkeeping, without sockets.

The connections are in memory (tests/unit/upstream/memory.py): quicproxy's real h1/h2 client
adapters talking to real h11/h2 server state machines, handed out by a Connector subclass whose
``connect`` makes them. That dialer is a test double: the subject here is the pool (reuse, idle
LRU, shared capacity, GOAWAY, one dial at a time, limits), not how connections are opened.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from quicproxy.errors import ErrorKind, ProxyError
from quicproxy.upstream.peer import HttpPeer, Timeouts
from quicproxy.upstream.pool import UpstreamPool
from tests.unit.upstream.memory import MemoryConnection, MemoryConnector, exchange, get

H1 = HttpPeer("10.0.0.1", 8080, protocol="h1")
H2 = HttpPeer("10.0.0.1", 8443, tls=True, protocol="h2")


def pool_with(connector: MemoryConnector | None = None) -> tuple[UpstreamPool, MemoryConnector]:
    connector = connector or MemoryConnector()
    return UpstreamPool(connector), connector


async def overloaded(pool: UpstreamPool, peer: HttpPeer) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        await pool.acquire(peer)
    assert caught.value.kind is ErrorKind.OVERLOADED
    return caught.value


async def test_h1_connection_is_reused_after_a_clean_exchange_and_closed_after_an_unclean_one() -> (
    None
):
    pool, connector = pool_with()
    conn, reused = await pool.acquire(H1)
    assert not reused
    await exchange(conn)
    pool.release(conn, clean=True)
    again, reused = await pool.acquire(H1)
    assert again is conn and reused
    await exchange(again)
    assert isinstance(conn, MemoryConnection) and conn.requests_seen == [1, 2]
    pool.release(again, clean=False)
    assert conn.transport_closed
    fresh, reused = await pool.acquire(H1)
    assert fresh is not conn and not reused
    assert pool.connections_opened == 2 == len(connector.dials)


async def test_h1_is_exclusive_and_a_mid_exchange_connection_is_not_kept_idle() -> None:
    pool, connector = pool_with()
    first, _ = await pool.acquire(H1)
    second, _ = await pool.acquire(H1)
    assert first is not second  # HTTP/1.1: one request per connection at a time
    first.open_stream(get(), end_stream=True)  # sent, never answered
    pool.release(first, clean=True)
    assert isinstance(first, MemoryConnection) and first.transport_closed
    assert len(connector.dials) == 2


async def test_idle_h1_connections_are_handed_out_most_recently_used_first() -> None:
    pool, _ = pool_with()
    held = [(await pool.acquire(H1))[0] for _ in range(3)]
    for conn in held:
        pool.release(conn, clean=True)
    order = [(await pool.acquire(H1))[0] for _ in range(3)]
    assert order == held[::-1]
    assert pool.connections_opened == 3


async def test_at_most_max_idle_connections_are_kept_and_the_oldest_idle_is_closed() -> None:
    pool, _ = pool_with()
    peer = replace(H1, max_idle=2)
    held = [(await pool.acquire(peer))[0] for _ in range(3)]
    for conn in held:
        pool.release(conn, clean=True)
    assert [c.transport_closed for c in held if isinstance(c, MemoryConnection)] == [
        True,
        False,
        False,
    ]
    assert {(await pool.acquire(peer))[0] for _ in range(2)} == set(held[1:])
    assert pool.connections_opened == 3


async def test_idle_connections_past_the_idle_timeout_or_gone_are_not_reused() -> None:
    pool, _ = pool_with()
    quick = replace(H1, timeouts=Timeouts(idle=0.05))
    stale, _ = await pool.acquire(quick)
    pool.release(stale, clean=True)
    await asyncio.sleep(0.1)
    fresh, reused = await pool.acquire(quick)
    assert fresh is not stale and not reused
    assert isinstance(stale, MemoryConnection) and stale.transport_closed
    pool.release(fresh, clean=True)
    assert isinstance(fresh, MemoryConnection)
    fresh.lose()  # the origin closed the idle socket
    third, reused = await pool.acquire(quick)
    assert third is not fresh and not reused
    assert pool.connections_opened == 3


async def test_h2_connection_is_shared_up_to_the_servers_max_concurrent_streams() -> None:
    pool, connector = pool_with(MemoryConnector(max_streams=2))
    a, reused = await pool.acquire(H2)
    assert not reused and a.multiplexed
    a.open_stream(get("/1"), end_stream=True)
    b, reused = await pool.acquire(H2)
    assert b is a and reused  # room for one more stream
    b.open_stream(get("/2"), end_stream=True)
    c, reused = await pool.acquire(H2)
    assert c is not a and not reused  # a is full: a second connection
    assert len(connector.dials) == 2
    assert isinstance(a, MemoryConnection)
    a.flush()
    assert a.requests_seen == [1, 3]
    a.respond(1)
    stream = a.streams[1]
    assert (await asyncio.wait_for(stream.response, 1)).status == 200
    stream.close()
    pool.release(a, clean=True)
    assert not a.transport_closed  # shared connections are not closed on release
    d, reused = await pool.acquire(H2)
    assert d is a and reused  # the answered stream made room again
    assert len(connector.dials) == 2


async def test_h2_connection_that_got_goaway_takes_no_new_streams_and_closes_when_done() -> None:
    pool, connector = pool_with()
    a, _ = await pool.acquire(H2)
    stream = a.open_stream(get(), end_stream=True)
    assert isinstance(a, MemoryConnection)
    a.flush()
    a.goaway()
    assert a.going_away and not a.reusable
    b, reused = await pool.acquire(H2)
    assert b is not a and not reused
    a.respond(stream.stream_id)  # the in-flight request still completes
    assert (await asyncio.wait_for(stream.response, 1)).status == 200
    stream.close()
    pool.release(a, clean=True)
    assert a.transport_closed  # GOAWAY and nothing left in flight
    c, reused = await pool.acquire(H2)
    assert c is b
    assert len(connector.dials) == 2


async def test_a_burst_to_a_cold_h2_peer_shares_one_dial() -> None:
    pool, connector = pool_with()
    connector.gate = asyncio.Event()
    tasks = [asyncio.create_task(pool.acquire(H2)) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(connector.dials) == 1  # the others wait for the first dial
    connector.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert {id(conn) for conn, _ in results} == {id(connector.connections[0])}
    assert pool.connections_opened == 1


async def test_a_burst_to_an_h1_peer_dials_one_connection_per_request() -> None:
    pool, connector = pool_with()
    first, _ = await pool.acquire(H1)  # the pool learns the key is not multiplexed
    connector.gate = asyncio.Event()
    tasks = [asyncio.create_task(pool.acquire(H1)) for _ in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(connector.dials) == 4  # no waiting on each other's dial
    connector.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert len({id(conn) for conn, _ in results} | {id(first)}) == 4


async def test_max_requests_in_flight_fails_fast_with_overloaded_until_one_is_released() -> None:
    pool, connector = pool_with()
    peer = replace(H2, max_requests=2)
    a, _ = await pool.acquire(peer)
    b, _ = await pool.acquire(peer)
    error = await overloaded(pool, peer)
    assert error.status == 503 and "2 requests in flight" in error.message
    pool.release(a, clean=True)
    c, _ = await pool.acquire(peer)
    assert c is b
    assert len(connector.dials) == 1


async def test_max_connections_fails_fast_with_overloaded_without_dialing() -> None:
    pool, connector = pool_with()
    peer = replace(H1, max_connections=2)
    a, _ = await pool.acquire(peer)
    b, _ = await pool.acquire(peer)
    error = await overloaded(pool, peer)
    assert "2 connections open" in error.message
    assert len(connector.dials) == 2
    pool.release(a, clean=True)
    idle, reused = await pool.acquire(peer)  # an idle one is no new connection
    assert idle is a and reused
    assert isinstance(b, MemoryConnection)
    b.lose()  # a lost connection frees its slot
    pool.release(b, clean=False)
    c, reused = await pool.acquire(peer)
    assert not reused and len(connector.dials) == 3
    assert c is connector.connections[-1]


async def test_after_an_h3_switch_requests_still_count_against_the_peer_asked_for() -> None:
    pool, connector = pool_with()
    auto = HttpPeer("10.0.0.2", 443, tls=True, protocol="auto", max_requests=1)
    pool.observe_alt_svc(auto, ['h3=":8443"; ma=60'])
    conn, _ = await pool.acquire(auto)
    assert connector.dials[-1].protocol == "h3" and connector.dials[-1].port == 8443
    assert conn.peer.protocol == "h3" and conn.multiplexed
    await overloaded(pool, auto)  # the h3 connection has room, but the peer is at its limit
    await exchange(conn)
    pool.release(conn, clean=True)
    again, reused = await pool.acquire(auto)
    assert again is conn and reused
    assert len(connector.dials) == 1


async def test_an_advertised_h3_that_refuses_falls_back_to_tcp_and_rests() -> None:
    pool, connector = pool_with()
    connector.refuse = {"h3"}
    auto = HttpPeer("10.0.0.2", 443, tls=True, protocol="auto")
    pool.observe_alt_svc(auto, ['h3=":8443"'])
    conn, _ = await pool.acquire(auto)
    assert [p.protocol for p in connector.dials] == ["h3", "auto"]
    assert conn.peer == auto
    pool.release(conn, clean=True)
    await pool.acquire(auto)
    assert [p.protocol for p in connector.dials] == ["h3", "auto"]  # h3 not tried again yet


async def test_close_closes_idle_and_shared_connections() -> None:
    pool, _ = pool_with()
    idle, _ = await pool.acquire(H1)
    pool.release(idle, clean=True)
    shared, _ = await pool.acquire(H2)
    pool.close()
    assert isinstance(idle, MemoryConnection) and idle.transport_closed
    assert isinstance(shared, MemoryConnection) and shared.transport_closed
