"""Backends of an upstream group: each address with its weight, load and health state."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from ..upstream.peer import HttpPeer

__all__ = ["Backend", "BackendSet", "OutcomeReport"]

OutcomeReport = Callable[["Backend", bool, float], None]
"""Where a backend reports each finished try: (backend, ok, duration in seconds)."""


class Backend:
    """One address of an upstream group and what the balancer knows about it now.

    Its ``peer`` names the backend as its try observer, so the pipeline counts in-flight tries
    and reports outcomes for every request sent to it, whichever hook chose it.
    """

    __slots__ = (
        "draining",
        "ejected_until",
        "healthy",
        "in_flight",
        "on_outcome",
        "peer",
        "weight",
    )

    def __init__(self, peer: HttpPeer, weight: int = 1, on_outcome: OutcomeReport | None = None):
        self.peer = replace(peer, observer=self)
        self.weight = weight
        self.on_outcome = on_outcome
        self.in_flight = 0
        self.healthy = True
        self.draining = False
        self.ejected_until = 0.0

    @property
    def key(self) -> str:
        """A stable identity: ``host:port``."""
        return self.peer.address

    def available(self, now: float) -> bool:
        """Healthy, not drained by hand and not ejected by passive health."""
        return self.healthy and not self.draining and self.ejected_until <= now

    def try_started(self) -> None:
        """A request went to this backend."""
        self.in_flight += 1

    def try_finished(self, ok: bool, duration: float) -> None:
        """A request to this backend is over (``ok``: the backend did not fail it)."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.on_outcome is not None:
            self.on_outcome(self, ok, duration)

    def __repr__(self) -> str:
        return f"Backend({self.key}, weight={self.weight}, in_flight={self.in_flight})"


class BackendSet:
    """The backends of a group, in order; ``version`` changes whenever membership does."""

    def __init__(
        self, backends: Sequence[Backend], on_outcome: OutcomeReport | None = None
    ) -> None:
        self._backends = list(backends)
        self.on_outcome = on_outcome  # given to backends that discovery adds
        self.version = 0

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends)

    def __len__(self) -> int:
        return len(self._backends)

    def get(self, key: str) -> Backend | None:
        """The backend with this ``host:port``."""
        return next((b for b in self._backends if b.key == key), None)

    def available(self, now: float) -> list[Backend]:
        """Backends that may take new requests."""
        return [b for b in self._backends if b.available(now)]

    def replace(self, peers: Sequence[HttpPeer], weights: Sequence[int]) -> bool:
        """New membership (discovery); surviving addresses keep their state. True if changed."""
        current = {b.key: b for b in self._backends}
        updated: list[Backend] = []
        for peer, weight in zip(peers, weights, strict=True):
            backend = current.get(peer.address)
            if backend is None or backend.peer != peer:
                backend = Backend(peer, weight, self.on_outcome)
            backend.weight = weight
            updated.append(backend)
        changed = [b.key for b in updated] != [b.key for b in self._backends]
        self._backends = updated
        if changed:
            self.version += 1
        return changed
