"""gRPC-Web to gRPC: a browser's ``application/grpc-web`` (binary) or
``application/grpc-web-text`` (base64) call becomes a gRPC call to an HTTP/2 upstream, and the
answer comes back in the browser's form, over any client protocol (HTTP/1.1 included).

Toward the upstream: ``content-type: application/grpc[+codec]`` and ``te: trailers``; a text
body is base64-decoded as it streams (4 characters at a time). Toward the client: the
``grpc-web`` content type, the messages as they come (base64 per chunk for text, padding
included, as the gRPC-Web protocol allows), and the gRPC trailers encoded in the body as the
final frame (flag byte 0x80, a 4-byte length, ``name: value\\r\\n`` lines), since browsers cannot
read HTTP trailers. Nothing is buffered beyond 3 characters of base64.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from protocols.messages import Headers

from .errors import ErrorKind, ProxyError
from .http import RequestHeader, ResponseHeader

__all__ = ["GrpcWebCall", "grpc_web_call", "trailer_frame"]

_WEB = "application/grpc-web"
_TEXT = "application/grpc-web-text"


@dataclass(slots=True)
class GrpcWebCall:
    """One gRPC-Web call in translation: its form and the base64 bytes not yet decoded."""

    text: bool
    codec: str  # "" or "+proto", "+json", ...
    pending: bytes = b""

    def upstream_request(self, request: RequestHeader) -> None:
        """Make the request a gRPC one."""
        request.set("content-type", f"application/grpc{self.codec}")
        request.set("te", "trailers")
        if self.text:
            request.remove("content-length")  # decoding shrinks the body

    def request_chunk(self, chunk: bytes, end: bool) -> bytes:
        """The request bytes for the upstream (base64-decoded for text)."""
        if not self.text:
            return chunk
        data = self.pending + b"".join(chunk.split())
        usable = len(data) if end else len(data) - len(data) % 4
        self.pending = data[usable:]
        try:
            return base64.b64decode(data[:usable], validate=True) if usable else b""
        except binascii.Error:
            raise ProxyError.downstream(
                ErrorKind.DOWNSTREAM_PROTOCOL, "the grpc-web-text body is not base64"
            ) from None

    def client_response(self, response: ResponseHeader) -> None:
        """Make the response head a gRPC-Web one."""
        kind = _TEXT if self.text else _WEB
        response.set("content-type", f"{kind}{self.codec}")
        response.remove("content-length")

    def response_chunk(self, chunk: bytes) -> bytes:
        """Response bytes for the client (base64 for text)."""
        return base64.b64encode(chunk) if self.text and chunk else chunk


def grpc_web_call(request: RequestHeader) -> GrpcWebCall | None:
    """The translation state when ``request`` is a gRPC-Web call, else None."""
    content_type = (request.get("content-type") or "").lower().split(";")[0].strip()
    for kind, text in ((_TEXT, True), (_WEB, False)):
        if content_type == kind or content_type.startswith(kind + "+"):
            return GrpcWebCall(text, content_type[len(kind) :])
    return None


def trailer_frame(trailers: Headers) -> bytes:
    """The gRPC-Web trailers frame: 0x80, a big-endian length, then ``name: value\\r\\n``."""
    block = b"".join(name.lower() + b": " + value + b"\r\n" for name, value in trailers)
    return b"\x80" + struct.pack("!I", len(block)) + block
