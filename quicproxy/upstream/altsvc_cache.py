"""Alternative-service cache: which upstream origins offered HTTP/3 (RFC 7838), until when."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .peer import HttpPeer

__all__ = ["AltSvcCache", "parse_alt_svc"]

_ENTRY = re.compile(r'^\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*"([^"]*)"(.*)$')
_MAX_AGE = re.compile(r";\s*ma\s*=\s*(\d+)")
DEFAULT_MAX_AGE = 86400
BROKEN_FOR = 300.0


def parse_alt_svc(value: str) -> list[tuple[str, str, int, int]] | None:
    """``[(protocol, host, port, max_age)]`` from one Alt-Svc value; None for ``clear``.

    Entries that do not parse are skipped, as RFC 7838 asks.
    """
    if value.strip().lower() == "clear":
        return None
    entries = []
    for part in value.split(","):
        match = _ENTRY.match(part)
        if match is None:
            continue
        protocol, authority, params = match.groups()
        host, _, port_text = authority.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            continue
        age = _MAX_AGE.search(params)
        entries.append(
            (protocol, host, int(port_text), int(age.group(1)) if age else DEFAULT_MAX_AGE)
        )
    return entries


@dataclass(slots=True)
class _Entry:
    port: int
    expires: float
    broken_until: float = 0.0


class AltSvcCache:
    """Per upstream origin (host, port, SNI): the HTTP/3 port it advertised, until ``ma`` runs
    out or it says ``clear``; an alternative that failed is not tried again for a while."""

    def __init__(self, limit: int = 10000) -> None:
        self._entries: dict[tuple[str, int, str | None], _Entry] = {}
        self.limit = limit

    @staticmethod
    def _origin(peer: HttpPeer) -> tuple[str, int, str | None]:
        return (peer.host, peer.port, peer.server_name)

    def observe(self, peer: HttpPeer, values: list[str], now: float) -> None:
        """Remember what an upstream response's Alt-Svc fields say (same-host h3 only)."""
        origin = self._origin(peer)
        for value in values:
            entries = parse_alt_svc(value)
            if entries is None:
                self._entries.pop(origin, None)
                continue
            for protocol, host, port, max_age in entries:
                if protocol == "h3" and host in ("", peer.host, peer.server_name):
                    previous = self._entries.get(origin)
                    broken = previous.broken_until if previous and previous.port == port else 0.0
                    self._entries[origin] = _Entry(port, now + max_age, broken)
                    break
        while len(self._entries) > self.limit:
            self._entries.pop(next(iter(self._entries)))

    def lookup(self, peer: HttpPeer, now: float) -> int | None:
        """The HTTP/3 port to try for ``peer`` now, or None."""
        entry = self._entries.get(self._origin(peer))
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[self._origin(peer)]
            return None
        return None if entry.broken_until > now else entry.port

    def mark_broken(self, peer: HttpPeer, now: float, seconds: float = BROKEN_FOR) -> None:
        """The alternative failed: use TCP for ``seconds``."""
        entry = self._entries.get(self._origin(peer))
        if entry is not None:
            entry.broken_until = now + seconds
