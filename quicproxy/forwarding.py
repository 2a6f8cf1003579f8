"""Forwarding headers: Via, X-Forwarded-For/-Proto/-Host and Forwarded, with trusted proxies."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .config_reader import IPNetwork
from .http import RequestHeader
from .session import DownstreamInfo
from .tracing import ensure_traceparent

__all__ = ["ForwardingPolicy"]


def _forwarded_node(ip: str) -> str:
    return f'"[{ip}]"' if ":" in ip else ip


@dataclass(frozen=True, slots=True)
class ForwardingPolicy:
    """How the proxy tells the upstream who the client is.

    Incoming X-Forwarded-* and Forwarded values are kept (and appended to) only when the direct
    peer is in ``trusted_proxies``; otherwise they are replaced, so a client cannot forge its
    address. Via is always appended (RFC 9110 section 7.6.3).
    """

    trusted_proxies: tuple[IPNetwork, ...] = ()
    via: str | None = "quicproxy"
    x_forwarded: bool = True
    forwarded: bool = True

    def trusts(self, ip: str) -> bool:
        """True when ``ip`` is a trusted proxy."""
        if not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    def trace(self, request: RequestHeader) -> str:
        """Keep the client's valid W3C ``traceparent`` or start a new trace (once per request,
        before the hooks, so every try and the access log carry the same one); the trace id."""
        return ensure_traceparent(request)

    def apply(self, request: RequestHeader, downstream: DownstreamInfo, version: bytes) -> None:
        """Set the forwarding fields on the request going upstream."""
        client_ip = downstream.client_address[0]
        trusted = self.trusts(client_ip)
        scheme = downstream.scheme
        if self.x_forwarded:
            chain = request.get_all("x-forwarded-for") if trusted else []
            request.set("x-forwarded-for", ", ".join([*chain, client_ip]))
            if not (trusted and "x-forwarded-proto" in request):
                request.set("x-forwarded-proto", scheme)
            if not (trusted and "x-forwarded-host" in request):
                request.set("x-forwarded-host", request.authority)
        if self.forwarded:
            previous = request.get_all("forwarded") if trusted else []
            element = f"for={_forwarded_node(client_ip)};proto={scheme}"
            if request.authority:
                element += f';host="{request.authority}"'
            request.set("forwarded", ", ".join([*previous, element]))
        if self.via:
            previous_via = request.get_all("via")
            request.set("via", ", ".join([*previous_via, f"{version.decode()} {self.via}"]))
