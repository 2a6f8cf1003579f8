"""gRPC helpers: grpc-timeout parsing and the trailers-only answer the proxy makes."""

from __future__ import annotations

import pytest

from quicproxy.grpc import grpc_timeout, is_grpc, trailers_only
from quicproxy.http import RequestHeader


def request(*fields: tuple[bytes, bytes]) -> RequestHeader:
    return RequestHeader("POST", "https", "a.test", "/s.S/M", list(fields))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"5S", 5.0),
        (b"100m", 0.1),
        (b"2H", 7200.0),
        (b"3M", 180.0),
        (b"250u", 0.00025),
        (b"1000000n", 0.001),
        (b"123456789S", None),  # more than 8 digits
        (b"5s", None),
        (b"S", None),
        (b"-1S", None),
        (b"1.5S", None),
    ],
)
def test_grpc_timeout(value: bytes, seconds: float | None) -> None:
    got = grpc_timeout(request((b"grpc-timeout", value)))
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_no_grpc_timeout() -> None:
    assert grpc_timeout(request()) is None


def test_is_grpc_only_on_h2_and_h3_and_not_grpc_web() -> None:
    call = request((b"content-type", b"application/grpc+proto"))
    assert is_grpc(call, "h2") and is_grpc(call, "h3")
    assert not is_grpc(call, "http/1.1")
    assert not is_grpc(request((b"content-type", b"application/grpc-web")), "h2")
    assert not is_grpc(request((b"content-type", b"text/plain")), "h2")


@pytest.mark.parametrize(("status", "code"), [(404, b"12"), (502, b"14"), (504, b"4"), (418, b"2")])
def test_trailers_only(status: int, code: bytes) -> None:
    fields = dict(trailers_only(status, "502 Bad Gateway: upstream\u00e9 refused\n"))
    assert fields[b"content-type"] == b"application/grpc"
    assert fields[b"grpc-status"] == code
    assert fields[b"grpc-message"] == b"502 Bad Gateway: upstream%C3%A9 refused"


def test_grpc_web_text_request_is_decoded_across_any_split() -> None:
    import base64

    from quicproxy.errors import ProxyError
    from quicproxy.grpcweb import grpc_web_call

    call = grpc_web_call(request((b"content-type", b"application/grpc-web-text+proto")))
    assert call is not None and call.text and call.codec == "+proto"
    encoded = base64.b64encode(b"\x00\x00\x00\x00\x05hello")
    pieces = [encoded[:3], encoded[3:9], encoded[9:10], encoded[10:]]
    out = b"".join(call.request_chunk(piece, False) for piece in pieces)
    out += call.request_chunk(b"", True)
    assert out == b"\x00\x00\x00\x00\x05hello"
    bad = grpc_web_call(request((b"content-type", b"application/grpc-web-text")))
    assert bad is not None
    with pytest.raises(ProxyError):
        bad.request_chunk(b"!!!!", True)


def test_grpc_web_forms_and_the_trailer_frame() -> None:
    from quicproxy.grpcweb import grpc_web_call, trailer_frame

    binary = grpc_web_call(request((b"content-type", b"application/grpc-web")))
    assert binary is not None and not binary.text and binary.request_chunk(b"xy", False) == b"xy"
    assert grpc_web_call(request((b"content-type", b"application/grpc"))) is None
    frame = trailer_frame([(b"grpc-status", b"0"), (b"Grpc-Message", b"ok")])
    assert frame == b"\x80\x00\x00\x00\x22grpc-status: 0\r\ngrpc-message: ok\r\n"
