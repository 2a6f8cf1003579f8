"""Backend selection algorithms."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = ["RoundRobin"]

T = TypeVar("T")


class RoundRobin(Generic[T]):
    """Each call returns the next backend in turn."""

    def __init__(self, backends: Sequence[T]) -> None:
        if not backends:
            raise ValueError("round robin needs at least one backend")
        self.backends = tuple(backends)
        self._counter = itertools.count()

    def select(self) -> T:
        """The next backend."""
        return self.backends[next(self._counter) % len(self.backends)]
