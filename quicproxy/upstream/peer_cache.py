"""PeerCache: the latest value per upstream peer key (a session ticket, a token), bounded."""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

from .peer import PeerKey

__all__ = ["PeerCache"]

T = TypeVar("T")


class PeerCache(Generic[T]):
    """The latest value per upstream (a session ticket, an address-validation token), holding
    at most ``limit`` peers: storing one more forgets the least recently stored."""

    def __init__(self, limit: int = 1024) -> None:
        self._values: collections.OrderedDict[PeerKey, T] = collections.OrderedDict()
        self.limit = limit

    def get(self, key: PeerKey) -> T | None:
        return self._values.get(key)

    def store(self, key: PeerKey, value: T) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.limit:
            self._values.popitem(last=False)

    def __len__(self) -> int:
        return len(self._values)
