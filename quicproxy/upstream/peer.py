"""HttpPeer: where and how to reach one upstream; its key decides which connections it shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["HttpPeer", "PeerKey", "Timeouts", "TryObserver"]

PeerKey = tuple[object, ...]


class TryObserver(Protocol):
    """Told of every try the pipeline makes to a peer (a balancer's backend counts them)."""

    def try_started(self) -> None:
        """A try to this peer begins."""

    def try_finished(self, ok: bool, duration: float) -> None:
        """The try is over; ``ok`` is False when the upstream failed it."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds."""

    connect: float = 5.0  # TCP connect (QUIC: the whole handshake)
    tls_handshake: float = 10.0  # TLS over TCP, after the connect
    read: float = 60.0  # to the response head once the request is sent; between body chunks
    write: float = 60.0  # the upstream accepting request body bytes
    idle: float = 60.0  # pooled connections unused this long are closed
    total: float = 0.0  # the whole exchange, head to last byte; 0: no limit


@dataclass(frozen=True, slots=True)
class HttpPeer:
    """One upstream address with its TLS and protocol settings.

    ``protocol``: ``h1``, ``h2`` (ALPN over TLS, prior knowledge in cleartext), ``h3`` (QUIC) or
    ``auto`` (ALPN picks h2 or http/1.1 over TLS; HTTP/1.1 in cleartext).
    """

    host: str
    port: int
    tls: bool = False
    sni: str | None = None
    protocol: str = "auto"
    verify: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeouts: Timeouts = Timeouts()
    max_connections: int = 0  # 0: unlimited; beyond it a fast 503 (circuit breaking)
    max_requests: int = 0  # in-flight requests; 0: unlimited
    max_idle: int = 64  # idle HTTP/1.1 connections kept for reuse
    # who counts the tries (set by LoadBalancer on its backends' peers); not part of identity
    observer: TryObserver | None = field(default=None, compare=False, repr=False)

    def key(self) -> PeerKey:
        """Two peers share connections if and only if their keys are equal (limits and timeouts
        are settings, not identity)."""
        return (
            self.host,
            self.port,
            self.tls,
            self.server_name,
            self.protocol,
            self.verify,
            self.ca_file,
            self.client_cert,
            self.client_key,
        )

    @property
    def server_name(self) -> str | None:
        """The SNI to send: ``sni`` or the host, for TLS peers."""
        return (self.sni or self.host) if self.tls else None

    @property
    def address(self) -> str:
        """``host:port`` for logs (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return "https" if self.tls else "http"
