"""Forwarding headers and the Alt-Svc policy."""

from __future__ import annotations

import ipaddress

from quicproxy.altsvc import AltSvcPolicy
from quicproxy.forwarding import ForwardingPolicy
from quicproxy.http import RequestHeader, ResponseHeader
from quicproxy.session import DownstreamInfo


def downstream(ip: str) -> DownstreamInfo:
    return DownstreamInfo("h3", (ip, 5000), ("127.0.0.1", 443), tls=True)


def request(headers: list[tuple[bytes, bytes]]) -> RequestHeader:
    return RequestHeader("GET", "https", "example.com", "/", headers)


def test_untrusted_client_values_are_replaced() -> None:
    req = request([(b"x-forwarded-for", b"6.6.6.6"), (b"forwarded", b"for=6.6.6.6")])
    ForwardingPolicy().apply(req, downstream("192.0.2.1"), b"3")
    assert req.get("x-forwarded-for") == "192.0.2.1"
    assert req.get("x-forwarded-proto") == "https"
    assert req.get("x-forwarded-host") == "example.com"
    assert req.get("forwarded") == 'for=192.0.2.1;proto=https;host="example.com"'
    assert req.get("via") == "3 quicproxy"


def test_trusted_proxy_values_are_appended() -> None:
    policy = ForwardingPolicy(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    req = request(
        [
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-forwarded-proto", b"http"),
            (b"via", b"1.1 edge"),
        ]
    )
    policy.apply(req, downstream("10.1.2.3"), b"2")
    assert req.get("x-forwarded-for") == "6.6.6.6, 10.1.2.3"
    assert req.get("x-forwarded-proto") == "http"
    assert req.get("via") == "1.1 edge, 2 quicproxy"


def test_ipv6_client_is_quoted_in_forwarded() -> None:
    req = request([])
    ForwardingPolicy().apply(req, downstream("::1"), b"1.1")
    assert (
        req.get(
            "forwarded",
        )
        == 'for="[::1]";proto=https;host="example.com"'
    )


def test_alt_svc_advertised_on_tcp_only_and_upstream_value_dropped() -> None:
    policy = AltSvcPolicy(8443, max_age=3600)
    for protocol, expected in (("http/1.1", 'h3=":8443"; ma=3600'), ("h2", 'h3=":8443"; ma=3600')):
        response = ResponseHeader(200, [(b"alt-svc", b'h3=":9999"')])
        policy.apply(response, protocol)
        assert response.get_all("alt-svc") == [expected]
    response = ResponseHeader(200, [(b"alt-svc", b'h3=":9999"')])
    policy.apply(response, "h3")
    assert response.get("alt-svc") is None
    policy.draining = True
    response = ResponseHeader(200, [])
    policy.apply(response, "h2")
    assert response.get("alt-svc") == "clear"


def test_no_quic_listener_means_no_alt_svc() -> None:
    response = ResponseHeader(200, [])
    AltSvcPolicy(None).apply(response, "http/1.1")
    assert "alt-svc" not in response
