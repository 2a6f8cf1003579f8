"""Backend selection algorithms, all weighted: smooth round robin, random, least connections,
power of two choices and consistent hashing (Ketama)."""

from __future__ import annotations

import bisect
import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from http.cookies import CookieError, SimpleCookie

from .backends import Backend

__all__ = [
    "Ketama",
    "LeastConnections",
    "PowerOfTwoChoices",
    "Random",
    "RoundRobin",
    "Selector",
    "SmoothWeights",
    "WeightedRoundRobin",
    "hash_key_value",
    "selector_by_name",
]


class Selector(ABC):
    """Chooses one of the candidates (already filtered to available backends)."""

    @abstractmethod
    def select(self, candidates: Sequence[Backend], key: bytes | None) -> Backend | None:
        """A backend, or None when there are no candidates."""


class SmoothWeights:
    """nginx's smooth weighted round robin over whatever candidates each call brings.

    Every pick adds each candidate's weight to its running score, takes the highest score (the
    first on a tie) and subtracts the candidates' total weight from it: weights 5,1,1 give
    a a b a c a a, interleaved, and equal weights plain round robin. Scores stay bounded
    whichever candidates come and go (health changes), so over N picks of one candidate set each
    gets its share within a few picks. Scores of backends long absent are forgotten.
    """

    __slots__ = ("_scores",)

    PRUNE_SLACK = 32  # absent backends whose scores are kept before a prune

    def __init__(self) -> None:
        self._scores: dict[str, int] = {}

    def pick(self, candidates: Sequence[Backend]) -> Backend | None:
        """The next candidate, or None when there are none."""
        if not candidates:
            return None
        scores = self._scores
        if len(scores) > 2 * len(candidates) + self.PRUNE_SLACK:
            wanted = {b.key for b in candidates}
            self._scores = scores = {k: v for k, v in scores.items() if k in wanted}
        total = 0
        best = candidates[0]
        best_score: int | None = None
        for backend in candidates:
            score = scores.get(backend.key, 0) + backend.weight
            scores[backend.key] = score
            total += backend.weight
            if best_score is None or score > best_score:
                best, best_score = backend, score
        scores[best.key] -= total
        return best


def _lighter(a: Backend, b: Backend) -> bool:
    """True when ``a`` has no more requests in flight per unit of weight than ``b``."""
    return a.in_flight * b.weight <= b.in_flight * a.weight


class RoundRobin(Selector):
    """Each call takes the next candidate in turn, in proportion to ``Backend.weight`` (smooth
    weighted round robin: deterministic, no bursts; equal weights take turns)."""

    def __init__(self) -> None:
        self._turns = SmoothWeights()

    def select(self, candidates: Sequence[Backend], key: bytes | None) -> Backend | None:
        return self._turns.pick(candidates)


class WeightedRoundRobin(RoundRobin):
    """The same smooth weighted round robin as :class:`RoundRobin` (the older config name)."""


class Random(Selector):
    """Uniformly random, or weighted by ``Backend.weight``."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def select(self, candidates: Sequence[Backend], key: bytes | None) -> Backend | None:
        if not candidates:
            return None
        return self._rng.choices(candidates, weights=[b.weight for b in candidates])[0]


class LeastConnections(Selector):
    """The fewest requests in flight per unit of weight; ties go smooth weighted round robin
    (so idle backends share requests by weight)."""

    def __init__(self) -> None:
        self._turns = SmoothWeights()

    def select(self, candidates: Sequence[Backend], key: bytes | None) -> Backend | None:
        if not candidates:
            return None
        low = candidates[0]
        for backend in candidates[1:]:
            if not _lighter(low, backend):
                low = backend
        tied = [b for b in candidates if b.in_flight * low.weight == low.in_flight * b.weight]
        return self._turns.pick(tied)


class PowerOfTwoChoices(Selector):
    """Two different candidates drawn by weight; the one with fewer requests in flight per unit
    of weight (the first drawn on a tie, so idle backends share requests by weight)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def select(self, candidates: Sequence[Backend], key: bytes | None) -> Backend | None:
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        a, b = self._draw_two(candidates)
        return a if _lighter(a, b) else b

    def _draw_two(self, candidates: Sequence[Backend]) -> tuple[Backend, Backend]:
        weight = candidates[0].weight
        if all(c.weight == weight for c in candidates):
            first, second = self._rng.sample(range(len(candidates)), 2)
            return candidates[first], candidates[second]
        first = self._draw(candidates, -1)
        return candidates[first], candidates[self._draw(candidates, first)]

    def _draw(self, candidates: Sequence[Backend], skip: int) -> int:
        """An index drawn in proportion to weight, never ``skip``."""
        total = sum(c.weight for i, c in enumerate(candidates) if i != skip)
        point = self._rng.randrange(total)
        for index, backend in enumerate(candidates):
            if index == skip:
                continue
            point -= backend.weight
            if point < 0:
                return index
        raise AssertionError("unreachable: point < total")


