"""StaticFiles: a ProxyHttp that serves a directory itself (GET/HEAD), with backpressure.

Besides the file: ``Last-Modified`` and a weak ``ETag`` (size and mtime), ``304 Not Modified``
for ``If-None-Match`` / ``If-Modified-Since``, and one byte range (``Range: bytes=A-B``, ``A-``
or ``-N``: ``206``, or ``416`` when it lies beyond the file; several ranges get the whole
file, as RFC 9110 allows). Config routes with ``static = DIR`` use :meth:`StaticFiles.serve`.
"""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import os
from pathlib import Path
from urllib.parse import unquote

from protocols.messages import ResponseHead

from .errors import ErrorKind, ProxyError
from .hooks import ProxyHttp
from .session import Session
from .upstream.peer import HttpPeer

__all__ = ["StaticFiles", "byte_range"]

CHUNK = 64 * 1024


def byte_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """The (first, last) byte of a single ``bytes=`` range within ``size``; None to send the
    whole file (no range, several, or a form we do not take); False when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not (first_text.isdigit() or last_text.isdigit()):
        return None
    if not first_text:  # the last N bytes
        count = int(last_text)
        return (max(0, size - count), size - 1) if count and size else False
    first = int(first_text)
    if last_text and not last_text.isdigit():
        return None
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or last < first:
        return False
    return first, last


class StaticFiles(ProxyHttp[None]):
    """Answers from files under ``root``; never reaches an upstream. Paths are confined to the
    root (``..`` and symlinks out of it are refused), directories serve ``index.html``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def resolve(self, path: str) -> Path | None:
        """The file for a request path, or None."""
        relative = unquote(path.split("?", 1)[0]).lstrip("/")
        candidate = (self.root / relative).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        if candidate.is_dir():
            candidate = candidate / "index.html"
        return candidate if candidate.is_file() else None

    async def request_filter(self, session: Session, ctx: None) -> bool:
        await self.serve(session, session.request.path)
        return True

    async def serve(self, session: Session, path: str) -> None:
        """Answer ``session`` with the file at ``path`` (relative to the root), or 404/405."""
        method = session.request.method
        if method not in ("GET", "HEAD"):
            await session.respond(
                405, "405 Method Not Allowed\n", headers=[(b"allow", b"GET, HEAD")]
            )
            return
        found = self.resolve(path)
        if found is None:
            await session.respond(404, "404 Not Found\n")
            return
        # Local files: reads of 64 KiB from the page cache, done inline (no thread hop).
        fd = os.open(found, os.O_RDONLY)
        try:
            await self._send_fd(session, fd, found.name, head_only=method == "HEAD")
        finally:
            os.close(fd)

    async def _send_fd(self, session: Session, fd: int, name: str, head_only: bool) -> None:
        stat = os.fstat(fd)
        size = stat.st_size
        etag = f'W/"{size:x}-{stat.st_mtime_ns:x}"'
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        validators = [(b"etag", etag.encode()), (b"last-modified", modified.encode())]
        if _not_modified(session, etag, int(stat.st_mtime)):
            await session.write_response_head(ResponseHead(304, validators), end_stream=True)
            return
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        fields = [(b"content-type", content_type.encode()), (b"accept-ranges", b"bytes")]
        status, first, last = 200, 0, size - 1
        wanted = session.request.get("range")
        chosen = byte_range(wanted, size) if wanted and _range_applies(session, etag) else None
        if chosen is False:
            fields = [(b"content-range", f"bytes */{size}".encode())]
            await session.respond(416, "416 Range Not Satisfiable\n", headers=fields)
            return
        if isinstance(chosen, tuple):
            status, (first, last) = 206, chosen
            fields.append((b"content-range", f"bytes {first}-{last}/{size}".encode()))
        length = last - first + 1
        fields += [*validators, (b"content-length", str(length).encode())]
        head = ResponseHead(status, fields)
        if head_only or length == 0:
            await session.write_response_head(head, end_stream=True)
            return
        await session.write_response_head(head)
        offset, end = first, last + 1
        while offset < end:
            chunk = os.pread(fd, min(CHUNK, end - offset), offset)
            if not chunk:
                break
            await session.write_body(chunk)
            offset += len(chunk)
            await asyncio.sleep(0)  # let the connection's other streams take turns
        session.finish_response()

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        raise ProxyError.upstream(ErrorKind.NO_UPSTREAM, "static files have no upstream")


def _not_modified(session: Session, etag: str, mtime: int) -> bool:
    """RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it."""
    headers = session.request
    none_match = headers.get("if-none-match")
    if none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in none_match.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    since = headers.get("if-modified-since")
    if since is None:
        return False
    try:
        parsed = email.utils.parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    return mtime <= int(parsed.timestamp())


def _range_applies(session: Session, etag: str) -> bool:
    """If-Range: the range only while the file is the one the client names (weak tags never
    match, RFC 9110 13.1.5, so a client holding our weak tag gets the whole file)."""
    condition = session.request.get("if-range")
    return condition is None or (not condition.startswith("W/") and condition == etag)
