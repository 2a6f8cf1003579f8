"""Session: one downstream request, its body reader, its response writer and the client's facts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from protocols.errors import ErrorCode
from protocols.messages import Headers, RequestHead, ResponseHead

from .altsvc import AltSvcPolicy
from .errors import ProxyError
from .grpc import is_grpc, trailers_only
from .http import RequestHeader, ResponseHeader
from .streamio import ServerStream

__all__ = ["DownstreamInfo", "Session"]


@dataclass(slots=True)
class DownstreamInfo:
    """What the proxy knows about the client connection."""

    protocol: str  # "http/1.1", "h2", "h3" or "hq-interop"
    client_address: tuple[str, int]
    server_address: tuple[str, int]
    tls: bool
    sni: str | None = None
    alpn: str | None = None
    early_data: bool = False  # this request arrived in TLS 1.3 / QUIC 0-RTT early data
    quic: dict[str, Any] = field(default_factory=dict)
    handshake: asyncio.Future[None] | None = None  # early requests: done when the handshake is

    @property
    def scheme(self) -> str:
        """``https`` over TLS or QUIC, else ``http``."""
        return "https" if self.tls else "http"


class Session:
    """One request/response exchange with the client, as the pipeline and hooks drive it."""

    def __init__(
        self, stream: ServerStream, head: RequestHead, downstream: DownstreamInfo, end_stream: bool
    ) -> None:
        self.stream = stream
        self.original_head = head
        self.request = RequestHeader.from_head(head)
        self.downstream = downstream
        self.request_has_body = not end_stream
        self.started = time.monotonic()
        self.response_status: int | None = None
        self.response_started = False
        self.response_finished = False
        self.bytes_out = 0
        self.upstream_address: str | None = None
        self.upstream_tries: list[str] = []  # the address of each try, in order
        self.altsvc: AltSvcPolicy | None = None  # advertises HTTP/3 on answers made here
        self.error: ProxyError | None = None

    @property
    def http_version(self) -> bytes:
        """The client's HTTP version (``1.1``, ``2``, ``3``)."""
        return self.original_head.http_version

    @property
    def bytes_in(self) -> int:
        """Request body bytes received so far."""
        return self.stream.body.received

    async def read_body(self) -> bytes | None:
        """The next request body chunk (already credited back), or None at the end."""
        chunk = await self.stream.body.read()
        if chunk is not None:
            self.stream.body.release(len(chunk))
        return chunk

    @property
    def request_trailers(self) -> Headers | None:
        """Request trailers, once the body has ended."""
        return self.stream.body.trailers

    async def write_response_head(
        self, response: ResponseHeader | ResponseHead, end_stream: bool = False
    ) -> None:
        """Send the final response head; TCP clients get the Alt-Svc advertisement unless the
        head carries an Alt-Svc field already."""
        head = response.to_head() if isinstance(response, ResponseHeader) else response
        if self.altsvc is not None and not any(name == b"alt-svc" for name, _ in head.headers):
            advertised = self.altsvc.value_for(self.downstream.protocol)
            if advertised is not None:
                head = head.with_headers([*head.headers, (b"alt-svc", advertised)])
        self.stream.check_open()
        self.response_status = head.status
        self.response_started = True
        self.stream.send_head(head, end_stream)
        if end_stream:
            self.response_finished = True

    def write_informational(self, head: ResponseHead) -> None:
        """Send a 1xx response."""
        if not self.response_started:
            self.stream.send_informational(head)

    async def write_body(self, data: bytes) -> None:
        """Send response body bytes, waiting while the client is slow."""
        await self.stream.send_data(data)
        self.bytes_out += len(data)

    def finish_response(self, trailers: Headers | None = None) -> None:
        """End the response, with trailers where the client's protocol carries them."""
        if trailers:
            self.stream.send_trailers(trailers)
        else:
            self.stream.end()
        self.response_finished = True

    async def respond(
        self,
        status: int,
        body: bytes | str = b"",
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Headers | None = None,
    ) -> None:
        """Answer the whole request at once (for hooks that do not proxy, and the proxy's own
        errors). A gRPC call over h2/h3 gets a 4xx/5xx as a trailers-only gRPC status instead,
        its text as ``grpc-message`` (see ``quicproxy.grpc``)."""
        data = body.encode() if isinstance(body, str) else body
        fields: Headers = list(headers or [])
        if status >= 400 and is_grpc(self.request, self.downstream.protocol):
            text = data.decode("utf-8", "replace")
            await self.write_response_head(
                ResponseHead(200, [*fields, *trailers_only(status, text)]), end_stream=True
            )
            return
        if data or status not in (204, 304):
            fields.append((b"content-type", content_type.encode("latin-1")))
            fields.append((b"content-length", str(len(data)).encode()))
        await self.write_response_head(ResponseHead(status, fields), end_stream=not data)
        if data:
            await self.write_body(data)
            self.finish_response()

    def abort(self, code: ErrorCode = ErrorCode.INTERNAL_ERROR) -> None:
        """Give up on the response: reset the stream (h2/h3) or close the connection (h1)."""
        self.stream.reset(code)
