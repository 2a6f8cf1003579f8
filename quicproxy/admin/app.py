"""What the admin listener answers: /metrics, /healthz, the status page and POST /drain."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlsplit

from .plan import AdminPlan
from .rundir import RunDirectory
from .status import MetricView, render_status

__all__ = ["ACK_TIMEOUT", "AdminApp", "Reply"]

ACK_TIMEOUT = 5.0  # seconds POST /drain waits for every live worker to apply the change
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reply:
    """One admin response."""

    status: int
    body: bytes
    content_type: str = _TEXT
    allow: str | None = None  # for 405


def _text(status: int, text: str) -> Reply:
    return Reply(status, text.encode())


class AdminApp:
    """Routes admin requests; ``draining`` turns true when the server begins to stop."""

    def __init__(self, plan: AdminPlan, run: RunDirectory) -> None:
        self.plan = plan
        self.run = run
        self.draining = False
        self._lock = asyncio.Lock()  # one drain change at a time

    async def handle(self, method: str, target: str) -> Reply:
        """The reply to ``method target``."""
        parts = urlsplit(target)
        path = parts.path
        if path == "/drain":
            if method != "POST":
                return Reply(405, b"405 use POST\n", allow="POST")
            return await self.drain(parse_qs(parts.query))
        if path not in ("/", "/metrics", "/healthz"):
            return _text(404, f"404 no admin page {path!r} (try /, /metrics, /healthz)\n")
        if method not in ("GET", "HEAD"):
            return Reply(405, b"405 use GET\n", allow="GET, HEAD")
        if path == "/metrics":
            body, content_type = self.run.exposition()
            return Reply(200, body, content_type)
        if path == "/healthz":
            return self.health()
        view = MetricView(self.run.samples())
        page = render_status(self.plan, view, self.draining)
        return Reply(200, page.encode(), "text/html; charset=utf-8")

    def health(self) -> Reply:
        """200 while serving, 503 while draining (or before any worker serves)."""
        if self.draining:
            return _text(503, "draining\n")
        if not MetricView(self.run.samples()).total("quicproxy_workers"):
            return _text(503, "starting\n")
        return _text(200, "ok\n")

    async def drain(self, query: dict[str, list[str]]) -> Reply:
        """Drain (or with ``undrain=1`` undrain) one backend of one upstream on every worker."""
        upstream = query.get("upstream", [""])[0]
        backend = query.get("backend", [""])[0]
        undrain = query.get("undrain", ["0"])[0] not in ("", "0", "false")
        if not upstream or not backend:
            return _text(400, "400 POST /drain?upstream=NAME&backend=HOST:PORT[&undrain=1]\n")
        groups = MetricView(self.run.samples()).backends(self.plan)
        if upstream not in groups:
            known = ", ".join(sorted(groups)) or "none"
            return _text(404, f"404 no upstream named {upstream!r} (known: {known})\n")
        if backend not in groups[upstream]:
            known = ", ".join(groups[upstream]) or "none"
            return _text(
                404, f"404 no backend {backend!r} in upstream {upstream!r} (known: {known})\n"
            )
        async with self._lock:
            state = self.run.read_drains()
            pair = (upstream, backend)
            drained = state.drained - {pair} if undrain else state.drained | {pair}
            if drained != state.drained:
                state = replace(state, version=state.version + 1, drained=drained)
                self.run.write_drains(state)
            workers = await self._acknowledged(state.version)
        verb = "undrained" if undrain else "drained"
        if workers is None:
            return _text(
                202, f"{verb} {backend} in {upstream!r}: not yet applied by every worker\n"
            )
        return _text(200, f"{verb} {backend} in {upstream!r} on {workers} workers\n")

    async def _acknowledged(self, version: int) -> int | None:
        """The live worker count once all report ``version`` applied; None on timeout."""
        deadline = time.monotonic() + ACK_TIMEOUT
        while True:
            view = MetricView(self.run.samples())
            workers = int(view.total("quicproxy_workers"))
            applied = view.values("quicproxy_admin_drain_version")
            if workers and applied and min(s.value for s in applied) >= version:
                return workers
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.1)
