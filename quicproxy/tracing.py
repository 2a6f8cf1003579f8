"""W3C Trace Context: a request's ``traceparent``, kept when valid, else a new one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .http import RequestHeader

__all__ = [
    "TraceParent",
    "ensure_traceparent",
    "new_traceparent",
    "parse_traceparent",
    "trace_id_of",
]

# version "-" trace-id "-" parent-id "-" flags, lowercase hex (W3C Trace Context, section 3.2)
_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A parsed ``traceparent`` value."""

    version: str
    trace_id: str
    parent_id: str
    flags: str

    @property
    def value(self) -> str:
        """The header value (version 00 layout)."""
        return f"{self.version}-{self.trace_id}-{self.parent_id}-{self.flags}"


def parse_traceparent(value: str) -> TraceParent | None:
    """The trace context in ``value``, or None when it is not a valid ``traceparent``.

    Version 00 is exactly four fields; a later version may carry more after a ``-`` (the
    specification's forward compatibility); version ``ff``, all-zero ids and uppercase hex are
    invalid.
    """
    match = _FIELDS.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    rest = value[match.end() :]
    if rest and (version == "00" or not rest.startswith("-")):
        return None
    return TraceParent(version, trace_id, parent_id, flags)


def new_traceparent() -> TraceParent:
    """A new trace: version 00, a random 16-byte trace id and 8-byte parent id, sampled."""
    trace_id, parent_id = _ZERO_TRACE, _ZERO_PARENT
    while trace_id == _ZERO_TRACE:
        trace_id = os.urandom(16).hex()
    while parent_id == _ZERO_PARENT:
        parent_id = os.urandom(8).hex()
    return TraceParent("00", trace_id, parent_id, "01")


def ensure_traceparent(request: RequestHeader) -> str:
    """Give ``request`` a valid ``traceparent`` and return its trace id.

    One valid field is left unchanged (propagated as the client sent it). A missing, invalid or
    repeated one is replaced by a new trace, and ``tracestate`` goes with it: it belongs to the
    trace the client's header failed to name (section 3.3.1.1).
    """
    values = request.get_all("traceparent")
    parsed = parse_traceparent(values[0]) if len(values) == 1 else None
    if parsed is not None:
        return parsed.trace_id
    fresh = new_traceparent()
    request.set("traceparent", fresh.value)
    request.remove("tracestate")
    return fresh.trace_id


def trace_id_of(request: RequestHeader) -> str | None:
    """The trace id of ``request``'s ``traceparent``, if it has one valid field."""
    values = request.get_all("traceparent")
    parsed = parse_traceparent(values[0]) if len(values) == 1 else None
    return None if parsed is None else parsed.trace_id
