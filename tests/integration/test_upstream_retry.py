"""Upstream retries and limits: REFUSED_STREAM from an HTTP/2 or HTTP/3 origin is always retried
(the origin did not process the request), and max_requests still holds once an ``auto`` upstream
has moved to HTTP/3."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path
from typing import Any

import h2.connection
import h2.events
import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from h2.errors import ErrorCodes

from quicproxy.devcerts import DevCerts, ensure_dev_certs
from tests.support.h2origin import H2cOrigin
from tests.support.procs import (
    CURL,
    ThreadedOrigin,
    curl,
    proxy_args,
    run_proxy,
)

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")

H3_REQUEST_REJECTED = 0x10B


class RefusingH2Origin(H2cOrigin):
    """The first ``refuse`` requests are refused: RST_STREAM REFUSED_STREAM, or with ``goaway``
    a GOAWAY naming no stream as processed. The others get ``200 ok`` after ``delay`` s."""

    def __init__(
        self, refuse: int = 1, *, goaway: bool = False, max_streams: int = 100, delay: float = 0
    ) -> None:
        super().__init__(delay=delay, max_streams=max_streams)
        self.refuse, self.goaway = refuse, goaway
        self.seen = 0  # request heads received

    def on_request(
        self, conn: h2.connection.H2Connection, event: h2.events.RequestReceived
    ) -> bool:
        with self.lock:
            refused = self.seen < self.refuse
            self.seen += 1
        if refused and self.goaway:
            conn.close_connection(last_stream_id=0)
        elif refused:
            conn.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
        return refused


def _h2_upstream(origin: RefusingH2Origin) -> str:
    return f'addresses = ["http://127.0.0.1:{origin.port}"]\nprotocol = "h2"'


def _status(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stdout.decode().split()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return ensure_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize(
    ("method", "goaway"), [("GET", False), ("POST", False), ("GET", True)], ids=str
)
def test_refused_stream_from_an_h2_origin_is_retried(
    tmp_path: Path, certs: DevCerts, method: str, goaway: bool
) -> None:
    """On a fresh connection, for a POST without a body too, and for the streams a GOAWAY left
    unprocessed: the client gets the origin's answer, not a 502."""
    with (
        RefusingH2Origin(goaway=goaway) as origin,
        run_proxy(proxy_args(tmp_path / "p.toml", certs, _h2_upstream(origin))) as proxy,
    ):
        url = f"https://127.0.0.1:{proxy.port}/refused"
        result = curl("--http2", "-X", method, "-w", " %{http_code}", url)
        assert result.stdout == b"ok 200", proxy.log_text()
        assert (origin.seen, origin.answered) == (2, 1)
        assert origin.connections == (2 if goaway else 1)