POINTS_PER_WEIGHT = 160
MAX_RING_WEIGHT = 100


class Ketama(Selector):
    """Consistent hashing: 160 points per unit of weight on a 32-bit ring (libketama's layout).

    A key maps to the first point clockwise whose backend is a candidate, so removing one of N
    backends moves only the keys it held (about 1/N). Without a key: round robin.
    """

    def __init__(self) -> None:
        self._fallback = RoundRobin()
        self._ring_for: tuple[tuple[str, int], ...] = ()
        self._points: list[int] = []
        self._owners: list[str] = []

    def _build(self, members: tuple[tuple[str, int], ...]) -> None:
        # Large weights are scaled down so a rebuild (after a membership change) stays cheap:
        # at most about MAX_RING_WEIGHT * 160 points, a few milliseconds.
        total = sum(weight for _, weight in members)
        scale = min(1.0, MAX_RING_WEIGHT / total) if total else 1.0
        ring: list[tuple[int, str]] = []
        for name, weight in members:
            for i in range(max(1, round(POINTS_PER_WEIGHT * weight * scale / 4))):
                digest = hashlib.md5(f"{name}-{i}".encode(), usedforsecurity=False).digest()
                for j in range(4):
                    point = int.from_bytes(digest[j * 4 : j * 4 + 4], "little")
                    ring.append((point, name))
        ring.sort()
        self._points = [point for point, _ in ring]
        self._owners = [name for _, name in ring]
        self._ring_for = members

    def select(self, candidates: Sequence[Backend], key: bytes | None) -> Backend | None:
        if not candidates:
            return None
        if key is None:
            return self._fallback.select(candidates, None)
        members = tuple(sorted((b.key, b.weight) for b in candidates))
        if members != self._ring_for:
            self._build(members)  # only when membership changes, never per request
        by_key = {b.key: b for b in candidates}
        digest = hashlib.md5(key, usedforsecurity=False).digest()
        point = int.from_bytes(digest[:4], "little")
        index = bisect.bisect_left(self._points, point) % len(self._points)
        return by_key[self._owners[index]]


def hash_key_value(
    spec: str, client_ip: str, headers: list[tuple[bytes, bytes]], path: str
) -> bytes | None:
    """The bytes to hash for ``spec`` (client_ip, path, header:NAME, cookie:NAME), or None."""
    source, _, name = spec.partition(":")
    if source == "client_ip":
        return client_ip.encode()
    if source == "path":
        return path.split("?", 1)[0].encode()
    wanted = name.lower().encode()
    if source == "header":
        values = [v for k, v in headers if k == wanted]
        return b", ".join(values) if values else None
    if source == "cookie":
        for field, value in headers:
            if field != b"cookie":
                continue
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            if name in jar:
                return jar[name].value.encode("latin-1")
    return None


_SELECTORS: dict[
    str,
    type[RoundRobin | WeightedRoundRobin | Random | LeastConnections | PowerOfTwoChoices | Ketama],
] = {
    "round_robin": RoundRobin,
    "weighted_round_robin": WeightedRoundRobin,
    "random": Random,
    "least_connections": LeastConnections,
    "power_of_two": PowerOfTwoChoices,
    "ketama": Ketama,
}


def selector_by_name(name: str) -> Selector:
    """A new selector for a config name."""
    try:
        return _SELECTORS[name]()
    except KeyError:
        raise ValueError(f"unknown lb {name!r}: use one of {', '.join(_SELECTORS)}") from None
