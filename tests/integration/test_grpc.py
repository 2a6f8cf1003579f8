"""gRPC through the proxy with real grpcio peers: every call kind over TLS h2 and over h2c
(prior knowledge on a cleartext listener), statuses and deadlines end to end, cancellation
reaching the server, the proxy's own errors as gRPC statuses, and a call over HTTP/3."""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.grpc_origin import GrpcOrigin, method
from tests.support.procs import ProxyProcess, free_port, run_proxy

pytestmark = pytest.mark.timeout(60)


def config(path: Path, origin_port: int, cert_dir: Path, cleartext_port: int) -> list[str]:
    path.write_text(
        f"""
[server]
workers = 1
grace_period = 1

[tls]
dev_cert_dir = "{cert_dir}"

[[listen]]
address = "127.0.0.1:0"

[[listen]]
address = "127.0.0.1:{cleartext_port}"
tls = false

[[upstream]]
name = "grpc"
addresses = ["http://127.0.0.1:{origin_port}"]
protocol = "h2"
read_timeout = 10

[[upstream]]
name = "dead"
addresses = ["http://127.0.0.1:{free_port()}"]
protocol = "h2"

[[route]]
path_prefix = "/quicproxy.test.Echo/"
upstream = "grpc"

[[route]]
path_prefix = "/quicproxy.test.Dead/"
upstream = "dead"
"""
    )
    return ["run", "-c", str(path)]


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, proxy_cert_dir: Path
) -> Iterator[tuple[ProxyProcess, int, GrpcOrigin, Path]]:
    where = tmp_path_factory.mktemp("grpc")
    cleartext = free_port()
    with GrpcOrigin() as origin:
        args = config(where / "proxy.toml", origin.port, proxy_cert_dir, cleartext)
        with run_proxy(args) as proxy:
            yield proxy, cleartext, origin, proxy_cert_dir


