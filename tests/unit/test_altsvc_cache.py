"""Parsing upstream Alt-Svc fields and remembering HTTP/3 alternatives."""

from __future__ import annotations

from quicproxy.upstream.altsvc_cache import AltSvcCache, parse_alt_svc
from quicproxy.upstream.peer import HttpPeer


def test_parse_alt_svc() -> None:
    assert parse_alt_svc('h3=":443"; ma=3600, h3-29=":443"') == [
        ("h3", "", 443, 3600),
        ("h3-29", "", 443, 86400),
    ]
    assert parse_alt_svc("clear") is None
    assert parse_alt_svc('h3="other.example:8443"') == [("h3", "other.example", 8443, 86400)]
    assert parse_alt_svc('h3=":0", garbage, h3=":99999"') == []


def test_cache_honours_max_age_clear_and_broken() -> None:
    peer = HttpPeer("127.0.0.1", 8443, tls=True, sni="localhost")
    cache = AltSvcCache()
    cache.observe(peer, ['h2=":443", h3=":9443"; ma=60'], now=100.0)
    assert cache.lookup(peer, now=150.0) == 9443
    assert cache.lookup(peer, now=161.0) is None  # max-age ran out
    cache.observe(peer, ['h3=":9443"; ma=60'], now=200.0)
    cache.mark_broken(peer, now=201.0, seconds=30)
    assert cache.lookup(peer, now=220.0) is None
    assert cache.lookup(peer, now=232.0) == 9443
    cache.observe(peer, ["clear"], now=240.0)
    assert cache.lookup(peer, now=241.0) is None


def test_other_hosts_and_protocols_are_ignored() -> None:
    peer = HttpPeer("127.0.0.1", 8443, tls=True, sni="localhost")
    cache = AltSvcCache()
    cache.observe(peer, ['h3="evil.example:443"', 'h3-29=":443"'], now=0.0)
    assert cache.lookup(peer, now=1.0) is None
    cache.observe(peer, ['h3="localhost:9443"'], now=0.0)
    assert cache.lookup(peer, now=1.0) == 9443
