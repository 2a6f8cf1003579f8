"""Request rules every protocol shares: path normalization, CONNECT, the declared body size.

The path a request is routed by is the path that goes upstream: both are the normalized one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Refusal", "check_request", "remove_dot_segments"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is answered by the proxy itself: a status and a short reason."""

    status: int
    reason: str


def _segment_is(segment: str, dots: str) -> bool:
    """True when ``segment`` is ``dots`` once ``%2e`` escapes are decoded (``%2e%2E`` is ``..``)."""
    return segment.replace("%2e", ".").replace("%2E", ".") == dots


def remove_dot_segments(path: str) -> str | None:
    """``path`` (no query) without ``.`` and ``..`` segments (RFC 3986 section 5.2.4), or None
    when a ``..`` would climb above the root. Percent-encoded dots count as dots, as they do for
    the file systems and frameworks behind the origin."""
    segments = path.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments[1:], start=1):
        last = index == len(segments) - 1
        if _segment_is(segment, "."):
            if last:
                out.append("")
        elif _segment_is(segment, ".."):
            if not out:
                return None
            out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _has_dot_segment(path: str) -> bool:
    if "/." not in path and "/%2" not in path:  # the common case, without splitting
        return False
    return any(_segment_is(s, ".") or _segment_is(s, "..") for s in path.split("/"))


def normalize_target(target: str) -> str | None:
    """The request target with its path normalized (the query is kept as it came), or None when
    the path climbs above the root. Targets that are not origin-form pass unchanged."""
    if not target.startswith("/"):
        return target
    path, mark, query = target.partition("?")
    if not _has_dot_segment(path):
        return target
    normalized = remove_dot_segments(path)
    return None if normalized is None else normalized + mark + query


def check_request(
    method: str, target: str, content_length: str | None, *, normalize: bool, max_body: int
) -> tuple[str, Refusal | None]:
    """The target to use and, when the proxy must answer itself, why.

    CONNECT is refused (the proxy does not tunnel); a path climbing above the root is 400; a
    declared body over ``max_body`` bytes (0: no limit) is 413 before anything goes upstream.
    """
    if method == "CONNECT":
        return target, Refusal(501, "CONNECT is not supported: this proxy does not tunnel")
    if normalize:
        normalized = normalize_target(target)
        if normalized is None:
            return target, Refusal(400, "the path climbs above the root")
        target = normalized
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if max_body and declared > max_body:
        return target, Refusal(413, f"the request body is over {max_body} bytes")
    return target, None
