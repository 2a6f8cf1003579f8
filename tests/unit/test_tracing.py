"""W3C traceparent: which values are valid, what a new one looks like, when the proxy keeps one."""

from __future__ import annotations

import re

import pytest

from quicproxy.http import RequestHeader
from quicproxy.tracing import ensure_traceparent, new_traceparent, parse_traceparent, trace_id_of

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"
NEW = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


def request(*fields: tuple[str, str]) -> RequestHeader:
    return RequestHeader(
        "GET", "https", "example.com", "/", [(k.encode(), v.encode()) for k, v in fields]
    )


def test_a_valid_value_parses() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert (parsed.version, parsed.trace_id, parsed.parent_id, parsed.flags) == (
        "00",
        TRACE,
        PARENT,
        "01",
    )
    assert parsed.value == VALID


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID.upper(),  # hex is lowercase
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01",  # version 255 is invalid
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{PARENT}-01",  # short trace id
        f"00-{TRACE}-{PARENT}-1",  # short flags
        f"01-{TRACE}-{PARENT}-01x",  # a later version continues only after a dash
        f" {VALID}",
    ],
)
def test_invalid_values_are_refused(value: str) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_may_carry_more_fields() -> None:
    parsed = parse_traceparent(f"cc-{TRACE}-{PARENT}-01-what-the-future-holds")
    assert parsed is not None and parsed.trace_id == TRACE


def test_new_traceparents_are_valid_random_and_sampled() -> None:
    values = {new_traceparent().value for _ in range(50)}
    assert len(values) == 50
    for value in values:
        assert NEW.fullmatch(value) and parse_traceparent(value) is not None


def test_a_valid_traceparent_and_its_tracestate_are_kept_unchanged() -> None:
    req = request(("traceparent", VALID), ("tracestate", "vendor=abc"))
    assert ensure_traceparent(req) == TRACE
    assert req.get_all("traceparent") == [VALID]
    assert req.get_all("tracestate") == ["vendor=abc"]
    assert trace_id_of(req) == TRACE


def test_a_missing_traceparent_is_generated() -> None:
    req = request(("accept", "*/*"))
    trace_id = ensure_traceparent(req)
    (value,) = req.get_all("traceparent")
    assert NEW.fullmatch(value) and value.split("-")[1] == trace_id
    assert ensure_traceparent(req) == trace_id  # a second call (a retry) keeps it
    assert req.get_all("accept") == ["*/*"]


@pytest.mark.parametrize(
    "fields",
    [
        [("traceparent", VALID.upper())],
        [("traceparent", VALID), ("traceparent", VALID)],  # repeated: ambiguous
    ],
    ids=["invalid", "repeated"],
)
def test_an_invalid_or_repeated_traceparent_starts_a_new_trace(
    fields: list[tuple[str, str]],
) -> None:
    req = request(*fields, ("tracestate", "vendor=abc"))
    trace_id = ensure_traceparent(req)
    (value,) = req.get_all("traceparent")
    assert NEW.fullmatch(value) and trace_id != TRACE and trace_id_of(req) == trace_id
    assert req.get_all("tracestate") == []  # it belonged to the trace that was not understood


def test_trace_id_of_a_request_without_one_is_none() -> None:
    assert trace_id_of(request()) is None
    assert trace_id_of(request(("traceparent", "nope"))) is None
