"""Decide what the demo origin answers for each request path.

Every handler streams: bodies are hashed and counted as they arrive, large responses are written in
64 KiB chunks, so memory stays constant whatever the size.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from quicproxy.demo.origin import Exchange

__all__ = ["PATTERN", "ROUTES", "Route", "dispatch", "expected_bytes"]

PATTERN: Final = bytes(range(256)) * 256  # 64 KiB; /bytes/N repeats it and cuts it to N
MAX_BYTES: Final = 10 * 1024**3
MAX_DELAY: Final = 60.0
TEXT: Final = "text/plain; charset=utf-8"
JSON: Final = "application/json"
ANY: Final = frozenset[str]()
READ: Final = frozenset({"GET", "HEAD"})

_DIGITS = re.compile(r"[0-9]{1,12}")


def expected_bytes(n: int) -> bytes:
    """What `/bytes/N` sends (for tests that compare; builds the whole thing, so keep N small)."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


Handler = Callable[["Exchange", str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    """A path (or a path prefix ending in "/") and the handler that answers it."""

    path: str
    methods: frozenset[str]
    handler: Handler
    reads_body: bool
    summary: str
    subpaths: bool = False  # also answer below the path ("/echo/anything")

    def matches(self, path: str) -> bool:
        if self.path.endswith("/") and self.path != "/":
            return path.startswith(self.path)
        return path == self.path or (self.subpaths and path.startswith(self.path + "/"))

    def label(self) -> str:
        methods = "|".join(sorted(self.methods)) or "ANY"
        suffix = "N" if self.path.endswith("/") and self.path != "/" else ""
        return f"{methods} {self.path}{suffix}{'[/...]' if self.subpaths else ''}"


async def dispatch(ex: Exchange) -> None:
    """Answer one request: find its route, drain an unwanted body, run the handler."""
    parts = urlsplit(ex.target)
    path, query = parts.path or "/", parts.query
    route = next((r for r in ROUTES if r.matches(path)), None)
    if route is None or (route.methods and ex.method not in route.methods):
        await ex.discard_body()
        if route is None:
            await ex.respond(404, f"404 not found: {path}\n".encode())
        else:
            allow = ", ".join(sorted(route.methods))
            await ex.respond(405, b"405 method not allowed\n", headers=[("allow", allow)])
        return
    if not route.reads_body:
        await ex.discard_body()
    await route.handler(ex, path, query)


def _headers_dict(ex: Exchange) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in ex.headers:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2).encode() + b"\n"


def _client_protocol(ex: Exchange) -> str:
    """The protocol the client used to reach the proxy, from the proxy's `via` header."""
    via = _headers_dict(ex).get("via", "")
    first_hop = via.split(",")[0].split()
    if not first_hop:
        return f"HTTP/{ex.http_version} (direct, no proxy in between)"
    name, _, version = first_hop[0].rpartition("/")
    return f"{name.upper() or 'HTTP'}/{version}"


async def _index(ex: Exchange, path: str, query: str) -> None:
    headers = _headers_dict(ex)
    esc = html.escape
    rows = "\n".join(
        f"<li><code>{esc(r.label())}</code> &mdash; {esc(r.summary)}</li>" for r in ROUTES
    )
    page = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>quicproxy demo</title></head>
<body>
<h1>quicproxy demo</h1>
<p>You reached the proxy over <strong id="protocol">{esc(_client_protocol(ex))}</strong>.</p>
<ul>
<li>x-forwarded-proto: <code>{esc(headers.get("x-forwarded-proto", "(none)"))}</code></li>
<li>via: <code>{esc(headers.get("via", "(none)"))}</code></li>
<li>origin saw: <code>HTTP/{esc(ex.http_version)}</code></li>
</ul>
<h2>Routes</h2>
<ul>
{rows}
</ul>
</body>
</html>
"""
    await ex.respond(200, page.encode(), "text/html; charset=utf-8")


async def _echo(ex: Exchange, path: str, query: str) -> None:
    while await ex.receive() is not None:
        pass
    summary = {
        "method": ex.method,
        "path": path,
        "query": query,
        "headers": _headers_dict(ex),
        "body_size": ex.body_size,
        "body_sha256": ex.body_sha256,
    }
    await ex.respond(200, _json(summary), JSON)


async def _upload(ex: Exchange, path: str, query: str) -> None:
    while await ex.receive() is not None:
        pass
    await ex.respond(200, _json({"received": ex.body_size, "sha256": ex.body_sha256}), JSON)


async def _bytes(ex: Exchange, path: str, query: str) -> None:
    arg = path.removeprefix("/bytes/")
    if not _DIGITS.fullmatch(arg) or int(arg) > MAX_BYTES:
        await ex.respond(400, f"byte count must be an integer 0..{MAX_BYTES}\n".encode())
        return
    size = int(arg)
    chunked = parse_qs(query).get("chunked", ["0"])[-1].lower() in ("1", "true", "yes")
    head = [("content-type", "application/octet-stream")]
    if not chunked:
        head.append(("content-length", str(size)))
    await ex.start(200, head, chunked=chunked)
    remaining = size
    while remaining > 0 and ex.method != "HEAD":
        chunk = PATTERN if remaining >= len(PATTERN) else PATTERN[:remaining]
        await ex.write(chunk)
        remaining -= len(chunk)
    await ex.end()


async def _status(ex: Exchange, path: str, query: str) -> None:
    arg = path.removeprefix("/status/")
    if not _DIGITS.fullmatch(arg) or not 200 <= int(arg) <= 599:
        await ex.respond(400, b"status must be an integer 200..599\n")
        return
    status = int(arg)
    await ex.respond(status, f"status {status}\n".encode())


async def _delay(ex: Exchange, path: str, query: str) -> None:
    try:
        seconds = float(path.removeprefix("/delay/"))
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= MAX_DELAY:  # also rejects nan
        await ex.respond(400, f"delay must be a number of seconds 0..{MAX_DELAY:g}\n".encode())
        return
    await asyncio.sleep(seconds)
    await ex.respond(200, b"ok\n")


async def _headers(ex: Exchange, path: str, query: str) -> None:
    await ex.respond(200, _json(_headers_dict(ex)), JSON)


async def _trailers(ex: Exchange, path: str, query: str) -> None:
    body = b"hello\n"
    await ex.start(200, [("content-type", TEXT), ("trailer", "x-checksum")], chunked=True)
    await ex.write(body)
    await ex.end(trailers=[("x-checksum", "abc")])


async def _alt_svc(ex: Exchange, path: str, query: str) -> None:
    await ex.respond(200, b"this response carries an alt-svc header\n", headers=[_ALT_SVC])


_ALT_SVC: Final = ("alt-svc", 'h3=":9999"; ma=60')


async def _too_early(ex: Exchange, path: str, query: str) -> None:
    if _headers_dict(ex).get("early-data") == "1":
        await ex.respond(425, b"425 Too Early: this origin refuses 0-RTT requests\n")
        return
    await ex.respond(200, _json(_headers_dict(ex)), JSON)


ROUTES: Final[tuple[Route, ...]] = (
    Route("/", READ, _index, False, "this page"),
    Route("/echo", ANY, _echo, True, "JSON of the request: method, path, headers, body hash", True),
    Route("/bytes/", READ, _bytes, False, "N deterministic bytes (?chunked=1 for chunked)"),
    Route("/upload", frozenset({"POST", "PUT"}), _upload, True, "JSON: bytes received, sha256"),
    Route("/status/", ANY, _status, False, "answer with status N"),
    Route("/delay/", ANY, _delay, False, "wait N seconds (up to 60), then 200"),
    Route("/headers", READ, _headers, False, "JSON of the request headers"),
    Route("/trailers", READ, _trailers, False, "chunked body with an x-checksum trailer"),
    Route("/too-early", READ, _too_early, False, "425 when early-data: 1 is set, else headers"),
    Route("/alt-svc", READ, _alt_svc, False, 'sends alt-svc: h3=":9999" (proxies strip it)'),
)
