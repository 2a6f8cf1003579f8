"""Steady request loops over h1, h2 and h3 that count every answer (reload tests).

Each loop runs in its own thread until stopped (or its time bound), sends one request after
another on one kept-alive connection (h3: one QUIC connection; every ``fresh_every`` requests a
new connection), and counts the answers by the value of one response field.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_SECONDS = 60.0  # no loop outlives this, whatever the test does


@dataclass
class LoadLoop:
    """One protocol's loop: ``seen`` counts answers by the field's value, ``failures`` the rest."""

    protocol: str
    port: int
    field_name: str
    fresh_every: int = 25
    seen: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def start(self) -> LoadLoop:
        run: Callable[[], None] = self._h3 if self.protocol == "h3" else self._tcp
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(15)

    def wait_for(self, value: str, timeout: float = 15.0) -> bool:
        """True once an answer carrying ``value`` was counted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen[value]:
                return True
            time.sleep(0.05)
        return False

    def _count(self, status: int, value: str | None) -> None:
        if status == 200 and value is not None:
            self.seen[value] += 1
        else:
            self.failures.append(f"status {status}, {self.field_name}={value}")

    def _tcp(self) -> None:
        import httpx

        url = f"https://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + MAX_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            with httpx.Client(
                http1=self.protocol == "h1",
                http2=self.protocol == "h2",
                verify=False,
                trust_env=False,
                timeout=10,
            ) as client:
                for _ in range(self.fresh_every):
                    if self.stop.is_set():
                        break
                    try:
                        r = client.get(url)
                        self._count(r.status_code, r.headers.get(self.field_name))
                    except httpx.HTTPError as exc:
                        self.failures.append(repr(exc))

    def _h3(self) -> None:
        try:
            asyncio.run(asyncio.wait_for(self._h3_loop(), MAX_SECONDS + 5))
        except Exception as exc:
            self.failures.append(repr(exc))

    async def _h3_loop(self) -> None:
        from aioquic.asyncio.client import connect
        from aioquic.asyncio.protocol import QuicConnectionProtocol
        from aioquic.h3.connection import H3_ALPN, H3Connection
        from aioquic.h3.events import HeadersReceived
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.events import QuicEvent, StreamReset

        class Client(QuicConnectionProtocol):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.h3 = H3Connection(self._quic)
                self.waiting: dict[int, asyncio.Future[tuple[int, str | None]]] = {}

            def quic_event_received(self, event: QuicEvent) -> None:
                if isinstance(event, StreamReset) and event.stream_id in self.waiting:
                    self.waiting.pop(event.stream_id).set_result((0, None))
                for h3_event in self.h3.handle_event(event):
                    if isinstance(h3_event, HeadersReceived) and h3_event.stream_id in self.waiting:
                        fields = dict(h3_event.headers)
                        status = int(fields.get(b":status", b"0"))
                        raw = fields.get(field_name)
                        value = raw.decode() if raw is not None else None
                        self.waiting.pop(h3_event.stream_id).set_result((status, value))

            async def get(self) -> tuple[int, str | None]:
                stream_id = self._quic.get_next_available_stream_id()
                future = asyncio.get_running_loop().create_future()
                self.waiting[stream_id] = future
                self.h3.send_headers(
                    stream_id,
                    [
                        (b":method", b"GET"),
                        (b":scheme", b"https"),
                        (b":authority", f"127.0.0.1:{port}".encode()),
                        (b":path", b"/"),
                    ],
                    end_stream=True,
                )
                self.transmit()
                return await asyncio.wait_for(future, 10)

        field_name = self.field_name.encode()
        port = self.port
        configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
        configuration.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + MAX_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            async with connect(
                "127.0.0.1", port, configuration=configuration, create_protocol=Client
            ) as client:
                assert isinstance(client, Client)
                for _ in range(self.fresh_every):
                    if self.stop.is_set():
                        break
                    try:
                        self._count(*await client.get())
                    except TimeoutError:
                        self.failures.append("h3 request timed out")
