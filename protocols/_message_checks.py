"""Request checks HTTP/2 and HTTP/3 share against downgrade smuggling: content-length, ``:path``.

A request that reaches the origin over HTTP/1.1 is framed by its Content-Length, so an h2 or h3
request whose DATA disagrees with its content-length must never reach the origin complete.
``BodyMeter`` counts a stream's body against the declared length: bytes beyond it are refused
before any of them is handed on, and the byte that completes the declared length is held back
until the end of the stream confirms it (unless the end comes with it), so the owner cannot end
the upstream request, or the origin see a complete body, before the length is known to agree.
The HTTP/2 client role meters response bodies the same way, so that a bad upstream response is
never passed on as complete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AUTHORITY", "BodyMeter", "authority_problem", "declared_length", "path_problem"]

_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[-A-Za-z0-9._~!$&'()*+,;=%]*)"
AUTHORITY = re.compile(_HOST + rb"(?::[0-9]*)?")
"""host[:port] as RFC 3986 allows it (reg-name, IPv4, [IPv6]): no space, ``@`` or ``/``."""

_PATH_FORBIDDEN = frozenset(range(0x21)) | {0x7F}  # CTLs, SP and DEL (RFC 3986 has none)


def declared_length(fields: Iterable[tuple[bytes, bytes]]) -> int | str | None:
    """The request's content-length (None: absent), or why it is malformed.

    Every value must be ASCII digits only (RFC 9110 section 8.6: no sign, no list, no
    whitespace); repeated fields must all carry the same value (``5`` and ``5`` collapse)."""
    length: int | None = None
    for name, value in fields:
        if name != b"content-length":
            continue
        if not value.isdigit():  # bytes.isdigit is ASCII-only
            return f"malformed content-length {value[:32]!r}"
        parsed = int(value)
        if length is not None and parsed != length:
            return "differing content-length values"
        length = parsed
    return length


def authority_problem(authority: bytes) -> str | None:
    """Why ``:authority`` (or Host) cannot go upstream, where it becomes an HTTP/1.1 Host."""
    if AUTHORITY.fullmatch(authority) is None:
        return "invalid :authority"
    return None


def path_problem(method: bytes, path: bytes) -> str | None:
    """Why ``:path`` is unusable for a non-CONNECT request, or None.

    It must be non-empty, start with ``/`` (or be ``*`` for OPTIONS) and hold no space,
    control character or DEL: each would split or bend a downgraded HTTP/1.1 request line."""
    if not path:
        return "empty :path"
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        return "invalid :path"
    if any(c in _PATH_FORBIDDEN for c in path):
        return "invalid character in :path"
    return None


@dataclass(slots=True)
class BodyMeter:
    """One received body counted against its declared content-length.

    ``take`` returns the bytes to hand on now (None: the body is longer than declared);
    ``finish`` is called when the stream ends and returns the bytes held back (None: the body
    is shorter than declared). Without a declared length everything passes at once.
    ``no_content``: a response without a body whatever its content-length says (a meter with
    ``expected`` 0 that reports the DATA as such).
    """

    expected: int | None
    received: int = 0
    held: bytes = b""
    no_content: bool = False  # a response that has no body at all (HEAD, 204, 304): expected 0

    def take(self, chunk: bytes) -> bytes | None:
        """Count ``chunk``; what the owner may have now, or None when it exceeds the length."""
        if self.expected is None or not chunk:
            return chunk
        self.received += len(chunk)
        if self.received > self.expected:
            return None
        if self.received == self.expected:  # the last declared byte waits for the end
            self.held = chunk[-1:]
            return chunk[:-1]
        return chunk

    def finish(self) -> bytes | None:
        """The stream ended: the held-back bytes, or None when the body came up short."""
        if self.expected is not None and self.received != self.expected:
            return None
        held, self.held = self.held, b""
        return held

    def problem(self) -> str:
        """What went wrong, for the ProtocolError and the 400 text."""
        if self.no_content:
            return "DATA on a response that has no content"
        if self.expected is not None and self.received > self.expected:
            return f"body longer than its content-length {self.expected}"
        return f"body of {self.received} bytes shorter than its content-length {self.expected}"
