"""Selection algorithms: distribution, stickiness, skipping, and Ketama's remapping bound."""

from __future__ import annotations

import collections
import random

import pytest

from quicproxy.lb.backends import Backend, BackendSet
from quicproxy.lb.selection import (
    Ketama,
    LeastConnections,
    PowerOfTwoChoices,
    Random,
    RoundRobin,
    WeightedRoundRobin,
    hash_key_value,
    selector_by_name,
)
from quicproxy.upstream.peer import HttpPeer


def backends(count: int, weights: list[int] | None = None) -> list[Backend]:
    weights = weights or [1] * count
    return [Backend(HttpPeer("127.0.0.1", 9000 + i), w) for i, w in enumerate(weights)]


def picks(selector: object, pool: list[Backend], n: int, key: bytes | None = None) -> list[str]:
    out = []
    for _ in range(n):
        chosen = selector.select(pool, key)  # type: ignore[attr-defined]
        assert chosen is not None
        out.append(chosen.key)
    return out


def test_round_robin_is_exactly_even() -> None:
    pool = backends(3)
    counts = collections.Counter(picks(RoundRobin(), pool, 3000))
    assert set(counts.values()) == {1000}


def test_weighted_round_robin_is_proportional_and_smooth() -> None:
    pool = backends(3, [5, 1, 1])
    sequence = picks(WeightedRoundRobin(), pool, 7)
    assert sequence.count(pool[0].key) == 5
    assert sequence[:3] != [pool[0].key] * 3  # interleaved, not aaaaabc
    counts = collections.Counter(picks(WeightedRoundRobin(), pool, 7000))
    assert counts[pool[0].key] == 5000 and counts[pool[1].key] == 1000


def test_round_robin_follows_weights_smoothly() -> None:
    pool = backends(2, [3, 1])
    sequence = picks(RoundRobin(), pool, 400)
    counts = collections.Counter(sequence)
    assert counts[pool[0].key] == 300 and counts[pool[1].key] == 100
    for start in range(0, 400, 4):  # every turn of 4 picks: a, a, b, a (no burst)
        assert sequence[start : start + 4].count(pool[1].key) == 1


def test_round_robin_with_weight_one_is_plain_rotation() -> None:
    pool = backends(3)
    assert picks(RoundRobin(), pool, 6) == [b.key for b in pool] * 2


def _shares(selector: object, pool: list[Backend], rounds: int) -> dict[str, int]:
    total = sum(b.weight for b in pool)
    counts = collections.Counter(picks(selector, pool, rounds * total))
    return {b.key: counts[b.key] for b in pool}


@pytest.mark.parametrize("name", ["round_robin", "weighted_round_robin", "least_connections"])
def test_deterministic_selectors_keep_weights_as_candidates_change(name: str) -> None:
    pool = backends(3, [3, 2, 1])
    selector = selector_by_name(name)
    for members in (pool, pool[1:], [pool[0], pool[2]], pool):  # health takes one out, back in
        shares = _shares(selector, members, 100)
        for backend in members:
            assert abs(shares[backend.key] - 100 * backend.weight) <= 3, (members, shares)


def test_power_of_two_keeps_weights_as_candidates_change() -> None:
    pool = backends(3, [3, 2, 1])
    selector = PowerOfTwoChoices(random.Random(11))
    for members in (pool, pool[1:], pool):
        shares = _shares(selector, members, 1000)
        total = sum(b.weight for b in members)
        for backend in members:
            share = shares[backend.key] / (1000 * total)
            assert abs(share - backend.weight / total) < 0.03, (members, shares)


def test_least_connections_compares_in_flight_per_weight() -> None:
    pool = backends(2, [3, 1])
    pool[0].in_flight, pool[1].in_flight = 5, 2  # 5/3 < 2/1
    assert set(picks(LeastConnections(), pool, 5)) == {pool[0].key}
    pool[0].in_flight = 7  # 7/3 > 2/1
    assert set(picks(LeastConnections(), pool, 5)) == {pool[1].key}


def test_least_connections_shares_idle_backends_by_weight() -> None:
    pool = backends(2, [3, 1])
    counts = collections.Counter(picks(LeastConnections(), pool, 400))
    assert counts[pool[0].key] == 300 and counts[pool[1].key] == 100


def test_power_of_two_compares_in_flight_per_weight() -> None:
    pool = backends(2, [4, 1])
    pool[0].in_flight, pool[1].in_flight = 3, 1  # 3/4 < 1/1
    assert set(picks(PowerOfTwoChoices(random.Random(2)), pool, 50)) == {pool[0].key}


def test_power_of_two_draws_its_pair_by_weight() -> None:
    pool = backends(3, [8, 1, 1])  # all idle: the first drawn wins, drawn in proportion 8:1:1
    counts = collections.Counter(picks(PowerOfTwoChoices(random.Random(4)), pool, 5000))
    assert 3700 < counts[pool[0].key] < 4300, counts


def test_random_is_roughly_uniform() -> None:
    pool = backends(4)
    counts = collections.Counter(picks(Random(random.Random(1)), pool, 10000))
    assert all(2300 < c < 2700 for c in counts.values())


def test_least_connections_picks_the_idlest_and_spreads_ties() -> None:
    pool = backends(3)
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 5, 2, 2
    chosen = picks(LeastConnections(), pool, 4)
    assert set(chosen) == {pool[1].key, pool[2].key}


