"""RetryPolicy: which failures are retried, how often, how long and how far apart."""

from __future__ import annotations

import random

from quicproxy.errors import ErrorKind, ProxyError
from quicproxy.retry import RetryPolicy


def test_retryable_upstream_errors_within_budget() -> None:
    policy = RetryPolicy(max_retries=2, try_duration=5.0)
    refused = ProxyError.upstream(ErrorKind.CONNECT_REFUSED, "x")
    assert policy.should_retry(refused, attempt=0, elapsed=0.0)
    assert policy.should_retry(refused, attempt=1, elapsed=4.9)
    assert not policy.should_retry(refused, attempt=2, elapsed=0.0)  # out of retries
    assert not policy.should_retry(refused, attempt=0, elapsed=5.0)  # out of time


def test_non_retryable_and_downstream_errors_are_not_retried() -> None:
    policy = RetryPolicy()
    assert not policy.should_retry(ProxyError.upstream(ErrorKind.READ_TIMEOUT, "x"), 0, 0.0)
    gone = ProxyError.downstream(ErrorKind.DOWNSTREAM_GONE, "x")
    assert not policy.should_retry(gone, 0, 0.0)


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)
    rng = random.Random(7)
    first = [policy.backoff(1, rng) for _ in range(500)]
    fourth = [policy.backoff(4, rng) for _ in range(500)]
    tenth = [policy.backoff(10, rng) for _ in range(500)]
    assert all(0 <= d <= 0.01 for d in first)
    assert all(0 <= d <= 0.05 for d in fourth + tenth)
    assert max(fourth) > 0.04  # 0.08 capped at 0.05: the range is used
    assert len(set(first)) > 400  # jitter, not a constant
