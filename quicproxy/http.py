"""Hook-facing request and response headers: mutable, str at the edge, bytes underneath."""

from __future__ import annotations

from protocols.messages import Headers, RequestHead, ResponseHead

__all__ = ["HeaderMap", "RequestHeader", "ResponseHeader"]


def _b(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


class HeaderMap:
    """An ordered multi-map of header fields with case-insensitive names."""

    def __init__(self, headers: Headers) -> None:
        self.headers: Headers = list(headers)

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        key = _b(name.lower())
        for field, value in self.headers:
            if field == key:
                return value.decode("latin-1")
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order."""
        key = _b(name.lower())
        return [value.decode("latin-1") for field, value in self.headers if field == key]

    def append(self, name: str, value: str | bytes) -> None:
        """Add a field, keeping existing ones with the same name."""
        self.headers.append((_b(name.lower()), _b(value)))

    def set(self, name: str, value: str | bytes) -> None:
        """Replace every field named ``name`` by one with ``value``."""
        self.remove(name)
        self.append(name, value)

    def remove(self, name: str) -> None:
        """Drop every field named ``name``."""
        key = _b(name.lower())
        self.headers = [(field, value) for field, value in self.headers if field != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


class RequestHeader(HeaderMap):
    """The request as hooks see and change it."""

    def __init__(
        self, method: str, scheme: str, authority: str, path: str, headers: Headers
    ) -> None:
        super().__init__(headers)
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path

    @classmethod
    def from_head(cls, head: RequestHead) -> RequestHeader:
        """Copy a protocol-level head."""
        return cls(
            head.method.decode("latin-1"),
            head.scheme.decode("latin-1"),
            head.authority.decode("latin-1"),
            head.path.decode("latin-1"),
            head.headers,
        )

    def to_head(self, http_version: bytes = b"1.1") -> RequestHead:
        """Back to a protocol-level head."""
        return RequestHead(
            method=_b(self.method),
            scheme=_b(self.scheme),
            authority=_b(self.authority),
            path=_b(self.path),
            headers=list(self.headers),
            http_version=http_version,
        )

    @property
    def host(self) -> str:
        """The authority without its port."""
        authority = self.authority
        if authority.startswith("["):
            return authority[1 : authority.find("]")] if "]" in authority else authority
        return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority

    @property
    def path_only(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]

    @property
    def query(self) -> str:
        """The query string without ``?``, or an empty string."""
        return self.path.partition("?")[2]


class ResponseHeader(HeaderMap):
    """The response as hooks see and change it."""

    def __init__(self, status: int, headers: Headers, reason: str = "") -> None:
        super().__init__(headers)
        self.status = status
        self.reason = reason

    @classmethod
    def from_head(cls, head: ResponseHead) -> ResponseHeader:
        """Copy a protocol-level head."""
        return cls(head.status, head.headers, head.reason.decode("latin-1"))

    def to_head(self) -> ResponseHead:
        """Back to a protocol-level head."""
        return ResponseHead(self.status, list(self.headers), _b(self.reason))