class _RejectingH3(QuicConnectionProtocol):
    """Rejects the first request of the origin with H3_REQUEST_REJECTED, answers the others."""

    def __init__(self, origin: RejectingH3Origin, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origin = origin
        self.h3 = H3Connection(self._quic)

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            if not isinstance(h3_event, HeadersReceived):
                continue
            stream_id = h3_event.stream_id
            self.origin.seen += 1
            if self.origin.seen == 1:
                self._quic.reset_stream(stream_id, H3_REQUEST_REJECTED)
                self._quic.stop_stream(stream_id, H3_REQUEST_REJECTED)
            else:
                self.h3.send_headers(stream_id, [(b":status", b"200"), (b"content-length", b"2")])
                self.h3.send_data(stream_id, b"ok", end_stream=True)
        self.transmit()


class RejectingH3Origin:
    """An aioquic HTTP/3 origin on 127.0.0.1, on its own event loop in a thread."""

    def __init__(self, certs: DevCerts) -> None:
        self.certs = certs
        self.seen = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: QuicServer | None = None

    async def _start(self) -> QuicServer:
        config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        config.load_cert_chain(str(self.certs.cert), str(self.certs.key))
        return await serve(
            "127.0.0.1",
            0,
            configuration=config,
            create_protocol=lambda *a, **k: _RejectingH3(self, *a, **k),
        )

    @property
    def port(self) -> int:
        assert self.server is not None and self.server._transport is not None
        return int(self.server._transport.get_extra_info("sockname")[1])

    def __enter__(self) -> RejectingH3Origin:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_request_rejected_by_an_h3_origin_is_retried(tmp_path: Path, certs: DevCerts) -> None:
    with RejectingH3Origin(certs) as origin:
        upstream = (
            f'addresses = ["https://127.0.0.1:{origin.port}"]\nprotocol = "h3"\n'
            f'sni = "localhost"\nca_file = "{certs.ca_cert}"'
        )
        with run_proxy(proxy_args(tmp_path / "p.toml", certs, upstream)) as proxy:
            result = curl("--http1.1", "-w", " %{http_code}", f"https://127.0.0.1:{proxy.port}/")
            assert result.stdout == b"ok 200", proxy.log_text()
            assert origin.seen == 2


async def test_stream_limit_reached_while_hooks_ran_is_retried_on_another_connection(
    tmp_path: Path, certs: DevCerts
) -> None:
    """Two requests get the same HTTP/2 connection (one stream free) and both spend a while in
    an async hook: the second finds no stream left. Nothing reached the origin, so it goes
    again (on a new connection) instead of failing with a 502."""
    from quicproxy.config import Config, ListenConfig, RouteConfig, TlsConfig, UpstreamConfig
    from quicproxy.http import RequestHeader
    from quicproxy.proxy import BuiltinProxy, RouteCtx
    from quicproxy.server import ProxyServer
    from quicproxy.session import Session

    class SlowHook(BuiltinProxy):
        async def upstream_request_filter(
            self, session: Session, request: RequestHeader, ctx: RouteCtx
        ) -> None:
            await asyncio.sleep(0.3)

    with RefusingH2Origin(refuse=0, max_streams=1, delay=0.5) as origin:
        config = Config(
            listen=(ListenConfig("127.0.0.1", 0, True, False),),
            upstreams=(UpstreamConfig("o", (("127.0.0.1", origin.port),), protocol="h2"),),
            routes=(RouteConfig("o"),),
            tls=TlsConfig(certs.cert, certs.key),
        )
        server = ProxyServer(config, SlowHook(config))
        await server.start()
        try:
            url = f"https://127.0.0.1:{server.addresses[0][1]}/"
            assert CURL is not None
            args = [CURL, "-sSk", "--noproxy", "*", "--max-time", "10", "-w", " %{http_code}"]
            runs = [
                await asyncio.create_subprocess_exec(*args, url, stdout=subprocess.PIPE)
                for _ in range(2)
            ]
            outputs = await asyncio.gather(*(run.communicate() for run in runs))
            assert [out for out, _ in outputs] == [b"ok 200", b"ok 200"]
            assert (origin.seen, origin.connections) == (2, 2)
        finally:
            await server.close()


def test_max_requests_holds_after_an_auto_upstream_moved_to_http3(
    tmp_path: Path, certs: DevCerts
) -> None:
    """Proxy A reaches the hop (a quicproxy advertising h3) with protocol auto and
    max_requests = 2: once on HTTP/3, six concurrent slow requests still get 2 answers and
    4 fast 503s."""
    with ThreadedOrigin() as origin:
        origin_upstream = f'addresses = ["127.0.0.1:{origin.port}"]'
        with run_proxy(proxy_args(tmp_path / "b.toml", certs, origin_upstream)) as hop:
            upstream = (
                f'addresses = ["https://127.0.0.1:{hop.port}"]\nsni = "localhost"\n'
                f'ca_file = "{certs.ca_cert}"\nprotocol = "auto"\nmax_requests = 2'
            )
            with run_proxy(proxy_args(tmp_path / "a.toml", certs, upstream)) as proxy:
                base = f"https://127.0.0.1:{proxy.port}"
                for _ in range(2):  # learn the Alt-Svc, then go over HTTP/3
                    assert curl("-w", " %{http_code}", f"{base}/status/200").stdout.endswith(
                        b" 200"
                    )
                seen = [line.split()[5] for line in hop.lines if "/status/200" in line]
                assert seen[-1] == "h3", seen
                parallel = ["--parallel", "--parallel-immediate", "--http1.1"]
                for _ in range(6):
                    parallel += ["-o", "/dev/null", "-w", "%{http_code}\n", f"{base}/delay/1"]
                statuses = sorted(_status(curl(*parallel, timeout=20)))
                assert statuses == ["200", "200", "503", "503", "503", "503"], statuses
                assert "at its limit: 2 requests in flight" in proxy.log_text()
