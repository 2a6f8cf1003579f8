"""StaticFiles: a ProxyHttp that serves a directory itself (GET/HEAD), with backpressure."""

from __future__ import annotations

import asyncio
import mimetypes
import os
from pathlib import Path
from urllib.parse import unquote

from protocols.messages import ResponseHead

from .errors import ErrorKind, ProxyError
from .hooks import ProxyHttp
from .session import Session
from .upstream.peer import HttpPeer

__all__ = ["StaticFiles"]

CHUNK = 64 * 1024


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
        method = session.request.method
        if method not in ("GET", "HEAD"):
            await session.respond(
                405, "405 Method Not Allowed\n", headers=[(b"allow", b"GET, HEAD")]
            )
            return True
        path = self.resolve(session.request.path)
        if path is None:
            await session.respond(404, "404 Not Found\n")
            return True
        await self._send_file(session, path, head_only=method == "HEAD")
        return True

    async def _send_file(self, session: Session, path: Path, head_only: bool) -> None:
        # Local files: reads of 64 KiB from the page cache, done inline (no thread hop).
        fd = os.open(path, os.O_RDONLY)
        try:
            await self._send_fd(session, fd, path.name, head_only)
        finally:
            os.close(fd)

    async def _send_fd(self, session: Session, fd: int, name: str, head_only: bool) -> None:
        size = os.fstat(fd).st_size
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        head = ResponseHead(
            200,
            [
                (b"content-type", content_type.encode()),
                (b"content-length", str(size).encode()),
            ],
        )
        if head_only or size == 0:
            await session.write_response_head(head, end_stream=True)
            return
        await session.write_response_head(head)
        offset = 0
        while offset < size:
            chunk = os.pread(fd, min(CHUNK, size - offset), offset)
            if not chunk:
                break
            await session.write_body(chunk)
            offset += len(chunk)
            await asyncio.sleep(0)  # let the connection's other streams take turns
        session.finish_response()

    async def upstream_peer(self, session: Session, ctx: None) -> HttpPeer:
        raise ProxyError.upstream(ErrorKind.NO_UPSTREAM, "static files have no upstream")