def channels(setup: tuple[ProxyProcess, int, GrpcOrigin, Path]) -> dict[str, grpc.Channel]:
    proxy, cleartext, _origin, cert_dir = setup
    credentials = grpc.ssl_channel_credentials((cert_dir / "ca.pem").read_bytes())
    tls = grpc.secure_channel(
        f"127.0.0.1:{proxy.port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    return {"tls": tls, "h2c": grpc.insecure_channel(f"127.0.0.1:{cleartext}")}


@pytest.mark.parametrize("kind", ["tls", "h2c"])
def test_every_call_kind(setup: Any, kind: str) -> None:
    with channels(setup)[kind] as channel:
        assert channel.unary_unary(method("Unary"))(b"hi", timeout=10) == b"echo:hi"
        assert list(channel.unary_stream(method("Count"))(b"5", timeout=10)) == [
            b"0",
            b"1",
            b"2",
            b"3",
            b"4",
        ]
        summed = channel.stream_unary(method("Sum"))(iter([b"1", b"2", b"39"]), timeout=10)
        assert summed == b"42"
        chat = channel.stream_stream(method("Chat"))(iter([b"a", b"bc"]), timeout=10)
        assert list(chat) == [b"A", b"BC"]


@pytest.mark.parametrize("kind", ["tls", "h2c"])
def test_a_status_with_details_and_a_deadline_reach_the_client(setup: Any, kind: str) -> None:
    with channels(setup)[kind] as channel:
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(method("Fail"))(b"x", timeout=10)
        assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert failed.value.details() == "bad request: x"
        with pytest.raises(grpc.RpcError) as late:
            channel.unary_unary(method("Slow"))(b"3", timeout=0.5)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_cancelled_stream_is_cancelled_at_the_server(setup: Any) -> None:
    origin: GrpcOrigin = setup[2]
    origin.cancelled.clear()
    with channels(setup)["tls"] as channel:
        call = channel.unary_stream(method("Endless"))(b"", timeout=30)
        assert next(call) == b"0"
        call.cancel()
    assert origin.cancelled.wait(10)  # the proxy reset the upstream stream


def test_the_proxys_own_errors_are_grpc_statuses(setup: Any) -> None:
    with channels(setup)["tls"] as channel:
        with pytest.raises(grpc.RpcError) as dead:
            channel.unary_unary("/quicproxy.test.Dead/Call")(b"x", timeout=10)
        assert dead.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "upstream connection refused" in dead.value.details()
        with pytest.raises(grpc.RpcError) as nowhere:
            channel.unary_unary("/other.Service/Call")(b"x", timeout=10)
        assert nowhere.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "no route" in nowhere.value.details()


def test_grpc_timeout_is_the_upstream_deadline(setup: Any) -> None:
    """A client that sends grpc-timeout but does not give up itself (this raw HTTP/3 client)
    gets DEADLINE_EXCEEDED from the proxy once the deadline passed, not the late answer."""
    proxy: ProxyProcess = setup[0]
    started = time.monotonic()
    status, trailers = asyncio.run(_h3_call(proxy.port, "Slow", b"3", deadline="500m"))
    assert time.monotonic() - started < 2.5  # the origin answers after 3 s
    assert status == 200
    assert trailers.get(b"grpc-status") == b"4", trailers
    assert proxy.wait_for_log("exceeded the gRPC deadline of 0.5s")


def _frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack("!I", len(message)) + message


async def _h3_call(
    port: int, name: str, message: bytes, deadline: str | None = None
) -> tuple[int, dict[bytes, bytes]]:
    """One unary gRPC call over HTTP/3 with aioquic; the HTTP status and the fields of the
    trailers (or of a trailers-only head), the message bytes under b"message"."""
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.heads: list[dict[bytes, bytes]] = []
            self.body = b""
            self.done = asyncio.get_running_loop().create_future()

        def quic_event_received(self, event: QuicEvent) -> None:
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    self.heads.append(dict(h3_event.headers))
                elif isinstance(h3_event, DataReceived):
                    self.body += h3_event.data
                ended = isinstance(h3_event, HeadersReceived | DataReceived)
                if ended and h3_event.stream_ended and not self.done.done():
                    self.done.set_result(None)

    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    configuration.verify_mode = ssl.CERT_NONE
    async with connect(
        "127.0.0.1", port, configuration=configuration, create_protocol=Client
    ) as client:
        assert isinstance(client, Client)
        stream_id = client._quic.get_next_available_stream_id()
        head = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b":path", method(name).encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        if deadline is not None:
            head.append((b"grpc-timeout", deadline.encode()))
        client.h3.send_headers(stream_id, head)
        client.h3.send_data(stream_id, _frame(message), end_stream=True)
        client.transmit()
        await asyncio.wait_for(client.done, 20)
    status = int(client.heads[0][b":status"])
    fields = dict(client.heads[-1])
    fields[b"message"] = client.body[5:]
    return status, fields


def test_a_unary_call_over_http3(setup: Any) -> None:
    proxy: ProxyProcess = setup[0]
    status, trailers = asyncio.run(_h3_call(proxy.port, "Unary", b"over h3"))
    assert status == 200
    assert trailers[b"grpc-status"] == b"0"
    assert trailers[b"message"] == b"echo:over h3"


def test_h2c_with_curl_prior_knowledge_and_h1_beside_it(setup: Any, tmp_path: Path) -> None:
    from tests.support.procs import curl

    cleartext: int = setup[1]
    url = f"http://127.0.0.1:{cleartext}/quicproxy.test.Echo/Unary"
    written = "%{http_version} %{http_code}"
    h2c = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", written, url)
    assert h2c.stdout.split()[0] == b"2", h2c.stderr
    h1 = curl("--http1.1", "-o", "/dev/null", "-w", written, url)
    assert h1.stdout.split()[0] == b"1.1", h1.stderr
    upgrade = curl("--http2", "-o", "/dev/null", "-w", written, url)  # Upgrade: h2c is ignored
    assert upgrade.stdout.split()[0] == b"1.1", upgrade.stderr


def test_upgrade_h2c_is_served_as_h1_and_never_reaches_the_origin(
    tmp_path: Path, proxy_cert_dir: Path
) -> None:
    """curl --http2 on cleartext sends Upgrade: h2c + HTTP2-Settings: answered in HTTP/1.1, and
    the origin sees neither field (nor the Connection that names them)."""
    from tests.support.procs import curl, proxy_in_front
    from tests.support.recording import RecordingOrigin

    cleartext = free_port()
    extra = f'[[listen]]\naddress = "127.0.0.1:{cleartext}"\ntls = false\n'
    with (
        RecordingOrigin() as origin,
        proxy_in_front(origin.port, tmp_path, cert_dir=proxy_cert_dir, extra=extra),
    ):
        url = f"http://127.0.0.1:{cleartext}/upgrade"
        answer = curl("--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url)
        assert answer.stdout == b"1.1 200", answer.stdout + answer.stderr
        assert origin.wait_for(lambda: bool(origin.requests))
        seen = {name.lower() for name, _ in origin.requests[0].headers}
        assert not seen & {b"upgrade", b"http2-settings", b"connection"}, seen


def test_h2load_over_h2c(setup: Any) -> None:
    """Many multiplexed streams on cleartext HTTP/2 (h2load's default for http:// URLs): every
    one answered, over h2c, on one connection each."""
    import re
    import shutil
    import subprocess

    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.skip("h2load (nghttp2-client) is not installed")
    cleartext: int = setup[1]
    url = f"http://127.0.0.1:{cleartext}/no/route/here"  # the proxy's own 404: no origin needed
    result = subprocess.run(
        [h2load, "-n", "200", "-c", "2", "-m", "50", "-T", "20", "-N", "20", url],
        capture_output=True,
        text=True,
        timeout=40,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Application protocol: h2c" in out, out
    done = r"requests: 200 total, 200 started, 200 done, \d+ succeeded, \d+ failed, 0 errored"
    assert re.search(done, out), out  # h2load counts a 4xx as failed, not errored
    assert "status codes: 0 2xx, 0 3xx, 200 4xx, 0 5xx" in out, out


def _web_frames(body: bytes) -> list[tuple[int, bytes]]:
    """(flag, payload) of each gRPC-Web frame."""
    frames = []
    while body:
        flag, size = body[0], struct.unpack("!I", body[1:5])[0]
        frames.append((flag, body[5 : 5 + size]))
        body = body[5 + size :]
    return frames


@pytest.mark.parametrize("text", [False, True])
def test_grpc_web_over_http11(setup: Any, text: bool) -> None:
    """A browser's gRPC-Web call (httpx over HTTP/1.1 here) to the grpcio server: the message and
    a trailers frame carrying grpc-status, in the body."""
    import base64

    import httpx

    proxy: ProxyProcess = setup[0]
    kind = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
    with httpx.Client(http1=True, http2=False, verify=False, trust_env=False) as client:
        for name, payload in (("Unary", b"from a browser"), ("Fail", b"nope")):
            body = _frame(payload)
            response = client.post(
                f"https://127.0.0.1:{proxy.port}{method(name)}",
                content=base64.b64encode(body) if text else body,
                headers={"content-type": kind, "x-grpc-web": "1"},
                timeout=10,
            )
            assert response.status_code == 200
            assert response.http_version == "HTTP/1.1"
            assert response.headers["content-type"] == kind
            if "grpc-status" in response.headers:  # trailers-only: the status in the head
                frames: list[tuple[int, bytes]] = []
                status = response.headers["grpc-status"].encode()
            else:
                raw = response.content
                if text:  # base64 per chunk, padding included: each 4-character quantum alone
                    quanta = [raw[i : i + 4] for i in range(0, len(raw), 4)]
                    raw = b"".join(base64.b64decode(quantum) for quantum in quanta)
                frames = _web_frames(raw)
                assert frames[-1][0] == 0x80
                fields = dict(line.split(b": ", 1) for line in frames[-1][1].split(b"\r\n") if line)
                status = fields[b"grpc-status"]
            if name == "Unary":
                assert status == b"0"
                assert frames[0] == (0, b"echo:from a browser")
            else:
                assert status == b"3"  # INVALID_ARGUMENT
