"""An HTTP/3 load client on aioquic: C connections x M concurrent streams, bounded in requests and
time, recording each request's latency. h2load has no HTTP/3 in Debian's build, hence this.

    python -m bench.h3load --port 8443 --path /small -c 10 -m 10 --duration 10 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from .stats import Load

__all__ = ["H3Client", "Plan", "run_load"]

HANDSHAKE_TIMEOUT = 10.0
MAX_CONSECUTIVE_FAILURES = 5


class _Pending:
    """One request in flight: status, body byte count, completion future."""

    __slots__ = ("body_bytes", "done", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.body_bytes = 0
        self.done: asyncio.Future[None] = loop.create_future()

    def finish(self, error: BaseException | None = None) -> None:
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)


class H3Client(QuicConnectionProtocol):
    """An HTTP/3 client connection that counts body bytes instead of keeping them, and sends at
    most once per event-loop iteration."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.pending: dict[int, _Pending] = {}
        self.authority = b"127.0.0.1"
        self._flush_scheduled = False

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            error = ConnectionError(f"connection closed: {event.reason_phrase or event.error_code}")
            for pending in self.pending.values():
                pending.finish(error)
            return
        if isinstance(event, StreamReset) and event.stream_id in self.pending:
            self.pending[event.stream_id].finish(ConnectionResetError("stream reset"))
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        pending = self.pending.get(event.stream_id)
        if pending is None:
            return
        if isinstance(event, HeadersReceived):
            if not pending.status:
                status = next((v for n, v in event.headers if n == b":status"), b"0")
                pending.status = int(status)
        else:
            pending.body_bytes += len(event.data)
        if event.stream_ended:
            pending.finish()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.transmit()

    async def get(self, path: bytes) -> tuple[int, int]:
        """GET ``path``; returns (status, body bytes)."""
        stream_id = self._quic.get_next_available_stream_id()
        pending = self.pending[stream_id] = _Pending(self._loop)
        head = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", path),
            (b"user-agent", b"bench-h3load"),
        ]
        self.h3.send_headers(stream_id, head, end_stream=True)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        try:
            await pending.done
        finally:
            del self.pending[stream_id]
        return pending.status, pending.body_bytes


@dataclass
class Plan:
    """What to run, and the shared tally the workers fill in."""

    host: str
    port: int
    path: str
    connections: int = 10
    streams: int = 10
    max_requests: int = 100_000
    duration: float = 10.0
    timeout: float = 30.0
    issued: int = 0
    failed: int = 0
    body_bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deadline: float = 0.0

    def take(self) -> bool:
        """Claim the next request if the budget and the clock allow it."""
        if self.issued >= self.max_requests:
            return False
        if self.duration > 0 and time.monotonic() >= self.deadline:
            return False
        self.issued += 1
        return True

    def fail(self, reason: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(reason)


async def _worker(client: H3Client, plan: Plan) -> None:
    path = plan.path.encode()
    consecutive = 0
    while not client.closed and consecutive < MAX_CONSECUTIVE_FAILURES and plan.take():
        start = time.perf_counter()
        try:
            async with asyncio.timeout(plan.timeout):
                status, body_bytes = await client.get(path)
        except (TimeoutError, ConnectionError) as exc:
            plan.fail(repr(exc))
            consecutive += 1
            continue
        if 200 <= status < 300:
            plan.latencies_ms.append((time.perf_counter() - start) * 1000)
            plan.body_bytes += body_bytes
            consecutive = 0
        else:
            plan.fail(f"status {status}")
            consecutive += 1


def _configuration(host: str) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE, idle_timeout=30.0
    )
    config.server_name = "localhost" if host in ("127.0.0.1", "::1") else host
    return config


async def run_load(plan: Plan) -> tuple[Load, float]:
    """Open the connections (handshakes are not timed), then run every stream worker; returns
    the summary and the elapsed seconds of the timed part."""
    async with contextlib.AsyncExitStack() as stack:
        clients: list[H3Client] = []
        for _ in range(plan.connections):
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                client = await stack.enter_async_context(
                    connect(
                        plan.host,
                        plan.port,
                        configuration=_configuration(plan.host),
                        create_protocol=H3Client,
                    )
                )
            assert isinstance(client, H3Client)
            client.authority = f"{plan.host}:{plan.port}".encode()
            clients.append(client)
        start = time.monotonic()
        plan.deadline = start + plan.duration
        async with asyncio.TaskGroup() as group:
            for client in clients:
                for _ in range(plan.streams):
                    group.create_task(_worker(client, plan))
        elapsed = time.monotonic() - start
        for client in clients:
            client.close()
    return Load.from_latencies(plan.latencies_ms, plan.failed, elapsed, "bench.h3load"), elapsed


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.h3load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("-c", "--connections", type=int, default=10)
    parser.add_argument("-m", "--streams", type=int, default=10, help="concurrent per connection")
    parser.add_argument("-n", "--requests", type=int, default=100_000, help="total at most")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until -n")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one load and print its summary."""
    args = _parse(argv)
    plan = Plan(
        args.host,
        args.port,
        args.path,
        connections=max(1, args.connections),
        streams=max(1, args.streams),
        max_requests=max(1, args.requests),
        duration=max(0.0, args.duration),
        timeout=args.timeout,
    )
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    bound = plan.duration + plan.timeout + HANDSHAKE_TIMEOUT * plan.connections + 10

    async def bounded() -> tuple[Load, float]:
        async with asyncio.timeout(bound):
            return await run_load(plan)

    load, elapsed = asyncio.run(bounded())
    summary = {**load.to_json(), "body_bytes": plan.body_bytes, "errors": plan.errors}
    summary["elapsed_s"] = elapsed
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>10}: {value}")
    return 0 if load.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
