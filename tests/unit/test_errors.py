"""ProxyError kinds stay distinct and map to the statuses clients see."""

from __future__ import annotations

from quicproxy.errors import ErrorKind, ErrorSource, ProxyError


def test_every_kind_is_distinct() -> None:
    # Equal enum values would silently alias members (TLS_HANDSHAKE becoming CONNECT_REFUSED).
    assert len({kind.value for kind in ErrorKind}) == len(ErrorKind.__members__)
    assert ErrorKind.TLS_HANDSHAKE is not ErrorKind.CONNECT_REFUSED


def test_statuses_and_retry_defaults() -> None:
    refused = ProxyError.upstream(ErrorKind.CONNECT_REFUSED, "refused")
    assert (refused.status, refused.retry) == (502, True)
    timeout = ProxyError.upstream(ErrorKind.READ_TIMEOUT, "slow")
    assert (timeout.status, timeout.retry) == (504, False)
    assert ProxyError.upstream(ErrorKind.NO_UPSTREAM, "none").status == 503
    gone = ProxyError.downstream(ErrorKind.DOWNSTREAM_GONE, "bye")
    assert gone.source is ErrorSource.DOWNSTREAM and not gone.retry
    assert str(refused) == "upstream connect_refused: refused"
