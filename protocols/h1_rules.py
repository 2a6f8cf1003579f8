"""Strict HTTP/1.1 head rules (RFC 9112, RFC 9110): start lines, field lines, framing and Host.

Each check either returns what it parsed or raises :class:`H1Violation` naming the rule that was
broken and the status a server answers with (400, 414, 431, 501, 505). The byte scanner in
``h1_framing`` calls them line by line, before h11 sees any byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._message_checks import AUTHORITY

__all__ = [
    "BODY_CHUNKED",
    "BODY_UNTIL_CLOSE",
    "INTERIM",
    "H1Violation",
    "HeadFacts",
    "Violation",
    "check_chunk_line",
    "check_field_line",
    "check_field_lines",
    "check_request_line",
    "check_status_line",
    "request_body",
    "response_body",
]

BODY_CHUNKED = -1
BODY_UNTIL_CLOSE = -2
INTERIM = -3  # a 1xx response: another response follows

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)")
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT = rb"(?:;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?[ \t]*)*" % (_TOKEN, _TOKEN, _QUOTED)
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(" + _CHUNK_EXT + rb")")
_CONNECT_TARGET = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]+):[0-9]{1,5}")
_ABSOLUTE = re.compile(rb"(?i:https?)://([^/?]*)([/?].*)?")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_MAX_CHUNK_DIGITS = 16  # 64 bits


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken rule: the status a server answers with and the rule's name."""

    status: int
    rule: str


class H1Violation(Exception):
    """Raised by the checks; carries the :class:`Violation`."""

    def __init__(self, status: int, rule: str) -> None:
        super().__init__(rule)
        self.violation = Violation(status, rule)


@dataclass(slots=True)
class HeadFacts:
    """What the framing and Host rules need from a head's field lines, gathered line by line."""

    version: bytes = b"1.1"
    fields: int = 0
    lengths: list[bytes] = field(default_factory=list)
    codings: list[bytes] = field(default_factory=list)
    hosts: list[bytes] = field(default_factory=list)

    def add(self, name: bytes, value: bytes) -> None:
        """Count a field and keep the values the rules look at."""
        self.fields += 1
        if len(name) in (4, 14, 17):
            lower = name.lower()
            if lower == b"host":
                self.hosts.append(value)
            elif lower == b"content-length":
                self.lengths.append(value)
            elif lower == b"transfer-encoding":
                self.codings.append(value)


def check_request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    """``METHOD SP request-target SP HTTP/1.x``: returns method, target and version."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise H1Violation(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1" or minor not in (b"0", b"1"):
        raise H1Violation(505, "unsupported HTTP version")
    return method, target, major + b"." + minor


def check_status_line(line: bytes) -> int:
    """``HTTP/1.x SP 3DIGIT [SP reason]``: returns the status code."""
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise H1Violation(502, "malformed status line")
    return int(match.group(2))


def check_field_line(line: bytes, first: bool) -> tuple[bytes, bytes]:
    """``name ":" OWS value OWS`` with a token name and no control characters but HTAB."""
    match = _FIELD_LINE.fullmatch(line)
    if match is not None:
        return match.group(1), match.group(2).strip(b" \t")
    raise H1Violation(400, _field_line_fault(line, first))


def check_field_lines(lines: list[bytes], facts: HeadFacts) -> None:
    """:func:`check_field_line` over a head's field lines at once (the fast path)."""
    match = _FIELD_LINE.fullmatch
    add = facts.add
    for line in lines:
        found = match(line)
        if found is None:
            raise H1Violation(400, _field_line_fault(line, facts.fields == 0))
        add(found.group(1), found.group(2).strip(b" \t"))


def _field_line_fault(line: bytes, first: bool) -> str:
    """Which field rule ``line`` breaks (only called once it failed)."""
    if line[:1] in (b" ", b"\t"):
        return "whitespace before the first field name" if first else "obs-fold"
    if b"\r" in line:
        return "bare CR"
    name, colon, _ = line.partition(b":")
    if not colon:
        return "field line without a colon"
    if name[-1:] in (b" ", b"\t"):
        return "whitespace before the colon"
    if _TOKEN_RE.fullmatch(name) is None:
        return "invalid field name"
    return "control character in field value"


