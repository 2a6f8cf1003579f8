"""Alt-Svc policy: advertise HTTP/3 on TCP responses and never forward the upstream's."""

from __future__ import annotations

from .http import ResponseHeader

__all__ = ["AltSvcPolicy"]


class AltSvcPolicy:
    """Replaces any upstream Alt-Svc by ours: ``h3=":PORT"; ma=N`` on TCP responses, ``clear``
    while draining, nothing on HTTP/3 responses or when no QUIC listener runs."""

    def __init__(self, h3_port: int | None, max_age: int = 86400) -> None:
        self.h3_port = h3_port
        self.max_age = max_age
        self.draining = False
        self.advertised = 0  # responses given our value (read by quicproxy.metrics)

    def header_value(self) -> bytes | None:
        """What TCP responses carry, or None."""
        if self.draining:
            return b"clear"
        if self.h3_port is None:
            return None
        return b'h3=":%d"; ma=%d' % (self.h3_port, self.max_age)

    def value_for(self, protocol: str) -> bytes | None:
        """What a response to a client on ``protocol`` carries (only TCP clients get one)."""
        if protocol not in ("http/1.1", "h2"):
            return None
        value = self.header_value()
        self.advertised += value is not None
        return value

    def apply(self, response: ResponseHeader, protocol: str) -> None:
        """Set the response's Alt-Svc for a client on ``protocol``."""
        response.remove("alt-svc")
        value = self.value_for(protocol)
        if value is not None:
            response.append("alt-svc", value)
