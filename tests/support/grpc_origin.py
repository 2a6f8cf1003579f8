"""A real grpcio server with a small test service, written with generic handlers and raw bytes
(no protoc): unary, server streaming, client streaming, bidi, an error with details, a slow
call, and a stream that notes its cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "quicproxy.test.Echo"


class GrpcOrigin:
    """``with GrpcOrigin() as origin:`` serves cleartext h2 on 127.0.0.1:``origin.port``."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Count": grpc.unary_stream_rpc_method_handler(self._count),
            "Sum": grpc.stream_unary_rpc_method_handler(self._sum),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
            "Endless": grpc.unary_stream_rpc_method_handler(self._endless),
        }
        generic = grpc.method_handlers_generic_handler(SERVICE, handlers)
        self.server.add_generic_rpc_handlers((generic,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> GrpcOrigin:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)

    @staticmethod
    def _unary(request: bytes, context: Any) -> bytes:
        return b"echo:" + request

    @staticmethod
    def _count(request: bytes, context: Any) -> Iterator[bytes]:
        for number in range(int(request)):
            yield str(number).encode()

    @staticmethod
    def _sum(requests: Iterator[bytes], context: Any) -> bytes:
        return str(sum(int(item) for item in requests)).encode()

    @staticmethod
    def _chat(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for item in requests:
            yield item.upper()

    @staticmethod
    def _fail(request: bytes, context: Any) -> bytes:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request: " + request.decode())
        raise AssertionError("abort raises")

    @staticmethod
    def _slow(request: bytes, context: Any) -> bytes:
        time.sleep(float(request))
        return b"late"

    def _endless(self, request: bytes, context: Any) -> Iterator[bytes]:
        context.add_callback(self.cancelled.set)
        for number in range(10_000):  # bounded: 100 s at most
            if not context.is_active():
                return
            yield str(number).encode()
            time.sleep(0.01)


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"