def _content_length(facts: HeadFacts, status: int) -> int | None:
    """The one length all Content-Length values agree on (``5, 5`` collapses), or None."""
    if not facts.lengths:
        return None
    values = {item.strip(b" \t") for value in facts.lengths for item in value.split(b",")}
    for value in values:
        if _DIGITS.fullmatch(value) is None:
            raise H1Violation(status, "malformed content-length")
    if len(values) != 1:
        raise H1Violation(status, "differing content-length values")
    return int(values.pop())


def _chunked(facts: HeadFacts, client_error: int) -> bool:
    """True when Transfer-Encoding is exactly a final ``chunked``; False when absent."""
    if not facts.codings:
        return False
    if facts.lengths:
        raise H1Violation(client_error, "content-length with transfer-encoding")
    codings = [item.strip(b" \t").lower() for value in facts.codings for item in value.split(b",")]
    if any(_TOKEN_RE.fullmatch(coding) is None for coding in codings):
        raise H1Violation(client_error, "malformed transfer-encoding")
    count = codings.count(b"chunked")
    if count > 1:
        raise H1Violation(client_error, "chunked more than once in transfer-encoding")
    if count and codings[-1] != b"chunked":
        raise H1Violation(client_error, "chunked is not the final transfer-coding")
    if len(codings) > 1 or not count:
        raise H1Violation(
            501 if client_error == 400 else client_error, "unsupported transfer-coding"
        )
    return True


def request_body(facts: HeadFacts, method: bytes, target: bytes) -> int:
    """Check a complete request head's Host, target and framing; returns the body framing (a
    length, or ``BODY_CHUNKED``)."""
    if len(facts.hosts) > 1:
        raise H1Violation(400, "more than one Host")
    host = facts.hosts[0] if facts.hosts else None
    if host is None and facts.version == b"1.1":
        raise H1Violation(400, "missing Host")
    if host is not None and AUTHORITY.fullmatch(host) is None:
        raise H1Violation(400, "invalid Host")
    _check_target(method, target, host)
    if facts.codings and facts.version == b"1.0":
        raise H1Violation(400, "transfer-encoding in HTTP/1.0")
    if _chunked(facts, 400):
        return BODY_CHUNKED
    return _content_length(facts, 400) or 0


def _check_target(method: bytes, target: bytes, host: bytes | None) -> None:
    """The four request-target forms, each only where it belongs (RFC 9112 section 3.2)."""
    if method == b"CONNECT":
        if _CONNECT_TARGET.fullmatch(target) is None:
            raise H1Violation(400, "CONNECT needs an authority-form target (host:port)")
        return
    if target[:1] == b"/":
        return
    if target == b"*":
        if method != b"OPTIONS":
            raise H1Violation(400, "asterisk-form target only with OPTIONS")
        return
    match = _ABSOLUTE.fullmatch(target)
    if match is not None:
        authority = match.group(1)
        if not authority or AUTHORITY.fullmatch(authority) is None:
            raise H1Violation(400, "malformed request-target")
        if host is not None and authority.lower() != host.lower():
            raise H1Violation(400, "absolute-form authority differs from Host")
        return
    if _CONNECT_TARGET.fullmatch(target) is not None:
        raise H1Violation(400, "authority-form target only with CONNECT")
    raise H1Violation(400, "malformed request-target")


def response_body(facts: HeadFacts, status: int, method: bytes) -> int:
    """A complete response head's framing (RFC 9112 section 6.3), after its field rules."""
    chunked = _chunked(facts, 502)
    length = _content_length(facts, 502)
    if status < 200:
        return INTERIM
    if method == b"HEAD" or status in (204, 304):
        return 0
    if chunked:
        return BODY_CHUNKED
    return BODY_UNTIL_CLOSE if length is None else length


def check_chunk_line(line: bytes) -> int:
    """``1*16HEXDIG *( ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] BWS )``: no
    whitespace between the size and the first ``;`` (h11 refuses it too)."""
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        size = re.match(rb"[0-9A-Fa-f]+", line)
        if size is None or line[size.end() : size.end() + 1] != b";":
            raise H1Violation(400, "malformed chunk size")
        raise H1Violation(400, "malformed chunk extension")
    digits = match.group(1)
    if len(digits) > _MAX_CHUNK_DIGITS:
        raise H1Violation(400, "chunk size too large")
    return int(digits, 16)
