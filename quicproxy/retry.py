"""RetryPolicy: how many times, for how long and how far apart a failed request is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import ErrorSource, ProxyError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries after upstream failures that are marked retryable.

    ``max_retries`` tries after the first; all tries together stop after ``try_duration``
    seconds; before retry N the pipeline sleeps a random time in [0, min(cap, base * 2**N))
    ("full jitter"), so a burst of failures does not hit the next backend in lockstep.
    """

    max_retries: int = 2
    try_duration: float = 10.0
    backoff_base: float = 0.025
    backoff_cap: float = 0.25

    def should_retry(self, error: ProxyError, attempt: int, elapsed: float) -> bool:
        """True when ``error`` after ``attempt`` retries may be tried again."""
        return (
            error.source is ErrorSource.UPSTREAM
            and error.retry
            and attempt < self.max_retries
            and elapsed < self.try_duration
        )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)