def test_power_of_two_avoids_a_loaded_backend() -> None:
    pool = backends(4)
    pool[0].in_flight = 100
    selector = PowerOfTwoChoices(random.Random(3))
    counts = collections.Counter(picks(selector, pool, 3000))
    assert counts[pool[0].key] == 0
    assert all(counts[b.key] > 700 for b in pool[1:])


def test_ketama_is_sticky_and_spreads_keys() -> None:
    pool = backends(5)
    ring = Ketama()
    assert len(set(picks(ring, pool, 20, b"user-42"))) == 1
    rng = random.Random(5)
    keys = [rng.randbytes(8) for _ in range(10000)]
    counts = collections.Counter(ring.select(pool, k).key for k in keys)  # type: ignore[union-attr]
    assert all(1500 < c < 2500 for c in counts.values()), counts


def test_ketama_loses_only_the_removed_backends_keys() -> None:
    pool = backends(10)
    ring = Ketama()
    rng = random.Random(9)
    keys = [rng.randbytes(8) for _ in range(10000)]
    before = {k: ring.select(pool, k).key for k in keys}  # type: ignore[union-attr]
    removed = pool[3]
    survivors = [b for b in pool if b is not removed]
    after = {k: ring.select(survivors, k).key for k in keys}  # type: ignore[union-attr]
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == removed.key for k in moved)  # nobody else's keys moved
    assert 0.05 < len(moved) / len(keys) < 0.15  # about 1/N
    restored = {k: ring.select(pool, k).key for k in keys}  # type: ignore[union-attr]
    assert restored == before


@pytest.mark.parametrize(
    "name",
    [
        "round_robin",
        "weighted_round_robin",
        "random",
        "least_connections",
        "power_of_two",
        "ketama",
    ],
)
def test_every_algorithm_handles_empty_and_filtered_candidates(name: str) -> None:
    selector = selector_by_name(name)
    assert selector.select([], b"k") is None
    pool = backends(3)
    pool[0].healthy = False
    pool[1].draining = True
    available = BackendSet(pool).available(now=0.0)
    assert [b.key for b in available] == [pool[2].key]
    assert selector.select(available, b"k") is pool[2]


def test_unknown_algorithm_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="round_robin"):
        selector_by_name("fastest")


def test_hash_key_sources() -> None:
    headers = [(b"x-user", b"alice"), (b"cookie", b"a=1; session=xyz")]
    assert hash_key_value("client_ip", "10.0.0.1", headers, "/p?q") == b"10.0.0.1"
    assert hash_key_value("path", "ip", headers, "/p?q=1") == b"/p"
    assert hash_key_value("header:x-user", "ip", headers, "/") == b"alice"
    assert hash_key_value("header:x-missing", "ip", headers, "/") is None
    assert hash_key_value("cookie:session", "ip", headers, "/") == b"xyz"
    assert hash_key_value("cookie:none", "ip", headers, "/") is None


def test_backend_set_replace_keeps_state_of_survivors() -> None:
    pool = backends(3)
    pool[1].in_flight = 7
    pool[1].healthy = False
    members = BackendSet(pool)
    new_peer = HttpPeer("127.0.0.1", 9100)
    changed = members.replace([pool[1].peer, new_peer], [1, 2])
    assert changed and members.version == 1
    kept = members.get(pool[1].key)
    assert kept is pool[1] and kept.in_flight == 7 and not kept.healthy
    assert [b.key for b in members] == [pool[1].key, new_peer.address]
    assert not members.replace([pool[1].peer, new_peer], [1, 2])


def test_manual_drain_takes_a_backend_out_and_back() -> None:
    from quicproxy.errors import ProxyError
    from quicproxy.lb import LoadBalancer

    peers = [HttpPeer("127.0.0.1", 9001), HttpPeer("127.0.0.1", 9002)]
    balancer = LoadBalancer("app", peers, RoundRobin())
    balancer.drain("127.0.0.1:9001")
    assert {balancer.select("ip", [], "/").key for _ in range(6)} == {"127.0.0.1:9002"}
    balancer.drain("127.0.0.1:9002")
    with pytest.raises(ProxyError, match="no healthy backend"):
        balancer.select("ip", [], "/")
    balancer.drain("127.0.0.1:9001", draining=False)
    assert balancer.select("ip", [], "/").key == "127.0.0.1:9001"
    with pytest.raises(KeyError):
        balancer.drain("127.0.0.1:1")


def test_ketama_ring_stays_small_with_large_weights() -> None:
    pool = backends(10, [1000] * 10)
    ring = Ketama()
    assert ring.select(pool, b"k") is not None
    assert len(ring._points) <= 160 * 100 + 40  # scaled down, so rebuilds stay cheap
    counts = collections.Counter(
        ring.select(pool, bytes([i, j])).key for i in range(100) for j in range(50)
    )  # type: ignore[union-attr]
    assert all(300 < c < 700 for c in counts.values())  # equal weights still spread evenly


def test_cookie_hash_key_keeps_the_name_case() -> None:
    headers = [(b"cookie", b"SessionId=abc; sessionid=other")]
    assert hash_key_value("cookie:SessionId", "ip", headers, "/") == b"abc"
