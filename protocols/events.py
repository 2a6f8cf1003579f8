"""Normalized stream events that every protocol adapter emits, in server and client role alike."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ErrorCode
from .messages import Headers, RequestHead, ResponseHead

__all__ = [
    "CapacityAvailable",
    "ConnectionClosed",
    "Event",
    "GoAway",
    "InformationalResponse",
    "ProtocolError",
    "RequestData",
    "RequestEnd",
    "RequestHeaders",
    "RequestTrailers",
    "ResponseData",
    "ResponseEnd",
    "ResponseHeaders",
    "ResponseTrailers",
    "StreamReset",
]


@dataclass(frozen=True, slots=True)
class RequestHeaders:
    """A request head arrived (server role). ``end_stream``: the request has no body."""

    stream_id: int
    head: RequestHead
    end_stream: bool


@dataclass(frozen=True, slots=True)
class RequestData:
    """A chunk of request body (server role). Credit it back with the adapter's ``consumed``."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RequestTrailers:
    """Request trailers arrived (server role); a RequestEnd follows."""

    stream_id: int
    trailers: Headers


@dataclass(frozen=True, slots=True)
class RequestEnd:
    """The request body is complete (server role)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """A 1xx response arrived (client role)."""

    stream_id: int
    head: ResponseHead


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    """A final response head arrived (client role). ``end_stream``: the response has no body."""

    stream_id: int
    head: ResponseHead
    end_stream: bool


@dataclass(frozen=True, slots=True)
class ResponseData:
    """A chunk of response body (client role). Credit it back with the adapter's ``consumed``."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ResponseTrailers:
    """Response trailers arrived (client role); a ResponseEnd follows."""

    stream_id: int
    trailers: Headers


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    """The response body is complete (client role)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer abandoned one stream (RST_STREAM, RESET_STREAM or STOP_SENDING)."""

    stream_id: int
    code: ErrorCode


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol. ``stream_id`` None: the whole connection is unusable.

    A server-role adapter has already queued what the protocol requires (a 400 on h1, RST_STREAM,
    GOAWAY or CONNECTION_CLOSE); the owner only has to flush and, for connection errors, close.
    """

    stream_id: int | None
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class CapacityAvailable:
    """Send capacity may have grown (flow-control credit, ACKs); ``stream_id`` None: all streams."""

    stream_id: int | None


@dataclass(frozen=True, slots=True)
class GoAway:
    """The peer will accept no new streams; those above ``last_stream_id`` were not processed."""

    last_stream_id: int | None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is gone (EOF, CONNECTION_CLOSE, idle timeout); every open stream is lost."""

    code: ErrorCode
    message: str


Event = (
    RequestHeaders
    | RequestData
    | RequestTrailers
    | RequestEnd
    | InformationalResponse
    | ResponseHeaders
    | ResponseData
    | ResponseTrailers
    | ResponseEnd
    | StreamReset
    | ProtocolError
    | CapacityAvailable
    | GoAway
    | ConnectionClosed
)
